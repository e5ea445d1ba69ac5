"""HTML pages: a checkpoint's gate report, the trend across checkpoints, and the diff of two.

Each page is one self-contained file (plots as PNG and media as data URIs, no external URL) laid
out by the Jinja2 templates in `mmgate/html/`. What a page shows is computed here from gates.json
and the stage tables, so the templates only arrange it.

    >>> fmt(0.953125), fmt(20208), fmt(None), measured(0.953125, [0.919, 0.9741])
    ('0.953', '20208', 'n/a', '0.953 [0.919, 0.974]')
"""

from __future__ import annotations

import base64
import io as _io
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import gates as G
from .decoders import RANDOM_WEIGHTS
from .media import length_line, select_media
from .report import sample_sizes_line
from .tasks import CONDITION_OF, CONDITION_TABLE, CORRECT, TASK_MODALITY, TASKS, WRITE, ablations

HIDDEN_VALUES = ("_file", "slot_confusion")  # bookkeeping, or shown as a table of its own


# ------------------------------------------------------------------------------------------ numbers

def fmt(value: Any) -> str:
    """3 significant figures; integers whole; None and NaN as n/a."""
    if value is None or value is pd.NA:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "n/a"
        return str(int(value)) if value == int(value) and abs(value) < 1e6 else f"{value:.3g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} x{fmt(v)}" for k, v in value.items()) or "none"
    return str(value)


def measured(value: Any, ci: Sequence[Any] | None = None) -> str:
    """A value with its 95 % interval as [a, b] when it has one."""
    text = fmt(value)
    if ci is not None and len(ci) == 2 and ci[0] is not None:
        text += f" [{fmt(ci[0])}, {fmt(ci[1])}]"
    return text


def gate_table(gate: Mapping[str, Any]) -> dict[str, Any]:
    """A gate's metric x task table: criteria first (value, interval, met or not, pass mark), then
    every other measured value. `skipped`: tasks without values, with the reason."""
    values = gate.get("values") or {}
    tasks = [t for t, v in values.items() if isinstance(v, Mapping)]
    skipped = {t: v for t, v in values.items() if not isinstance(v, Mapping)}
    rows, shown = [], set()
    spec = next((s for s in G.REGISTRY if s.id == gate["gate"]), None)
    by_metric: dict[str, list[dict[str, Any]]] = {}  # a metric with two criteria (delta_empty: > 0 and >= min_delta_empty)
    for row in G.criterion_marks(gate, spec) if spec else []:
        by_metric.setdefault(row["criterion"].metric, []).append(row)
    for metric, criteria in by_metric.items():  # one row: the value once, missed if any criterion misses it
        cells = []
        for task in tasks:
            marks = [row["marks"][task] for row in criteria if task in row["marks"]]
            met = [m for _, m in marks if m is not None]
            cells.append({"text": measured(marks[0][0], values[task].get(f"{metric}_ci")) if marks else "",
                          "mark": (False not in met) if met else None})
        rows.append({"metric": metric, "cells": cells, "pass_mark": "; ".join(row["label"] for row in criteria)})
        shown.add(metric)
    extra = [m for t in tasks for m in values[t]]
    for metric in dict.fromkeys(extra):
        if metric in shown or metric.endswith("_ci") or metric in HIDDEN_VALUES:
            continue
        cells = [{"text": measured(values[t].get(metric), values[t].get(f"{metric}_ci")) if metric in values[t] else "",
                  "mark": None} for t in tasks]
        rows.append({"metric": metric, "cells": cells, "pass_mark": ""})
    return {"tasks": tasks, "rows": rows, "skipped": skipped}


