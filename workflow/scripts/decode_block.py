"""Decode several constrained generation shards of one checkpoint, each decoder built once."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.blocks import Unit, run_decode_units
from mmgate.loading import resolve_device
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    units = [Unit(**unit) for unit in smk.params.units]
    base = ShardJob.from_snakemake(smk, task=units[0].task, shard=int(units[0].shard))
    work = [(unit, base.for_shard(unit.task, int(unit.shard), samples_per_task=smk.params.samples_per_task),
             generated, unit.in_block(smk.output[0]))
            for unit, generated in zip(units, smk.input.generated)]
    run_decode_units(work, smk.params.decoders, resolve_device(smk.params.device), log)


run(snakemake, main)
