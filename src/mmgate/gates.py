"""Gate verdicts: a registry of gates, each judged per task on the stage tables.

One `GateSpec` per gate says everything the rest of mmgate needs: its id, question and tier
(P0 blocks "valid trial", P1 and TD block "ready to promote"), the stage tables it reads, a
per-task function returning values, verdict and reasons, the fix for each kind of failure, and
the metrics the trend follows. `evaluate` runs the registry; `gates.json`, the HTML report, the
trend, `mmgate inspect` and `mmgate check` all read what it returns, so a gate lives in one place.

Every function takes plain DataFrames (the parquet each stage wrote), so verdicts are tested on
hand-made tables. Adding a gate:

    >>> import pandas as pd
    >>> def judge(data, t):
    ...     n = len(data["generate"])
    ...     verdict = Verdict(values={"n": n})
    ...     if n == 0:
    ...         verdict.fail("empty", "no generations")
    ...     return verdict
    >>> spec = GateSpec("X.1", "Is anything generated?", "P1", tables=("generate",), judge=judge,
    ...                 fixes={"empty": "Generate something."})
    >>> tables = {"generate": {"t2a": pd.DataFrame({"mode": ["free"] * 300})}}
    >>> [(g.gate, g.verdict) for g in evaluate(tables, Thresholds(), registry=[spec])]
    [('X.1', 'PASS')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import MMGateError
from .stages import TABLES
from .tasks import READ, READ_TASKS, TASK_MODALITY, WRITE, WRITE_TASKS, ablations

from .verdict import (  # noqa: F401  (re-exported: gates.PASS, gates.Thresholds, ... are the public names)
    ACROSS, ALL, FAIL, PASS, SKIP, WARN, Thresholds, Verdict, _ci, _f, _num, combine, wilson_interval,
)

SYMBOLS = {">=": "≥", "<=": "≤", ">": ">"}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda value, limit: value >= limit, "<=": lambda value, limit: value <= limit,
    ">": lambda value, limit: value > limit,
}


@dataclass(frozen=True)
class Criterion:
    """One pass mark a gate's judge applies, stated so the report can mark each measured value.

    The judge decides the verdict; a criterion only says what it compares, so the report's
    metric x task tables show the threshold beside the number (a test keeps the two in step).

        >>> c = Criterion("end_rate", ">=", "min_end_rate")
        >>> c.limit({"min_end_rate": 0.5}), c.met(0.6, 0.5), c.label({"min_end_rate": 0.5})
        (0.5, True, '≥ 0.5 (min_end_rate)')
    """

    metric: str
    op: str  # one of OPERATORS: the value passes when `value op limit`
    threshold: str | float  # a Thresholds field (read from the gate's thresholds) or a constant
    scope: str = "each"  # "each": every task must meet it; "one_of": at least one of the gate's tasks
    kinds: tuple[str, ...] = ()  # the modality kinds it applies to ("audio", "image"); empty: every task
    note: str = ""  # how a miss counts when it is not a plain FAIL, e.g. "a miss warns"

    def applies_to(self, task: str) -> bool:
        return not self.kinds or TASK_MODALITY.get(task) in self.kinds

    def limit(self, thresholds: Mapping[str, Any]) -> float | None:
        value = thresholds.get(self.threshold) if isinstance(self.threshold, str) else self.threshold
        return None if value is None else float(value)

    def met(self, value: Any, limit: float | None) -> bool | None:
        value = _num(value) if not isinstance(value, bool) else float(value)
        return None if value is None or limit is None else OPERATORS[self.op](value, limit)

    def label(self, thresholds: Mapping[str, Any]) -> str:
        limit = self.limit(thresholds)
        text = f"{SYMBOLS[self.op]} {_f(limit)}" + (f" ({self.threshold})" if isinstance(self.threshold, str) else "")
        if self.scope == "one_of":
            text += ", by at least one task"
        if self.kinds:
            text += f", {'/'.join(self.kinds)} only"
        return text + (f"; {self.note}" if self.note else "")


def criterion_marks(gate: Mapping[str, Any], spec: "GateSpec | None" = None) -> list[dict[str, Any]]:
    """Each criterion of a gate (a gates.json entry) with every task's value and whether it is met.

    Rows: {"criterion", "label", "marks": {task: (value, met)}}; `met` is None where the task has
    no value, the criterion does not apply to it, or (scope "one_of") another task meets it.
    """
    spec = spec or spec_of(gate["gate"])
    rows = []
    for criterion in spec.criteria:
        limit = criterion.limit(gate.get("thresholds") or {})
        marks = {}
        for task, values in (gate.get("values") or {}).items():
            if not isinstance(values, Mapping) or criterion.metric not in values:
                continue
            value = values[criterion.metric]
            marks[task] = (value, criterion.met(value, limit) if criterion.applies_to(task) else None)
        if criterion.scope == "one_of" and any(met for _, met in marks.values()):  # met: the others need not
            marks = {task: (value, met or None) for task, (value, met) in marks.items()}
        rows.append({"criterion": criterion, "label": criterion.label(gate.get("thresholds") or {}), "marks": marks})
    return rows


@dataclass(frozen=True)
class GateSpec:
    """Everything mmgate knows about one gate."""

    id: str
    question: str
    tier: str
    tables: tuple[str, ...]  # stage tables the judge reads, e.g. ("generate",)
    judge: Callable[[Mapping[str, Any], Thresholds], Verdict]  # (this task's tables, thresholds) -> Verdict
    tasks: tuple[str, ...] = WRITE_TASKS
    fixes: Mapping[str, str] = field(default_factory=dict)  # failure kind -> what the checklist recommends
    thresholds: tuple[str, ...] = ()  # Thresholds fields shown beside the values
    trend_metrics: tuple[str, ...] = ()
    # what the gate's N counts: "generation" or "ablation" samples, whose N below Thresholds.min_n_for
    # makes a PASS a WARN (and blocks "ready to promote"); None: N does not apply
    sample_size: str | None = "generation"
    across_tasks: Callable[[Mapping[str, Verdict], Thresholds], Verdict] | None = None  # criteria over all tasks
    criteria: tuple[Criterion, ...] = ()  # the pass marks the judge applies, for the report's tables


@dataclass
class Gate:
    gate: str
    tier: str
    question: str
    verdict: str
    values: dict[str, Any] = field(default_factory=dict)  # task -> values, or task -> "SKIP: why"
    thresholds: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the kinds of miss over all tasks, e.g. "silence"
    evidence: list[str] = field(default_factory=list)
    underpowered: bool = False
    task_verdicts: dict[str, str] = field(default_factory=dict)  # task -> its own verdict, so a line can name them

    @property
    def fix(self) -> str | None:
        return " ".join(self.fixes) or None

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "tier": self.tier, "question": self.question, "verdict": self.verdict,
                "reasons": self.reasons, "notes": self.notes, "fix": self.fix, "fixes": self.fixes, "failures": self.failures,
                "underpowered": self.underpowered, "values": self.values, "thresholds": self.thresholds,
                "evidence": self.evidence, "task_verdicts": self.task_verdicts}


def _table(tables: Mapping[str, Any], name: str, task: str) -> Any:
    by_task = tables.get(name) or {}
    return by_task.get(task) if isinstance(by_task, Mapping) else None


class UnknownTable(MMGateError):
    """A GateSpec reads a table that no stage makes (mmgate.stages.TABLES)."""


class MissingTable(MMGateError):
    """A gate's required table is missing for a task the golden set holds: a SKIP there would hide it."""


