"""Generate or ablate a block of one checkpoint's shards (up to sharding.shards_per_job) with one model load."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.ablation import AblationSettings
from mmgate.blocks import KeptShards, Unit, run_lm_units
from mmgate.generation import GenerationSettings
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    units = [Unit.from_output(path) for path in smk.output]
    base = ShardJob.from_snakemake(smk, task=units[0].task, shard=int(units[0].shard))
    generation, ablation = getattr(smk.params, "generation", None), getattr(smk.params, "ablation", None)
    samples_per_task = generation["samples_per_task"] if generation else None
    work = [(unit, base.for_shard(unit.task, int(unit.shard), smk.params.templates[unit.task],
                                  samples_per_task if unit.stage == "generate" else None), Path(path))
            for unit, path in zip(units, smk.output)]
    run_lm_units(work, GenerationSettings.from_config(generation) if generation else None,
                 AblationSettings.from_config(ablation) if ablation else None, log, kept=KeptShards.for_snakemake(smk))


run(snakemake, main)
