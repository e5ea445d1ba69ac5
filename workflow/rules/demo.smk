if DEMO:

    rule demo:
        """Build the offline demo: tiny models, checkpoints and golden set (nothing is downloaded)."""
        output:
            [f"{DEMO_DIR}/{name}" for name in DEMO_FILES],
        log:
            "logs/demo.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            out=lambda wildcards, output: Path(output[0]).parent,
            golden_per_task=config["demo"]["golden_per_task"],
            train_steps=config["demo"]["train_steps"],
            seed=config["demo"]["seed"],
        script:
            "../scripts/build_demo.py"


if DEMO and config["demo"]["zoo"]:

    rule zoo:
        input:
            f"{DEMO_DIR}/checkpoints/good/COMPLETE",
        output:
            [f"{DEMO_DIR}/{name}" for name in zoo_files()],
        log:
            "logs/zoo.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            demo_dir=lambda wildcards, input: Path(input[0]).parents[2],
            steps=config["demo"]["zoo_steps"],
            seed=config["demo"]["seed"],
        script:
            "../scripts/build_zoo.py"