def check_registry(registry: Sequence[GateSpec]) -> None:
    """Every table a gate reads is one a stage makes and the report loads, so no gate SKIPs for want
    of a table that nothing could load (raises UnknownTable naming the gate, the table and the fix)."""
    for spec in registry:
        unknown = [name for name in spec.tables if name not in TABLES]
        if unknown:
            raise UnknownTable(
                f"gate {spec.id} reads the table(s) {', '.join(map(repr, unknown))}, which no stage makes; the report "
                f"loads only {', '.join(TABLES)}. Declare its stage in mmgate.stages.STAGES (with table={unknown[0]!r}; a "
                "scored stage needs only that, see the README's \"Adding a gate\"), or name one of those tables in the GateSpec.")


def unjudged(spec: GateSpec, t: Thresholds, evidence: Sequence[str] = ()) -> Gate:
    """A gate before its judge ran: SKIP, with the thresholds it is judged against."""
    return Gate(spec.id, spec.tier, spec.question, SKIP, evidence=list(evidence),
                thresholds={name: t.min_n_for("generation") if name == "min_n_generation" else getattr(t, name)
                            for name in spec.thresholds})


def judge_gate(spec: GateSpec, tables: Mapping[str, Any], t: Thresholds, evidence: Sequence[str] = (),
               require_tables: bool = True) -> Gate:
    """Run one gate over its tasks: SKIP for a task absent from the golden set (or without data, where
    the golden set is not known or the table is optional), N below min_n a WARN, then combine.
    A required table missing for a task the golden set holds raises MissingTable (`require_tables`)."""
    gate = unjudged(spec, t, evidence)
    results: dict[str, Verdict] = {}
    for task in spec.tasks:
        data = {name: _table(tables, name, task) for name in spec.tables}
        if any(frame is None or len(frame) == 0 for frame in data.values()):
            missing = [name for name, frame in data.items() if frame is None or len(frame) == 0]
            held = (tables.get("golden_n") or {}).get(task, None)
            required = [name for name in missing if name not in TABLES or TABLES[name].required]
            if require_tables and held and required:
                raise MissingTable(
                    f"gate {spec.id} needs the {', '.join(required)} table for {task}, which the golden set holds ({held} "
                    f"examples), but the report loaded none. It comes from "
                    f"{'; '.join(TABLES[name].made_by if name in TABLES else name for name in required)}. A verdict "
                    "without it would be a SKIP hiding a missing stage: make sure the report rule's inputs declare "
                    "that stage's files for this task (mmgate.tables.report_inputs) and rerun snakemake.")
            gate.values[task] = "SKIP: task absent from the golden set" if held == 0 else f"SKIP: no {', '.join(missing)} table"
            continue
        data["task"] = task
        result = spec.judge(data, t)
        n = result.values.get("n")
        min_n = t.min_n_for(spec.sample_size) if spec.sample_size else None
        if min_n is not None and result.verdict != SKIP and n is not None and n < min_n:
            result.underpowered = True
            name = "min_n_generation" if spec.sample_size == "generation" and t.min_n_generation is not None else "min_n"
            line = f"n={n} < {name}={min_n}: too few {spec.sample_size} samples for a trustworthy verdict"
            if result.verdict == PASS:
                result.warn("small_n", line)
            else:
                result.notes.append(line)
        results[task] = result
        gate.values[task] = result.values
    if spec.across_tasks and results:
        results[ACROSS] = spec.across_tasks(results, t)
    for task, result in results.items():
        prefix = "" if task in (ALL, ACROSS) else f"{task}: "
        gate.reasons += [prefix + r for r in result.reasons]
        gate.notes += [prefix + r for r in result.notes]
        for kind in result.failures:
            if kind not in gate.failures:
                gate.failures.append(kind)
            fix = SMALL_N_FIX if kind == "small_n" else spec.fixes.get(kind)
            if fix and fix not in gate.fixes:
                gate.fixes.append(fix)
        gate.underpowered |= result.underpowered
    gate.task_verdicts = {task: result.verdict for task, result in results.items()}
    gate.verdict = combine([r.verdict for r in results.values()])
    return gate


SMALL_N_FIX = "Add examples to the golden set (the checklist asks for N >= 256; 64 is noisy)."


def evaluate(tables: Mapping[str, Any], thresholds: Thresholds, registry: Sequence[GateSpec] | None = None,
             evidence: Mapping[str, Sequence[str]] | None = None, require_tables: bool = True) -> list[Gate]:
    """Every gate of the registry on one checkpoint's tables. A P0.1 failure blocks every other gate
    (they are not judged: no GPU stage ran). `require_tables`: see judge_gate."""
    registry = REGISTRY if registry is None else registry
    check_registry(registry)

    def judged(spec: GateSpec) -> Gate:
        files = sorted({f for name in spec.tables for f in (evidence or {}).get(name, [])
                        if spec.tasks == (ALL,) or any(f"task={task}" in f for task in spec.tasks)})
        return judge_gate(spec, tables, thresholds, files, require_tables)

    p01 = next((judged(spec) for spec in registry if spec.id == "P0.1"), None)
    if p01 is not None and p01.verdict == FAIL:
        gates = [p01 if spec.id == "P0.1" else unjudged(spec, thresholds) for spec in registry]
        for gate, spec in zip(gates, registry):
            if gate is not p01:
                gate.reasons = ["blocked by P0.1: the token space does not match"]
                gate.values = {task: "SKIP: blocked by P0.1" for task in spec.tasks}
        return gates
    return [p01 if spec.id == "P0.1" else judged(spec) for spec in registry]


