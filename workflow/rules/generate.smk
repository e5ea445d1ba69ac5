# Planned stages (issues #3 and #4). The rules fix the DAG and the file layout; their script
# stops with a message naming the issue that implements it, so nothing pretends to work.


rule generate:
    input:
        check="results/token_space/ckpt={ckpt}/check.parquet",
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
        stage="generate (P0.2, P1.1): issue #3",
    script:
        "../scripts/planned.py"


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
