"""Gate metrics by training step, and a few outputs, for labs that live in TensorBoard or W&B.

`mmgate export results --tensorboard runs/mmgate` writes one event-file run per training run
(the folder holding its checkpoints), so unrelated runs never share a line: each gate's verdict
(1 PASS, 0.5 WARN, 0 FAIL), its criteria and trend metrics per task, and per write task a few
decoded outputs, problems first, each with its prompt as its caption. `--wandb PROJECT` logs the
same to Weights & Biases. Either package is optional; without it the command says how to install it.

Two promises a plot must keep:

- The x-axis is the training step. A checkpoint whose report has no step is refused (a position
  drawn as a step makes a fake learning curve); with `allow_no_step` it goes to a run of its own,
  `<run>/by-name-order` (W&B: "<run> (by name order)"), where x is its position in name order and
  every point says so. W&B cannot move a logged point, so there a later export's checkpoints
  follow the earlier ones (by name within each export).
- Exporting again never duplicates a point. TensorBoard: each run is one event file that mmgate
  rewrites whole (written aside, then moved in; its older files, named `*.mmgate`, deleted), from
  this export's reports plus those of earlier exports listed in the run's `mmgate-export.json`, so
  exporting one new checkpoint's folder keeps the others. W&B cannot rewrite a run, so each run has a
  fixed id, is resumed, and only checkpoints it has not logged yet are added.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from . import gates as G
from .errors import MMGateError

VERDICT_SCORE = {G.PASS: 1.0, G.WARN: 0.5, G.FAIL: 0.0}
BY_NAME = "by-name-order"  # sub-run of checkpoints without a training step: x is the position in name order
SUFFIX = ".mmgate"  # ending of the event files mmgate writes: a rewrite deletes these and nothing else
MANIFEST = "mmgate-export.json"  # per run folder: the checkpoints its event file holds, with their x
WANDB_LOGGED = "mmgate_logged"  # W&B run config key: [[checkpoint, x], ...] already logged
X_BY_NAME_WANDB = "position, not a training step: by name within one export, later exports after earlier ones"


class ExportUnavailable(MMGateError):
    """The export's package is not installed."""


@dataclass
class Point:
    """One checkpoint on one exported run's x-axis: its training step, or (`by_name`) its position in
    name order, which must never be passed off as a step."""

    report: Mapping[str, Any]
    root: Path
    run: str
    x: int
    by_name: bool

    @property
    def name(self) -> str:
        return str(self.report["checkpoint"])


@dataclass
class Exported:
    """What one export wrote, and the lines the command prints about it (by-name runs, kept or
    skipped checkpoints), so nothing it decided goes unsaid."""

    runs: list[str] = field(default_factory=list)
    written: int = 0
    notes: list[str] = field(default_factory=list)


def has_step(report: Mapping[str, Any]) -> bool:
    return report.get("step") is not None


