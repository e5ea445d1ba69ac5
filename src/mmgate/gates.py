"""Gate verdicts from the stage tables: PASS, FAIL, WARN or SKIP per gate, and the overall call.

Every function takes plain DataFrames (the parquet each stage wrote), so verdicts are tested on
hand-made tables. A checkpoint is a *valid trial* when no P0 gate fails, and *ready to promote*
when no P1 gate fails either; WARN (e.g. too few examples) never blocks but is always shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .settings import FromConfig

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
P0 = ("P0.1", "P0.2", "P0.3", "P0.4")
P1 = ("P1.1", "P1.2", "P1.3")
QUESTIONS = {
    "P0.1": "Is the token space the same everywhere?",
    "P0.2": "Do generated tokens stay in their modality?",
    "P0.3": "Does every generation decode?",
    "P0.4": "Does the model use the prompt?",
    "P1.1": "Does it stop by itself?",
    "P1.2": "Does reading still use the modality?",
    "P1.3": "Are outputs alive and distinct?",
}
FIXES = {
    "P0.1": "Re-tokenize the mismatching artifacts with the current token_space.json (see check.failed.parquet).",
    "P0.2": "Use constrained decoding (ModalityConstraint: only the modality's ranges, the expected codebook slot, "
            "the end token at frame boundaries).",
    "P0.3": "Generate per-sample lengths (expected + margin, sliced to exactly expected) with constrained decoding; "
            "check that the decoder's codebooks and sample rate match the token space.",
    "P0.4": "First check the ablation format (inputs really differ: see input_hash); then give T2A/T2I more weight "
            "in the training mix, and use stronger, more specific prompts in the golden set.",
    "P1.1": "Keep training (end-token rates should trend up); check that <aud_end>/<img_end> are in the training targets.",
    "P1.2": "Reading regressed: add more A2T/I2T to the mix and check that modality tokens reach the model (not masked).",
    "P1.3": "Outputs collapsed (identical, silent, noise or loops): check the prompt ablation and sampling settings; "
            "raise T2A/T2I weight and prompt diversity.",
}


@dataclass(frozen=True)
class Thresholds(FromConfig):
    max_out_of_range_pct: float = 0.0
    min_decode_success: float = 1.0
    win_rate_shuffled: float = 0.70
    win_rate_empty: float = 0.80
    min_delta_empty: float = 0.10
    min_n: int = 256
    min_end_rate: float = 0.5
    read_min_delta: float = 0.10
    read_win_rate: float = 0.80
    min_unique_ratio: float = 0.9
    max_silent_share: float = 0.0
    max_noise_share: float = 0.1
    max_loop_share: float = 0.1


@dataclass
class Gate:
    gate: str
    verdict: str
    values: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def fix(self) -> str | None:
        return FIXES[self.gate] if self.verdict == FAIL else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(question=QUESTIONS[self.gate], fix=self.fix)
        return out


def combine(verdicts: list[str]) -> str:
    for verdict in (FAIL, WARN, PASS):
        if verdict in verdicts:
            return verdict
    return SKIP


def gate_p01(check: pd.DataFrame | None) -> Gate:
    if check is None:
        return Gate("P0.1", SKIP, detail="no token-space check table")
    bad = check[~check["match"].astype(bool)]
    return Gate("P0.1", PASS if bad.empty else FAIL, {"artifacts": len(check), "mismatches": len(bad)},
                {"mismatches": 0}, detail="; ".join(f"{r.kind} {r.name}: {r.source}" for r in bad.itertuples())[:500])


def gate_p02(generated: Mapping[str, pd.DataFrame], t: Thresholds) -> Gate:
    """`generated[task]`: the task's generation rows of both modes (column `mode`)."""
    values, verdicts = {}, []
    for task in ("t2a", "t2i"):
        frame = generated.get(task)
        if frame is None or frame.empty:
            values[task] = "SKIP: task absent from the golden set"
            continue
        constrained, free = frame[frame["mode"] == "constrained"], frame[frame["mode"] == "free"]
        oor = float(constrained["out_of_range_pct"].mean()) if len(constrained) else np.nan
        wrong = int(constrained["wrong_slot"].sum()) if len(constrained) else 0
        values[task] = {
            "constrained_out_of_range_pct": oor,
            "constrained_max_out_of_range_pct": float(constrained["out_of_range_pct"].max()) if len(constrained) else np.nan,
            "constrained_wrong_slot": wrong,
            "free_out_of_range_pct": float(free["out_of_range_pct"].mean()) if len(free) else np.nan,
            "free_wrong_slot": int(free["wrong_slot"].sum()) if len(free) else 0,
            "free_needs_constraint": bool(len(free) and (free["out_of_range"].sum() + free["wrong_slot"].sum()) > 0),
            "n": len(constrained),
        }
        ok = values[task]["constrained_max_out_of_range_pct"] <= t.max_out_of_range_pct and wrong == 0
        verdicts.append(PASS if ok else FAIL)
    return Gate("P0.2", combine(verdicts), values, {"max_out_of_range_pct": t.max_out_of_range_pct, "wrong_slot": 0})


