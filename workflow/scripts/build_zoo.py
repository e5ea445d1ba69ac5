"""Build the fault zoo from the built demo: one planted fault per checkpoint (see mmgate.zoo)."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.scripting import run
from mmgate.zoo import build_zoo


def main(smk, log):
    torch.set_num_threads(smk.threads)
    build_zoo(smk.params.demo_dir, steps=smk.params.steps, seed=smk.params.seed, log=log.info)


run(snakemake, main)
