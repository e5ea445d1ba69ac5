"""Verdict values and what every gate's judge returns: `Verdict`, the `Thresholds` it judges
against, and the intervals and number formats of reason lines. Gates (`mmgate.gates`) and the
training-log judge (`mmgate.training`) build on this module, which imports neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from .settings import FromConfig

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
TIERS = ("P0", "P1", "TD")
ALL = "all"  # the "task" of gates judged once per checkpoint (P0.1, TD)
ACROSS = "across_tasks"  # results of a gate's criteria over all its tasks


@dataclass(frozen=True)
class Thresholds(FromConfig):
    """Pass marks of every gate (the checklist's defaults); the `gates:` section of the config."""

    section = "gates"
    max_violation_pct: float = 0.0  # tokens out of range or in the wrong codebook slot, % of generated tokens
    require_free_compliance: bool = False  # P0.2 fails (not warns) when the free run leaves its modality
    max_removed_mass: float = 0.2  # mean probability mass the constraint removed per step
    min_decode_success: float = 1.0
    win_rate_shuffled: float = 0.70
    win_rate_empty: float = 0.80
    min_delta_empty: float = 0.10
    min_n: int = 256  # samples per task below which a verdict warns (the checklist's N >= 256 for P0.4)
    min_n_generation: int | None = None  # the same for gates judged on generations (P0.2, P0.3, P1.1, P1.3); None: min_n
    noop_adapter_fails: bool = True  # P0.1 (its job reads it): a LoRA that changes nothing fails
    min_end_rate: float = 0.5
    # P0.2: a constrained step where the constraint removes more than this overrides the model ...
    max_step_removed_mass: float = 0.5
    # ... which fails when more than this share of samples has such a step
    max_overridden_samples: float = 0.25
    # P0.2 layout diagnosis from the free runs: a slot whose tokens are this share one other codebook's
    layout_dominance: float = 0.9
    # P1.1: a free run ending before this fraction of its expected length ends too early ...
    early_end_fraction: float = 0.5
    # ... which warns when more than this share of free runs does
    max_early_end_share: float = 0.5
    read_min_delta: float = 0.10
    read_win_rate: float = 0.80
    min_unique_ratio: float = 0.9
    max_silent_share: float = 0.0
    max_noise_share: float = 0.1
    max_loop_share: float = 0.1
    read_loss_tolerance: float = 0.05  # TD: a read loss may end at most 5 % above where it started
    spike_ratio: float = 1.25  # TD: a loss above 1.25 x the median of the points before it is a spike
    spike_window: int = 5
    min_norm_change: float = 0.01  # TD: head/embedding norms must move by at least 1 % of their start
    # a new gate's pass marks go above this line (README: Adding a gate)

    def min_n_for(self, samples: str) -> int:
        """The sample-size bar of a gate judged on `samples` ("generation" or "ablation")."""
        return self.min_n_generation if samples == "generation" and self.min_n_generation is not None else self.min_n


# ----------------------------------------------------------------------------------------- verdicts

@dataclass
class Verdict:
    """One task's result: values, and for every criterion missed a reason line with its numbers."""

    values: dict[str, Any] = field(default_factory=dict)
    verdict: str = PASS
    reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failure kinds, which choose the fixes
    notes: list[str] = field(default_factory=list)  # worth knowing, but no criterion missed
    underpowered: bool = False  # too few samples to trust the verdict

    def fail(self, kind: str, reason: str) -> None:
        self._miss(FAIL, kind, reason)

    def warn(self, kind: str, reason: str) -> None:
        self._miss(WARN, kind, reason)

    def _miss(self, verdict: str, kind: str, reason: str) -> None:
        self.verdict = combine([self.verdict, verdict])
        self.reasons.append(reason)
        if kind not in self.failures:
            self.failures.append(kind)


def combine(verdicts: Sequence[str]) -> str:
    for verdict in (FAIL, WARN, PASS):
        if verdict in verdicts:
            return verdict
    return SKIP


# ---------------------------------------------------------------------------------------- statistics

def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> list[float | None]:
    """Wilson score interval of a proportion: never degenerate at 0 or n, unlike a bootstrap."""
    if n <= 0:
        return [None, None]
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def _f(x: Any) -> str:
    """A number for a reason line: 3 significant figures."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.3g}"


def _ci(ci: Sequence[Any] | None) -> str:
    return f"95 % CI [{_f(ci[0])}, {_f(ci[1])}]" if ci and ci[0] is not None else "no CI"


def _num(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
