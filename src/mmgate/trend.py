"""The trend across checkpoints: one long-form row per checkpoint, gate, task and metric
(trend.parquet), from each checkpoint's gates.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import gates as G

# --------------------------------------------------------------------------------------------- trend

TREND_COLUMNS = ["checkpoint", "step", "run", "gate", "task", "metric", "value", "ci_low", "ci_high", "limit", "judged",
                 "verdict", "note"]


def trend_rows(gates_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-form metrics of one checkpoint: one row of TREND_COLUMNS per gate, task and metric.

    Every gate has a `verdict` row (value empty), and `overall` one, so a checkpoint whose gates
    have no numbers (a P0.1 failure skips the rest) still shows in the trend. `run`: the folder
    holding the checkpoint, so only checkpoints of one training run are joined by a line;
    `ci_low`/`ci_high`: the metric's 95 % interval as gates.json gives it (`<metric>_ci`: Wilson for
    rates, bootstrap for loss deltas), empty where it has none; `limit`: the pass mark of the
    metric's criterion, from that checkpoint's thresholds, where it applies to the task; `judged`:
    whether the gate judges the metric on that task (trend_judged); `note`: the overall row's
    overall line (what decided it).
    """
    prov = gates_json.get("provenance") or {}
    run = str(Path(prov["checkpoint_dir"]).parent) if prov.get("checkpoint_dir") else None
    base = {"checkpoint": gates_json["checkpoint"], "step": gates_json.get("step"), "run": run}
    rows = [{**base, "gate": "overall", "task": G.ALL, "metric": "verdict", "value": None, "limit": None,
             "verdict": gates_json["overall"], "note": G.overall_line(gates_json)}]
    for gate in gates_json["gates"]:
        rows.append({**base, "gate": gate["gate"], "task": G.ALL, "metric": "verdict", "value": None, "limit": None,
                     "verdict": gate["verdict"]})
        spec = next((s for s in G.REGISTRY if s.id == gate["gate"]), None)
        criteria = {}  # a configured pass mark before a constant one (delta_empty: min_delta_empty, not > 0)
        for criterion in sorted(spec.criteria if spec else (), key=lambda c: isinstance(c.threshold, str)):
            criteria[criterion.metric] = criterion
        for task, values in gate["values"].items():
            if not isinstance(values, dict):
                continue
            for metric, value in values.items():
                if isinstance(value, (bool, int, float, np.integer, np.floating)):
                    criterion = criteria.get(metric)
                    applies = criterion is not None and criterion.applies_to(task)
                    ci = values.get(f"{metric}_ci")
                    low, high = (ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None))
                    rows.append({**base, "gate": gate["gate"], "task": task, "metric": metric, "value": float(value),
                                 "ci_low": None if low is None else float(low), "ci_high": None if high is None else float(high),
                                 "limit": criterion.limit(gate.get("thresholds") or {}) if applies else None,
                                 "judged": trend_judged(gate["gate"], metric, task), "verdict": gate["verdict"]})
    return rows


def trend_judged(gate: str, metric: str, task: str) -> bool:
    """Whether `gate` judges `metric` on `task`, from the gate registry: a metric with criteria where
    one of them applies to the task's modality (P1.3's loop_share: audio only), any other metric on
    the gate's tasks.

        >>> trend_judged("P1.3", "loop_share", "t2a"), trend_judged("P1.3", "loop_share", "t2i")
        (True, False)
    """
    spec = next((s for s in G.REGISTRY if s.id == gate), None)
    if spec is None:
        return True
    if task not in spec.tasks and task not in (G.ALL, G.ACROSS):
        return False
    criteria = [c for c in spec.criteria if c.metric == metric]
    return not criteria or any(c.applies_to(task) for c in criteria)


def build_trend(gate_files: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in sorted(map(str, gate_files)):
        rows += trend_rows(json.loads(Path(path).read_text()))
    frame = pd.DataFrame(rows, columns=TREND_COLUMNS)
    frame["step"] = frame["step"].astype("Int64")
    for column in ("value", "ci_low", "ci_high", "limit"):
        frame[column] = frame[column].astype(float)
    frame["judged"] = frame["judged"].astype("boolean")
    return frame.sort_values(["step", "checkpoint", "gate", "task", "metric"], na_position="first").reset_index(drop=True)
