"""P0.1 for one checkpoint: write check.parquet, pass or fail; a failure is logged as one table."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)

from mmgate.io import provenance, read_parquet, write_parquet
from mmgate.loading import load_tokenizer
from mmgate.scripting import run
from mmgate.stages import STAGES
from mmgate.templates import validate_templates
from mmgate.tokencheck import check_checkpoint, failure_message
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.input.token_space)
    ckpt = smk.wildcards.ckpt
    # Before any GPU job: a template error found there would cost the cached shards it replaces.
    # A tokenizer that cannot load is a failed row of check_checkpoint's table, not a traceback here.
    try:
        tokenizer = load_tokenizer(smk.params.ckpt_dir, smk.params.base, smk.params.trust_remote_code)
    except Exception:
        tokenizer = None
    if tokenizer is not None:
        validate_templates(smk.params.templates, tokenizer, space.special_tokens)
    frame = check_checkpoint(
        space,
        ckpt,
        smk.params.ckpt_dir,
        read_parquet(smk.input.stage2),
        smk.params.stage3_init,
        base=smk.params.base,
        trust_remote_code=smk.params.trust_remote_code,
        model_class=smk.params.model_class,
        noop_adapter_fails=smk.params.noop_adapter_fails,
    )
    meta = provenance("token_space", space.sha256, checkpoint=ckpt, checkpoint_dir=str(smk.params.ckpt_dir))
    # Written pass or fail: the report turns a failure into P0.1 FAIL (every other gate SKIP) and
    # no GPU job is planned for this checkpoint; `snakemake check_token_space` exits non-zero.
    write_parquet(frame, smk.output[0], meta, STAGES["check"])
    if frame["match"].all():
        log.info("P0.1 PASS for %s: %d artifacts agree with %s", ckpt, len(frame), smk.input.token_space)
    else:
        log.error("%s", failure_message(frame, ckpt, smk.output[0]))


run(snakemake, main)