def without_step(reports: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Reports with no known training step: not exported unless the user allows positions."""
    return [r for r in reports if not has_step(r)]


def refusal_message(refused: Sequence[Mapping[str, Any]]) -> str:
    """Why checkpoints without a step are not exported and the three ways out, naming each one."""
    names = ", ".join(sorted(str(r["checkpoint"]) for r in refused))
    return (f"mmgate: export: not exported, {len(refused)} checkpoint(s) with no known training step: {names}\n"
            "  why: their reports record step None (no trainer_state.json with global_step in the checkpoint folder, "
            "and the name holds no step); plotting them at their place in name order would draw a learning curve that "
            "never happened\n"
            "  fix: put a trainer_state.json (with global_step) in the checkpoint folder, or name it checkpoint-<N>, "
            "then rerun snakemake so its report records the step; or pass --allow-no-step to export them by name order "
            f"in a run of their own, <run>/{BY_NAME}, whose x-axis is labelled a position, not a step")


def run_groups(reports: Sequence[Mapping[str, Any]], roots: Sequence[Path],
               allow_no_step: bool) -> dict[tuple[str, bool], list[tuple[Mapping[str, Any], Path]]]:
    """(training run, by name order) -> its (report, root)s: steps and positions never share a run,
    and a report without a step is left out unless `allow_no_step`."""
    groups: dict[tuple[str, bool], list[tuple[Mapping[str, Any], Path]]] = {}
    for report, root in zip(reports, roots):
        if has_step(report) or allow_no_step:
            groups.setdefault((run_name(report), not has_step(report)), []).append((report, root))
    return groups


def positions(names: Iterable[str], known: Mapping[str, int]) -> dict[str, int]:
    """Name-order positions. `known` positions are kept (W&B cannot move a logged point); new names
    follow the largest, in name order."""
    placed = dict(known)
    start = max(placed.values(), default=-1) + 1
    for offset, name in enumerate(sorted(set(names) - set(placed))):
        placed[name] = start + offset
    return placed


def place(entries: Sequence[tuple[Mapping[str, Any], Path]], run: str, by_name: bool,
          known: Mapping[str, int]) -> list[Point]:
    """Points in x order: the training step, or the name-order position where `by_name`."""
    where = positions((str(r["checkpoint"]) for r, _ in entries), known) if by_name else {}
    points = [Point(r, root, run, where[str(r["checkpoint"])] if by_name else int(r["step"]), by_name)
              for r, root in entries]
    return sorted(points, key=lambda p: (p.x, p.name))


def by_name_note(where: str, points: Sequence[Point]) -> str:
    listed = ", ".join(f"{p.name}={p.x}" for p in points)
    return (f"{where}: {len(points)} checkpoint(s) without a known training step exported by name order; "
            f"x is the position, not a training step ({listed})")


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


def media_of(report: Mapping[str, Any], root: Path, per_task: int) -> Iterator[dict[str, Any]]:
    """Up to `per_task` decoded outputs per write task, those with a problem first (worst first, as the
    HTML report picks them: a reader opens media to see why a gate failed), then the rest by id; each
    with its prompt and problem flags. An output whose decode failed is shown where its file exists."""
    from .compare import read_prompts, stage_tables
    from .media import select_media
    from .tasks import TASK_MODALITY

    tables = stage_tables(report, root)
    prompts = read_prompts(report, root)
    for task, decode in tables["decode"].items():
        asked = prompts[prompts["task"] == task] if prompts is not None and "task" in prompts else prompts
        files = dict(zip(decode["sample_id"].astype(str), decode["file_path"]))
        items = select_media(task, decode, tables["fingerprint"].get(task), tables["generate"].get(task), asked,
                             kind=TASK_MODALITY.get(task, "audio"), max_problems=len(decode), n_random=len(decode))
        on_disk = [i for i in items if isinstance(files.get(i["sample_id"]), str) and Path(files[i["sample_id"]]).exists()]
        for item in on_disk[:per_task]:
            yield {"task": task, "sample_id": item["sample_id"], "path": Path(files[item["sample_id"]]),
                   "prompt": str(item["prompt"] or ""), "flags": list(item["flags"]),
                   "problems_in_task": item.get("problems_in_task", 0) if item["flags"] else 0}


def caption(item: Mapping[str, Any]) -> str:
    """The prompt, then the output's problems: what a reader needs beside a clip or image."""
    text = item["prompt"] or "(no prompt recorded)"
    return f"{text} [problem: {'; '.join(item['flags'])}]" if item["flags"] else text


def checkpoint_text(point: Point, media: Sequence[Mapping[str, Any]]) -> str:
    """The per-point note: verdict, what x means for a by-name point, and the outputs shown with
    their problems (a TensorBoard description is per tag, so per-step problems are said here)."""
    lines = [f"{point.name}: {G.overall_line(point.report)}"]
    if point.by_name:
        lines.append(f"x = {point.x}: position {point.x} in name order, not a training step (no step is known "
                     "for this checkpoint)")
    for task in dict.fromkeys(item["task"] for item in media):
        items = [i for i in media if i["task"] == task]
        problems = max(i["problems_in_task"] for i in items)
        shown = "; ".join(f"{i['sample_id']}: {', '.join(i['flags']) or 'no problem found'}" for i in items)
        lines.append(f"{task}: {problems} output(s) with a problem; shown, problems first: {shown}")
    return "\n\n".join(lines)


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch's writer needs the tensorboard package
        raise ExportUnavailable("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter


def media_summary(item: Mapping[str, Any]) -> Any:
    """A clip or image summary whose description is the prompt: TensorBoard keeps one description
    per tag, and a tag is one golden sample, so its prompt is the caption at every step."""
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import summary

    tag = f"{item['task']}/{item['sample_id']}"
    if item["path"].suffix == ".wav":
        from .fingerprint import read_wav

        audio, rate = read_wav(item["path"])  # [C, S]
        proto, plugin = summary.audio(tag, audio.mean(axis=0), sample_rate=rate), "audio"
    else:
        pixels = np.asarray(Image.open(item["path"]).convert("RGB"))
        proto, plugin = summary.image(tag, pixels, dataformats="HWC"), "images"
    proto.value[0].metadata.summary_description = item["prompt"] or "(no prompt recorded)"
    proto.value[0].metadata.plugin_data.plugin_name = plugin
    return proto


def write_point(writer: Any, point: Point, media_per_task: int) -> None:
    """One checkpoint's scalars, note and media at its x."""
    for tag, value in scalars(point.report):
        writer.add_scalar(tag, value, point.x)
    media = list(media_of(point.report, point.root, media_per_task))
    writer.add_text("checkpoint", checkpoint_text(point, media), point.x)
    for item in media:
        writer.file_writer.add_summary(media_summary(item), point.x)


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Checkpoint -> {"report": gates.json path, "x": int} of the run's current event file ({} without one)."""
    try:
        entries = json.loads((folder / MANIFEST).read_text())["checkpoints"]
        return {str(e["name"]): e for e in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def earlier_entries(folder: Path, current: Sequence[tuple[Mapping[str, Any], Path]], by_name: bool,
                    notes: list[str]) -> list[tuple[Mapping[str, Any], Path]]:
    """The run's checkpoints from earlier exports that this one does not name, re-read from their
    reports, so exporting one new checkpoint's folder keeps the others' points."""
    from .compare import workflow_root

    named = {str(r["checkpoint"]) for r, _ in current}
    kept = []
    for name, entry in read_manifest(folder).items():
        if name in named:
            continue
        path = Path(str(entry.get("report")))
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            notes.append(f"{folder}: dropped {name} (exported before): its report {path} cannot be read now "
                         f"({type(err).__name__}); export its results again to bring it back")
            continue
        if has_step(report) == by_name:  # it has gained (or lost) a step since: it belongs to the other run
            continue
        kept.append(({**report, "_path": path}, workflow_root(path)))
    return kept


def write_manifest(folder: Path, points: Sequence[Point]) -> None:
    entries = [{"name": p.name, "x": p.x, "report": str(Path(str(p.report.get("_path", ""))).resolve())
                if p.report.get("_path") else None} for p in points]
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"checkpoints": entries}, indent=1))
    os.replace(tmp, folder / MANIFEST)


