# Generation (P0.2, P1.1), decoding of the constrained run (P0.3) and fingerprints (P1.3).


rule generate:
    """Generate one shard of T2A/T2I outputs, free or constrained to the modality (P0.2, P1.1)."""
    input:
        check=p01_gate,
        token_space=config["token_space"],
        golden=config["golden_set"],
        marker=ckpt_marker,
    output:
        "results/generate/ckpt={ckpt}/task={write_task}/mode={mode}/part-{shard}.parquet",
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
        ckpt_dir=ckpt_dir,
        template=lambda wildcards: config["templates"][wildcards.write_task],
        model=config["model"],
        task_modalities=config["task_modalities"],
        settings=config["generation"],
        samples_per_shard=config["sharding"]["samples_per_shard"],
        samples_per_task=config["generation"]["samples_per_task"],
    script:
        "../scripts/generate.py"


rule decode:
    """Decode one shard's constrained generations to waveforms or pixels (P0.3)."""
    input:
        generated="results/generate/ckpt={ckpt}/task={write_task}/mode=constrained/part-{shard}.parquet",
        token_space=config["token_space"],
        golden=config["golden_set"],
    output:
        table="results/decode/ckpt={ckpt}/task={write_task}/part-{shard}.parquet",
        files=directory("results/decode/ckpt={ckpt}/task={write_task}/part-{shard}"),
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
        decoders=config["decoders"],
        task_modalities=config["task_modalities"],
        device=config["model"]["device"],
        samples_per_shard=config["sharding"]["samples_per_shard"],
        samples_per_task=config["generation"]["samples_per_task"],
    script:
        "../scripts/decode.py"


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
