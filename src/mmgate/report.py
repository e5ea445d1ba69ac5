"""The gate report of one checkpoint (gates.json, gates.parquet, report.html) and the trend.

Everything is read from the parquet the stages wrote under a results root, by hive path, so the
same code serves the `report` rule and `mmgate inspect`.
"""

from __future__ import annotations

import base64
import html
import io as _io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import gates as G
from .checkpoints import checkpoint_step
from .io import read_parquet

WRITE, READ = ("t2a", "t2i"), ("a2t", "i2t")


def _concat(paths: list[Path]) -> pd.DataFrame | None:
    frames = [read_parquet(p).assign(_file=str(p)) for p in sorted(paths)]
    return pd.concat(frames, ignore_index=True) if frames else None


def load_stage_tables(results: str | Path, ckpt: str) -> dict[str, Any]:
    """Every stage table of one checkpoint, keyed by stage and task."""
    root = Path(results)
    check = root / "token_space" / f"ckpt={ckpt}" / "check.parquet"
    tables: dict[str, Any] = {"check": read_parquet(check) if check.exists() else None, "generate": {}, "decode": {},
                              "collapse": {}, "fingerprint": {}, "ablate": {}, "ablate_rows": {}, "evidence": {}}
    for task in WRITE:
        generated = _concat(list((root / "generate" / f"ckpt={ckpt}" / f"task={task}").glob("mode=*/part-*.parquet")))
        if generated is not None:  # partition keys live in the path (hive), not in the files
            generated["mode"] = [Path(f).parent.name.split("=", 1)[1] for f in generated["_file"]]
            generated["task"] = task
            tables["generate"][task] = generated
        decoded = _concat(list((root / "decode" / f"ckpt={ckpt}" / f"task={task}").glob("part-*.parquet")))
        if decoded is not None:
            decoded["file_path"] = [str(Path(f).parent / x) if isinstance(x, str) else None for f, x in zip(decoded["_file"], decoded["file"])]
            tables["decode"][task] = decoded
        folder = root / "fingerprint" / f"ckpt={ckpt}" / f"task={task}"
        if (folder / "collapse.parquet").exists():
            tables["collapse"][task] = read_parquet(folder / "collapse.parquet")
            tables["fingerprint"][task] = read_parquet(folder / "fingerprints.parquet")
    for task in WRITE + READ:
        folder = root / "ablate" / f"ckpt={ckpt}" / f"task={task}"
        if (folder / "summary.parquet").exists():
            tables["ablate"][task] = read_parquet(folder / "summary.parquet")
            tables["ablate_rows"][task] = _concat(list(folder.glob("part-*.parquet")))
    tables["evidence"] = {
        "P0.1": [str(check)],
        "P0.2": [str(root / "generate" / f"ckpt={ckpt}")], "P1.1": [str(root / "generate" / f"ckpt={ckpt}")],
        "P0.3": [str(root / "decode" / f"ckpt={ckpt}")], "P1.3": [str(root / "fingerprint" / f"ckpt={ckpt}")],
        "P0.4": [str(root / "ablate" / f"ckpt={ckpt}" / f"task={t}" / "summary.parquet") for t in WRITE],
        "P1.2": [str(root / "ablate" / f"ckpt={ckpt}" / f"task={t}" / "summary.parquet") for t in READ],
    }
    return tables


def evaluate(tables: Mapping[str, Any], thresholds: G.Thresholds) -> list[G.Gate]:
    gates = [
        G.gate_p01(tables["check"]),
        G.gate_p02(tables["generate"], thresholds),
        G.gate_p03(tables["decode"], thresholds),
        G.gate_p04(tables["ablate"], thresholds),
        G.gate_p11(tables["generate"], thresholds),
        G.gate_p12(tables["ablate"], thresholds),
        G.gate_p13(tables["collapse"], thresholds),
    ]
    for gate in gates:
        gate.evidence = tables["evidence"].get(gate.gate, [])
    return gates


