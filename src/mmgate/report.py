"""The gate report of one checkpoint (gates.json, gates.parquet, report.html): its inputs, tables and provenance.

The report reads exactly the files its rule declares (never a glob of `results/`), and checks
that every table holds the current golden set's samples, so a stale shard cannot enter a verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import gates as G
from .checkpoints import checkpoint_step
from .errors import MMGateError
from .golden import generation_subset
from .io import read_parquet
from .stages import TABLES, summary_path
from .tasks import MODES, TASKS, WRITE_TASKS
from .training import read_training_log

class StaleResultError(MMGateError):
    """A stage table does not hold exactly the current golden set's samples."""


# ------------------------------------------------------------------------------------ report inputs

def input_key(stage: str, task: str, mode: str | None = None) -> str:
    """Name of one report input, e.g. `generate_t2a_free` (a Python identifier, as Snakemake wants)."""
    return "_".join(p for p in (stage, task, mode) if p)


# Config sections that say which checkpoints to verify and how to cut the work into jobs, not what a
# verdict means: left out of the report's params (and its config hash), so adding a checkpoint to an
# explicit `checkpoints:` list or changing `sharding.shards_per_job` reruns no earlier report. A
# setting that changes a verdict's data (samples_per_shard) changes the report's input files instead.
RUN_LAYOUT_KEYS = ("checkpoints", "checkpoint_glob", "sharding", "demo")


def verdict_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config a checkpoint's report depends on: `config` without RUN_LAYOUT_KEYS.

    >>> verdict_config({"checkpoints": {"a": "runs/a"}, "sharding": {"shards_per_job": 4}, "gates": {"min_n": 30}})
    {'gates': {'min_n': 30}}
    """
    return {key: value for key, value in config.items() if key not in RUN_LAYOUT_KEYS}


def report_inputs(ckpt: str, shards: Mapping[str, Sequence[str]], p01_passed: bool = True,
                  generation_shards: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Every file the report of one checkpoint reads, by input name; `shards[task]`: the task's shard
    ids, `generation_shards[task]` those of its generation subset (default: the same).

    A checkpoint that failed P0.1 gets a report from its token-space check alone (no GPU work runs).
    """
    inputs = {"check": [f"results/token_space/ckpt={ckpt}/check.parquet"]}
    if not p01_passed:
        return inputs
    for task in WRITE_TASKS:
        parts = list((shards if generation_shards is None else generation_shards).get(task, []))
        if not parts:
            continue
        for mode in MODES:
            inputs[input_key("generate", task, mode)] = [
                f"results/generate/ckpt={ckpt}/task={task}/mode={mode}/part-{s}.parquet" for s in parts]
        inputs[input_key("decode", task)] = [f"results/decode/ckpt={ckpt}/task={task}/part-{s}.parquet" for s in parts]
        inputs[input_key("fingerprint", task)] = [summary_path("fingerprint", ckpt, task)]
        inputs[input_key("collapse", task)] = [summary_path("collapse", ckpt, task)]
    for task in TASKS:
        parts = list(shards.get(task, []))
        if not parts:
            continue
        inputs[input_key("ablate", task)] = [f"results/ablate/ckpt={ckpt}/task={task}/part-{s}.parquet" for s in parts]
        inputs[input_key("summary", task)] = [summary_path("ablate", ckpt, task)]
    return inputs


def _read_all(paths: Sequence[str]) -> pd.DataFrame:
    return pd.concat([read_parquet(p).assign(_file=str(p)) for p in paths], ignore_index=True)


def _same_samples(frame: pd.DataFrame, expected: set[str], what: str, paths: Sequence[str]) -> None:
    """Raise naming the file when `frame` does not hold each expected sample_id exactly once."""
    ids = frame["sample_id"].astype(str)
    extra = sorted(set(ids) - expected)
    missing = sorted(expected - set(ids))
    duplicated = sorted(set(ids[ids.duplicated()]))
    if not (extra or missing or duplicated):
        return
    if extra:
        stale = sorted(set(frame.loc[ids.isin(extra), "_file"])) if "_file" in frame else list(paths)
        problem = f"{len(extra)} sample(s) not in the current golden set (e.g. {extra[:3]}), from {stale}"
    elif duplicated:
        problem = f"{len(duplicated)} sample(s) appear twice (e.g. {duplicated[:3]})"
    else:
        problem = f"{len(missing)} golden sample(s) missing (e.g. {missing[:3]})"
    files = "\n  ".join(map(str, paths))
    raise StaleResultError(
        f"{what}: {problem}. The file(s) were made for another golden set, so a verdict from them would be wrong:\n  "
        f"{files}\nDelete them and rerun snakemake: it remakes them for the current golden set.")


