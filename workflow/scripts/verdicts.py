"""Every checkpoint's verdict row and a link to its report page (verdicts.html, for snakemake --report)."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.io import write_text
from mmgate.runend import render_verdicts
from mmgate.scripting import run


def main(smk, log):
    write_text(smk.output.html, render_verdicts(list(smk.input)))
    log.info("verdicts of %d checkpoint(s)", len(smk.input))


run(snakemake, main)
