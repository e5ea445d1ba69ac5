"""Teacher-forced losses of one shard of one task under every ablation condition."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.ablation import AblationSettings
from mmgate.blocks import Unit, run_lm_units
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    unit = Unit("ablate", smk.wildcards.task, smk.wildcards.shard)
    run_lm_units([(unit, ShardJob.from_snakemake(smk), Path(smk.output[0]))], None,
                 AblationSettings.from_config(smk.params.settings), log)


run(snakemake, main)
