"""Generate one shard of one write task in one mode (free or constrained)."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.blocks import Unit, run_lm_units
from mmgate.generation import GenerationSettings
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    unit = Unit("generate", smk.wildcards.write_task, smk.wildcards.shard, smk.wildcards.mode)
    run_lm_units([(unit, ShardJob.from_snakemake(smk), Path(smk.output[0]))],
                 GenerationSettings.from_config(smk.params.settings), None, log)


run(snakemake, main)
