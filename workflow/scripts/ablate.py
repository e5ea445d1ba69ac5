"""Teacher-forced losses of one shard of one task under every ablation condition."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.ablation import AblationSettings, ablate_shard
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
    frame, meta = ablate_shard(
        space,
        load_golden(smk.input.golden, space),
        smk.params.ckpt_dir,
        smk.wildcards.task,
        int(smk.wildcards.shard),
        smk.params.samples_per_shard,
        smk.params.template,
        dict(smk.params.model),
        AblationSettings.from_config(smk.params.settings),
    )
    means = frame.groupby("condition")["loss"].mean().round(3).to_dict()
    log.info("%s shard %s: %d examples, mean loss %s", smk.wildcards.task, smk.wildcards.shard, frame["sample_id"].nunique(), means)
    write_parquet(frame, smk.output[0], provenance("ablate", space.sha256, checkpoint=smk.wildcards.ckpt, **meta))


run(snakemake, main)
