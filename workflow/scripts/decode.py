"""Decode one constrained generation shard to WAV/PNG files and a parquet of per-sample results."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import torch

from mmgate.decode import decode_shard
from mmgate.io import read_parquet, read_provenance, write_parquet
from mmgate.loading import resolve_device
from mmgate.scripting import run
from mmgate.shardjob import ShardJob


def main(smk, log):
    torch.set_num_threads(smk.threads)
    job = ShardJob.from_snakemake(smk)
    decoder_config = smk.params.decoders[job.modality.kind]
    frame = decode_shard(job, read_parquet(smk.input.generated), decoder_config, Path(smk.output.table),
                         resolve_device(smk.params.device), smk.params.decoders.get("batch_size", 16))
    log.info("%s shard %03d: %d of %d decoded", job.task, job.shard, int(frame["ok"].sum()), len(frame))
    for reason, count in frame.loc[~frame["ok"], "reason"].str.split(":").str[0].value_counts().items():
        log.info("  not decoded (%s): %d", reason, count)
    meta = job.provenance("decode", decoder=decoder_config, generation=read_provenance(smk.input.generated).get("settings"))
    write_parquet(frame, smk.output.table, meta)


run(snakemake, main)
