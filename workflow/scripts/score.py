"""A scored stage's table for each of its tasks of one checkpoint: its scorer over the decoded outputs."""

import _srcpath  # noqa: F401  (this checkout's src/ on sys.path)
import pandas as pd

from mmgate.golden import read_golden
from mmgate.io import provenance, read_parquet, write_parquet
from mmgate.scoring import score_task
from mmgate.scripting import run
from mmgate.stages import STAGES
from mmgate.tables import media_paths


def main(smk, log):
    stage = STAGES[smk.params.stage]
    golden = read_golden(smk.input.golden)
    for name, output in smk.output.items():
        task = name.removeprefix("table_")
        decoded = pd.concat([read_parquet(path).assign(_file=path) for path in getattr(smk.input, f"decoded_{task}")],
                            ignore_index=True)
        decoded["file_path"] = media_paths(decoded)
        frame = score_task(stage, task, decoded, golden[golden["task"] == task])
        log.info("%s %s: %d outputs scored by %s", stage.name, task, len(frame), stage.scorer)
        write_parquet(frame, output, provenance(stage.name, checkpoint=smk.wildcards.ckpt, task=task,
                                                scorer=stage.scorer), stage)


run(snakemake, main)