def spec_of(gate_id: str) -> GateSpec:
    return next(spec for spec in REGISTRY if spec.id == gate_id)


# ------------------------------------------------------------------------------------------ overall

NOT_VALID, UNVERIFIED, VALID, READY = "not valid", "unverified", "valid trial", "ready to promote"


def overall(gates: Sequence[Gate]) -> str:
    """`not valid` (a P0 gate fails), `unverified` (a P0 gate could not run), `valid trial` (every P0
    gate passes or warns; a P1/TD gate fails, or a verdict rests on too few samples), else
    `ready to promote`."""
    tier_of = {g.gate: g.tier for g in gates}
    if any(g.verdict == FAIL for g in gates if tier_of[g.gate] == "P0"):
        return NOT_VALID
    if any(g.verdict == SKIP for g in gates if tier_of[g.gate] == "P0"):
        return UNVERIFIED
    if any(g.verdict == FAIL or g.underpowered for g in gates):
        return VALID
    return READY


FREE_RUNS_NEED_CONSTRAINT = "free runs need constrained decoding"


def _tasks_with(gate: Mapping[str, Any], verdict: str) -> list[str]:
    """The tasks (not `all`/`across`) on which a gate gave `verdict`. Reports written before gates
    recorded `task_verdicts` fall back to the task prefixes of their reasons."""
    if gate.get("task_verdicts"):
        tasks = [task for task, v in gate["task_verdicts"].items() if v == verdict]
    else:
        tasks = [task for task in gate.get("values", {})
                 if any(r.startswith(f"{task}: ") for r in gate.get("reasons", []))]
    return [task for task in tasks if task not in (ALL, ACROSS)]


def _named(gate: Mapping[str, Any], what: str, verdict: str) -> str:
    tasks = _tasks_with(gate, verdict)
    return f"{gate['gate']} {what}" + (f" ({', '.join(tasks)})" if tasks else "")


def overall_note(gates: Sequence[Gate | Mapping[str, Any]]) -> str | None:
    """What decided the overall verdict, P0 gates first, then what it holds only under.

    The gates that fail (with their tasks), the P0 gates that could not run, the gates whose verdict
    rests on too few samples; then a caveat such as "free runs need constrained decoding" (P0.2
    warns on the free run). `None` when nothing needs saying.

    >>> fail = Gate("P0.4", "P0", "", FAIL, task_verdicts={"t2a": FAIL, "t2i": FAIL})
    >>> warn = Gate("P0.2", "P0", "", WARN, failures=["free_violation"])
    >>> overall_note([warn, fail, Gate("P1.2", "P1", "", FAIL)])
    'P0.4 failed (t2a, t2i), P1.2 failed; free runs need constrained decoding'
    """
    rows = [g.as_dict() if isinstance(g, Gate) else g for g in gates]
    tiers = {spec.id: spec.tier for spec in REGISTRY}
    tier = {g["gate"]: g.get("tier") or tiers.get(g["gate"]) for g in rows}
    p0_first = sorted(rows, key=lambda g: tier[g["gate"]] != "P0")
    decided = [_named(g, "failed", FAIL) for g in p0_first if g["verdict"] == FAIL]
    decided += [_named(g, "not run", SKIP) for g in rows if tier[g["gate"]] == "P0" and g["verdict"] == SKIP
                and not any(r.startswith("blocked by P0.1") for r in g.get("reasons", []))]
    parts = [", ".join(decided)] if decided else []
    small = [g["gate"] for g in rows if g.get("underpowered")]
    if small:
        parts.append(f"too few samples for {', '.join(small)}")
    if any(g["gate"] == "P0.2" and g["verdict"] == WARN and "free_violation" in g.get("failures", []) for g in rows):
        parts.append(FREE_RUNS_NEED_CONSTRAINT)
    return "; ".join(parts) or None


def overall_line(report: Mapping[str, Any]) -> str:
    """The one line every place shows for a checkpoint: its overall verdict and what decided it,
    recomputed from the report's gates so that every reader says the same.

    >>> overall_line({"overall": NOT_VALID, "gates": [{"gate": "P0.4", "tier": "P0", "verdict": FAIL}]})
    'not valid: P0.4 failed'
    >>> overall_line({"overall": READY, "gates": [{"gate": "P0.2", "tier": "P0", "verdict": WARN,
    ...                                            "failures": ["free_violation"]}]})
    'ready to promote; free runs need constrained decoding'
    """
    gates = report.get("gates")
    note = overall_note(gates) if gates else report.get("overall_note")
    overall = str(report.get("overall"))
    if not note:
        return overall
    caveat_only = note == FREE_RUNS_NEED_CONSTRAINT
    return f"{overall}{'; ' if caveat_only else ': '}{note}"


UNDECIDED = "straddles it"  # a note's words when a value passes but its interval crosses the pass mark
MODE_OF_KIND = {"free_violation": "free", "layout": "free", "constrained_violation": "constrained",
                "removed_mass": "constrained", "overridden": "constrained"}  # which run a P0.2 miss comes from


def evidence_doubts(gate: Mapping[str, Any]) -> list[str]:
    """Why a gate's verdict rests on too little evidence: too few samples, a run that is missing, or an
    interval that crosses its pass mark (what `mmgate check --strict` fails on).

    >>> evidence_doubts({"gate": "P0.4", "verdict": WARN, "failures": ["small_n"], "underpowered": True})
    ['P0.4: too few samples']
    """
    doubts = []
    if gate.get("underpowered") or "small_n" in gate.get("failures", []):
        doubts.append(f"{gate['gate']}: too few samples")
    if "no_free_run" in gate.get("failures", []):
        doubts.append(f"{gate['gate']}: no free-mode run")
    doubts += [f"{gate['gate']}: {note}" for note in gate.get("notes", []) if UNDECIDED in note]
    return doubts


def evidence_in_order(gate: Mapping[str, Any]) -> list[str]:
    """A gate's evidence files, those behind its verdict first: the files of the tasks that gave the
    gate its verdict, and of the run (free or constrained) its misses come from."""
    tasks = set(_tasks_with(gate, gate["verdict"]))
    modes = {MODE_OF_KIND[k] for k in gate.get("failures", []) if k in MODE_OF_KIND}

    def behind(path: str) -> tuple[bool, bool]:
        return (not any(f"task={task}/" in path for task in tasks),
                not any(f"mode={mode}/" in path for mode in modes))

    return sorted(gate.get("evidence") or [], key=behind)  # stable: the gate's own order within each group