def length_audit(golden: pd.DataFrame, limits: Mapping[str, int]) -> pd.DataFrame:
    """Per task: the expected-length distribution and the share a fixed limit would have truncated."""
    rows = []
    for task, part in golden.groupby("task"):
        lengths = part["expected_len"].to_numpy()
        limit = limits.get(task)
        rows.append({"task": task, "n": len(lengths), "min": int(lengths.min()), "median": float(np.median(lengths)),
                     "p95": float(np.quantile(lengths, 0.95)), "max": int(lengths.max()), "fixed_limit": limit,
                     "truncated_share": float((lengths > limit).mean()) if limit else None})
    return pd.DataFrame(rows)


def training_dynamics(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the log, one row per metric: first, last, change, spikes, NaNs) from a CSV or JSONL training log."""
    path = Path(path)
    log = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".json") else pd.read_csv(path)
    if "step" not in log:
        from .errors import ConfigError

        raise ConfigError(f"{path}: a training log needs a 'step' column (found {list(log.columns)})")
    log = log.sort_values("step")
    rows = []
    for metric in ("t2a_avg", "t2i_avg", "a2t_avg", "i2t_avg", "head_norm_mean", "emb_norm_mean"):
        if metric not in log:
            continue
        values = pd.to_numeric(log[metric], errors="coerce")
        finite = values[np.isfinite(values)]
        diffs = finite.diff()
        spikes = int((diffs > 3 * diffs.abs().median() + 1e-9).sum()) if metric.endswith("_avg") and len(finite) > 3 else 0
        rows.append({"metric": metric, "first": float(finite.iloc[0]) if len(finite) else None,
                     "last": float(finite.iloc[-1]) if len(finite) else None,
                     "change": float(finite.iloc[-1] - finite.iloc[0]) if len(finite) else None,
                     "nan_count": int((~np.isfinite(values)).sum()), "spikes": spikes})
    return log, pd.DataFrame(rows)


def build(results: str | Path, ckpt: str, thresholds: G.Thresholds) -> dict[str, Any]:
    tables = load_stage_tables(results, ckpt)
    gates = evaluate(tables, thresholds)
    return {"checkpoint": ckpt, "step": checkpoint_step(ckpt), "overall": G.overall(gates),
            "gates": [g.as_dict() for g in gates], "tables": tables, "gate_objects": gates}


# ---------------------------------------------------------------------------------------------- HTML

def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _plots(tables: Mapping[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    rows = {t: f for t, f in tables["ablate_rows"].items() if f is not None}
    if rows:
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3), squeeze=False)
        for ax, (task, frame) in zip(axes[0], rows.items()):
            conditions = list(dict.fromkeys(frame["condition"]))
            ax.boxplot([frame.loc[frame["condition"] == c, "loss"] for c in conditions], showfliers=False)
            ax.set_xticks(range(1, len(conditions) + 1), conditions, rotation=30)
            ax.set_title(f"{task}: loss per condition")
        out["losses"] = _figure_png(fig)
        summary = pd.concat([s.assign(task=t) for t, s in tables["ablate"].items()], ignore_index=True)
        fig, ax = plt.subplots(figsize=(7, 3))
        labels = [f"{r.task}/{r.condition}" for r in summary.itertuples()]
        ax.errorbar(range(len(summary)), summary["win_rate"],
                    yerr=[summary["win_rate"] - summary["win_rate_ci_low"], summary["win_rate_ci_high"] - summary["win_rate"]],
                    fmt="o", capsize=3)
        ax.axhline(0.7, ls="--", c="grey"), ax.axhline(0.8, ls=":", c="grey"), ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(summary)), labels, rotation=40, ha="right"), ax.set_title("win rate of correct (95 % CI)")
        out["win_rates"] = _figure_png(fig)
    if tables["generate"]:
        gen = pd.concat(tables["generate"].values(), ignore_index=True)
        stats = gen.groupby(["task", "mode"]).agg(out_of_range_pct=("out_of_range_pct", "mean"), end_rate=("emitted_end", "mean"))
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        stats["out_of_range_pct"].plot.bar(ax=axes[0], title="out-of-range tokens (%)")
        stats["end_rate"].plot.bar(ax=axes[1], title="end token emitted (share)", ylim=(0, 1))
        out["generation"] = _figure_png(fig)
    prints = {t: f for t, f in tables["fingerprint"].items()}
    if "t2a" in prints and "rms" in prints["t2a"]:
        fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
        for ax, column in zip(axes, ("rms", "mel_variance", "spectral_flatness")):
            ax.hist(prints["t2a"][column].dropna(), bins=30), ax.set_title(f"audio {column}")
        out["audio_fingerprints"] = _figure_png(fig)
    if "t2i" in prints and "mean_r" in prints["t2i"]:
        fig, axes = plt.subplots(1, 2, figsize=(6, 2.6))
        for ax, stat in zip(axes, ("mean", "var")):
            for channel in "rgb":
                ax.hist(prints["t2i"][f"{stat}_{channel}"].dropna(), bins=30, alpha=0.5, color=channel, label=channel)
            ax.set_title(f"image channel {stat}")
        out["image_fingerprints"] = _figure_png(fig)
    return out


def _table(frame: pd.DataFrame | None) -> str:
    if frame is None or len(frame) == 0:
        return "<p><i>none</i></p>"
    return frame.to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0, classes="t", na_rep="")


def _media(tables: Mapping[str, Any], per_task: int = 8) -> str:
    parts = []
    decoded = tables["decode"]
    if "t2a" in decoded:
        ok = decoded["t2a"][decoded["t2a"]["ok"]].sort_values("sample_id").head(per_task)
        clips = []
        for row in ok.itertuples():
            data = base64.b64encode(Path(row.file_path).read_bytes()).decode()
            clips.append(f'<figure><audio controls src="data:audio/wav;base64,{data}"></audio><figcaption>{html.escape(row.sample_id)}</figcaption></figure>')
        parts.append("<h3>Audio (first golden outputs)</h3><div class=grid>" + "".join(clips) + "</div>")
    if "t2i" in decoded:
        ok = decoded["t2i"][decoded["t2i"]["ok"]].sort_values("sample_id").head(2 * per_task)
        images = []
        for row in ok.itertuples():
            data = base64.b64encode(Path(row.file_path).read_bytes()).decode()
            images.append(f'<figure><img class=px src="data:image/png;base64,{data}"><figcaption>{html.escape(row.sample_id)}</figcaption></figure>')
        parts.append("<h3>Images (first golden outputs)</h3><div class=grid>" + "".join(images) + "</div>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table.t{border-collapse:collapse;font-size:13px;margin:.5em 0}table.t td,table.t th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
.PASS{background:#d7f5d7}.FAIL{background:#f8d0d0}.WARN{background:#fbeec1}.SKIP{background:#e6e6e6}
.verdict{font-weight:bold;padding:2px 8px;border-radius:4px}.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figcaption{font-size:11px;color:#555}img.px{width:96px;height:96px;image-rendering:pixelated}
pre{background:#f6f6f6;padding:6px;font-size:12px;white-space:pre-wrap}"""


