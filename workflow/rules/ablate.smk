# Teacher-forced prompt ablation (P0.4) and read-side modality ablation (P1.2).


if SHARDS_PER_JOB == 1:

    rule ablate:
        """Teacher-forced losses of one shard: correct vs ablated prompts (T2A/T2I) or modality tokens (A2T/I2T)."""
        input:
            check=p01_gate,
            token_space=config["token_space"],
            golden=config["golden_set"],
            marker=ckpt_marker,
        output:
            ABLATED,
        log:
            "logs/ablate/{ckpt}/{task}/part-{shard}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=config["model"]["gpus"],
            mem_mb=16000,
            runtime=lambda wildcards, attempt: 60 * attempt,
        params:
            **ABLATE_PARAMS,
        script:
            "../scripts/ablate.py"


rule ablation_summary:
    """Win rates and loss deltas with bootstrap intervals of each task of one checkpoint (P0.4, P1.2)."""
    input:
        **per_task(
            TASKS,
            shards="results/ablate/ckpt={{ckpt}}/task={task}/part-{shard}.parquet",
        ),
    output:
        **per_task(TASKS, summary=rule_path("ablate")),
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
