"""Gate metrics by training step, and a few outputs, for labs that live in TensorBoard or W&B.

`mmgate export results --tensorboard runs/mmgate` writes one event-file run per training run
(the folder holding its checkpoints), so unrelated runs never share a line: each gate's verdict
(1 PASS, 0.5 WARN, 0 FAIL), its criteria and trend metrics per task, and per write task a few
decoded outputs with their prompts. `--wandb PROJECT` logs the same to Weights & Biases. Either
package is optional; without it the command says how to install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from . import gates as G
from .errors import MMGateError

VERDICT_SCORE = {G.PASS: 1.0, G.WARN: 0.5, G.FAIL: 0.0}


class ExportUnavailable(MMGateError):
    """The export's package is not installed."""


def run_name(report: Mapping[str, Any]) -> str:
    """The training run a checkpoint belongs to: its parent folder's name ("unknown" without one)."""
    folder = (report.get("provenance") or {}).get("checkpoint_dir")
    return Path(folder).parent.name or "unknown" if folder else "unknown"


def scalars(report: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """(tag, value) of one report: `verdict/<gate>`, `verdict/overall_valid` and `<gate>/<task>/<metric>`."""
    yield "verdict/overall_valid", float(report.get("overall") in (G.VALID, G.READY))
    for gate in report["gates"]:
        if gate["verdict"] in VERDICT_SCORE:
            yield f"verdict/{gate['gate']}", VERDICT_SCORE[gate["verdict"]]
        spec = next((s for s in G.REGISTRY if s.id == gate["gate"]), None)
        wanted = {c.metric for c in spec.criteria} | set(spec.trend_metrics) if spec else set()
        for task, values in (gate.get("values") or {}).items():
            if not isinstance(values, Mapping):
                continue
            for metric in sorted(wanted & set(values)):
                value = values[metric]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    yield f"{gate['gate']}/{task}/{metric}", float(value)


def steps(reports: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each report's training step; where one is unknown, its place in the order (0, 1, ...)."""
    known = all(r.get("step") is not None for r in reports)
    return [int(r["step"]) if known else i for i, r in enumerate(reports)]


def media_of(report: Mapping[str, Any], root: Path, per_task: int) -> Iterator[dict[str, Any]]:
    """The first `per_task` decoded outputs per write task, with their prompts (from the report's evidence)."""
    from .compare import read_prompts, stage_tables

    tables = stage_tables(report, root)
    prompts = read_prompts(report, root)
    for task, decode in tables["decode"].items():
        ok = decode[decode["ok"].astype(bool)].sort_values("sample_id").head(per_task)
        for row in ok.itertuples():
            prompt = ""
            if prompts is not None:
                match = prompts.loc[prompts["sample_id"] == row.sample_id, "prompt"]
                prompt = str(match.iloc[0]) if len(match) else ""
            yield {"task": task, "sample_id": row.sample_id, "path": Path(row.file_path), "prompt": prompt}


def export_tensorboard(reports: Sequence[Mapping[str, Any]], roots: Sequence[Path], logdir: str | Path,
                       media_per_task: int = 2) -> list[Path]:
    """Event files under `logdir/<run>/`; returns the run folders written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch's writer needs the tensorboard package
        raise ExportUnavailable("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    import numpy as np
    from PIL import Image

    writers: dict[str, Any] = {}
    for report, root, step in zip(reports, roots, steps(reports)):
        run = run_name(report)
        if run not in writers:
            writers[run] = SummaryWriter(str(Path(logdir) / run))
        writer = writers[run]
        for tag, value in scalars(report):
            writer.add_scalar(tag, value, step)
        writer.add_text("checkpoint", f"{report['checkpoint']}: {report.get('overall')}", step)
        for item in media_of(report, root, media_per_task):
            tag = f"{item['task']}/{item['sample_id']}"
            if item["path"].suffix == ".wav":
                from .fingerprint import read_wav

                audio, rate = read_wav(item["path"])  # [C, S]
                writer.add_audio(tag, audio.mean(axis=0), step, sample_rate=rate)
            else:
                writer.add_image(tag, np.asarray(Image.open(item["path"]).convert("RGB")), step, dataformats="HWC")
            writer.add_text(f"{tag}/prompt", item["prompt"] or "(no prompt)", step)
    for writer in writers.values():
        writer.close()
    return [Path(logdir) / run for run in writers]


def export_wandb(reports: Sequence[Mapping[str, Any]], roots: Sequence[Path], project: str,
                 media_per_task: int = 2) -> list[str]:
    """One W&B run per training run, metrics by step; returns the run names."""
    try:
        import wandb
    except ImportError as err:
        raise ExportUnavailable("--wandb needs the wandb package: pip install wandb (and `wandb login`, or "
                                "WANDB_MODE=offline)") from err
    by_run: dict[str, list[tuple[Mapping[str, Any], Path, int]]] = {}
    for report, root, step in zip(reports, roots, steps(reports)):
        by_run.setdefault(run_name(report), []).append((report, root, step))
    for name, entries in by_run.items():
        run = wandb.init(project=project, name=name, job_type="mmgate", reinit=True)
        for report, root, step in entries:
            logged: dict[str, Any] = dict(scalars(report))
            for item in media_of(report, root, media_per_task):
                key = f"{item['task']}/{item['sample_id']}"
                logged[key] = (wandb.Audio(str(item["path"]), caption=item["prompt"]) if item["path"].suffix == ".wav"
                               else wandb.Image(str(item["path"]), caption=item["prompt"]))
            run.log(logged, step=step)
        run.finish()
    return list(by_run)
