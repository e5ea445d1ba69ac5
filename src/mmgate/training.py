"""The training log behind TD: reading it (CSV, JSONL or an HF `trainer_state.json`), its summary
and the judge of its losses and norms. Needs only `mmgate.verdict` and `mmgate.tasks`, so the gates import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .tasks import TASK_TABLE
from .verdict import SKIP, Thresholds, Verdict, _f

# ---------------------------------------------------------------------------------- training dynamics

WRITE_LOSSES = tuple(t.loss_column for t in TASK_TABLE if t.writes)  # t2a_avg, ...: must fall
READ_LOSSES = tuple(t.loss_column for t in TASK_TABLE if not t.writes)  # a2t_avg, ...: must hold
NORMS = ("head_norm_mean", "emb_norm_mean")
LOG_COLUMNS = ("step",) + WRITE_LOSSES + READ_LOSSES + NORMS  # what report.training_log_columns may map


def map_log_columns(log: pd.DataFrame, columns: Mapping[str, str], path: str | Path) -> pd.DataFrame:
    """`log` with each mmgate name of `columns` holding the column the run logged under its own name."""
    from .errors import ConfigError

    unknown = sorted(set(columns) - set(LOG_COLUMNS))
    if unknown:
        raise ConfigError(f"report.training_log_columns: unknown mmgate name(s) {unknown}; the keys are mmgate's names "
                          f"{list(LOG_COLUMNS)} and each value the name the run logged it under in {path}.")
    missing = {ours: theirs for ours, theirs in columns.items() if theirs not in log}
    if missing:
        named = ", ".join(f"{ours}: {theirs!r}" for ours, theirs in missing.items())
        raise ConfigError(f"{path}: report.training_log_columns maps {named}, but this log has no such column. "
                          f"Its columns: {sorted(map(str, log.columns))}. Set each to one of these, or remove it.")
    # copied, not renamed: two mmgate names may read one logged column, and a mapping replaces a same-named column
    return log.assign(**{ours: log[theirs] for ours, theirs in columns.items()})


def training_log_path(setting: str | None, ckpt_dir: str | Path) -> Path | None:
    """report.training_log for one checkpoint; `{checkpoint_dir}` is its directory, so an HF Trainer
    run's setting is `{checkpoint_dir}/trainer_state.json`.

        >>> training_log_path("{checkpoint_dir}/trainer_state.json", "/runs/a/checkpoint-500").as_posix()
        '/runs/a/checkpoint-500/trainer_state.json'
    """
    return Path(setting.replace("{checkpoint_dir}", str(ckpt_dir))) if setting else None


def read_training_log(path: str | Path, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A training log with a `step` column: CSV, JSONL, or an HF Trainer `trainer_state.json` (`log_history`).

    `columns` (report.training_log_columns) maps mmgate's names to the run's, e.g.
    `{"t2a_avg": "eval_t2a_loss"}`; a mapped column the log lacks is a ConfigError.
    """
    from .errors import ConfigError

    path = Path(path)
    per_record = False
    try:
        if path.suffix == ".json":
            state = json.loads(path.read_text())
            records = state.get("log_history") if isinstance(state, dict) else state
            if not isinstance(records, list):
                raise ConfigError(f"{path}: a JSON training log must be a trainer_state.json with `log_history` or a list of records")
            log, per_record = pd.DataFrame(records), True
        elif path.suffix in (".jsonl", ".ndjson"):
            log = pd.read_json(path, lines=True)
        else:
            log = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the training log ({err}). Set report.training_log to a CSV, JSONL or "
                          "trainer_state.json with a 'step' column.") from err
    log = map_log_columns(log, columns or {}, path)
    if "step" not in log:
        raise ConfigError(f"{path}: a training log needs a 'step' column (found {list(log.columns)}); name the run's "
                          "step column with report.training_log_columns: {step: <its name>}")
    if per_record:  # the Trainer logs train and eval metrics of a step in separate records
        log = log.groupby("step", as_index=False).first()
    return log.sort_values("step").reset_index(drop=True)


