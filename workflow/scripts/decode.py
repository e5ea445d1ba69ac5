"""Decode one constrained generation shard to WAV/PNG files and a parquet of per-sample results."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.blocks import Unit, run_decode_units
from mmgate.loading import resolve_device
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    unit = Unit("decode", smk.wildcards.write_task, smk.wildcards.shard)
    run_decode_units([(unit, ShardJob.from_snakemake(smk), Path(smk.input.generated), Path(smk.output.table))],
                     smk.params.decoders, resolve_device(smk.params.device), log)


run(snakemake, main)