def _gates_line(gates: Sequence[Mapping[str, Any]]) -> str:
    """What a group of gates says in a few words: which failed or warn, on which tasks (the reasons
    are in the gates' own rows)."""
    parts = []
    for g in gates:
        if g["verdict"] == FAIL:
            parts.append(_named(g, "failed", FAIL))
        elif g["verdict"] == WARN:
            why = FREE_RUNS_NEED_CONSTRAINT if "free_violation" in g.get("failures", []) else ", ".join(
                k.replace("_", " ") for k in g.get("failures", []))
            parts.append(_named(g, "warns", WARN) + (f": {why}" if why else ""))
        elif g["verdict"] == SKIP:
            parts.append(f"{g['gate']} not run")
    return "; ".join(parts)


def assessment(gates: Sequence[Gate]) -> dict[str, str]:
    """The checklist's three-line assessment: training dynamics, multi-task compatibility, generation
    validity; each a verdict and the gates that decided it (their reasons are in the gate table)."""
    by_id = {g.gate: g.as_dict() for g in gates}

    def line(verdict: str, why: str) -> str:
        return f"{verdict}: {why}" if why else verdict

    td = by_id.get("TD")
    training = line(td["verdict"], "; ".join(td["reasons"][:1] or td["notes"][:1])
                    + (f" (and {len(td['reasons']) - 1} more in TD)" if len(td["reasons"]) > 1 else "")) if td else "SKIP"
    read = [by_id[g] for g in ("P1.2",) if g in by_id]
    read_reasons = [r for r in (td["reasons"] if td else []) if "read" in r]
    multi = combine([g["verdict"] for g in read] + ([FAIL] if read_reasons else []))
    multi_line = line(multi, "; ".join(filter(None, [_gates_line(read), "TD: a read loss rose" if read_reasons else ""])))
    writes = [by_id[g] for g in ("P0.2", "P0.3", "P0.4") if g in by_id]
    verdict = combine([g["verdict"] for g in writes])
    if any(g["verdict"] == SKIP for g in writes) and verdict != FAIL:
        verdict = "PENDING"
    generation = line(verdict, _gates_line(writes))
    p01 = by_id.get("P0.1")
    if p01 and p01["verdict"] == FAIL:  # nothing generated can be trusted, whatever else is pending
        generation = line(FAIL, "P0.1 failed: the token space does not match, so no generation was run")
    return {"training_dynamics": training, "multi_task_compatibility": multi_line, "generation_validity": generation}


# ------------------------------------------------------------------------------------ P0.1 token space

