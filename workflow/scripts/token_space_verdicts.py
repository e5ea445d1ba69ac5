"""`snakemake check_token_space`: fail, with every mismatch table, unless every checkpoint passes P0.1."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.io import read_parquet
from mmgate.scripting import run
from mmgate.tokencheck import raise_on_any_mismatch


def main(smk, log):
    checks = {path: read_parquet(path) for path in smk.input}
    raise_on_any_mismatch(checks)
    log.info("P0.1 PASS for every checkpoint (%d)", len(checks))


run(snakemake, main)
