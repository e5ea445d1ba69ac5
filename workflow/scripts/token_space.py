"""P0.1 for one checkpoint: write check.parquet, or fail naming every mismatch."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.io import provenance, read_parquet, write_parquet
from mmgate.scripting import run
from mmgate.tokencheck import check_checkpoint, raise_on_mismatch
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.input.token_space)
    ckpt = smk.wildcards.ckpt
    frame = check_checkpoint(
        space,
        ckpt,
        smk.params.ckpt_dir,
        read_parquet(smk.input.stage2),
        smk.params.stage3_init,
        base=smk.params.base,
        trust_remote_code=smk.params.trust_remote_code,
    )
    output = Path(smk.output[0])
    # Snakemake deletes a failed job's outputs; the evidence of a failure is kept beside them.
    failed = output.with_name("check.failed.parquet")
    meta = provenance("token_space", space.sha256, checkpoint=ckpt, checkpoint_dir=str(smk.params.ckpt_dir))
    if not frame["match"].all():
        write_parquet(frame, failed, meta)
        raise_on_mismatch(frame, ckpt, failed)
    failed.unlink(missing_ok=True)
    write_parquet(frame, output, meta)
    log.info("P0.1 PASS for %s: %d artifacts agree with %s", ckpt, len(frame), smk.input.token_space)


run(snakemake, main)
