"""Gate metrics of every checkpoint by training step (trend.parquet and trend.html)."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.io import provenance, write_parquet, write_text
from mmgate.render import render_trend
from mmgate.trend import build_trend
from mmgate.scripting import run
from mmgate.stages import STAGES


def main(smk, log):
    trend = build_trend(list(smk.input))
    write_parquet(trend, smk.output.table, provenance("trend", checkpoints=sorted(trend["checkpoint"].unique().tolist())),
                  STAGES["trend"])
    write_text(smk.output.html, render_trend(trend))
    log.info("trend over %d checkpoint(s), %d rows", trend["checkpoint"].nunique(), len(trend))


run(snakemake, main)
