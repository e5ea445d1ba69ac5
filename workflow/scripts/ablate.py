"""Teacher-forced losses of one shard of one task under every ablation condition."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.ablation import AblationSettings, ablate_shard
from mmgate.io import write_parquet
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    job = ShardJob.from_snakemake(smk)
    frame, meta = ablate_shard(job, AblationSettings.from_config(smk.params.settings))
    means = frame.groupby("condition")["loss"].mean().round(3).to_dict()
    log.info("%s shard %03d: %d examples, mean loss %s", job.task, job.shard, frame["sample_id"].nunique(), means)
    write_parquet(frame, smk.output[0], meta)


run(snakemake, main)
