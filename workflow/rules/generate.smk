# Generation (P0.2, P1.1), decoding of the constrained run (P0.3) and fingerprints (P1.3).
# With sharding.shards_per_job > 1, block rules (blocks.smk) write the same shard files instead of
# the one-shard rules below.


if SHARDS_PER_JOB == 1:

    rule generate:
        """Generate one shard of T2A/T2I outputs, free or constrained to the modality (P0.2, P1.1)."""
        input:
            check=p01_gate,
            token_space=config["token_space"],
            golden=config["golden_set"],
            marker=ckpt_marker,
        output:
            GENERATED,
        log:
            "logs/generate/{ckpt}/{write_task}/{mode}/part-{shard}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=config["model"]["gpus"],
            mem_mb=16000,
            runtime=lambda wildcards, attempt: 60 * attempt,
        params:
            **GENERATE_PARAMS,
        script:
            "../scripts/generate.py"

    rule decode:
        """Decode one shard's constrained generations to waveforms or pixels (P0.3)."""
        input:
            generated=CONSTRAINED,
            token_space=config["token_space"],
            golden=config["golden_set"],
        output:
            **DECODED,
        log:
            "logs/decode/{ckpt}/{write_task}/part-{shard}.log",
        conda:
            ENV
        threads: 2
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=lambda wildcards, attempt: 30 * attempt,
        params:
            **DECODE_PARAMS,
        script:
            "../scripts/decode.py"


rule fingerprint:
    """Fingerprint every decoded output of each write task of one checkpoint, and find collapse across prompts (P1.3)."""
    input:
        **per_task(
            WRITE_TASKS,
            decoded="results/decode/ckpt={{ckpt}}/task={task}/part-{shard}.parquet",
            generated=CONSTRAINED_OF_TASK,
            generation=True,
        ),
        token_space=config["token_space"],
    output:
        **per_task(
            WRITE_TASKS,
            table=rule_path("fingerprint"),
            collapse=rule_path("collapse"),
        ),
    log:
        "logs/fingerprint/{ckpt}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        settings=config["fingerprint"],
        task_modalities=config["task_modalities"],
    script:
        "../scripts/fingerprint.py"
