# Gate report per checkpoint, the trend across checkpoints and the verdicts page of `snakemake --report`;
# the verdict table ends every run.
import mimetypes

# `snakemake --report` types each file by its name, and Python's table has no .parquet (it would
# warn and call gates.parquet text/plain): the IANA type makes it a download in the report.
mimetypes.add_type("application/vnd.apache.parquet", ".parquet")


rule report:
    """Judge every gate of one checkpoint: gates.json, gates.parquet and the HTML report."""
    input:
        unpack(report_inputs),
    output:
        json=page("gates_json"),
        table=report(
            stage_path("gates"),
            caption="../report/gates_table.rst",
            category="Gate reports",
            subcategory="Tables",
            labels={"checkpoint": "{ckpt}", "file": "gates.parquet"},
        ),
        html=report(
            page("report_html"),
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
        expand(page("gates_json"), ckpt=CHECKPOINTS),
    output:
        table=stage_path("trend"),
        html=report(
            page("trend_html"),
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


rule verdicts:
    """Every checkpoint's verdict row and a link to its report page: the results page of `snakemake --report`."""
    input:
        expand(page("gates_json"), ckpt=CHECKPOINTS),
    output:
        html=report(
            page("verdicts_html"),
            caption="../report/verdicts.rst",
            category="Checkpoint verdicts",
            labels={"page": "verdicts of every checkpoint"},
        ),
    log:
        "logs/report/verdicts.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/verdicts.py"