# -------------------------------------------------------------------------------------------- plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> str:
    """A matplotlib figure as base64 PNG (closed afterwards)."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


WIN_RATE_MARK = {c.name: c.win_rate_mark for c in CONDITION_TABLE if c.win_rate_mark}  # condition -> its threshold


def report_plots(tables: Mapping[str, Any], thresholds: Mapping[str, Any],
                 fingerprint_settings: Any = None) -> dict[str, str]:
    """The report's plots by name, every pass mark drawn from the run's own thresholds."""
    plt = _pyplot()
    out = {}
    rows = {t: f for t, f in tables["ablate_rows"].items() if f is not None}
    if rows:
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3), squeeze=False)
        for ax, (task, frame) in zip(axes[0], rows.items()):
            conditions = list(dict.fromkeys(frame["condition"]))
            ax.boxplot([frame.loc[frame["condition"] == c, "loss"].dropna() for c in conditions], showfliers=False)
            ax.set_xticks(range(1, len(conditions) + 1), conditions)
            ax.set_title(f"{task}: loss per condition", fontsize=10)
        axes[0][0].set_ylabel("mean loss per token (nats)")
        out["losses"] = figure_png(fig)
        summary = pd.concat([s.assign(task=t) for t, s in tables["ablate"].items()], ignore_index=True)
        summary = summary[summary["condition"] != CORRECT].reset_index(drop=True)
        low = summary["win_rate_ci_low"].fillna(summary["win_rate"]) if "win_rate_ci_low" in summary else summary["win_rate"]
        high = summary["win_rate_ci_high"].fillna(summary["win_rate"]) if "win_rate_ci_high" in summary else summary["win_rate"]
        fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(summary) + 2), 3.2))
        x = np.arange(len(summary))
        ax.errorbar(x, summary["win_rate"], yerr=[summary["win_rate"] - low, high - summary["win_rate"]], fmt="o",
                    capsize=3, label="win rate of the correct input (95 % CI)")
        marks = [thresholds.get(WIN_RATE_MARK.get(c, ""), np.nan) for c in summary["condition"]]
        ax.scatter(x, marks, marker="_", s=400, c="crimson", label="pass mark (config)", zorder=3)
        ax.set_xticks(x, [f"{r.task}\n{r.condition}" for r in summary.itertuples()])
        ax.set_ylim(0, 1.05), ax.set_ylabel("share of samples"), ax.legend(fontsize=7, loc="lower left")
        ax.set_title("correct input scores better than the ablated one")
        out["win_rates"] = figure_png(fig)
    if tables["generate"]:
        gen = pd.concat(tables["generate"].values(), ignore_index=True)
        gen = gen.assign(violations=gen["out_of_range"] + gen["wrong_slot"])
        stats = gen.groupby(["task", "mode"]).agg(violations=("violations", "sum"), tokens=("n_generated", "sum"),
                                                  end_rate=("emitted_end", "mean"))
        stats["violation_pct"] = 100 * stats["violations"] / stats["tokens"].clip(lower=1)
        labels = [f"{task}\n{mode}" for task, mode in stats.index]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        for ax, column, limit, title, ylabel in (
                (axes[0], "violation_pct", thresholds.get("max_violation_pct"), "tokens out of range or in the wrong slot",
                 "% of generated tokens"),
                (axes[1], "end_rate", thresholds.get("min_end_rate"), "end token emitted (free run is judged)",
                 "share of samples")):
            bars = ax.bar(range(len(stats)), stats[column], color=["#4c72b0" if m == "constrained" else "#dd8452"
                                                                   for _, m in stats.index])
            ax.bar_label(bars, labels=[fmt(v) for v in stats[column]], fontsize=8)
            if limit is not None:
                ax.axhline(limit, ls="--", c="crimson", label=f"pass mark {fmt(limit)}")
                ax.legend(fontsize=7)
            ax.set_xticks(range(len(stats)), labels), ax.set_title(title, fontsize=10), ax.set_ylabel(ylabel)
        axes[1].set_ylim(0, 1.1)
        out["generation"] = figure_png(fig)
    prints = tables["fingerprint"]
    settings = fingerprint_settings
    for task, frame in prints.items():
        kind = TASK_MODALITY.get(task)
        if kind == "audio" and "rms" in frame:
            fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
            for ax, column, label, line in zip(
                    axes, ("rms", "mel_variance", "spectral_flatness"), ("RMS level", "mel variance", "spectral flatness"),
                    (getattr(settings, "silence_rms", None), None, getattr(settings, "noise_flatness", None))):
                ax.hist(frame[column].dropna(), bins=30)
                if line is not None:
                    ax.axvline(line, ls="--", c="crimson", label=f"{'silent below' if column == 'rms' else 'noise above'} "
                                                                 f"{fmt(line)}")
                    ax.legend(fontsize=7)
                ax.set_xlabel(label), ax.set_ylabel("outputs"), ax.set_title(f"{task}: {label}", fontsize=10)
            out[f"fingerprints_{task}"] = figure_png(fig)
        elif kind == "image" and "mean_r" in frame:
            fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
            for ax, stat, label in zip(axes, ("mean", "var"), ("mean", "variance")):
                for channel, color in zip("rgb", ("red", "green", "blue")):
                    ax.hist(frame[f"{stat}_{channel}"].dropna(), bins=30, alpha=0.5, color=color, label=channel.upper())
                ax.set_xlabel(f"pixel {label} per image (0-1 scale)"), ax.set_ylabel("outputs")
                ax.set_title(f"{task}: channel {label}", fontsize=10), ax.legend(fontsize=7, title="channel")
            out[f"fingerprints_{task}"] = figure_png(fig)
    return out


def dynamics_plot(log: pd.DataFrame, summary: pd.DataFrame) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for m in summary["metric"]:
        (axes[1] if "norm" in m else axes[0]).plot(log["step"], pd.to_numeric(log[m], errors="coerce"), label=m)
    for ax, title, ylabel in zip(axes, ("task losses", "norms"), ("loss", "mean row norm")):
        ax.set_title(title), ax.set_xlabel("training step"), ax.set_ylabel(ylabel)
        if ax.lines:
            ax.legend(fontsize=8)
    return figure_png(fig)


# -------------------------------------------------------------------------------------------- media

def _data_uri(path: str | None, mime: str) -> str | None:
    if not path or not Path(path).exists():
        return None
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def embed(item: Mapping[str, Any]) -> dict[str, Any]:
    """A selected media item with its file (and its duplicate's) inlined, and its caption lines."""
    mime = "audio/wav" if item["kind"] == "audio" else "image/png"
    pair = item.get("pair")
    size = (f"{fmt(item['duration'])} s" if item["kind"] == "audio" and item.get("duration") is not None
            else f"{fmt(item.get('width'))}x{fmt(item.get('height'))} px" if item.get("width") is not None else "")
    return {**item, "src": _data_uri(item.get("file_path"), mime),
            "pair_src": _data_uri(pair.get("file_path"), mime) if pair else None,
            "pair_id": pair.get("sample_id") if pair else None, "lengths": length_line(item), "size": size}


MAX_PROBLEMS = 12  # per task: the worst first; the rest of the page is a random sample


def report_media(tables: Mapping[str, Any], loop_frames: int = 8, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for task, decode in tables["decode"].items():
        kind = TASK_MODALITY.get(task, "audio")
        prompts = tables.get("prompts")
        items = select_media(task, decode, tables["fingerprint"].get(task), tables["generate"].get(task),
                             prompts[prompts["task"] == task] if prompts is not None else None, kind=kind,
                             loop_frames=loop_frames, max_problems=MAX_PROBLEMS, n_random=8 if kind == "audio" else 12,
                             seed=seed)
        problems = items[0].get("problems_in_task", 0) if items and items[0]["flags"] else 0
        shown = min(problems, MAX_PROBLEMS)
        out[task] = {"items": [embed(i) for i in items], "n": len(decode), "problems": problems, "shown_problems": shown}
    return out


PROMPT_EXAMPLES = 8  # per task: the examples whose own prompt helps least
PROMPT_PAIRS = 4  # per task: pairs of different prompts with the same output


def prompt_loss_plot(task: str, wide: pd.DataFrame) -> str:
    """Per example, the loss of its target after its own prompt (x) against another example's prompt
    and no prompt (y): a model that uses its prompt puts the points above the diagonal."""
    plt = _pyplot()
    others = [c.name for c in ablations(WRITE) if c.name in wide]
    fig, axes = plt.subplots(1, len(others), figsize=(3.4 * len(others), 3.1), squeeze=False)
    for ax, condition in zip(axes[0], others):
        x, y = wide[CORRECT], wide[condition]
        ax.scatter(x, y, s=12, color="#0072B2", alpha=0.8)
        low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([low, high], [low, high], ls="--", c="crimson", lw=1, label="no difference")
        ax.set_xlabel("loss with its own prompt"), ax.set_ylabel(f"loss with the {condition} prompt")
        ax.set_title(f"{task}: own vs {condition} prompt", fontsize=10), ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return figure_png(fig)


def prompt_evidence(gate: Mapping[str, Any] | None, tables: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What a P0.4 FAIL or WARN means for each write task, for the Outputs section: the per-example loss of
    the golden target after its own, a shuffled and an empty prompt (the ablation rows P0.4 is judged on),
    and pairs of different prompts whose outputs are identical (the fingerprint table)."""
    if not gate or gate.get("verdict") not in (G.FAIL, G.WARN):
        return {}
    prompts = tables.get("prompts")
    asked = dict(zip(prompts["sample_id"].astype(str), prompts["prompt"].fillna(""))) if prompts is not None \
        and "prompt" in prompts else {}
    values = gate.get("values") or {}
    thresholds = gate.get("thresholds") or {}
    out = {}
    for task in G.spec_of("P0.4").tasks:
        rows = (tables.get("ablate_rows") or {}).get(task)
        if rows is None or CORRECT not in set(rows["condition"]):
            continue
        wide = rows.pivot_table(index="sample_id", columns="condition", values="loss", aggfunc="first")
        others = [c.name for c in ablations(WRITE) if c.name in wide]
        wide = wide[[CORRECT, *others]].dropna()
        if wide.empty or not others:
            continue
        measured_values = values.get(task) if isinstance(values.get(task), Mapping) else {}
        lines = []
        for condition in others:
            wins = int((wide[CORRECT] < wide[condition]).sum())
            rate = measured_values.get(f"win_rate_{condition}")
            lines.append(f"its own prompt gives the target a lower loss than the {condition} prompt in {wins} of {len(wide)} "
                         f"examples (win_rate_{condition} {measured(rate, measured_values.get(f'win_rate_{condition}_ci'))}, "
                         f"pass mark ≥ {fmt(thresholds.get(f'win_rate_{condition}'))}); mean loss "
                         f"{fmt(wide[CORRECT].mean())} with its own prompt, {fmt(wide[condition].mean())} with the "
                         f"{condition} one")
        gain = wide[others].min(axis=1) - wide[CORRECT]  # what its own prompt gains over the better ablation
        examples = [{"sample_id": sample_id, "prompt": asked.get(str(sample_id), ""),
                     "losses": [fmt(wide.at[sample_id, c]) for c in (CORRECT, *others)], "gain": fmt(gain[sample_id]),
                     "helps": bool(gain[sample_id] > 0)}
                    for sample_id in gain.sort_values(kind="stable").index[:PROMPT_EXAMPLES]]
        pairs = []
        prints = (tables.get("fingerprint") or {}).get(task)
        decode = (tables.get("decode") or {}).get(task)
        if prints is not None and "duplicate_of" in prints:
            files = dict(zip(decode["sample_id"].astype(str), decode["file_path"])) if decode is not None \
                and "file_path" in decode else {}
            mime = "audio/wav" if TASK_MODALITY.get(task) == "audio" else "image/png"
            copies = prints[prints["duplicate_of"].notna()]
            for sample_id, original in zip(copies["sample_id"].astype(str), copies["duplicate_of"].astype(str)):
                if asked.get(sample_id) == asked.get(original) and sample_id in asked:
                    continue  # the same prompt twice says nothing about whether the prompt is used
                pairs.append({"a": original, "b": sample_id, "a_prompt": asked.get(original, ""),
                              "b_prompt": asked.get(sample_id, ""), "kind": TASK_MODALITY.get(task, "audio"),
                              "a_src": _data_uri(files.get(original), mime), "b_src": _data_uri(files.get(sample_id), mime)})
            seen: dict[str, int] = {}
            for p in pairs:  # every copied output once before any of them twice
                p["turn"] = seen[p["a"]] = seen.get(p["a"], -1) + 1
            pairs.sort(key=lambda p: p["turn"])
            near = int(prints["near_duplicate"].astype(bool).sum()) if "near_duplicate" in prints else 0
        else:
            near = None
        out[task] = {"lines": lines, "conditions": [CONDITION_OF[c].label for c in (CORRECT, *others)], "examples": examples,
                     "plot": prompt_loss_plot(task, wide), "pairs": pairs[:PROMPT_PAIRS], "n_pairs": len(pairs),
                     "near_duplicates": near, "n_outputs": None if prints is None else len(prints),
                     "missed": any(r.startswith(f"{task}: ") for r in gate.get("reasons") or [])}
    return out


# -------------------------------------------------------------------------------------------- pages

def verdict_class(verdict: Any) -> str:
    """The colour class of a gate verdict or an overall call."""
    overall = {G.READY: G.PASS, G.VALID: G.WARN, G.UNVERIFIED: G.SKIP, G.NOT_VALID: G.FAIL}
    verdict = overall.get(verdict, verdict)
    return verdict if verdict in (G.PASS, G.WARN, G.FAIL, G.SKIP) else ""


@lru_cache(maxsize=1)
def _environment():
    import jinja2
    import markupsafe

    env = jinja2.Environment(loader=jinja2.PackageLoader("mmgate", "html"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
    env.filters["fmt"] = fmt
    env.filters["label"] = lambda key: str(key).replace("_", " ")
    # a long snake_case name may break after its underscores on a narrow page
    env.filters["wbr"] = lambda text: markupsafe.Markup(str(markupsafe.escape(text)).replace("_", "_<wbr>"))
    env.filters["verdict_class"] = verdict_class
    env.filters["overall_line"] = G.overall_line
    return env


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def random_decoders(provenance: Mapping[str, Any]) -> list[str]:
    """The decoder kinds whose weights are random, from the report's provenance."""
    return [kind for kind, origin in (provenance.get("decoder_weights") or {}).items() if origin == RANDOM_WEIGHTS]


GATE_PLOTS = {"P0.2": ("generation",), "P0.4": ("losses", "win_rates")}  # P1.3: each task's fingerprints


def render_report(report: Mapping[str, Any], audit: pd.DataFrame | None = None,
                  dynamics: tuple[pd.DataFrame, pd.DataFrame] | None = None, fingerprint_settings: Any = None,
                  seed: int = 0) -> str:
    """The self-contained HTML report of one checkpoint (`report`: what report.build returns)."""
    tables = report["tables"]
    thresholds = {k: v for g in report["gates"] for k, v in g["thresholds"].items()}
    plots = report_plots(tables, thresholds, fingerprint_settings)
    provenance = report.get("provenance") or {}
    sections = []
    for g in report["gates"]:
        names = [*GATE_PLOTS.get(g["gate"], ())] + ([n for n in plots if n.startswith("fingerprints_")]
                                                    if g["gate"] == "P1.3" else [])
        collapse = []
        if g["gate"] == "P1.3":
            for task, frame in tables["fingerprint"].items():
                dupes = frame[frame["near_duplicate"].astype(bool) | frame["duplicate_of"].notna()]
                collapse.append({"task": task, "n": len(dupes),
                                 "rows": dupes[["sample_id", "duplicate_of", "near_duplicate"]].head(20).to_dict("records")})
        confusion = {task: v["slot_confusion"] for task, v in (g.get("values") or {}).items()
                     if isinstance(v, Mapping) and len(v.get("slot_confusion") or []) > 1}
        sections.append({**g, "table": gate_table(g), "plots": [plots[n] for n in dict.fromkeys(names) if n in plots],
                         "raw": json.dumps(g["values"], indent=1, default=str), "collapse": collapse,
                         "confusion": confusion})
    td = None
    if dynamics is not None:
        td = {"summary": dynamics[1].to_dict("records"), "plot": dynamics_plot(*dynamics)}
    loop_frames = getattr(fingerprint_settings, "loop_frames", 8)
    return render("report.html.j2", report=report, provenance=provenance, gates=sections,
                  samples=sample_sizes_line(provenance) or "unknown", random_decoders=random_decoders(provenance),
                  media=report_media(tables, loop_frames, seed),
                  prompt=prompt_evidence(next((g for g in report["gates"] if g["gate"] == "P0.4"), None), tables),
                  prompt_gate=next((g for g in report["gates"] if g["gate"] == "P0.4"), {}), audit=None if audit is None else audit.to_dict("records"),
                  audit_columns=[] if audit is None else list(audit.columns), dynamics=td)


# -------------------------------------------------------------------------------------------- trend

def _ylim(values: Sequence[float], limits: Sequence[float], metric: str) -> tuple[float, float]:
    """Rates and shares on [0, 1]; otherwise the values and pass marks with a margin, never a
    +-0.04 sliver around a flat line."""
    points = [v for v in [*values, *limits] if v is not None and math.isfinite(v)]
    if any(word in metric for word in ("rate", "share", "ratio")) and all(0 <= p <= 1 for p in points):
        return -0.02, 1.05
    low, high = (min(points), max(points)) if points else (0.0, 1.0)
    pad = max(0.1 * (high - low), 0.1 * max(abs(low), abs(high)), 0.05)
    return low - pad, high + pad


# Okabe-Ito colours (told apart with any colour vision) and a marker per task, so the tasks differ in shape too;
# the tasks take them in mmgate.tasks' order
OKABE_ITO = ("#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
TASK_COLORS = {**dict(zip(TASKS, OKABE_ITO)), G.ALL: "#000000"}
TASK_MARKERS = {**dict(zip(TASKS, MARKERS)), G.ALL: "o"}


def trend_plots(trend: pd.DataFrame) -> list[str]:
    """One plot per trend metric: x the training step (or the checkpoint where a step is unknown),
    points per checkpoint with their 95 % intervals (a band along a run's line, error bars on lone
    points), lines only within one run, the pass marks dashed, P0.1 failures marked. Each metric only
    for the tasks its gate judges (the trend's `judged` column, from the registry)."""
    plt = _pyplot()
    order = trend.drop_duplicates("checkpoint")[["checkpoint", "step", "run"]].reset_index(drop=True)
    by_step = order["step"].notna().all()
    x_of = dict(zip(order["checkpoint"], order["step"].astype(float) if by_step else range(len(order))))
    p01 = trend[(trend["gate"] == "P0.1") & (trend["metric"] == "verdict")]
    failed = p01.loc[p01["verdict"] == G.FAIL, "checkpoint"].tolist()
    figures = []
    for gate, metric in [(spec.id, m) for spec in G.REGISTRY for m in spec.trend_metrics]:
        part = trend[(trend["gate"] == gate) & (trend["metric"] == metric)]
        if "judged" in part:  # a trend.parquet written before the column: every task
            part = part[part["judged"].fillna(True).astype(bool)]
        else:
            from .trend import trend_judged

            part = part[[trend_judged(gate, metric, t) for t in part["task"]]]
        if part.empty and not failed:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        intervals = False
        for task, rows in part.groupby("task"):
            color = TASK_COLORS.get(task, "black")
            for _, run_rows in rows.groupby("run", dropna=False):
                run_rows = run_rows.assign(x=[x_of[c] for c in run_rows["checkpoint"]]).sort_values("x")
                ax.plot(run_rows["x"], run_rows["value"], marker=TASK_MARKERS.get(task, "o"), ls="-" if by_step else "none",
                        label=task, color=color)
                if {"ci_low", "ci_high"} <= set(run_rows) and run_rows["ci_low"].notna().any():
                    intervals = True
                    low, high = run_rows["ci_low"].astype(float), run_rows["ci_high"].astype(float)
                    if by_step and len(run_rows) > 1:
                        ax.fill_between(run_rows["x"], low, high, color=color, alpha=0.2, lw=0)
                    else:
                        ax.errorbar(run_rows["x"], run_rows["value"], yerr=[(run_rows["value"] - low).clip(lower=0),
                                                                           (high - run_rows["value"]).clip(lower=0)],
                                    fmt="none", ecolor=color, alpha=0.6, capsize=2)
        if intervals:
            ax.plot([], [], color="grey", lw=6, alpha=0.3, label="95 % interval")
        limits = sorted({v for v in part["limit"].dropna()}) if "limit" in part else []
        for limit in limits:
            ax.axhline(limit, ls="--", c="crimson", lw=1, label=f"pass mark {fmt(limit)}")
        for checkpoint in failed:
            ax.axvline(x_of[checkpoint], c="grey", ls=":", lw=2, label="P0.1 failed (no gates run)")
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        if handles:  # beside the plot, never over a point
            ax.legend(handles.values(), handles.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        bounds = [v for c in ("ci_low", "ci_high") if c in part for v in part[c].dropna().astype(float)]
        ax.set_ylim(*_ylim(part["value"].tolist() + bounds, limits, metric))
        if by_step:
            ax.set_xlabel("training step")
        else:
            ax.set_xticks(range(len(order)), order["checkpoint"], rotation=30, ha="right")
            ax.set_xlabel("checkpoint (no training step known)")
        ax.set_title(f"{gate} {metric.replace('_', ' ')}", fontsize=10), ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        figures.append(figure_png(fig))
    return figures


def render_trend(trend: pd.DataFrame) -> str:
    order = trend.drop_duplicates("checkpoint")[["checkpoint", "step"]]
    verdicts = trend[trend["metric"] == "verdict"].pivot(index="checkpoint", columns="gate", values="verdict")
    columns = [c for c in ("overall", *G.GATE_IDS) if c in verdicts] + sorted(set(verdicts) - {"overall", *G.GATE_IDS})
    lines = (trend[trend["gate"] == "overall"].set_index("checkpoint")["note"].dropna().to_dict()
             if "note" in trend else {})  # a trend.parquet written before the overall line was kept
    rows = [{"checkpoint": c, "step": s, "verdicts": [verdicts.at[c, g] if g in verdicts else "" for g in columns],
             "line": lines.get(c)} for c, s in zip(order["checkpoint"], order["step"])]
    numbers = trend[trend["metric"] != "verdict"].assign(
        column=lambda f: f["gate"] + " " + f["task"] + " " + f["metric"])
    wide = numbers.pivot_table(index="checkpoint", columns="column", values="value", aggfunc="first")
    wide = wide.reindex([c for c in order["checkpoint"] if c in wide.index])
    bounds = {c: (numbers.pivot_table(index="checkpoint", columns="column", values=c, aggfunc="first", dropna=False)
                  .reindex(index=wide.index, columns=wide.columns) if c in numbers and numbers[c].notna().any() else None)
              for c in ("ci_low", "ci_high")}

    def cell(checkpoint: str, column: str) -> str:
        low, high = (None if b is None or pd.isna(b.at[checkpoint, column]) else b.at[checkpoint, column]
                     for b in (bounds["ci_low"], bounds["ci_high"]))
        return measured(wide.at[checkpoint, column], [low, high])

    return render("trend.html.j2", rows=rows, columns=columns, plots=trend_plots(trend),
                  metrics={"columns": list(wide.columns),
                           "rows": [(c, [cell(c, column) for column in wide.columns]) for c in wide.index]})


# --------------------------------------------------------------------------------------------- diff

def diff_media(tables_a: Mapping[str, Any], tables_b: Mapping[str, Any], prompts: pd.DataFrame | None,
               per_task: int = 8, seed: int = 0, loop_frames: int = 8) -> dict[str, list[dict[str, Any]]]:
    """Per write task, the same prompts' outputs from both checkpoints: B's problems first, then a
    seeded random sample, each beside A's output for that prompt."""
    out = {}
    for task, decode_b in tables_b["decode"].items():
        kind = TASK_MODALITY.get(task, "audio")
        asked = prompts[prompts["task"] == task] if prompts is not None else None

        def items(tables, decode, **limits):
            return select_media(task, decode, tables["fingerprint"].get(task), tables["generate"].get(task), asked,
                                kind=kind, loop_frames=loop_frames, seed=seed, **limits)

        chosen = items(tables_b, decode_b, max_problems=per_task // 2, n_random=per_task - per_task // 2)
        decode_a = tables_a["decode"].get(task)
        everything = len(decode_a) if decode_a is not None else 0
        of_a = {i["sample_id"]: i for i in items(tables_a, decode_a, max_problems=everything, n_random=everything)} \
            if decode_a is not None else {}
        out[task] = [{"sample_id": i["sample_id"], "prompt": i["prompt"], "kind": kind, "b": embed(i),
                      "a": embed(of_a[i["sample_id"]]) if i["sample_id"] in of_a else None} for i in chosen]
    return out


def render_diff(diff: Mapping[str, Any], media: Mapping[str, list[dict[str, Any]]] | None = None) -> str:
    """The HTML page of `mmgate diff A B --html`."""
    rows = [{**m, "a_text": measured(m["a"], m["a_ci"]), "b_text": measured(m["b"], m["b_ci"]),
             "delta_text": fmt(m["delta"]),  # value and interval apart, so a narrow page breaks the line between them
             **{f"{side}_value": fmt(m[side]) for side in ("a", "b")},
             **{f"{side}_interval": measured(m[side], m[f"{side}_ci"])[len(fmt(m[side])):].strip() for side in ("a", "b")}}
            for m in diff["metrics"]]
    return render("diff.html.j2", diff=diff, rows=rows, media=media or {})