def rewrite_run(folder: Path, points: Sequence[Point], media_per_task: int) -> None:
    """Replace the run's event file whole: written in a hidden folder, moved in, then the run's older
    mmgate files deleted, so a reader never sees half a run and no point is ever written twice."""
    SummaryWriter = _summary_writer()
    folder.mkdir(parents=True, exist_ok=True)
    old = [f for f in folder.glob("*tfevents*") if f.name.endswith(SUFFIX)]
    aside = Path(tempfile.mkdtemp(prefix=".mmgate-export-", dir=folder))
    try:
        writer = SummaryWriter(str(aside), filename_suffix=SUFFIX)
        for point in points:
            write_point(writer, point, media_per_task)
        writer.close()
        [new] = aside.glob("*tfevents*")
        os.replace(new, folder / new.name)
        for file in old:
            if file.name != new.name:
                file.unlink(missing_ok=True)
        write_manifest(folder, points)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def foreign_note(folder: Path) -> str | None:
    """Event files in a run folder that this mmgate did not write: an export before this version wrote
    them without the suffix, and their points would show beside the new ones."""
    others = sorted(f.name for f in folder.glob("*tfevents*") if not f.name.endswith(SUFFIX))
    if not others:
        return None
    return (f"{folder}: also holds {len(others)} event file(s) mmgate did not write this way (e.g. {others[0]}); "
            "TensorBoard shows their points beside these. If an earlier `mmgate export` wrote them, delete them")


