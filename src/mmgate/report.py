"""The gate report of one checkpoint (gates.json, gates.parquet, report.html) and the trend.

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
from .tasks import MODES, TASKS, WRITE_TASKS

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
        folder = f"results/fingerprint/ckpt={ckpt}/task={task}"
        inputs[input_key("fingerprint", task)] = [f"{folder}/fingerprints.parquet"]
        inputs[input_key("collapse", task)] = [f"{folder}/collapse.parquet"]
    for task in TASKS:
        parts = list(shards.get(task, []))
        if not parts:
            continue
        inputs[input_key("ablate", task)] = [f"results/ablate/ckpt={ckpt}/task={task}/part-{s}.parquet" for s in parts]
        inputs[input_key("summary", task)] = [f"results/ablate/ckpt={ckpt}/task={task}/summary.parquet"]
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
    tables: dict[str, Any] = {name: {} for name in ("check", "generate", "decode", "fingerprint", "collapse", "ablate",
                                                      "ablate_rows", "training")}
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
          training_log_columns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Verdicts of one checkpoint: the gates.json content, plus the tables and Gate objects for the HTML."""
    tables, evidence = load_tables(inputs, golden, training_log, samples_per_task, training_log_columns)
    gates = G.evaluate(tables, thresholds, evidence=evidence)
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


# ---------------------------------------------------------------------------------- training dynamics

WRITE_LOSSES, READ_LOSSES, NORMS = ("t2a_avg", "t2i_avg"), ("a2t_avg", "i2t_avg"), ("head_norm_mean", "emb_norm_mean")
LOG_COLUMNS = ("step",) + WRITE_LOSSES + READ_LOSSES + NORMS  # what report.training_log_columns may map


def map_log_columns(log: pd.DataFrame, columns: Mapping[str, str], path: str | Path) -> pd.DataFrame:
    """`log` with each mmgate name of `columns` holding the column the run logged under its own name."""
    from .errors import ConfigError

    unknown = sorted(set(columns) - set(LOG_COLUMNS))
    if unknown:
        raise ConfigError(f"report.training_log_columns: unknown mmgate name(s) {unknown}; the keys are mmgate's names "
                          f"{list(LOG_COLUMNS)} and each value the name the run logged it under in {path}.")
    missing = {ours: theirs for ours, theirs in columns.items() if theirs not in log}
    if missing:
        named = ", ".join(f"{ours}: {theirs!r}" for ours, theirs in missing.items())
        raise ConfigError(f"{path}: report.training_log_columns maps {named}, but this log has no such column. "
                          f"Its columns: {sorted(map(str, log.columns))}. Set each to one of these, or remove it.")
    # copied, not renamed: two mmgate names may read one logged column, and a mapping replaces a same-named column
    return log.assign(**{ours: log[theirs] for ours, theirs in columns.items()})


def training_log_path(setting: str | None, ckpt_dir: str | Path) -> Path | None:
    """report.training_log for one checkpoint; `{checkpoint_dir}` is its directory, so an HF Trainer
    run's setting is `{checkpoint_dir}/trainer_state.json`.

        >>> training_log_path("{checkpoint_dir}/trainer_state.json", "/runs/a/checkpoint-500").as_posix()
        '/runs/a/checkpoint-500/trainer_state.json'
    """
    return Path(setting.replace("{checkpoint_dir}", str(ckpt_dir))) if setting else None


