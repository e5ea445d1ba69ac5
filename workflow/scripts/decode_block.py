"""Decode a block of one checkpoint's constrained generation shards (up to sharding.shards_per_job), each
decoder built once."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.blocks import KeptShards, Unit, run_decode_units
from mmgate.loading import resolve_device
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    tables = [path for path in smk.output if path.endswith(".parquet")]  # each with its folder of files
    units = [Unit.from_output(path) for path in tables]
    base = ShardJob.from_snakemake(smk, task=units[0].task, shard=int(units[0].shard))
    work = [(unit, base.for_shard(unit.task, int(unit.shard), samples_per_task=smk.params.samples_per_task),
             generated, Path(table))
            for unit, generated, table in zip(units, smk.input.generated, tables)]
    run_decode_units(work, smk.params.decoders, resolve_device(smk.params.device), log, kept=KeptShards.for_snakemake(smk))


run(snakemake, main)
