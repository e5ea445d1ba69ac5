# Teacher-forced prompt ablation (P0.4) and read-side modality ablation (P1.2).


rule ablate:
    """Teacher-forced losses of one shard: correct vs ablated prompts (T2A/T2I) or modality tokens (A2T/I2T)."""
    input:
        check=p01_gate,
        token_space=config["token_space"],
        golden=config["golden_set"],
        marker=ckpt_marker,
    output:
        "results/ablate/ckpt={ckpt}/task={task}/part-{shard}.parquet",
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
        ckpt_dir=ckpt_dir,
        template=lambda wildcards: config["templates"][wildcards.task],
        model=config["model"],
        task_modalities=config["task_modalities"],
        settings=config["ablation"],
        samples_per_shard=config["sharding"]["samples_per_shard"],
    script:
        "../scripts/ablate.py"


rule ablation_summary:
    """Win rates and loss deltas with bootstrap intervals of one task (P0.4, P1.2)."""
    input:
        lambda wc: expand(
            "results/ablate/ckpt={{ckpt}}/task={{task}}/part-{shard}.parquet",
            shard=shards(wc.task),
        ),
    output:
        "results/ablate/ckpt={ckpt}/task={task}/summary.parquet",
    log:
        "logs/ablate/{ckpt}/{task}/summary.log",
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
