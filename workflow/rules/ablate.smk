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

else:

    rule ablate:
        """Move one ablation shard from the lm_block job that scored it into place."""
        input:
            block=block_of("lm", "ablate"),
        output:
            ABLATED,
        log:
            "logs/ablate/{ckpt}/{task}/part-{shard}.log",
        localrule: True
        conda:
            ENV
        params:
            **ABLATE_PARAMS,  # a changed setting reruns the block
            source=in_block("ablate"),
        shell:
            MOVE_SHARD


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
