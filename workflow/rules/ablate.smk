# Teacher-forced prompt ablation (P0.4) and read-side modality ablation (P1.2). The ablation shards
# run in blocks of up to sharding.shards_per_job per job, one model load each (see generate.smk).


for _name, _units in block_rules("ablate"):

    rule:
        """Teacher-forced ablation losses of a block of one checkpoint's shards with one model load."""
        name:
            _name
        input:
            check=p01_gate,
            token_space=config["token_space"],
            golden=config["golden_set"],
            marker=ckpt_marker,
        output:
            block_outputs(_units),
        log:
            f"logs/blocks/{{ckpt}}/{_name}.log",
        conda:
            ENV
        threads: block_threads("ablate_block", 2)
        resources:
            **block_resources(
                "ablate_block",
                _units,
                60,
                gpu=config["model"]["gpus"],
                mem_mb=16000,
            ),
        params:
            templates=config["templates"],
            ablation=config["ablation"],
            ckpt_dir=ckpt_dir,
            identity=ckpt_identity,
            model=config["model"],
            task_modalities=config["task_modalities"],
            samples_per_shard=config["sharding"]["samples_per_shard"],
        script:
            "../scripts/lm_block.py"


rule ablation_summary:
    """Win rates and loss deltas with bootstrap intervals of each task of one checkpoint (P0.4, P1.2)."""
    input:
        **per_task(
            TASKS,
            shards=per_task_path("ablate"),
        ),
    output:
        **per_task(TASKS, summary=per_task_path("ablation_summary")),
    log:
        "logs/ablate/{ckpt}/summary.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=config["ablation"],
        min_n=config["gates"]["min_n"],
    script:
        "../scripts/ablation_summary.py"
