"""Build the offline demo (tokenizer, token space, tiny base, Stage-2 shards, golden set, LoRAs)."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.demo import build_demo
from mmgate.scripting import run


def main(smk, log):
    torch.set_num_threads(smk.threads)
    build_demo(
        smk.params.out,
        golden_per_task=smk.params.golden_per_task,
        train_steps=smk.params.train_steps,
        seed=smk.params.seed,
        log=log.info,
    )


run(snakemake, main)
