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
from .tasks import TASK_MODALITY

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
    for row in G.criterion_marks(gate, spec) if spec else []:
        metric = row["criterion"].metric
        cells = []
        for task in tasks:
            value, met = row["marks"].get(task, (None, None))
            cells.append({"text": measured(value, values[task].get(f"{metric}_ci")) if task in row["marks"] else "",
                          "mark": met})
        rows.append({"metric": metric, "cells": cells, "pass_mark": row["label"]})
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


WIN_RATE_MARK = {"shuffled": "win_rate_shuffled", "empty": "win_rate_empty", "zero": "read_win_rate", "noise": "read_win_rate"}


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
        summary = summary[summary["condition"] != "correct"].reset_index(drop=True)
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


# -------------------------------------------------------------------------------------------- pages

def verdict_class(verdict: Any) -> str:
    """The colour class of a gate verdict or an overall call."""
    overall = {G.READY: G.PASS, G.VALID: G.WARN, G.UNVERIFIED: G.SKIP, G.NOT_VALID: G.FAIL}
    verdict = overall.get(verdict, verdict)
    return verdict if verdict in (G.PASS, G.WARN, G.FAIL, G.SKIP) else ""


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mmgate", "html"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
    env.filters["fmt"] = fmt
    env.filters["label"] = lambda key: str(key).replace("_", " ")
    env.filters["verdict_class"] = verdict_class
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
                  media=report_media(tables, loop_frames, seed), audit=None if audit is None else audit.to_dict("records"),
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


TASK_COLORS = {"t2a": "tab:orange", "t2i": "tab:red", "a2t": "tab:blue", "i2t": "tab:green", G.ALL: "tab:gray"}


def trend_plots(trend: pd.DataFrame) -> list[str]:
    """One plot per trend metric: x the training step (or the checkpoint where a step is unknown),
    points per checkpoint, lines only within one run, the pass marks dashed, P0.1 failures marked."""
    plt = _pyplot()
    order = trend.drop_duplicates("checkpoint")[["checkpoint", "step", "run"]].reset_index(drop=True)
    by_step = order["step"].notna().all()
    x_of = dict(zip(order["checkpoint"], order["step"].astype(float) if by_step else range(len(order))))
    p01 = trend[(trend["gate"] == "P0.1") & (trend["metric"] == "verdict")]
    failed = p01.loc[p01["verdict"] == G.FAIL, "checkpoint"].tolist()
    figures = []
    for gate, metric in [(spec.id, m) for spec in G.REGISTRY for m in spec.trend_metrics]:
        part = trend[(trend["gate"] == gate) & (trend["metric"] == metric)]
        if part.empty and not failed:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        for task, rows in part.groupby("task"):
            for _, run_rows in rows.groupby("run", dropna=False):
                xs = [x_of[c] for c in run_rows["checkpoint"]]
                ax.plot(xs, run_rows["value"], marker="o", ls="-" if by_step else "none", label=task,
                        color=TASK_COLORS.get(task, "black"))
        limits = sorted({v for v in part["limit"].dropna()}) if "limit" in part else []
        for limit in limits:
            ax.axhline(limit, ls="--", c="crimson", lw=1, label=f"pass mark {fmt(limit)}")
        for checkpoint in failed:
            ax.axvline(x_of[checkpoint], c="grey", ls=":", lw=2, label="P0.1 failed (no gates run)")
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        if handles:  # beside the plot, never over a point
            ax.legend(handles.values(), handles.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.set_ylim(*_ylim(part["value"].tolist(), limits, metric))
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
    rows = [{"checkpoint": c, "step": s, "verdicts": [verdicts.at[c, g] if g in verdicts else "" for g in columns]}
            for c, s in zip(order["checkpoint"], order["step"])]
    numbers = trend[trend["metric"] != "verdict"].assign(
        column=lambda f: f["gate"] + " " + f["task"] + " " + f["metric"])
    wide = numbers.pivot_table(index="checkpoint", columns="column", values="value", aggfunc="first")
    wide = wide.reindex([c for c in order["checkpoint"] if c in wide.index])
    return render("trend.html.j2", rows=rows, columns=columns, plots=trend_plots(trend),
                  metrics={"columns": list(wide.columns), "rows": [(c, [fmt(v) for v in r]) for c, r in
                                                                   zip(wide.index, wide.to_numpy().tolist())]})


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
             "delta_text": fmt(m["delta"])} for m in diff["metrics"]]
    return render("diff.html.j2", diff=diff, rows=rows, media=media or {})