def render_html(report: Mapping[str, Any], audit: pd.DataFrame | None = None,
                dynamics: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> str:
    tables = report["tables"]
    plots = _plots(tables)
    rows = "".join(
        f"<tr><td>{g['gate']}</td><td>{html.escape(g['question'])}</td><td><span class='verdict {g['verdict']}'>{g['verdict']}</span></td>"
        f"<td>{html.escape(g['detail'] or '')}</td><td>{html.escape(g['fix'] or '')}</td></tr>" for g in report["gates"])
    sections = []
    for g in report["gates"]:
        body = f"<pre>{html.escape(json.dumps(g['values'], indent=1, default=str))}</pre>"
        body += f"<p>thresholds: <code>{html.escape(json.dumps(g['thresholds'], default=str))}</code></p>"
        body += "<p>evidence: " + ", ".join(f"<code>{html.escape(e)}</code>" for e in g["evidence"]) + "</p>"
        extra = {"P0.2": ["generation"], "P1.1": [], "P0.4": ["losses", "win_rates"], "P1.2": [],
                 "P1.3": ["audio_fingerprints", "image_fingerprints"]}.get(g["gate"], [])
        body += "".join(plots.get(name, "") for name in extra)
        if g["gate"] == "P1.3":
            for task, frame in tables["fingerprint"].items():
                dupes = frame[frame["near_duplicate"] | frame["duplicate_of"].notna()]
                body += f"<h4>{task}: collapse findings ({len(dupes)} samples with a duplicate)</h4>" + _table(
                    dupes[["sample_id", "duplicate_of", "near_duplicate"]].head(20))
        if g["gate"] == "P0.3":
            body += _media(tables)
        sections.append(f"<h2 id='{g['gate']}'>{g['gate']} <span class='verdict {g['verdict']}'>{g['verdict']}</span> "
                        f"{html.escape(g['question'])}</h2>{body}")
    if audit is not None:
        sections.append("<h2>Length audit</h2><p>Expected lengths from the golden meta, and the share of samples a fixed "
                        "generation limit would have truncated.</p>" + _table(audit))
    if dynamics is not None:
        import matplotlib.pyplot as plt

        log, summary = dynamics
        metrics = [m for m in summary["metric"]]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        for m in metrics:
            (axes[1] if "norm" in m else axes[0]).plot(log["step"], log[m], label=m)
        axes[0].set_title("task losses"), axes[1].set_title("norms"), axes[0].legend(), axes[1].legend()
        sections.append("<h2>Training dynamics</h2>" + _table(summary) + _figure_png(fig))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>mmgate {html.escape(report['checkpoint'])}</title>"
            f"<style>{CSS}</style></head><body><h1>mmgate gate report: {html.escape(report['checkpoint'])}</h1>"
            f"<p>Overall: <b>{html.escape(report['overall'])}</b> (valid trial: every P0 gate passes; ready to promote: "
            f"every P1 gate too)</p><table class=t><tr><th>gate</th><th>question</th><th>verdict</th><th>detail</th>"
            f"<th>fix</th></tr>{rows}</table>{''.join(sections)}</body></html>")


