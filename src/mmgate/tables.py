"""A checkpoint's stage tables: the files its report reads, loaded and checked against the golden set.

Both halves derive from the catalogue (`mmgate.stages`): `report_inputs` lists exactly the files of
every stage the report loads for a checkpoint (the report rule's inputs; never a glob of
`results/`), and `load_tables` reads them into `tables[<table>][<task>]` as the gates read them,
refusing a table that does not hold exactly the current golden set's samples, so a stale shard can
never enter a verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import MMGateError
from .golden import generation_subset
from .io import read_parquet
from .stages import STAGES, TABLES
from .tasks import MODES, TASKS, WRITE_TASKS
from .training import read_training_log
from .verdict import ALL

class StaleResultError(MMGateError):
    """A stage table does not hold exactly the current golden set's samples."""


# ------------------------------------------------------------------------------------ report inputs

def input_key(stage: str, task: str, mode: str | None = None) -> str:
    """Name of one report input, e.g. `generate_t2a_free` (a Python identifier, as Snakemake wants)."""
    return "_".join(p for p in (stage, task, mode) if p)


def report_inputs(ckpt: str, shards: Mapping[str, Sequence[str]], p01_passed: bool = True,
                  generation_shards: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Every file the report of one checkpoint reads, by input name (`input_key`): the files of each
    stage the report loads, for each of its tasks with shards. `shards[task]`: the task's shard ids,
    `generation_shards[task]` those of its generation subset (default: the same).

    A checkpoint that failed P0.1 gets a report from its token-space check alone (no GPU work runs).

        >>> report_inputs("good", {"a2t": ["000", "001"]})["ablate_a2t"]
        ['results/ablate/ckpt=good/task=a2t/part-000.parquet', 'results/ablate/ckpt=good/task=a2t/part-001.parquet']
    """
    inputs = {"check": [STAGES["check"].path(ckpt=ckpt)]}
    if not p01_passed:
        return inputs
    for stage in STAGES.values():
        if stage.table is None or not stage.tasks:
            continue
        for task in stage.tasks:
            by_task = generation_shards if stage.samples == "generation" and generation_shards is not None else shards
            parts = list(by_task.get(task, []))
            if not parts:
                continue
            for mode in MODES if "mode" in stage.keys else (None,):
                keys = {"ckpt": ckpt, "task": task, **({"mode": mode} if mode else {})}
                inputs[input_key(stage.name, task, mode)] = (
                    [stage.path(**keys, shard=s) for s in parts] if "shard" in stage.keys else [stage.path(**keys)])
            if stage.media:  # the report shows them: a media folder deleted (or not made yet) is remade
                inputs[input_key(f"{stage.name}_media", task)] = [stage.media_path(ckpt=ckpt, task=task, shard=s)
                                                                  for s in parts]
    return inputs


def media_paths(decoded: pd.DataFrame) -> list[str | None]:
    """Each decoded row's file, from its `file` (relative to the `results/` folder its table, `_file`, lies in)."""
    return [str(STAGES["decode"].results_of(table) / file) if isinstance(file, str) else None
            for table, file in zip(decoded["_file"], decoded["file"])]


def _read_all(paths: Sequence[str]) -> pd.DataFrame:
    return pd.concat([read_parquet(p).assign(_file=str(p)) for p in paths], ignore_index=True)


def _same_samples(frame: pd.DataFrame, expected: set[str], what: str, paths: Sequence[str]) -> None:
    """Raise naming the file when `frame` does not hold each expected sample_id exactly once."""
    ids = frame["sample_id"].astype(str)
    extra = sorted(set(ids) - expected)
    missing = sorted(expected - set(ids))
    duplicated = sorted(set(ids[ids.duplicated()]))
    if not (extra or missing or duplicated):
        return
    if extra:
        stale = sorted(set(frame.loc[ids.isin(extra), "_file"])) if "_file" in frame else list(paths)
        problem = f"{len(extra)} sample(s) not in the current golden set (e.g. {extra[:3]}), from {stale}"
    elif duplicated:
        problem = f"{len(duplicated)} sample(s) appear twice (e.g. {duplicated[:3]})"
    else:
        problem = f"{len(missing)} golden sample(s) missing (e.g. {missing[:3]})"
    files = "\n  ".join(map(str, paths))
    raise StaleResultError(
        f"{what}: {problem}. The file(s) were made for another golden set, so a verdict from them would be wrong:\n  "
        f"{files}\nDelete them and rerun snakemake: it remakes them for the current golden set.")


def _collapse_covers_generation(frame: pd.DataFrame, files: Sequence[str], task: str, expected: set[str],
                                 tables: Mapping[str, Any]) -> None:
    if int(frame["n"].iloc[0]) != len(expected):
        raise StaleResultError(f"{files[0]}: summarises {int(frame['n'].iloc[0])} outputs but generation uses "
                               f"{len(expected)} {task} samples of the golden set. Delete it and rerun snakemake.")


def _summary_covers_rows(frame: pd.DataFrame, files: Sequence[str], task: str, expected: set[str],
                         tables: Mapping[str, Any]) -> None:
    rows = tables[STAGES["ablate"].table].get(task)
    if rows is None:
        return
    wide = rows.pivot(index="sample_id", columns="condition", values="loss")
    scored = int(np.isfinite(wide).all(axis=1).sum())
    if int(frame["n"].iloc[0]) != scored:
        raise StaleResultError(f"{files[0]}: N={int(frame['n'].iloc[0])} but its {len(wide)} ablation rows give "
                               f"{scored} scored samples: it was summarised from other shards. Delete it and "
                               "rerun snakemake.")


# A summary of one task must summarise exactly the rows the report holds (it carries no sample ids).
SUMMARY_CHECKS = {"collapse": _collapse_covers_generation, "ablation_summary": _summary_covers_rows}


def load_tables(inputs: Mapping[str, Sequence[str]], golden: pd.DataFrame | None = None,
                training_log: str | Path | None = None,
                samples_per_task: int | None = None,
                training_log_columns: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The stage tables of one checkpoint from exactly the report rule's declared inputs.

    Returns (tables, evidence): `tables[stage][task]` as the gates read them, `evidence[stage]`
    the files each stage's verdict rests on. With `golden`, every table must hold exactly the
    golden set's samples of its task (else StaleResultError naming the file): generation tables those
    of its generation subset (`samples_per_task`, see golden.generation_subset).
    """
    ids = {t: set(golden.loc[golden["task"] == t, "sample_id"].astype(str)) for t in TASKS} if golden is not None else None
    generated_ids = ({t: set(generation_subset(golden[golden["task"] == t], samples_per_task)["sample_id"].astype(str))
                      for t in WRITE_TASKS} if golden is not None else None)
    tables: dict[str, Any] = {name: {} for name in TABLES}
    evidence: dict[str, list[str]] = {name: [] for name in tables}
    tables["golden_n"] = {t: len(v) for t, v in ids.items()} if ids is not None else {}
    tables["generation_n"] = {t: len(v) for t, v in generated_ids.items()} if generated_ids is not None else {}
    if golden is not None:  # what each output was asked for, for the report's media
        tables["prompts"] = golden[[c for c in ("sample_id", "task", "prompt", "caption") if c in golden]].copy()
    check = [str(p) for p in inputs.get("check", [])]
    if check:
        tables["check"][ALL] = _read_all(check)
        evidence["check"] = check
    for stage in STAGES.values():
        if stage.table is None or not stage.tasks:
            continue
        expected = generated_ids if stage.samples == "generation" else ids
        for task in stage.tasks:
            frames, files = [], []
            for mode in MODES if "mode" in stage.keys else (None,):
                paths = [str(p) for p in inputs.get(input_key(stage.name, task, mode)) or []]
                if not paths:
                    continue
                part = _read_all(paths)
                if mode:
                    part = part.assign(mode=mode, task=task)  # hive keys live in the path, not the file
                if expected is not None and "sample_id" in stage.columns:
                    groups = part.groupby("condition") if "condition" in stage.columns else [(None, part)]
                    for condition, rows in groups:  # each ablation condition scores every sample once
                        what = f"{stage.name} {task}" + "".join(f"/{k}" for k in (mode, condition) if k is not None)
                        _same_samples(rows, expected[task], what, paths)
                frames.append(part)
                files += paths
            if not frames:
                continue
            frame = pd.concat(frames, ignore_index=True)
            if stage.name in SUMMARY_CHECKS and expected is not None:
                SUMMARY_CHECKS[stage.name](frame, files, task, expected[task], tables)
            if stage.media:
                frame["file_path"] = media_paths(frame)
            tables[stage.table][task] = frame
            evidence[stage.table] += files
    if training_log is not None:
        log = read_training_log(training_log, training_log_columns)  # mmgate's names <- the run's
        tables["training"][ALL] = log
        evidence["training"] = [str(training_log)]
    return tables, evidence


