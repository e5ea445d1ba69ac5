# Generation (P0.2, P1.1), then the planned decode and fingerprint stages (issue #4): their
# script stops with a message naming the issue, so nothing pretends to work.


rule generate:
    input:
        check="results/token_space/ckpt={ckpt}/check.parquet",
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
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        ckpt_dir=ckpt_dir,
        template=lambda wildcards: config["templates"][wildcards.write_task],
        model=config["model"],
        settings=config["generation"],
        samples_per_shard=config["sharding"]["samples_per_shard"],
    script:
        "../scripts/generate.py"


rule decode:
    input:
        "results/generate/ckpt={ckpt}/task={write_task}/mode=constrained/part-{shard}.parquet",
    output:
        "results/decode/ckpt={ckpt}/task={write_task}/part-{shard}.parquet",
    log:
        "logs/decode/{ckpt}/{write_task}/part-{shard}.log",
    conda:
        ENV
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=30,
    params:
        stage="decode (P0.3): issue #4",
    script:
        "../scripts/planned.py"


rule fingerprint:
    input:
        lambda wc: expand(
            "results/decode/ckpt={{ckpt}}/task={{write_task}}/part-{shard}.parquet",
            shard=shards(wc.write_task),
        ),
    output:
        "results/fingerprint/ckpt={ckpt}/task={write_task}/fingerprints.parquet",
    log:
        "logs/fingerprint/{ckpt}/{write_task}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        stage="fingerprint (P1.3): issue #4",
    script:
        "../scripts/planned.py"
