# Generation (P0.2, P1.1), decoding of the constrained run (P0.3) and fingerprints (P1.3).
# With sharding.shards_per_job > 1, lm_block and decode_block jobs (blocks.smk) run the shards and
# the one-shard rules below only move each finished shard into place.


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

else:

    rule generate:
        """Move one generated shard from the lm_block job that made it into place."""
        input:
            block=block_of("lm", "generate"),
        output:
            GENERATED,
        log:
            "logs/generate/{ckpt}/{write_task}/{mode}/part-{shard}.log",
        localrule: True
        conda:
            ENV
        params:
            **GENERATE_PARAMS,  # a changed setting reruns the block
            source=in_block("generate"),
        shell:
            MOVE_SHARD

    rule decode:
        """Move one decoded shard (table and files) from the decode_block job that made it into place."""
        input:
            block=block_of("decode", "decode"),
        output:
            **DECODED,
        log:
            "logs/decode/{ckpt}/{write_task}/part-{shard}.log",
        localrule: True
        conda:
            ENV
        params:
            **DECODE_PARAMS,
            source=in_block("decode"),
        shell:
            MOVE_DECODED


rule fingerprint:
    """Fingerprint every decoded output of a task and find collapse across prompts (P1.3)."""
    input:
        decoded=lambda wc: expand(
            "results/decode/ckpt={{ckpt}}/task={{write_task}}/part-{shard}.parquet",
            shard=shards(wc.write_task, generation=True),
        ),
        generated=lambda wc: expand(
            "results/generate/ckpt={{ckpt}}/task={{write_task}}/mode=constrained/part-{shard}.parquet",
            shard=shards(wc.write_task, generation=True),
        ),
        token_space=config["token_space"],
    output:
        table="results/fingerprint/ckpt={ckpt}/task={write_task}/fingerprints.parquet",
        collapse="results/fingerprint/ckpt={ckpt}/task={write_task}/collapse.parquet",
    log:
        "logs/fingerprint/{ckpt}/{write_task}.log",
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
