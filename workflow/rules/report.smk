# Planned stage (issue #6): gate report per checkpoint and the trend across checkpoints.


rule report:
    input:
        unpack(report_inputs),
    output:
        json="results/report/ckpt={ckpt}/gates.json",
        table="results/report/ckpt={ckpt}/gates.parquet",
    log:
        "logs/report/{ckpt}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stage="gate report: issue #6",
    script:
        "../scripts/planned.py"


rule trend:
    input:
        expand("results/report/ckpt={ckpt}/gates.parquet", ckpt=CHECKPOINTS),
    output:
        "results/report/trend.parquet",
    log:
        "logs/report/trend.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stage="trend across checkpoints: issue #6",
    script:
        "../scripts/planned.py"