def read_training_log(path: str | Path, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A training log with a `step` column: CSV, JSONL, or an HF Trainer `trainer_state.json` (`log_history`).

    `columns` (report.training_log_columns) maps mmgate's names to the run's, e.g.
    `{"t2a_avg": "eval_t2a_loss"}`; a mapped column the log lacks is a ConfigError.
    """
    from .errors import ConfigError

    path = Path(path)
    per_record = False
    try:
        if path.suffix == ".json":
            state = json.loads(path.read_text())
            records = state.get("log_history") if isinstance(state, dict) else state
            if not isinstance(records, list):
                raise ConfigError(f"{path}: a JSON training log must be a trainer_state.json with `log_history` or a list of records")
            log, per_record = pd.DataFrame(records), True
        elif path.suffix in (".jsonl", ".ndjson"):
            log = pd.read_json(path, lines=True)
        else:
            log = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the training log ({err}). Set report.training_log to a CSV, JSONL or "
                          "trainer_state.json with a 'step' column.") from err
    log = map_log_columns(log, columns or {}, path)
    if "step" not in log:
        raise ConfigError(f"{path}: a training log needs a 'step' column (found {list(log.columns)}); name the run's "
                          "step column with report.training_log_columns: {step: <its name>}")
    if per_record:  # the Trainer logs train and eval metrics of a step in separate records
        log = log.groupby("step", as_index=False).first()
    return log.sort_values("step").reset_index(drop=True)


def spikes(values: pd.Series, ratio: float, window: int) -> list[int]:
    """Positions where a loss exceeds `ratio` x the median of the `window` finite values before it."""
    finite = values[np.isfinite(values)]
    out = []
    for i in range(1, len(finite)):
        before = finite.iloc[max(0, i - window) : i]
        reference = float(before.median())
        if reference > 0 and finite.iloc[i] > ratio * reference:
            out.append(int(finite.index[i]))
    return out


def training_summary(log: pd.DataFrame, t: G.Thresholds | None = None) -> pd.DataFrame:
    """One row per known metric: first, last, change, NaN count and spike steps."""
    t = t or G.Thresholds()
    rows = []
    for metric in WRITE_LOSSES + READ_LOSSES + NORMS:
        if metric not in log:
            continue
        values = pd.to_numeric(log[metric], errors="coerce")
        finite = values[np.isfinite(values)]
        at = spikes(values, t.spike_ratio, t.spike_window) if metric.endswith("_avg") else []
        rows.append({"metric": metric, "first": float(finite.iloc[0]) if len(finite) else None,
                     "last": float(finite.iloc[-1]) if len(finite) else None,
                     "change": float(finite.iloc[-1] - finite.iloc[0]) if len(finite) else None,
                     "nan_count": int((~np.isfinite(values)).sum()), "spikes": len(at),
                     "spike_steps": [int(log["step"].iloc[i]) for i in at]})
    return pd.DataFrame(rows, columns=["metric", "first", "last", "change", "nan_count", "spikes", "spike_steps"])


def training_dynamics(path: str | Path, t: G.Thresholds | None = None,
                      columns: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the log, one row per metric) from a CSV, JSONL or trainer_state.json training log."""
    log = read_training_log(path, columns)
    return log, training_summary(log, t)


def training_criteria(log: pd.DataFrame, t: G.Thresholds) -> G.Verdict:
    """The checklist's section A: write losses fall, read losses hold, no NaN or spikes, norms move."""
    summary = training_summary(log, t).set_index("metric")
    verdict = G.Verdict({"n": int(len(log))})
    f = G._f
    for metric, row in summary.iterrows():
        verdict.values.update({f"{metric}_first": row["first"], f"{metric}_last": row["last"]})
        if row["first"] is None or row["last"] is None:
            verdict.fail("nan", f"{metric} has no finite value")
            continue
        if metric in WRITE_LOSSES and not row["last"] < row["first"]:
            verdict.fail("write_not_falling", f"write loss {metric} did not fall: {f(row['first'])} -> {f(row['last'])}")
        if metric in READ_LOSSES and row["last"] > row["first"] * (1 + t.read_loss_tolerance):
            verdict.fail("read_regressed", f"read loss {metric} rose {f(row['first'])} -> {f(row['last'])} "
                         f"(+{f(100 * (row['last'] / row['first'] - 1))} %, tolerance {f(100 * t.read_loss_tolerance)} %)")
        if row["nan_count"]:
            verdict.fail("nan", f"{metric} has {row['nan_count']} NaN/inf value(s)")
        if row["spikes"]:
            verdict.warn("spike", f"{metric} spiked above {t.spike_ratio} x its recent median at step(s) {row['spike_steps'][:5]}")
        if metric in NORMS and abs(row["change"]) < t.min_norm_change * abs(row["first"]):
            verdict.warn("norms_frozen", f"{metric} barely moved: {f(row['first'])} -> {f(row['last'])} "
                         f"(< {f(100 * t.min_norm_change)} %)")
    missing = [m for m in WRITE_LOSSES + READ_LOSSES + NORMS if m not in summary.index]
    if len(missing) == len(WRITE_LOSSES + READ_LOSSES + NORMS):
        verdict.verdict = G.SKIP
        verdict.notes.append(f"the training log has none of {list(WRITE_LOSSES + READ_LOSSES + NORMS)}")
    elif missing:
        verdict.notes.append(f"not in the training log: {missing}")
    return verdict


# ------------------------------------------------------------------------------------------ summary

def sample_sizes_line(provenance: Mapping[str, Any]) -> str | None:
    """"generated t2a 64, t2i 64; scored a2t 256, ..." from a report's provenance."""
    scored, generated = provenance.get("golden_n") or {}, provenance.get("generation_n")
    if not scored:
        return None
    listing = lambda counts: ", ".join(f"{task} {n}" for task, n in sorted(counts.items()))  # noqa: E731
    return (f"generated {listing(generated)}; " if generated else "") + f"scored {listing(scored)}"


# --------------------------------------------------------------------------------------------- trend

TREND_COLUMNS = ["checkpoint", "step", "run", "gate", "task", "metric", "value", "ci_low", "ci_high", "limit", "judged",
                 "verdict", "note"]


def trend_rows(gates_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-form metrics of one checkpoint: one row of TREND_COLUMNS per gate, task and metric.

    Every gate has a `verdict` row (value empty), and `overall` one, so a checkpoint whose gates
    have no numbers (a P0.1 failure skips the rest) still shows in the trend. `run`: the folder
    holding the checkpoint, so only checkpoints of one training run are joined by a line;
    `ci_low`/`ci_high`: the metric's 95 % interval as gates.json gives it (`<metric>_ci`: Wilson for
    rates, bootstrap for loss deltas), empty where it has none; `limit`: the pass mark of the
    metric's criterion, from that checkpoint's thresholds, where it applies to the task; `judged`:
    whether the gate judges the metric on that task (trend_judged); `note`: the overall row's
    overall line (what decided it).
    """
    prov = gates_json.get("provenance") or {}
    run = str(Path(prov["checkpoint_dir"]).parent) if prov.get("checkpoint_dir") else None
    base = {"checkpoint": gates_json["checkpoint"], "step": gates_json.get("step"), "run": run}
    rows = [{**base, "gate": "overall", "task": G.ALL, "metric": "verdict", "value": None, "limit": None,
             "verdict": gates_json["overall"], "note": G.overall_line(gates_json)}]
    for gate in gates_json["gates"]:
        rows.append({**base, "gate": gate["gate"], "task": G.ALL, "metric": "verdict", "value": None, "limit": None,
                     "verdict": gate["verdict"]})
        spec = next((s for s in G.REGISTRY if s.id == gate["gate"]), None)
        criteria = {}  # a configured pass mark before a constant one (delta_empty: min_delta_empty, not > 0)
        for criterion in sorted(spec.criteria if spec else (), key=lambda c: isinstance(c.threshold, str)):
            criteria[criterion.metric] = criterion
        for task, values in gate["values"].items():
            if not isinstance(values, dict):
                continue
            for metric, value in values.items():
                if isinstance(value, (bool, int, float, np.integer, np.floating)):
                    criterion = criteria.get(metric)
                    applies = criterion is not None and criterion.applies_to(task)
                    ci = values.get(f"{metric}_ci")
                    low, high = (ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None))
                    rows.append({**base, "gate": gate["gate"], "task": task, "metric": metric, "value": float(value),
                                 "ci_low": None if low is None else float(low), "ci_high": None if high is None else float(high),
                                 "limit": criterion.limit(gate.get("thresholds") or {}) if applies else None,
                                 "judged": trend_judged(gate["gate"], metric, task), "verdict": gate["verdict"]})
    return rows


def trend_judged(gate: str, metric: str, task: str) -> bool:
    """Whether `gate` judges `metric` on `task`, from the gate registry: a metric with criteria where
    one of them applies to the task's modality (P1.3's loop_share: audio only), any other metric on
    the gate's tasks.

        >>> trend_judged("P1.3", "loop_share", "t2a"), trend_judged("P1.3", "loop_share", "t2i")
        (True, False)
    """
    spec = next((s for s in G.REGISTRY if s.id == gate), None)
    if spec is None:
        return True
    if task not in spec.tasks and task not in (G.ALL, G.ACROSS):
        return False
    criteria = [c for c in spec.criteria if c.metric == metric]
    return not criteria or any(c.applies_to(task) for c in criteria)


def build_trend(gate_files: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in sorted(map(str, gate_files)):
        rows += trend_rows(json.loads(Path(path).read_text()))
    frame = pd.DataFrame(rows, columns=TREND_COLUMNS)
    frame["step"] = frame["step"].astype("Int64")
    for column in ("value", "ci_low", "ci_high", "limit"):
        frame[column] = frame[column].astype(float)
    frame["judged"] = frame["judged"].astype("boolean")
    return frame.sort_values(["step", "checkpoint", "gate", "task", "metric"], na_position="first").reset_index(drop=True)
