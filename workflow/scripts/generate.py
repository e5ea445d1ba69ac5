"""Generate one shard of one write task in one mode (free or constrained)."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.generation import GenerationSettings, generate_shard
from mmgate.golden import load_golden
from mmgate.io import provenance, write_parquet
from mmgate.scripting import run
from mmgate.tokencheck import require_p01
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    check = smk.input.check  # present only when P0.1 failed
    for path in [check] if isinstance(check, str) else check:
        require_p01(path)
    torch.set_num_threads(smk.threads)
    space = TokenSpace.load(smk.input.token_space)
    settings = GenerationSettings.from_config(smk.params.settings)
    frame, meta = generate_shard(
        space,
        load_golden(smk.input.golden, space),
        smk.params.ckpt_dir,
        smk.wildcards.write_task,
        smk.wildcards.mode,
        int(smk.wildcards.shard),
        smk.params.samples_per_shard,
        smk.params.template,
        dict(smk.params.model),
        settings,
    )
    log.info(
        "%s %s shard %s: %d samples, out-of-range %.2f %%, wrong-slot %d, end emitted %.0f %%",
        smk.wildcards.write_task,
        smk.wildcards.mode,
        smk.wildcards.shard,
        len(frame),
        frame["out_of_range_pct"].mean(),
        int(frame["wrong_slot"].sum()),
        100 * frame["emitted_end"].mean(),
    )
    meta = provenance("generate", space.sha256, checkpoint=smk.wildcards.ckpt, **meta)
    write_parquet(frame, smk.output[0], meta)


run(snakemake, main)
