"""Fingerprints of one checkpoint and task's decoded outputs, and its collapse summary."""

from pathlib import Path

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import pandas as pd

from mmgate.fingerprint import FingerprintSettings, fingerprint_rows
from mmgate.io import provenance, read_parquet, write_parquet
from mmgate.scripting import run
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.input.token_space, smk.params.task_modalities)
    modality = space.modality_for_task(smk.wildcards.write_task)
    decoded = []
    for path in smk.input.decoded:
        part = read_parquet(path)
        part["file_path"] = [str(Path(path).parent / f) if isinstance(f, str) else None for f in part["file"]]
        decoded.append(part)
    generated = pd.concat([read_parquet(p) for p in smk.input.generated], ignore_index=True)
    frame, summary = fingerprint_rows(pd.concat(decoded, ignore_index=True), generated, modality,
                                      FingerprintSettings.from_config(smk.params.settings))
    log.info("%s: %s", smk.wildcards.write_task, summary)
    meta = provenance("fingerprint", space.sha256, checkpoint=smk.wildcards.ckpt, task=smk.wildcards.write_task)
    write_parquet(frame, smk.output.table, meta)
    summary_frame = pd.DataFrame([summary])
    write_parquet(summary_frame, smk.output.collapse, meta)


run(snakemake, main)
