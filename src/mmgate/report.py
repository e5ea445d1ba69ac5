"""The gate report of one checkpoint (gates.json, gates.parquet, report.html): its verdicts, provenance
and length audit.

Its tables come from `mmgate.tables` (exactly the report rule's inputs, checked against the golden
set), its gates from `mmgate.gates`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import gates as G
from .checkpoints import checkpoint_step
from .golden import generation_subset
from .tables import load_tables
from .tasks import WRITE_TASKS

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