def export_tensorboard(reports: Sequence[Mapping[str, Any]], roots: Sequence[Path], logdir: str | Path,
                       media_per_task: int = 2, allow_no_step: bool = False) -> Exported:
    """One event file per run under `logdir/<run>/` (by-name checkpoints: `<run>/by-name-order/`),
    rewritten whole on every export, so exporting again never duplicates a point."""
    _summary_writer()  # say what to install before anything is read
    out = Exported()
    for (run, by_name), current in run_groups(reports, roots, allow_no_step).items():
        folder = Path(logdir) / run / BY_NAME if by_name else Path(logdir) / run
        entries = list(current) + earlier_entries(folder, current, by_name, out.notes)
        points = place(entries, run, by_name, {})  # rewritten whole: positions are plain name order
        rewrite_run(folder, points, media_per_task)
        out.runs.append(str(folder))
        out.written += len(current)
        if by_name:
            out.notes.append(by_name_note(str(folder), points))
        if len(entries) > len(current):
            out.notes.append(f"{folder}: kept {len(entries) - len(current)} checkpoint(s) exported before "
                             "(each point once)")
        out.notes += [n for n in [foreign_note(folder)] if n]
    return out


def _wandb() -> Any:
    try:
        import wandb
    except ImportError as err:
        raise ExportUnavailable("--wandb needs the wandb package: pip install wandb (and `wandb login`, or "
                                "WANDB_MODE=offline)") from err
    return wandb


def wandb_run_id(name: str) -> str:
    """A fixed id per run name, so a second export resumes the run instead of starting a twin."""
    return "mmgate-" + hashlib.sha1(name.encode()).hexdigest()[:16]


def wandb_row(wandb: Any, point: Point, media_per_task: int) -> dict[str, Any]:
    """One checkpoint's values for `run.log`: scalars, its name, and media captioned with the prompt."""
    row: dict[str, Any] = dict(scalars(point.report))
    row["checkpoint_name"] = point.name
    for item in media_of(point.report, point.root, media_per_task):
        make = wandb.Audio if item["path"].suffix == ".wav" else wandb.Image
        row[f"{item['task']}/{item['sample_id']}"] = make(str(item["path"]), caption=caption(item))
    return row


def new_points(current: Sequence[tuple[Mapping[str, Any], Path]], run: str, by_name: bool,
               logged: Mapping[str, int], label: str, notes: list[str]) -> list[Point]:
    """The checkpoints the W&B run has not logged yet. W&B takes a run's steps in increasing order only,
    so a new checkpoint at or before the last logged step cannot be added; it is named, not dropped silently."""
    fresh = [(r, root) for r, root in current if str(r["checkpoint"]) not in logged]
    if len(fresh) < len(current):
        notes.append(f"W&B run {label}: {len(current) - len(fresh)} checkpoint(s) already logged, left as they are")
    last = max(logged.values(), default=-1)
    points = place(fresh, run, by_name, logged)
    for p in points:
        if p.x <= last:
            notes.append(f"W&B run {label}: {p.name} (step {p.x}) not logged: the run already has step {last} and W&B "
                         "takes steps in increasing order only; export into a new project to have every step in order")
    return [p for p in points if p.x > last]


def export_wandb(reports: Sequence[Mapping[str, Any]], roots: Sequence[Path], project: str,
                 media_per_task: int = 2, allow_no_step: bool = False) -> Exported:
    """One W&B run per training run (by-name checkpoints: "<run> (by name order)"), resumed by a fixed
    id on every export, logging only checkpoints it has not logged, so points are never duplicated."""
    wandb = _wandb()
    out = Exported()
    for (run_label, by_name), current in run_groups(reports, roots, allow_no_step).items():
        name = f"{run_label} (by name order)" if by_name else run_label
        run = wandb.init(project=project, name=name, id=wandb_run_id(name), resume="allow", job_type="mmgate",
                         reinit=True)
        logged = {str(n): int(x) for n, x in (run.config.get(WANDB_LOGGED) or [])}
        points = new_points(current, run_label, by_name, logged, name, out.notes)
        for point in points:
            run.log(wandb_row(wandb, point, media_per_task), step=point.x)
        logged.update({p.name: p.x for p in points})
        run.config.update({WANDB_LOGGED: sorted(([n, x] for n, x in logged.items()), key=lambda e: (e[1], e[0])),
                           "x_axis": X_BY_NAME_WANDB if by_name else "training step"},
                          allow_val_change=True)
        run.finish()
        out.runs.append(name)
        out.written += len(points)
        if by_name and points:
            out.notes.append(by_name_note(f"W&B run {name}", points))
    return out
