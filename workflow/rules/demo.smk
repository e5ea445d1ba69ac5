if DEMO:

    rule demo:
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
