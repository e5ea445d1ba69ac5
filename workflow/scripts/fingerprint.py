"""Fingerprints of each write task's decoded outputs of one checkpoint, and its collapse summary."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import pandas as pd

from mmgate.fingerprint import FingerprintSettings, fingerprint_rows
from mmgate.io import provenance, read_parquet, write_parquet
from mmgate.scripting import run
from mmgate.stages import STAGES
from mmgate.tables import media_paths
from mmgate.tokenspace import TokenSpace


def main(smk, log):
    space = TokenSpace.load(smk.input.token_space, smk.params.task_modalities)
    settings = FingerprintSettings.from_config(smk.params.settings)
    tasks = [name.removeprefix("table_") for name, _ in smk.output.items() if name.startswith("table_")]
    for task in tasks:
        decoded = pd.concat([read_parquet(path).assign(_file=path) for path in getattr(smk.input, f"decoded_{task}")],
                            ignore_index=True)
        decoded["file_path"] = media_paths(decoded)
        generated = pd.concat([read_parquet(p) for p in getattr(smk.input, f"generated_{task}")], ignore_index=True)
        frame, summary = fingerprint_rows(decoded.drop(columns="_file"), generated,
                                          space.modality_for_task(task), settings)
        log.info("%s: %s", task, summary)
        meta = provenance("fingerprint", space.sha256, checkpoint=smk.wildcards.ckpt, task=task)
        write_parquet(frame, getattr(smk.output, f"table_{task}"), meta, STAGES["fingerprint"])
        write_parquet(pd.DataFrame([summary]), getattr(smk.output, f"collapse_{task}"), meta, STAGES["collapse"])


run(snakemake, main)
