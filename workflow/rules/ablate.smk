# Planned stage (issue #5): teacher-forced prompt ablation (P0.4) and read ablation (P1.2).


rule ablate:
    input:
        check="results/token_space/ckpt={ckpt}/check.parquet",
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
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        stage="ablate (P0.4, P1.2): issue #5",
    script:
        "../scripts/planned.py"


rule ablation_summary:
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
        stage="ablation statistics (P0.4, P1.2): issue #5",
    script:
        "../scripts/planned.py"
