"""Decode one constrained generation shard to WAV/PNG files and a parquet of per-sample results."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.decode import decode_shard
from mmgate.golden import load_golden
from mmgate.io import provenance, read_parquet, read_provenance, write_parquet
from mmgate.loading import resolve_device
from mmgate.scripting import run
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    torch.set_num_threads(smk.threads)
    space = TokenSpace.load(smk.input.token_space)
    modality = space.modality_for_task(smk.wildcards.write_task)
    decoders = smk.params.decoders
    frame = decode_shard(
        read_parquet(smk.input.generated),
        load_golden(smk.input.golden, space),
        modality,
        decoders[modality.name],
        Path(smk.output.table),
        resolve_device(smk.params.device),
        decoders.get("batch_size", 16),
    )
    log.info("%s shard %s: %d of %d decoded", smk.wildcards.write_task, smk.wildcards.shard, int(frame["ok"].sum()), len(frame))
    for reason, count in frame.loc[~frame["ok"], "reason"].str.split(":").str[0].value_counts().items():
        log.info("  not decoded (%s): %d", reason, count)
    meta = provenance("decode", space.sha256, checkpoint=smk.wildcards.ckpt, task=smk.wildcards.write_task,
                      decoder=decoders[modality.name], generation=read_provenance(smk.input.generated).get("settings"))
    write_parquet(frame, smk.output.table, meta)


run(snakemake, main)