# --------------------------------------------------------------------------------------------- trend

def trend_rows(gates_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-form metrics of one checkpoint: (checkpoint, step, gate, task, metric, value, verdict)."""
    rows = []
    for gate in gates_json["gates"]:
        for task, values in gate["values"].items():
            if not isinstance(values, dict):
                continue
            for metric, value in values.items():
                if isinstance(value, (bool, int, float, np.integer, np.floating)):
                    rows.append({"checkpoint": gates_json["checkpoint"], "step": gates_json.get("step"), "gate": gate["gate"],
                                 "task": task, "metric": metric, "value": float(value), "verdict": gate["verdict"]})
    return rows


def build_trend(gate_files: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in sorted(map(str, gate_files)):
        rows += trend_rows(json.loads(Path(path).read_text()))
    frame = pd.DataFrame(rows, columns=["checkpoint", "step", "gate", "task", "metric", "value", "verdict"])
    frame["step"] = frame["step"].astype("Int64")
    return frame.sort_values(["step", "checkpoint", "gate", "task", "metric"], na_position="first").reset_index(drop=True)


TREND_METRICS = [("P1.1", "end_rate"), ("P0.2", "free_out_of_range_pct"), ("P0.3", "decode_success_rate"),
                 ("P0.4", "win_rate_shuffled"), ("P0.4", "delta_empty"), ("P0.4", "mean_loss_correct"),
                 ("P1.2", "delta_noise"), ("P1.3", "unique_ratio")]


def render_trend_html(trend: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    order = trend.drop_duplicates("checkpoint")[["checkpoint", "step"]]
    x_labels = order["checkpoint"].tolist()
    for gate, metric in TREND_METRICS:
        part = trend[(trend["gate"] == gate) & (trend["metric"] == metric)]
        if part.empty:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 2.6))
        for task, rows in part.groupby("task"):
            rows = rows.set_index("checkpoint").reindex(x_labels)
            ax.plot(range(len(x_labels)), rows["value"], marker="o", label=task)
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=30), ax.set_title(f"{gate} {metric}"), ax.legend(fontsize=8)
        figures.append(_figure_png(fig))
    verdicts = trend.drop_duplicates(["checkpoint", "gate"]).pivot(index="checkpoint", columns="gate", values="verdict")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>mmgate trend</title><style>{CSS}</style></head><body>"
            f"<h1>mmgate: gates across checkpoints</h1>{_table(verdicts.reindex(x_labels).reset_index())}"
            f"<div class=grid>{''.join(figures)}</div></body></html>")