def judge_token_space(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    check = data["check"]
    bad = check[~check["match"].astype(bool)]
    verdict = Verdict({"artifacts": int(len(check)), "mismatches": int(len(bad))})
    for row in bad.head(10).itertuples():
        found, expected = getattr(row, "found", None), getattr(row, "expected", None)
        values = f"expected {_short(expected)}, found {_short(found)}" if expected is not None or found is not None else ""
        what = f"{row.kind} {row.name}" + (f", {row.source}" if getattr(row, "source", None) else "")
        said = getattr(row, "detail", "") or ""
        verdict.fail("mismatch", f"{what}: " + "; ".join(x for x in (values, said) if x) or f"{what}: mismatch")
    if len(bad) > 10:
        verdict.reasons.append(f"... and {len(bad) - 10} more mismatching artifacts")
    return verdict


def _short(value: Any) -> str:
    text = str(value)
    return text[:16] + "..." if len(text) > 20 and all(c in "0123456789abcdef" for c in text) else text[:80]


# ------------------------------------------------------------------------------ P0.2 token compliance

def _compliance(part: pd.DataFrame) -> dict[str, Any]:
    tokens = int(part["n_generated"].sum()) if "n_generated" in part else 0
    oor, wrong = int(part["out_of_range"].sum()), int(part["wrong_slot"].sum())
    violating = (part["out_of_range"] + part["wrong_slot"]) > 0
    first = pd.to_numeric(part.loc[violating, "first_violation"], errors="coerce").dropna() if "first_violation" in part else []
    return {
        "n": int(len(part)), "tokens": tokens,
        "violation_pct": 100.0 * (oor + wrong) / tokens if tokens else 0.0,
        "out_of_range_pct": 100.0 * oor / tokens if tokens else 0.0,
        "wrong_slot_pct": 100.0 * wrong / tokens if tokens else 0.0,
        "samples_with_violation": float(violating.mean()) if len(part) else 0.0,
        "median_first_violation": float(np.median(first)) if len(first) else None,
    }


def _slot_matrix(part: pd.DataFrame) -> np.ndarray | None:
    """The summed slot confusion [K expected, K + 1 actual (K: out of range)] of a task's runs, or None."""
    if "slot_counts" not in part:
        return None
    rows = [np.asarray(c, dtype=np.int64) for c in part["slot_counts"] if c is not None and len(c)]
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    size = len(rows[0])
    k = int((math.sqrt(1 + 4 * size) - 1) / 2)  # K * (K + 1) = size
    return np.sum(rows, axis=0).reshape(k, k + 1) if k * (k + 1) == size else None


def off_slot_share(matrix: np.ndarray | None) -> float | None:
    """The share of one other codebook's codes in the slot where it is smallest: near 1 when every slot
    holds another codebook's codes (a rotation or permutation), near 0 for a writer in its slots."""
    if matrix is None or matrix.shape[0] < 2:
        return None
    k = matrix.shape[0]
    inside = matrix[:, :k]
    off = inside * (1 - np.eye(k, dtype=inside.dtype))
    return float((off.max(axis=1) / np.maximum(inside.sum(axis=1), 1)).min())


def _names(k: int) -> list[str]:
    return [f"CB{i}" for i in range(k)]


def layout_diagnosis(part: pd.DataFrame, t: Thresholds) -> tuple[str | None, list[dict[str, Any]]]:
    """(a diagnosis of a systematic codebook-order or layout mismatch, or None; the slot confusion table)
    from the free runs of one task.

    With few tokens out of range, every expected slot holding `layout_dominance` of one *other*
    codebook's codes (a rotation or permutation of codebooks), or tokens following the other layout
    (codebook-major written where frame-major is declared, or the reverse), is a mismatch between how
    Stage 2 tokenized and what token_space.json declares, which constrained decoding hides: it forces
    each token into the declared slot, so every decoded frame mixes codes of two training frames.
    """
    matrix = _slot_matrix(part)
    if matrix is None:
        return None, []
    k = matrix.shape[0]
    names = _names(k)
    table = [{"expected_slot": names[e], **{names[a]: int(matrix[e, a]) for a in range(k)},
              "out_of_range": int(matrix[e, k])} for e in range(k)]
    total, inside = int(matrix.sum()), int(matrix[:, :k].sum())
    # judged on a modality with several codebooks, with tokens in every slot and few out of every range
    if k < 2 or (matrix[:, :k].sum(axis=1) < 10).any() or inside / total < t.layout_dominance:
        return None, table
    shares = matrix[:, :k] / np.maximum(matrix[:, :k].sum(axis=1, keepdims=True), 1)
    dominant = shares.argmax(axis=1)
    if (shares.max(axis=1) >= t.layout_dominance).all() and len(set(dominant)) == k and (dominant != np.arange(k)).any():
        first = int(np.flatnonzero(dominant != np.arange(k))[0])
        what = (f"codebooks rotated by {int((dominant[0] - 0) % k)}" if all((dominant[e] - e) % k == (dominant[0] % k)
                                                                          for e in range(k))
                else "codebooks permuted: " + ", ".join(f"{names[e]}<-{names[a]}" for e, a in enumerate(dominant) if a != e))
        return (f"slot {names[first]} holds {names[dominant[first]]}'s codes in {_f(100 * shares[first, dominant[first]])} % "
                f"of tokens ({what}; {_f(100 * inside / total)} % of tokens in range): the layout or codebook order of "
                "Stage-2 tokenization differs from token_space.json; constrained decoding would misalign every frame"), table
    declared = part["layout"].dropna().iloc[0] if "layout" in part and part["layout"].notna().any() else None
    if "other_layout_slots" in part and declared:
        other = pd.to_numeric(part["other_layout_slots"], errors="coerce")
        counted = other.notna()
        in_range = sum(int(np.asarray(c).reshape(k, k + 1)[:, :k].sum()) for c in part.loc[counted, "slot_counts"])
        matching = float(other[counted].sum()) / in_range if in_range else 0.0
        diagonal = float(np.trace(matrix[:, :k])) / inside
        if matching >= t.layout_dominance and diagonal < 0.5:
            written = "codebook-major" if declared == "frame_major" else "frame-major"
            return (f"{_f(100 * matching)} % of tokens follow {written} order where token_space.json declares "
                    f"{declared.replace('_', '-')} (the declared slot holds in {_f(100 * diagonal)} %): the layout of "
                    "Stage-2 tokenization differs from token_space.json; constrained decoding would misalign every "
                    "frame"), table
    return None, table


def judge_compliance(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    frame = data["generate"]
    free, constrained = frame[frame["mode"] == "free"], frame[frame["mode"] == "constrained"]
    values: dict[str, Any] = {}
    if len(free):
        values.update({f"free_{k}": v for k, v in _compliance(free).items()})
    if len(constrained):
        values.update({f"constrained_{k}": v for k, v in _compliance(constrained).items()})
        if "removed_mass_mean" in constrained:
            values["removed_mass_mean"] = _num(constrained["removed_mass_mean"].mean())
            values["removed_mass_max"] = _num(constrained["removed_mass_max"].max())
        if "removed_mass_peak" in constrained and constrained["removed_mass_peak"].notna().any():
            peak = constrained["removed_mass_peak"].astype(float)
            values["overridden_samples"] = _num((peak > t.max_step_removed_mass).mean())
            values["removed_mass_first_median"] = _num(constrained["removed_mass_first"].astype(float).median())
            values["overridden_steps_mean"] = _num(constrained["overridden_share"].astype(float).mean())
    values["n"] = int(len(free) if len(free) else len(constrained))
    verdict = Verdict(values)
    if len(constrained):
        pct = values["constrained_violation_pct"]
        if pct > t.max_violation_pct:
            verdict.fail("constrained_violation", f"constrained run: {_f(pct)} % of tokens out of range or in the wrong slot "
                         f"> {t.max_violation_pct} % ({_f(100 * values['constrained_samples_with_violation'])} % of samples): "
                         "the constraint itself is broken")
        mass = values.get("removed_mass_mean")
        if mass is None:
            verdict.notes.append("constrained run has no removed-mass column (generated by an older mmgate): rerun generation")
        elif mass > t.max_removed_mass:
            verdict.fail("removed_mass", f"removed_mass_mean {_f(mass)} > {t.max_removed_mass}: the constraint removed "
                         f"{_f(100 * mass)} % of the model's probability per step on average (max {_f(values['removed_mass_max'])})")
        overridden = values.get("overridden_samples")
        if overridden is not None and overridden > t.max_overridden_samples:
            verdict.fail("overridden", f"the constraint removed more than {_f(100 * t.max_step_removed_mass)} % of the model's "
                         f"probability at some step in {_f(100 * overridden)} % of samples (> {_f(100 * t.max_overridden_samples)} %; "
                         f"median removed mass at the first step {_f(values['removed_mass_first_median'])}, the model's top "
                         f"choice overridden at {_f(100 * values['overridden_steps_mean'])} % of measured steps): where it "
                         "matters, the constraint writes in the model's place")
    if not len(free):
        verdict.warn("no_free_run", "no free-mode run: whether the model stays in its modality without the constraint is unknown")
    else:
        pct = values["free_violation_pct"]
        if pct > t.max_violation_pct:
            line = (f"free run: {_f(pct)} % of tokens violate (> {t.max_violation_pct} %): {_f(values['free_out_of_range_pct'])} % "
                    f"out of range, {_f(values['free_wrong_slot_pct'])} % wrong slot, in "
                    f"{_f(100 * values['free_samples_with_violation'])} % of samples, median first violation at token "
                    f"{_f(values['free_median_first_violation'])}: free runs need constrained decoding")
            (verdict.fail if t.require_free_compliance else verdict.warn)("free_violation", line)
        diagnosis, table = layout_diagnosis(free, t)
        values["slot_confusion"] = table
        values["slot_off_share"] = off_slot_share(_slot_matrix(free))
        if diagnosis:
            first = values.get("removed_mass_first_median")
            verdict.fail("layout", diagnosis + (f" (median removed mass at the constrained first step {_f(first)})"
                                                if first is not None else ""))
    return verdict


# --------------------------------------------------------------------------------------- P0.3 decode

DECODE_KINDS = (("too short", "decode_length"), ("out of range", "decode_tokens"), ("wrong slot", "decode_tokens"),
                ("code ", "decode_codebook"), ("decoder error", "decode_error"))


def judge_decode(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    frame = data["decode"]
    ok = frame["ok"].astype(bool)
    n, k = int(len(frame)), int(ok.sum())
    rate = k / n if n else 0.0
    reasons = frame.loc[~ok, "reason"].fillna("unknown").astype(str)
    by_reason = reasons.str.split(":").str[0].value_counts().head(5).to_dict()
    verdict = Verdict({"n": n, "decoded": k, "decode_success_rate": rate, "decode_success_rate_ci": wilson_interval(k, n),
                       "failures_by_reason": {str(a): int(b) for a, b in by_reason.items()}})
    if rate < t.min_decode_success:
        top = ", ".join(f"{a} x{b}" for a, b in by_reason.items())
        kinds = {kind for prefix, kind in DECODE_KINDS for r in reasons if r.startswith(prefix)} or {"decode_output"}
        for kind in sorted(kinds):
            verdict.failures.append(kind)
        verdict.fail(sorted(kinds)[0], f"decode_success_rate {_f(rate)} < {t.min_decode_success} ({k} of {n} decoded, "
                     f"{_ci(verdict.values['decode_success_rate_ci'])}); failures: {top}")
    return verdict


# --------------------------------------------------------------------------------- ablation helpers

def _condition(summary: pd.DataFrame, condition: str) -> pd.Series | None:
    rows = summary[summary["condition"] == condition]
    return rows.iloc[0] if len(rows) else None


def _win_ci(row: pd.Series) -> list[float | None]:
    if "win_rate_ci_low" in row and row["win_rate_ci_low"] is not None and not pd.isna(row["win_rate_ci_low"]):
        return [float(row["win_rate_ci_low"]), float(row["win_rate_ci_high"])]
    return wilson_interval(round(float(row["win_rate"]) * int(row["n"])), int(row["n"]))


def _delta_ci(row: pd.Series) -> list[float | None]:
    if "delta_ci_low" in row:
        return [_num(row["delta_ci_low"]), _num(row["delta_ci_high"])]
    return [None, None]


# -------------------------------------------------------------------------------- P0.4 prompt ablation

def judge_prompt_ablation(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    summary = data["ablate"]
    verdict = Verdict({"n": int(summary["n"].iloc[0])})
    for condition, win_threshold in ((c.name, getattr(t, c.win_rate_mark)) for c in ablations(WRITE)
                                     if WRITE in c.decides):  # shuffled, empty: win_rate_shuffled, win_rate_empty
        row = _condition(summary, condition)
        if row is None:
            verdict.fail("prompt_unused", f"no '{condition}' condition in the ablation summary")
            continue
        verdict.values.update({
            "mean_loss_correct": float(row["mean_loss_correct"]), f"mean_loss_{condition}": float(row["mean_loss"]),
            f"delta_{condition}": float(row["delta"]), f"delta_{condition}_ci": _delta_ci(row),
            f"win_rate_{condition}": float(row["win_rate"]), f"win_rate_{condition}_ci": _win_ci(row),
        })
        if not row["delta"] > 0:
            verdict.fail("prompt_unused", f"mean loss correct {_f(row['mean_loss_correct'])} is not below {condition} "
                         f"{_f(row['mean_loss'])} (delta_{condition} {_f(row['delta'])}, {_ci(_delta_ci(row))})")
        if row["win_rate"] < win_threshold:
            verdict.fail("prompt_unused", f"win_rate_{condition} {_f(row['win_rate'])} < {win_threshold} ({_ci(_win_ci(row))})")
    low, high = verdict.values.get("delta_empty_ci", [None, None])
    if low is not None and low < t.min_delta_empty <= verdict.values["delta_empty"]:
        verdict.notes.append(f"delta_empty {_f(verdict.values['delta_empty'])} passes {t.min_delta_empty} but its "
                             f"{_ci([low, high])} {UNDECIDED}")
    return verdict


def prompt_ablation_across_tasks(results: Mapping[str, Verdict], t: Thresholds) -> Verdict:
    """`delta_empty >= min_delta_empty` for at least one of the write tasks."""
    deltas = {task: r.values.get("delta_empty") for task, r in results.items() if r.values.get("delta_empty") is not None}
    verdict = Verdict()
    if deltas and max(deltas.values()) < t.min_delta_empty:
        listed = ", ".join(f"{task} {_f(d)} ({_ci(results[task].values.get('delta_empty_ci'))})" for task, d in deltas.items())
        verdict.fail("weak_prompt", f"delta_empty < {t.min_delta_empty} for every write task: {listed}")
    return verdict


# ---------------------------------------------------------------------------------- P1.1 end tokens

def judge_end_token(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    frame = data["generate"]
    free = frame[frame["mode"] == "free"]
    if free.empty:
        verdict = Verdict({"n": 0})
        verdict.notes.append("no free-mode run (end tokens are measured in free mode)")
        verdict.verdict = SKIP
        return verdict
    ended = free[free["emitted_end"].astype(bool)]
    n, k = int(len(free)), int(len(ended))
    rate = k / n
    fraction = ended["end_position"].astype(float) / ended["expected_len"].astype(float)
    early = int((fraction < t.early_end_fraction).sum())
    verdict = Verdict({
        "n": n, "end_rate": rate, "end_rate_ci": wilson_interval(k, n),
        "end_position_over_expected_median": _num(fraction.median()) if k else None,
        "ended_before_expected_share": _num((ended["end_position"] < ended["expected_len"]).mean()) if k else None,
        "early_end_share": early / n, "early_end_share_ci": wilson_interval(early, n),
    })
    if rate < t.min_end_rate:
        verdict.warn("no_end", f"end_rate {_f(rate)} < {t.min_end_rate} ({k} of {n} free generations ended by themselves, "
                     f"{_ci(verdict.values['end_rate_ci'])})")
    if early / n > t.max_early_end_share:
        verdict.warn("early_end", f"ends too early: {early} of {n} free generations ({_f(100 * early / n)} % > "
                     f"{_f(100 * t.max_early_end_share)} %) end before {_f(100 * t.early_end_fraction)} % of their expected "
                     f"length, median end position {_f(100 * verdict.values['end_position_over_expected_median'])} % of "
                     f"expected ({_ci(verdict.values['early_end_share_ci'])}): in free use it stops after a few tokens")
    return verdict


# -------------------------------------------------------------------------------- P1.2 read ablation

def judge_read_ablation(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    summary = data["ablate"]
    verdict = Verdict({"n": int(summary["n"].iloc[0]), "mean_loss_correct": float(summary["mean_loss_correct"].iloc[0])})
    for condition, decides in ((c.name, READ in c.decides) for c in ablations(READ)):
        row = _condition(summary, condition)
        if row is None:
            if decides:
                verdict.fail("read_regressed", f"no '{condition}' condition in the ablation summary")
            continue
        verdict.values.update({f"delta_{condition}": float(row["delta"]), f"delta_{condition}_ci": _delta_ci(row),
                               f"win_rate_{condition}": float(row["win_rate"]), f"win_rate_{condition}_ci": _win_ci(row)})
        if not decides:
            continue  # reported (shuffled); zero and noise decide (the checklist's "correct better than noise/zero")
        if row["delta"] < t.read_min_delta:
            verdict.fail("read_regressed", f"delta_{condition} {_f(row['delta'])} < {t.read_min_delta} ({_ci(_delta_ci(row))}): "
                         f"{condition} modality tokens score almost as well as the real ones")
        if row["win_rate"] < t.read_win_rate:
            verdict.fail("read_regressed", f"win_rate_{condition} {_f(row['win_rate'])} < {t.read_win_rate} ({_ci(_win_ci(row))})")
    return verdict


# ------------------------------------------------------------------------------------ P1.3 collapse

def judge_collapse(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in data["collapse"].iloc[0].to_dict().items()}
    row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    verdict = Verdict(row)
    unique, codes = row.get("unique_ratio"), row.get("unique_code_ratio")
    if unique is not None and unique < t.min_unique_ratio:
        line = (f"unique_ratio {_f(unique)} < {t.min_unique_ratio}: {row.get('unique_outputs')} distinct outputs of "
                f"{row.get('n')}, {row.get('near_duplicate_pairs')} near-duplicate pairs across prompts")
        if codes is not None and codes >= t.min_unique_ratio:
            verdict.fail("decoder_alike", f"{line}; their codes are distinct (unique_code_ratio {_f(codes)}): the "
                         "decoder turns different codes into nearly the same output")
        else:
            verdict.fail("identical", line)
    checks = [("silent_share", t.max_silent_share, "silence", "silent"),
              ("noise_share", t.max_noise_share, "noise", "noise-like (flat spectrum)")]
    if TASK_MODALITY.get(data.get("task")) == "audio":  # a repeated row of image tokens is often just background
        checks.append(("loop_share", t.max_loop_share, "loops", "caught in a repetition loop"))
    for key, limit, kind, what in checks:
        value = row.get(key)
        if value is not None and value > limit:
            verdict.fail(kind, f"{key} {_f(value)} > {limit}: {_f(100 * value)} % of outputs are {what}")
    return verdict


# --------------------------------------------------------------------------------- TD training log

def judge_training(data: Mapping[str, Any], t: Thresholds) -> Verdict:
    from .training import training_criteria

    return training_criteria(data["training"], t)


# ------------------------------------------------------------------------------------------ registry

FORMAT_FIX = ("First check that the ablation really changes the input (input_hash differs per condition) and that "
              "the template matches training.")

# a new gate's judge goes above this line (README: Adding a gate)

N_GENERATION = Criterion("n", ">=", "min_n_generation", note="fewer samples warn")
N_ABLATION = Criterion("n", ">=", "min_n", note="fewer samples warn")

REGISTRY: list[GateSpec] = [
    GateSpec("P0.1", "Is the token space the same everywhere?", "P0", ("check",), judge_token_space, tasks=(ALL,),
             fixes={"mismatch": "Re-tokenize or re-save the mismatching artifacts with the current token_space.json "
                                "(each row of check.parquet names its file and fix)."},
             thresholds=(), trend_metrics=("mismatches",), sample_size=None,
             criteria=(Criterion("mismatches", "<=", 0),)),
    GateSpec("P0.2", "Do generated tokens stay in their modality?", "P0", ("generate",), judge_compliance,
             fixes={"free_violation": "Use constrained decoding (ModalityConstraint: only the modality's ranges, the "
                                      "expected codebook slot, the end token at frame boundaries) wherever this "
                                      "checkpoint generates; train longer for free-mode compliance.",
                    "constrained_violation": "The constraint leaked: check that token_space.json matches the tokenizer "
                                             "(P0.1) and report the bug with the generate parquet.",
                    "removed_mass": "The model puts much of its probability outside the modality even where it "
                                    "must write it: give T2A/T2I more weight in the mix and check the template "
                                    "ends with the start token as in training.",
                    "no_free_run": "Run the free mode too: it is the only run that can show a violation.",
                    "overridden": "The model wants other tokens where it must write the modality: check that the "
                                  "template ends exactly as in training and that token_space.json's codebook order "
                                  "matches Stage-2 tokenization (see the slot confusion table).",
                    "layout": "Make token_space.json declare the codebook order and layout Stage-2 tokenization "
                              "wrote (or re-tokenize Stage 2 to match it), then retrain: constrained decoding cannot "
                              "repair a codebook-order mismatch."},
             thresholds=("max_violation_pct", "require_free_compliance", "max_removed_mass", "max_step_removed_mass",
                         "max_overridden_samples", "layout_dominance", "min_n_generation"),
             trend_metrics=("free_violation_pct", "removed_mass_mean"),
             criteria=(Criterion("constrained_violation_pct", "<=", "max_violation_pct"),
                       Criterion("free_violation_pct", "<=", "max_violation_pct",
                                 note="a miss warns (fails with require_free_compliance)"),
                       Criterion("removed_mass_mean", "<=", "max_removed_mass"),
                       Criterion("overridden_samples", "<=", "max_overridden_samples"), N_GENERATION)),
    GateSpec("P0.3", "Does every generation decode?", "P0", ("decode",), judge_decode,
             fixes={"decode_length": "Generate per-sample lengths (expected + margin, sliced to exactly expected) with "
                                     "hold_end_until_expected in constrained mode.",
                    "decode_tokens": "Use constrained decoding so every token is in its modality and codebook slot.",
                    "decode_codebook": "The decoder's codebook is smaller than the token space's: check "
                                       "decoders.*.n_codebooks/codebook_size against token_space.json.",
                    "decode_error": "The decoder raised: see the decode log and `reason` column; check its weights "
                                    "and settings.",
                    "decode_output": "Decoded outputs have the wrong rate, channels, length or size: check the "
                                     "decoder against the golden meta (sample_rate, channels, proc_size)."},
             thresholds=("min_decode_success", "min_n_generation"), trend_metrics=("decode_success_rate",),
             criteria=(Criterion("decode_success_rate", ">=", "min_decode_success"), N_GENERATION)),
    GateSpec("P0.4", "Does the model use the prompt?", "P0", ("ablate",), judge_prompt_ablation,
             fixes={"prompt_unused": FORMAT_FIX + " Then give T2A/T2I more weight in the training mix.",
                    "weak_prompt": "Use stronger, more specific prompts in the golden set (instrument, genre, mood "
                                   "for music), and check the ablation format as above."},
             thresholds=("win_rate_shuffled", "win_rate_empty", "min_delta_empty", "min_n"), sample_size="ablation",
             trend_metrics=("win_rate_shuffled", "win_rate_empty", "delta_empty", "mean_loss_correct"),
             across_tasks=prompt_ablation_across_tasks,
             criteria=(Criterion("delta_shuffled", ">", 0), Criterion("win_rate_shuffled", ">=", "win_rate_shuffled"),
                       Criterion("delta_empty", ">", 0), Criterion("win_rate_empty", ">=", "win_rate_empty"),
                       Criterion("delta_empty", ">=", "min_delta_empty", scope="one_of"), N_ABLATION)),
    GateSpec("P1.1", "Does it stop by itself?", "P1", ("generate",), judge_end_token,
             fixes={"no_end": "Keep training (the end-token rate should trend up); check that <aud_end>/<img_end> are "
                              "in the training targets.",
                    "early_end": "Check that training targets are not truncated before their end token and that the "
                                 "golden set's lengths match the training data; constrained decoding holds the end "
                                 "token back, free use does not."},
             thresholds=("min_end_rate", "early_end_fraction", "max_early_end_share", "min_n_generation"),
             trend_metrics=("end_rate", "early_end_share"),
             criteria=(Criterion("end_rate", ">=", "min_end_rate", note="a miss warns"),
                       Criterion("early_end_share", "<=", "max_early_end_share", note="a miss warns"), N_GENERATION)),
    GateSpec("P1.2", "Does reading still use the modality?", "P1", ("ablate",), judge_read_ablation, tasks=READ_TASKS,
             fixes={"read_regressed": "Reading regressed: add more A2T/I2T to the mix and check that modality tokens "
                                      "reach the model (not masked, not truncated)."},
             thresholds=("read_min_delta", "read_win_rate", "min_n"), trend_metrics=("delta_zero", "delta_noise"),
             sample_size="ablation",
             criteria=(Criterion("delta_zero", ">=", "read_min_delta"), Criterion("win_rate_zero", ">=", "read_win_rate"),
                       Criterion("delta_noise", ">=", "read_min_delta"), Criterion("win_rate_noise", ">=", "read_win_rate"),
                       N_ABLATION)),
    GateSpec("P1.3", "Are outputs alive and distinct?", "P1", ("collapse",), judge_collapse,
             fixes={"identical": "Outputs are the same across prompts: check P0.4 (is the prompt used?) and the sampling "
                                 "settings (temperature, top-k); raise T2A/T2I weight and prompt diversity.",
                    "decoder_alike": "Distinct codes decode to nearly the same output: check the decoder's weights "
                                     "(a random-init or mismatched codec ignores its input) before blaming the model.",
                    "silence": "Outputs decode to silence: check the decoder's weights and that generated codes are not "
                               "stuck on one value (codebook_usage in fingerprints.parquet).",
                    "noise": "Outputs sound like noise: first check the decoder (weights, codebook order, sample rate) "
                             "against a golden reference decoded the same way; if references decode cleanly, the model "
                             "writes codes without structure: train longer.",
                    "loops": "Outputs repeat themselves: lower temperature or raise repetition_penalty in generation, "
                             "and check for truncated or repeated training targets."},
             thresholds=("min_unique_ratio", "max_silent_share", "max_noise_share", "max_loop_share", "min_n_generation"),
             trend_metrics=("unique_ratio", "silent_share", "noise_share", "loop_share"),
             criteria=(Criterion("unique_ratio", ">=", "min_unique_ratio"), Criterion("silent_share", "<=", "max_silent_share"),
                       Criterion("noise_share", "<=", "max_noise_share"),
                       Criterion("loop_share", "<=", "max_loop_share", kinds=("audio",)), N_GENERATION)),
    GateSpec("TD", "Did training behave?", "TD", ("training",), judge_training, tasks=(ALL,),
             fixes={"write_not_falling": "Write losses did not fall: check T2A/T2I label masks and their share of the mix.",
                    "read_regressed": "A read loss regressed: add A2T/I2T to the mix or lower the learning rate.",
                    "nan": "NaN losses: lower the learning rate, check fp16 overflow (use bf16) and bad samples.",
                    "spike": "Loss spikes: lower the learning rate or add warm-up; look for bad batches at those steps.",
                    "norms_frozen": "Head/embedding norms did not move: check that the new rows are trainable "
                                    "(modules_to_save or unfrozen lm_head/embed_tokens)."},
             thresholds=("read_loss_tolerance", "spike_ratio", "spike_window", "min_norm_change"), sample_size=None),
    # a new gate goes above this line (README: Adding a gate)
]
check_registry(REGISTRY)  # at import: a gate reading a table no stage makes never ships
GATE_IDS = tuple(spec.id for spec in REGISTRY)
P0 = tuple(spec.id for spec in REGISTRY if spec.tier == "P0")


def gates_table(gates: Sequence[Gate]) -> pd.DataFrame:
    import json

    from .io import strict_json

    return pd.DataFrame([{
        "gate": g.gate, "tier": g.tier, "question": g.question, "verdict": g.verdict,
        "reasons": json.dumps(g.reasons), "notes": json.dumps(g.notes), "fix": g.fix,
        "values": strict_json(g.values), "thresholds": strict_json(g.thresholds), "evidence": json.dumps(g.evidence),
        "underpowered": g.underpowered,
    } for g in gates])