def spikes(values: pd.Series, ratio: float, window: int) -> list[int]:
    """Positions where a loss exceeds `ratio` x the median of the `window` finite values before it."""
    finite = values[np.isfinite(values)]
    out = []
    for i in range(1, len(finite)):
        before = finite.iloc[max(0, i - window) : i]
        reference = float(before.median())
        if reference > 0 and finite.iloc[i] > ratio * reference:
            out.append(int(finite.index[i]))
    return out


def training_summary(log: pd.DataFrame, t: Thresholds | None = None) -> pd.DataFrame:
    """One row per known metric: first, last, change, NaN count and spike steps."""
    t = t or Thresholds()
    rows = []
    for metric in WRITE_LOSSES + READ_LOSSES + NORMS:
        if metric not in log:
            continue
        values = pd.to_numeric(log[metric], errors="coerce")
        finite = values[np.isfinite(values)]
        at = spikes(values, t.spike_ratio, t.spike_window) if metric.endswith("_avg") else []
        rows.append({"metric": metric, "first": float(finite.iloc[0]) if len(finite) else None,
                     "last": float(finite.iloc[-1]) if len(finite) else None,
                     "change": float(finite.iloc[-1] - finite.iloc[0]) if len(finite) else None,
                     "nan_count": int((~np.isfinite(values)).sum()), "spikes": len(at),
                     "spike_steps": [int(log["step"].iloc[i]) for i in at]})
    return pd.DataFrame(rows, columns=["metric", "first", "last", "change", "nan_count", "spikes", "spike_steps"])


def training_dynamics(path: str | Path, t: Thresholds | None = None,
                      columns: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the log, one row per metric) from a CSV, JSONL or trainer_state.json training log."""
    log = read_training_log(path, columns)
    return log, training_summary(log, t)


def training_criteria(log: pd.DataFrame, t: Thresholds) -> Verdict:
    """The checklist's section A: write losses fall, read losses hold, no NaN or spikes, norms move."""
    summary = training_summary(log, t).set_index("metric")
    verdict = Verdict({"n": int(len(log))})
    f = _f
    for metric, row in summary.iterrows():
        verdict.values.update({f"{metric}_first": row["first"], f"{metric}_last": row["last"]})
        if row["first"] is None or row["last"] is None:
            verdict.fail("nan", f"{metric} has no finite value")
            continue
        if metric in WRITE_LOSSES and not row["last"] < row["first"]:
            verdict.fail("write_not_falling", f"write loss {metric} did not fall: {f(row['first'])} -> {f(row['last'])}")
        if metric in READ_LOSSES and row["last"] > row["first"] * (1 + t.read_loss_tolerance):
            verdict.fail("read_regressed", f"read loss {metric} rose {f(row['first'])} -> {f(row['last'])} "
                         f"(+{f(100 * (row['last'] / row['first'] - 1))} %, tolerance {f(100 * t.read_loss_tolerance)} %)")
        if row["nan_count"]:
            verdict.fail("nan", f"{metric} has {row['nan_count']} NaN/inf value(s)")
        if row["spikes"]:
            verdict.warn("spike", f"{metric} spiked above {t.spike_ratio} x its recent median at step(s) {row['spike_steps'][:5]}")
        if metric in NORMS and abs(row["change"]) < t.min_norm_change * abs(row["first"]):
            verdict.warn("norms_frozen", f"{metric} barely moved: {f(row['first'])} -> {f(row['last'])} "
                         f"(< {f(100 * t.min_norm_change)} %)")
    missing = [m for m in WRITE_LOSSES + READ_LOSSES + NORMS if m not in summary.index]
    if len(missing) == len(WRITE_LOSSES + READ_LOSSES + NORMS):
        verdict.verdict = SKIP
        verdict.notes.append(f"the training log has none of {list(WRITE_LOSSES + READ_LOSSES + NORMS)}")
    elif missing:
        verdict.notes.append(f"not in the training log: {missing}")
    return verdict