def gate_p03(decoded: Mapping[str, pd.DataFrame], t: Thresholds) -> Gate:
    values, verdicts = {}, []
    for task in ("t2a", "t2i"):
        frame = decoded.get(task)
        if frame is None or frame.empty:
            values[task] = "SKIP: task absent from the golden set"
            continue
        rate = float(frame["ok"].mean())
        reasons = frame.loc[~frame["ok"], "reason"].fillna("").str.split(":").str[0].value_counts().head(5).to_dict()
        values[task] = {"decode_success_rate": rate, "n": len(frame), "failures_by_reason": reasons}
        verdicts.append(PASS if rate >= t.min_decode_success else FAIL)
    return Gate("P0.3", combine(verdicts), values, {"min_decode_success": t.min_decode_success})


def _row(summary: pd.DataFrame, condition: str) -> pd.Series | None:
    rows = summary[summary["condition"] == condition]
    return rows.iloc[0] if len(rows) else None


def gate_p04(summaries: Mapping[str, pd.DataFrame], t: Thresholds) -> Gate:
    values, verdicts, deltas_empty = {}, [], []
    for task in ("t2a", "t2i"):
        summary = summaries.get(task)
        if summary is None or summary.empty:
            values[task] = "SKIP: task absent from the golden set"
            continue
        shuffled, empty = _row(summary, "shuffled"), _row(summary, "empty")
        n = int(shuffled["n"])
        values[task] = {
            "n": n,
            "mean_loss_correct": float(shuffled["mean_loss_correct"]),
            "mean_loss_shuffled": float(shuffled["mean_loss"]),
            "mean_loss_empty": float(empty["mean_loss"]),
            "delta_shuffled": float(shuffled["delta"]),
            "delta_shuffled_ci": [float(shuffled["delta_ci_low"]), float(shuffled["delta_ci_high"])],
            "delta_empty": float(empty["delta"]),
            "delta_empty_ci": [float(empty["delta_ci_low"]), float(empty["delta_ci_high"])],
            "win_rate_shuffled": float(shuffled["win_rate"]),
            "win_rate_shuffled_ci": [float(shuffled["win_rate_ci_low"]), float(shuffled["win_rate_ci_high"])],
            "win_rate_empty": float(empty["win_rate"]),
            "win_rate_empty_ci": [float(empty["win_rate_ci_low"]), float(empty["win_rate_ci_high"])],
        }
        deltas_empty.append(float(empty["delta"]))
        ok = (shuffled["delta"] > 0 and empty["delta"] > 0 and shuffled["win_rate"] >= t.win_rate_shuffled
              and empty["win_rate"] >= t.win_rate_empty)
        verdicts.append(FAIL if not ok else (WARN if n < t.min_n else PASS))
    detail = ""
    if deltas_empty and max(deltas_empty) < t.min_delta_empty:
        verdicts.append(FAIL)
        detail = f"delta_empty is below {t.min_delta_empty} for every write task"
    small = [task for task, v in values.items() if isinstance(v, dict) and v["n"] < t.min_n]
    if small:
        detail = (detail + "; " if detail else "") + f"N < {t.min_n} for {small}: the checklist calls 64 noisy"
    return Gate("P0.4", combine(verdicts), values,
                {"win_rate_shuffled": t.win_rate_shuffled, "win_rate_empty": t.win_rate_empty,
                 "min_delta_empty (one of T2A/T2I)": t.min_delta_empty, "min_n": t.min_n}, detail=detail)


