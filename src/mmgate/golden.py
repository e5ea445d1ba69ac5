"""The golden set: one row per example, validated against the token space on load.

Expected lengths come from each row's meta (``n_frames * n_codebooks`` for audio, ``n_tokens``
for images), never from one global maximum. Every bad row is reported in one message.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import GoldenSetError
from .tasks import READ_TASKS, TASK_MODALITY, WRITE_TASKS
from .tokenspace import TokenSpace

SAMPLE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
REQUIRED_COLUMNS = ("sample_id", "task", "modality_tokens")
META_COLUMNS = ("n_frames", "n_codebooks", "n_tokens", "sample_rate", "channels", "proc_size")
_MAX_LISTED = 50
_WRITERS, _READERS = "/".join(WRITE_TASKS), "/".join(READ_TASKS)  # as messages name them: t2a/t2i, a2t/i2t


def read_golden(path: str | Path) -> pd.DataFrame:
    """Read a golden set from parquet or JSON lines (no validation)."""
    path = Path(path)
    if not path.exists():
        raise GoldenSetError(f"{path}: golden set not found. Set `golden_set` in config/config.yaml to an existing parquet or JSONL file.")
    if path.suffix == ".parquet":
        from .io import read_parquet

        return read_parquet(path)
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        rows = []
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise GoldenSetError(f"{path}, line {line_no}: not valid JSON ({err}). Each line must hold one example object.") from err
        return pd.DataFrame(rows)
    raise GoldenSetError(f"{path}: unknown golden set format {path.suffix!r}; use .parquet or .jsonl")


def load_golden(path: str | Path, space: TokenSpace) -> pd.DataFrame:
    frame = read_golden(path)
    validate_golden(frame, space, source=str(path))
    return normalize_golden(frame)


def normalize_golden(frame: pd.DataFrame) -> pd.DataFrame:
    """Add missing optional columns and the per-sample `expected_len` of the modality span."""
    frame = frame.copy()
    for column in META_COLUMNS:
        if column not in frame:
            frame[column] = pd.NA
        frame[column] = frame[column].astype("Int64")
    for column in ("prompt", "caption"):
        if column not in frame:
            frame[column] = ""
        frame[column] = frame[column].fillna("").astype(str)
    frame["modality_tokens"] = frame["modality_tokens"].map(lambda ids: np.asarray(ids, dtype=np.int64))
    frame["expected_len"] = [expected_length(row) for row in frame.itertuples()]
    return frame


def expected_length(row: Any) -> int:
    if TASK_MODALITY[row.task] == "audio":
        return int(row.n_frames) * int(row.n_codebooks)
    return int(row.n_tokens)


def _int_or_none(value: Any) -> int | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return None


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def validate_golden(frame: pd.DataFrame, space: TokenSpace, source: str = "golden set") -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise GoldenSetError(
            f"{source}: missing column(s) {missing}. A golden set needs {list(REQUIRED_COLUMNS)}, "
            f"'prompt' for {_WRITERS}, 'caption' for {_READERS} and the meta columns {list(META_COLUMNS)}."
        )
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(frame.to_dict("records")):
        sid = row.get("sample_id")
        label = f"row {index} (sample_id={sid!r})"
        bad: list[str] = []
        if not isinstance(sid, str) or not SAMPLE_ID.match(sid) or sid in (".", ".."):
            bad.append("sample_id must match [A-Za-z0-9._-]{1,128} and not be '.' or '..' (it names files)")
        elif sid in seen:
            bad.append(f"duplicate sample_id (first at row {seen[sid]})")
        else:
            seen[sid] = index
        task = row.get("task")
        if task not in TASK_MODALITY:
            problems.append(f"{label}: unknown task {task!r}; use one of {sorted(TASK_MODALITY)}")
            continue
        if task in WRITE_TASKS and (not isinstance(row.get("prompt"), str) or not row["prompt"].strip()):
            bad.append(f"a {_WRITERS} example needs a non-empty 'prompt'")
        if task in READ_TASKS and (not isinstance(row.get("caption"), str) or not row["caption"].strip()):
            bad.append(f"an {_READERS} example needs a non-empty 'caption'")
        if space.task_modalities[task] not in space.modalities:
            bad.append(f"the token space has no {space.task_modalities[task]!r} modality for task {task} (name the "
                       f"modality in the config's task_modalities.{task}, or remove the {task} rows)")
            problems += [f"{label}: {b}" for b in bad]
            continue
        modality = space.modality_for_task(task)
        bad += _check_tokens(row, modality)
        problems += [f"{label}: {b}" for b in bad]
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise GoldenSetError(f"{source}: {len(problems)} problem(s) in the golden set:\n{shown}{more}\nFix these rows (or drop them) and rerun.")


def _check_tokens(row: dict[str, Any], modality) -> list[str]:
    bad = []
    if modality.kind == "audio":
        n_frames, n_codebooks = _int_or_none(row.get("n_frames")), _int_or_none(row.get("n_codebooks"))
        if n_frames is None or n_frames <= 0:
            bad.append("audio needs meta n_frames (a positive integer)")
        if n_codebooks is None or n_codebooks <= 0:
            bad.append("audio needs meta n_codebooks (a positive integer)")
        elif n_codebooks != modality.n_codebooks:
            bad.append(f"n_codebooks={n_codebooks} but the token space's audio has {modality.n_codebooks} codebooks")
        expected = n_frames * n_codebooks if n_frames and n_codebooks else None
    else:
        n_tokens = _int_or_none(row.get("n_tokens"))
        if n_tokens is None or n_tokens <= 0:
            bad.append("image needs meta n_tokens (a positive integer)")
        expected = n_tokens
    checked = ("n_frames", "n_codebooks") if modality.kind == "audio" else ("n_tokens",)
    for column in (c for c in META_COLUMNS if c not in checked):  # the ones this row's task does not use too
        value = row.get(column)
        if not _is_missing(value) and (_int_or_none(value) is None or _int_or_none(value) <= 0):
            bad.append(f"{column}={value!r} must be a positive integer when given (leave it empty where it does not apply)")
    raw = row.get("modality_tokens")
    if not isinstance(raw, (list, tuple, np.ndarray)) and _is_missing(raw):
        return bad + ["modality_tokens is missing"]
    try:
        ids = np.asarray(raw, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        return bad + ["modality_tokens must be a list of integer vocab ids"]
    if expected is not None and ids.size != expected:
        bad.append(f"has {ids.size} modality tokens but its meta expects {expected}")
    outside = np.flatnonzero(~modality.in_modality(ids))
    if outside.size:
        bad.append(
            f"{outside.size} modality token(s) outside the {modality.name} ranges, first id {int(ids[outside[0]])} at position {int(outside[0])}"
        )
    elif expected is not None and ids.size == expected and modality.n_codebooks > 1:
        n_frames = ids.size // modality.n_codebooks
        wrong = np.flatnonzero(modality.slot_of_id(ids) != modality.slot_at(np.arange(ids.size), n_frames))
        if wrong.size:
            bad.append(f"{wrong.size} token(s) in the wrong codebook for the {modality.layout} layout, first at position {int(wrong[0])}")
    return bad


def generation_subset(rows: pd.DataFrame, samples_per_task: int | None) -> pd.DataFrame:
    """The rows of one task that generation uses: all of them, or `samples_per_task` spread evenly
    over the rows sorted by expected length, so the shortest and the longest are always kept.

    Generating is the expensive part (up to thousands of tokens per clip, twice); scoring is cheap, so
    ablation keeps every row (N >= 256 for P0.4) while generation may use, say, 64. The pick depends
    only on the rows, never on a seed or on the shard size. Returned in sample_id order.

        >>> rows = pd.DataFrame({"sample_id": [f"s{i}" for i in range(10)], "expected_len": range(100, 0, -10)})
        >>> generation_subset(rows, 4)["expected_len"].tolist()
        [100, 70, 40, 10]
    """
    rows = rows.sort_values("sample_id", kind="stable")
    if samples_per_task is None or samples_per_task >= len(rows):
        return rows
    by_length = rows.sort_values(["expected_len", "sample_id"], kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(rows) - 1, samples_per_task)).astype(int))
    return by_length.iloc[picks].sort_values("sample_id", kind="stable")


def task_shard(frame: pd.DataFrame, task: str, shard: int, samples_per_shard: int,
               samples_per_task: int | None = None) -> pd.DataFrame:
    """Rows of shard `shard` of one task: the task's rows (or its generation subset) ordered by
    sample_id, cut every `samples_per_shard`."""
    rows = generation_subset(frame[frame["task"] == task], samples_per_task)
    part = rows.iloc[shard * samples_per_shard : (shard + 1) * samples_per_shard]
    if part.empty:
        raise GoldenSetError(
            f"shard {shard} of task {task} is empty ({len(rows)} rows at {samples_per_shard} per shard): the golden set "
            "changed since the workflow was planned; rerun snakemake so that it recomputes the shard count."
        )
    return part
