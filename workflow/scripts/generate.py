"""Generate one shard of one write task in one mode (free or constrained)."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.generation import GenerationSettings, generate_shard
from mmgate.io import write_parquet
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    job = ShardJob.from_snakemake(smk)
    frame, meta = generate_shard(job, smk.wildcards.mode, GenerationSettings.from_config(smk.params.settings))
    log.info(
        "%s %s shard %03d: %d samples, out-of-range %.2f %%, wrong-slot %d, end emitted %.0f %%",
        job.task, smk.wildcards.mode, job.shard, len(frame), frame["out_of_range_pct"].mean(),
        int(frame["wrong_slot"].sum()), 100 * frame["emitted_end"].mean(),
    )
    write_parquet(frame, smk.output[0], meta)


run(snakemake, main)