def load_tables(inputs: Mapping[str, Sequence[str]], golden: pd.DataFrame | None = None,
                training_log: str | Path | None = None,
                samples_per_task: int | None = None,
                training_log_columns: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The stage tables of one checkpoint from exactly the report rule's declared inputs.

    Returns (tables, evidence): `tables[stage][task]` as the gates read them, `evidence[stage]`
    the files each stage's verdict rests on. With `golden`, every table must hold exactly the
    golden set's samples of its task (else StaleResultError naming the file): generation tables those
    of its generation subset (`samples_per_task`, see golden.generation_subset).
    """
    ids = {t: set(golden.loc[golden["task"] == t, "sample_id"].astype(str)) for t in TASKS} if golden is not None else None
    generated_ids = ({t: set(generation_subset(golden[golden["task"] == t], samples_per_task)["sample_id"].astype(str))
                      for t in WRITE_TASKS} if golden is not None else None)
    tables: dict[str, Any] = {name: {} for name in TABLES}
    evidence: dict[str, list[str]] = {name: [] for name in tables}
    tables["golden_n"] = {t: len(v) for t, v in ids.items()} if ids is not None else {}
    tables["generation_n"] = {t: len(v) for t, v in generated_ids.items()} if generated_ids is not None else {}
    if golden is not None:  # what each output was asked for, for the report's media
        tables["prompts"] = golden[[c for c in ("sample_id", "task", "prompt", "caption") if c in golden]].copy()
    check = [str(p) for p in inputs.get("check", [])]
    if check:
        tables["check"][G.ALL] = _read_all(check)
        evidence["check"] = check
    for task in WRITE_TASKS:
        modes = {mode: inputs.get(input_key("generate", task, mode)) for mode in MODES}
        frames = []
        for mode, paths in modes.items():
            if paths:
                part = _read_all(paths).assign(mode=mode, task=task)  # hive keys live in the path, not the file
                if generated_ids is not None:
                    _same_samples(part, generated_ids[task], f"generate {task}/{mode}", paths)
                frames.append(part)
                evidence["generate"] += list(map(str, paths))
        if frames:
            tables["generate"][task] = pd.concat(frames, ignore_index=True)
        paths = inputs.get(input_key("decode", task))
        if paths:
            decoded = _read_all(paths)
            decoded["file_path"] = [str(Path(f).parent / x) if isinstance(x, str) else None
                                    for f, x in zip(decoded["_file"], decoded["file"])]
            if generated_ids is not None:
                _same_samples(decoded, generated_ids[task], f"decode {task}", paths)
            tables["decode"][task] = decoded
            evidence["decode"] += list(map(str, paths))
        for stage in ("fingerprint", "collapse"):
            paths = inputs.get(input_key(stage, task))
            if paths:
                frame = _read_all(paths)
                if generated_ids is not None and stage == "fingerprint":
                    _same_samples(frame, generated_ids[task], f"fingerprint {task}", paths)
                if generated_ids is not None and stage == "collapse" and int(frame["n"].iloc[0]) != len(generated_ids[task]):
                    raise StaleResultError(f"{paths[0]}: summarises {int(frame['n'].iloc[0])} outputs but generation uses "
                                           f"{len(generated_ids[task])} {task} samples of the golden set. Delete it and "
                                           "rerun snakemake.")
                tables[stage][task] = frame
                evidence[stage] += list(map(str, paths))
    for task in TASKS:
        paths = inputs.get(input_key("ablate", task))
        if paths:
            rows = _read_all(paths)
            if ids is not None:
                for condition, part in rows.groupby("condition"):
                    _same_samples(part, ids[task], f"ablate {task}/{condition}", paths)
            tables["ablate_rows"][task] = rows
        paths = inputs.get(input_key("summary", task))
        if paths:
            summary = _read_all(paths)
            if "ablate_rows" in tables and task in tables["ablate_rows"]:
                wide = tables["ablate_rows"][task].pivot(index="sample_id", columns="condition", values="loss")
                scored = int(np.isfinite(wide).all(axis=1).sum())
                if int(summary["n"].iloc[0]) != scored:
                    raise StaleResultError(f"{paths[0]}: N={int(summary['n'].iloc[0])} but its {len(wide)} ablation rows give "
                                           f"{scored} scored samples: it was summarised from other shards. Delete it and "
                                           "rerun snakemake.")
            tables["ablate"][task] = summary
            evidence["ablate"] += list(map(str, paths))
    if training_log is not None:
        log = read_training_log(training_log, training_log_columns)  # mmgate's names <- the run's
        tables["training"][G.ALL] = log
        evidence["training"] = [str(training_log)]
    return tables, evidence


def build(inputs: Mapping[str, Sequence[str]], thresholds: G.Thresholds, golden: pd.DataFrame | None = None,
          training_log: str | Path | None = None, provenance: Mapping[str, Any] | None = None,
          checkpoint: str = "", samples_per_task: int | None = None,
          training_log_columns: Mapping[str, str] | None = None, partial: bool = False) -> dict[str, Any]:
    """Verdicts of one checkpoint: the gates.json content, plus the tables and Gate objects for the HTML.
    A stage table missing for a task of the golden set is an error (gates.MissingTable); `partial`:
    the inputs are deliberately a part of a checkpoint's (tests of one stage), and such gates SKIP."""
    tables, evidence = load_tables(inputs, golden, training_log, samples_per_task, training_log_columns)
    gates = G.evaluate(tables, thresholds, evidence=evidence, require_tables=not partial)
    provenance = dict(provenance or {})
    step = provenance.get("step", checkpoint_step(checkpoint))
    return {"checkpoint": checkpoint, "step": step, "overall": G.overall(gates), "overall_note": G.overall_note(gates),
            "assessment": G.assessment(gates), "gates": [g.as_dict() for g in gates], "provenance": provenance,
            "sample_sizes": {"generation": tables["generation_n"], "ablation": tables["golden_n"]}, "tables": tables,
            "gate_objects": gates}


def _git_commit(directory: Path) -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def report_provenance(ckpt: str, ckpt_dir: str | Path, config: Mapping[str, Any], space: Any, golden_path: str | Path,
                      golden: pd.DataFrame) -> dict[str, Any]:
    """Where a verdict comes from: checkpoint, step, time, mmgate version and commit, config, token space, golden set."""
    import datetime
    from importlib import metadata

    from .checkpoints import trainer_step
    from .decoders import weights_origin
    from .io import config_hash
    from .tokenspace import sha256_file

    try:
        version = metadata.version("mmgate")
    except metadata.PackageNotFoundError:
        version = None
    decoders = config.get("decoders") or {}
    samples_per_task = (config.get("generation") or {}).get("samples_per_task")
    return {
        "checkpoint": ckpt, "checkpoint_dir": str(ckpt_dir), "step": trainer_step(ckpt_dir, ckpt),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mmgate_version": version, "mmgate_commit": _git_commit(Path(__file__).resolve().parent),
        "config_hash": config_hash(config), "token_space_sha256": space.sha256,
        "golden_set": str(golden_path), "golden_set_sha256": sha256_file(golden_path),
        "golden_n": {t: int(n) for t, n in golden["task"].value_counts().sort_index().items()},
        "generation_n": {t: len(generation_subset(golden[golden["task"] == t], samples_per_task))
                         for t in sorted(set(golden["task"]) & set(WRITE_TASKS))},
        "decoders": {name: d.get("backend") for name, d in decoders.items() if isinstance(d, Mapping)},
        "decoder_weights": {name: weights_origin(d) for name, d in decoders.items() if isinstance(d, Mapping)},
    }


def model_provenance(inputs: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """The model's class and how its logits were computed (mmgate.heads), as the generate and ablate shards
    recorded them; where shards differ (one job fell back to the full forward), every variant with its shards."""
    from .io import read_provenance

    seen: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name, paths in inputs.items():
        if not name.startswith(("generate", "ablate")):
            continue
        for path in paths:
            try:
                model = read_provenance(path).get("model")
            except (OSError, ValueError):
                continue
            if model:
                seen.setdefault(json.dumps(model, sort_keys=True), (model, []))[1].append(str(path))
    if not seen:
        return None
    if len(seen) == 1:
        return next(iter(seen.values()))[0]
    return {**next(iter(seen.values()))[0], "variants": [{**m, "shards": files} for m, files in seen.values()]}


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


# ------------------------------------------------------------------------------------------ summary

def sample_sizes_line(provenance: Mapping[str, Any]) -> str | None:
    """"generated t2a 64, t2i 64; scored a2t 256, ..." from a report's provenance."""
    scored, generated = provenance.get("golden_n") or {}, provenance.get("generation_n")
    if not scored:
        return None
    listing = lambda counts: ", ".join(f"{task} {n}" for task, n in sorted(counts.items()))  # noqa: E731
    return (f"generated {listing(generated)}; " if generated else "") + f"scored {listing(scored)}"
