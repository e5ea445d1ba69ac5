"""Two checkpoints' reports side by side: what changed in the verdicts and in the numbers.

`diff_reports(a, b)` reads two gates.json dicts; `mmgate diff A B` prints it, and with `--html`
also shows the same prompts' outputs from both checkpoints next to each other.

    >>> a = {"checkpoint": "a", "overall": "ready to promote", "gates": [{"gate": "P1.1", "verdict": "PASS",
    ...      "values": {"t2a": {"end_rate": 0.6, "end_rate_ci": [0.5, 0.7]}}, "thresholds": {"min_end_rate": 0.5}}]}
    >>> b = {"checkpoint": "b", "overall": "valid trial", "gates": [{"gate": "P1.1", "verdict": "WARN",
    ...      "values": {"t2a": {"end_rate": 0.3, "end_rate_ci": [0.2, 0.4]}}, "thresholds": {"min_end_rate": 0.5}}]}
    >>> diff = diff_reports(a, b)
    >>> [(v["gate"], v["a"], v["b"]) for v in diff["verdicts"] if v["changed"]]
    [('overall', 'ready to promote', 'valid trial'), ('P1.1', 'PASS', 'WARN')]
    >>> row = diff["metrics"][0]; (row["metric"], round(row["delta"], 2), row["a_met"], row["b_met"], row["intervals_overlap"])
    ('end_rate', -0.3, True, False, False)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from . import gates as G
from .io import read_parquet
from .stages import STAGES
from .tasks import TASK_MODALITY


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _overlap(a: Any, b: Any) -> bool | None:
    if not (isinstance(a, list) and isinstance(b, list) and None not in a + b and len(a) == len(b) == 2):
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def _marks(gate: Mapping[str, Any], spec: G.GateSpec) -> dict[tuple[str, str], bool | None]:
    """(task, metric) -> met, as the report marks it (a configured pass mark before a constant one)."""
    marks: dict[tuple[str, str], bool | None] = {}
    for row in sorted(G.criterion_marks(gate, spec), key=lambda r: isinstance(r["criterion"].threshold, str)):
        for task, (_, met) in row["marks"].items():
            marks[(task, row["criterion"].metric)] = met
    return marks


def diff_reports(a: Mapping[str, Any], b: Mapping[str, Any], every_metric: bool = False) -> dict[str, Any]:
    """Verdict changes (overall and per gate) and metric deltas of `b` against `a`.

    Metrics: each gate's criteria and trend metrics (all numeric values with `every_metric`), with
    both intervals, whether each side meets the pass mark, and whether the intervals overlap.
    """
    gates_a = {g["gate"]: g for g in a["gates"]}
    gates_b = {g["gate"]: g for g in b["gates"]}
    order = [g for g in G.GATE_IDS if g in gates_a or g in gates_b]
    order += sorted((set(gates_a) | set(gates_b)) - set(order))
    verdicts = [{"gate": "overall", "a": a.get("overall"), "b": b.get("overall")}]
    verdicts += [{"gate": g, "a": gates_a.get(g, {}).get("verdict", "-"), "b": gates_b.get(g, {}).get("verdict", "-")}
                 for g in order]
    for v in verdicts:
        v["changed"] = v["a"] != v["b"]
    metrics = []
    for gate in order:
        ga, gb = gates_a.get(gate, {}), gates_b.get(gate, {})
        spec = next((s for s in G.REGISTRY if s.id == gate), None)
        criteria = {c.metric: c for c in sorted(spec.criteria if spec else (), key=lambda c: isinstance(c.threshold, str))}
        wanted = set(criteria) | set(spec.trend_metrics if spec else ())
        values_a, values_b = ga.get("values") or {}, gb.get("values") or {}
        marks_a, marks_b = (_marks(g, spec) if g and spec else {} for g in (ga, gb))
        for task in dict.fromkeys([*values_a, *values_b]):
            va = values_a.get(task) if isinstance(values_a.get(task), Mapping) else {}
            vb = values_b.get(task) if isinstance(values_b.get(task), Mapping) else {}
            for metric in dict.fromkeys([*va, *vb]):
                x, y = _number(va.get(metric)), _number(vb.get(metric))
                if (x is None and y is None) or not (every_metric or metric in wanted):
                    continue
                criterion = criteria.get(metric)
                applies = criterion is not None and criterion.applies_to(task)
                metrics.append({
                    "gate": gate, "task": task, "metric": metric, "a": x, "b": y,
                    "delta": y - x if x is not None and y is not None else None,
                    "a_ci": va.get(f"{metric}_ci"), "b_ci": vb.get(f"{metric}_ci"),
                    "intervals_overlap": _overlap(va.get(f"{metric}_ci"), vb.get(f"{metric}_ci")),
                    "pass_mark": criterion.label(gb.get("thresholds") or {}) if applies else "",
                    "a_met": marks_a.get((task, metric)), "b_met": marks_b.get((task, metric)),
                })
    return {"a": a.get("checkpoint"), "b": b.get("checkpoint"), "verdicts": verdicts, "metrics": metrics,
            "steps": (a.get("step"), b.get("step"))}


# ---------------------------------------------------------------------------------- outputs of both

def workflow_root(gates_json_path: Path) -> Path:
    """The folder a report's evidence paths are relative to: the one holding `results/`."""
    path = gates_json_path.resolve()
    for parent in path.parents:
        if parent.name == "results":
            return parent.parent
    return path.parents[3] if len(path.parents) > 3 else path.parent


def stage_tables(report: Mapping[str, Any], root: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """decode, generate and fingerprint tables per write task, from the files the report's verdicts
    rest on (its evidence), so a diff shows exactly the outputs that were judged."""
    from .tables import media_paths

    evidence = {g["gate"]: g.get("evidence") or [] for g in report["gates"]}
    frames: dict[str, dict[str, list[pd.DataFrame]]] = {"decode": {}, "generate": {}}
    for gate, stage in (("P0.3", "decode"), ("P0.2", "generate")):
        for f in evidence.get(gate, []):
            keys = STAGES[stage].parse(f)
            if keys and keys["task"] in TASK_MODALITY:
                part = read_parquet(root / f).assign(_file=str(root / f), **({"mode": keys["mode"]} if "mode" in keys else {}))
                frames[stage].setdefault(keys["task"], []).append(part)
    tables: dict[str, dict[str, pd.DataFrame]] = {
        stage: {task: pd.concat(parts, ignore_index=True) for task, parts in by_task.items()}
        for stage, by_task in frames.items()}
    for decode in tables["decode"].values():
        decode["file_path"] = media_paths(decode)
    tables["fingerprint"] = {}
    judged = {keys["task"] for f in evidence.get("P1.3", []) for stage in ("collapse", "fingerprint")
              if (keys := STAGES[stage].parse(f))}
    for task in TASK_MODALITY:
        fingerprints = root / STAGES["fingerprint"].path(ckpt=str(report["checkpoint"]), task=task)
        if task in judged and fingerprints.exists():
            tables["fingerprint"][task] = read_parquet(fingerprints)
    return tables


def read_prompts(report: Mapping[str, Any], root: Path) -> pd.DataFrame | None:
    """The golden set's sample ids and prompts, where the report's provenance says it lives."""
    from .golden import read_golden

    where = (report.get("provenance") or {}).get("golden_set")
    if not where:
        return None
    path = Path(where) if Path(where).is_absolute() else root / where
    if not path.exists():
        return None
    golden = read_golden(path)
    return golden[[c for c in ("sample_id", "task", "prompt", "caption") if c in golden]]
