# Gate report per checkpoint, and the trend across checkpoints; the verdict table ends every run.
rule report:
    """Judge every gate of one checkpoint: gates.json, gates.parquet and the HTML report."""
    input:
        unpack(report_inputs),
    output:
        json="results/report/ckpt={ckpt}/gates.json",
        table=report(
            "results/report/ckpt={ckpt}/gates.parquet",
            caption="../report/gates_table.rst",
            category="Gate reports",
            subcategory="Tables",
            labels={"checkpoint": "{ckpt}", "file": "gates.parquet"},
        ),
        html=report(
            "results/report/ckpt={ckpt}/report.html",
            caption="../report/gates.rst",
            category="Gate reports",
            subcategory="Pages",
            labels={"checkpoint": "{ckpt}", "file": "report.html"},
        ),
    log:
        "logs/report/{ckpt}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        ckpt_dir=ckpt_dir,
        thresholds=config["gates"],
        length_limits=config["report"]["length_limits"],
        training_log=lambda wildcards: config["report"]["training_log"],
        training_log_columns=lambda wildcards: config["report"]["training_log_columns"],
        token_space=config["token_space"],
        decoders=config["decoders"],
        config=verdict_config(config),
    script:
        "../scripts/report.py"


rule trend:
    """Gate metrics of every checkpoint by training step: trend.parquet and trend.html."""
    input:
        expand("results/report/ckpt={ckpt}/gates.json", ckpt=CHECKPOINTS),
    output:
        table="results/report/trend.parquet",
        html=report(
            "results/report/trend.html",
            caption="../report/trend.rst",
            category="Trend",
        ),
    log:
        "logs/report/trend.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/trend.py"
