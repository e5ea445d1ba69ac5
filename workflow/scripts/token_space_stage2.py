"""P0.1, Stage-2 part: the recorded token-space hash of every shard, computed once and cached."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import pandas as pd

from mmgate.io import provenance, write_parquet
from mmgate.scripting import run
from mmgate.stages import STAGES
from mmgate.tokencheck import COLUMNS, stage2_rows
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.input.token_space)
    frame = pd.DataFrame(stage2_rows(list(smk.input.shards), space.sha256), columns=list(COLUMNS))
    bad = int((~frame["match"]).sum())
    log.info("checked %d Stage-2 artifact(s), %d mismatch(es)", len(frame), bad)
    write_parquet(frame, smk.output[0], provenance("token_space_stage2", space.sha256), STAGES["stage2"])


run(snakemake, main)