def gate_p11(generated: Mapping[str, pd.DataFrame], t: Thresholds) -> Gate:
    values, verdicts = {}, []
    for task in ("t2a", "t2i"):
        frame = generated.get(task)
        free = frame[frame["mode"] == "free"] if frame is not None else None
        if free is None or free.empty:
            values[task] = "SKIP: no free-mode generation"
            continue
        ended = free[free["emitted_end"]]
        rate = float(free["emitted_end"].mean())
        values[task] = {
            "end_rate": rate,
            "n": len(free),
            "end_position_over_expected_median": float((ended["end_position"] / ended["expected_len"]).median()) if len(ended) else None,
            "ended_before_expected_share": float((ended["end_position"] < ended["expected_len"]).mean()) if len(ended) else None,
        }
        verdicts.append(PASS if rate >= t.min_end_rate else WARN)
    return Gate("P1.1", combine(verdicts), values, {"min_end_rate": t.min_end_rate},
                detail="measured in free mode; the trend across checkpoints matters more than one value")


def gate_p12(summaries: Mapping[str, pd.DataFrame], t: Thresholds) -> Gate:
    values, verdicts = {}, []
    for task in ("a2t", "i2t"):
        summary = summaries.get(task)
        if summary is None or summary.empty:
            values[task] = "SKIP: task absent from the golden set"
            continue
        values[task] = {"n": int(summary["n"].iloc[0]), "mean_loss_correct": float(summary["mean_loss_correct"].iloc[0])}
        ok = True
        for condition in ("shuffled", "zero", "noise"):
            row = _row(summary, condition)
            if row is None:
                continue
            values[task][f"delta_{condition}"] = float(row["delta"])
            values[task][f"win_rate_{condition}"] = float(row["win_rate"])
            if condition in ("zero", "noise"):
                ok &= row["delta"] >= t.read_min_delta and row["win_rate"] >= t.read_win_rate
        verdicts.append(PASS if ok else FAIL)
    return Gate("P1.2", combine(verdicts), values, {"read_min_delta": t.read_min_delta, "read_win_rate": t.read_win_rate})


def gate_p13(collapse: Mapping[str, pd.DataFrame], t: Thresholds) -> Gate:
    values, verdicts = {}, []
    for task in ("t2a", "t2i"):
        frame = collapse.get(task)
        if frame is None or frame.empty:
            values[task] = "SKIP: task absent from the golden set"
            continue
        row = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in frame.iloc[0].to_dict().items()}
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        values[task] = row
        problems = []
        if row["collapsed"] or row["unique_ratio"] < t.min_unique_ratio:
            problems.append("identical or near-identical outputs")
        if row.get("silent_share") is not None and row["silent_share"] > t.max_silent_share:
            problems.append("silence")
        if row.get("noise_share") is not None and row["noise_share"] > t.max_noise_share:
            problems.append("noise")
        if row.get("loop_share") is not None and task == "t2a" and row["loop_share"] > t.max_loop_share:
            problems.append("repetition loops")
        values[task]["problems"] = problems
        verdicts.append(FAIL if problems else PASS)
    return Gate("P1.3", combine(verdicts), values,
                {"min_unique_ratio": t.min_unique_ratio, "max_silent_share": t.max_silent_share,
                 "max_noise_share": t.max_noise_share, "max_loop_share (audio)": t.max_loop_share})


def overall(gates: list[Gate]) -> str:
    by_id = {g.gate: g.verdict for g in gates}
    if any(by_id.get(g) == FAIL for g in P0):
        return "not valid"
    if any(by_id.get(g) == FAIL for g in P1):
        return "valid trial"
    return "ready to promote"


def gates_table(gates: list[Gate]) -> pd.DataFrame:
    import json

    return pd.DataFrame([{
        "gate": g.gate, "question": QUESTIONS[g.gate], "verdict": g.verdict,
        "values": json.dumps(g.values, default=str), "thresholds": json.dumps(g.thresholds, default=str),
        "evidence": json.dumps(g.evidence), "detail": g.detail, "fix": g.fix,
    } for g in gates])
