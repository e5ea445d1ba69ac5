"""Several shards per GPU job: one model load for a block of a checkpoint's shards.

A checkpoint's GPU work is many shards: generate (each write task, free and constrained), ablate
(every task) and decode (each write task). One job per shard loads the model once per shard, which
for a 7B checkpoint on shared storage costs minutes before the first token. With
`sharding.shards_per_job: k`, a `generate_block_NNN` or `ablate_block_NNN` job loads the model
once and runs up to k generation or ablation shards, and a `decode_block_NNN` job builds each
decoder once for up to k decode shards (k = 1: a block per shard, a job per shard). A block holds one
stage only, so that a changed generation setting reruns the generation blocks and not the ablation
ones (and the other way round).

The plan is the same for every checkpoint (it depends on the golden set's rows per task only), so
the workflow defines one rule per block whose outputs are the block's shard files at their usual
paths (mmgate.stages), each written atomically: the report, `mmgate diff` and every
reader see the same files whatever k is, and the DAG holds one job per block, not one per shard.
A block that fails (killed at its time limit, out of memory, preempted) keeps the shards it had
finished: Snakemake removes a failed job's outputs, so each finished shard is also hard-linked
under `results/.kept/` (`KeptShards`), keyed by the job's params, inputs and mmgate's code; the
next attempt with the same key restores them instead of recomputing, and a block that succeeds
drops its entries.

Example:

    >>> from mmgate.blocks import Unit, ablate_units, blocks, generate_units
    >>> [u.label for u in generate_units({"t2a": ["000"]})]
    ['generate t2a/constrained 000', 'generate t2a/free 000']
    >>> units = ablate_units({"t2a": ["000", "001"], "a2t": ["000"]})
    >>> [u.label for u in units]
    ['ablate t2a 000', 'ablate t2a 001', 'ablate a2t 000']
    >>> [len(b) for b in blocks(units, 2)]
    [2, 1]
    >>> units[0].output("step-1000")
    'results/ablate/ckpt=step-1000/task=t2a/part-000.parquet'
    >>> Unit.from_output(units[0].output("step-1000")) == units[0]
    True
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .kept import KeptShards
from .progress import INTERVAL, Progress
from .stages import SHARDED, STAGES
from .tasks import MODES, TASKS, WRITE_TASKS

if TYPE_CHECKING:
    from .ablation import AblationSettings
    from .generation import GenerationSettings
    from .shardjob import ShardJob

# constrained first: the decode block of a checkpoint waits only for those
GENERATION_ORDER = tuple(sorted(MODES, key=lambda mode: mode != "constrained"))


@dataclass(frozen=True)
class Unit:
    """One shard of one stage: a block job runs one or several of them."""

    stage: str  # generate | ablate | decode
    task: str
    shard: str  # "000", as in the file name
    mode: str | None = None  # generate only: free | constrained

    def output(self, ckpt: str) -> str:
        """Its file (mmgate.stages): e.g. results/ablate/ckpt=<ckpt>/task=t2a/part-000.parquet."""
        keys = {"ckpt": ckpt, "task": self.task, "shard": self.shard}
        return STAGES[self.stage].path(**keys, **({"mode": self.mode} if self.mode else {}))

    def media(self, ckpt: str) -> str | None:
        """A decode shard's folder of WAV/PNG files (outside every dataset); None for the other stages."""
        stage = STAGES[self.stage]
        return stage.media_path(ckpt=ckpt, task=self.task, shard=self.shard) if stage.media else None

    @classmethod
    def from_output(cls, path: str | Path) -> "Unit":
        """The unit whose output is `path` (a block job's outputs say what it runs)."""
        for name in SHARDED:
            keys = STAGES[name].parse(path)
            if keys:
                return cls(name, keys["task"], keys["shard"], keys.get("mode"))
        raise ValueError(f"{path}: not a shard output ({' or '.join(STAGES[n].pattern for n in SHARDED)})")

    @property
    def label(self) -> str:
        mode = f"/{self.mode}" if self.mode else ""
        return f"{self.stage} {self.task}{mode} {self.shard}"


def generate_units(generation_shards: Mapping[str, Sequence[str]]) -> list[Unit]:
    """The generation shards of the write tasks, constrained first in each task (decode needs those)."""
    return [Unit("generate", task, shard, mode)
            for task in WRITE_TASKS for mode in GENERATION_ORDER for shard in generation_shards.get(task, [])]


def ablate_units(shards: Mapping[str, Sequence[str]]) -> list[Unit]:
    """The ablation shards of every task."""
    return [Unit("ablate", task, shard) for task in TASKS for shard in shards.get(task, [])]


def decode_units(generation_shards: Mapping[str, Sequence[str]]) -> list[Unit]:
    return [Unit("decode", task, shard) for task in WRITE_TASKS for shard in generation_shards.get(task, [])]


def blocks(units: Sequence[Unit], per_job: int) -> list[tuple[Unit, ...]]:
    """`units` in order, `per_job` to a block (the last may hold fewer)."""
    if per_job < 1:
        raise ValueError(f"shards per job must be at least 1, got {per_job}")
    return [tuple(units[i : i + per_job]) for i in range(0, len(units), per_job)]


def _timing(load_seconds: float, work_seconds: float, shards_in_job: int) -> dict[str, Any]:
    """Recorded with each shard: a block's one load is shared by its shards (the report's per-job view)."""
    return {"load_seconds": round(load_seconds, 3), "work_seconds": round(work_seconds, 3),
            "shards_in_job": shards_in_job}


def _restored(kept: KeptShards | None, unit: Unit, output: Path, log: logging.Logger, media: Path | None = None) -> bool:
    if kept is None:
        return False
    try:
        if not kept.restore(output, media):
            return False
    except OSError as err:  # keeping is a saving, never a reason to fail: compute the shard instead
        log.warning("%s: could not restore it from %s (%s); computing it again", unit.label, kept.root, err)
        return False
    log.info("%s: restored as an earlier attempt of this job finished it (same params, inputs and code; kept in %s)",
             unit.label, kept.root)
    return True


def _keep(kept: KeptShards | None, unit: Unit, output: Path, log: logging.Logger, media: Path | None = None) -> None:
    if kept is None:
        return
    try:
        kept.keep(output, media)
    except OSError as err:
        log.warning("%s: written, but not kept in %s (%s): if a later shard of this block fails, it is computed "
                    "again", unit.label, kept.root, err)


def _release(kept: KeptShards | None, outputs: Iterable[Path], log: logging.Logger) -> None:
    if kept is None:
        return
    try:
        kept.release(outputs)
    except OSError as err:
        log.warning("every shard is written; %s could not drop its entries (%s): delete them by hand", kept.root, err)


def _size(unit: Unit, job: "ShardJob") -> int:
    """What a shard counts in its job's progress: samples (generate, decode), sequences (ablate)."""
    from .ablation import sequences

    return sequences(job) if unit.stage == "ablate" else len(job.rows)


def _progress(work: Sequence[tuple[Any, ...]], log: logging.Logger, interval: float,
              stack: ExitStack) -> dict[str, Progress]:
    """One `Progress` per stage of `work` (a block holds one), over all of its shards, closed by `stack`."""
    meters: dict[str, Progress] = {}
    for stage in dict.fromkeys(unit.stage for unit, *_ in work):
        mine = [(unit, job) for unit, job, *_ in work if unit.stage == stage]
        label = f"{stage} ({len(mine)} shards)" if len(mine) > 1 else mine[0][0].label
        meters[stage] = stack.enter_context(Progress(sum(_size(u, j) for u, j in mine),
                                                     "sequences" if stage == "ablate" else "samples",
                                                     log, label=label, interval=interval))
    return meters


def _working_on(meter: Progress | None, unit: Unit) -> Progress | None:
    if meter is not None and meter.label != unit.label:  # a block's: name the shard it is on
        meter.at = unit.label.split(" ", 1)[1]  # without the stage, which the label names
    return meter


def run_lm_units(work: Sequence[tuple[Unit, "ShardJob", Path]], generation: "GenerationSettings | None",
                 ablation: "AblationSettings | None", log: logging.Logger, progress: bool = True,
                 kept: KeptShards | None = None, progress_interval: float = INTERVAL) -> None:
    """Run generate or ablate shards of one checkpoint with one model load, each written to its path
    (`generation` or `ablation` may be None where no shard of that stage is in `work`). With `kept`, a
    shard an earlier failed attempt finished is restored, not recomputed (no load when all are), and
    each finished shard is kept until the whole block is written. With `progress`, `log` gets the
    block's progress (mmgate.progress) at most every `progress_interval` seconds and when it ends."""
    with ExitStack() as stack:
        meters = _progress(work, log, progress_interval, stack) if progress else {}
        _run_lm_units(work, generation, ablation, log, meters, kept)


def _run_lm_units(work: Sequence[tuple[Unit, "ShardJob", Path]], generation: "GenerationSettings | None",
                  ablation: "AblationSettings | None", log: logging.Logger, meters: Mapping[str, Progress],
                  kept: KeptShards | None) -> None:
    from .ablation import ablate_shard
    from .generation import generate_shard
    from .io import write_parquet

    loaded = None
    load_seconds = 0.0
    for unit, job, output in work:
        meter = _working_on(meters.get(unit.stage), unit)
        if _restored(kept, unit, output, log):
            if meter is not None:
                meter.skip(_size(unit, job))
            continue
        if loaded is None:
            began = time.perf_counter()
            loaded = job.load_model()
            load_seconds = time.perf_counter() - began
            log.info("loaded %s in %.1f s for %d shard(s)", job.ckpt_dir, load_seconds, len(work))
            for each in meters.values():  # the rates count work, not the load
                each.start()
        began = time.perf_counter()
        if unit.stage == "generate":
            frame, meta = generate_shard(job, unit.mode, generation, progress=meter or False, loaded=loaded)
            log.info("%s %s shard %s: %d samples, out-of-range %.2f %%, wrong-slot %d, end emitted %.0f %%",
                     unit.task, unit.mode, unit.shard, len(frame), frame["out_of_range_pct"].mean(),
                     int(frame["wrong_slot"].sum()), 100 * frame["emitted_end"].mean())
        elif unit.stage == "ablate":
            frame, meta = ablate_shard(job, ablation, loaded=loaded, progress=meter)
            means = frame.groupby("condition")["loss"].mean().round(3).to_dict()
            log.info("%s shard %s: %d examples, mean loss %s", unit.task, unit.shard, frame["sample_id"].nunique(), means)
        else:
            raise ValueError(f"{unit.label}: not a language-model shard")
        meta["timing"] = _timing(load_seconds, time.perf_counter() - began, len(work))
        write_parquet(frame, output, meta, STAGES[unit.stage])
        _keep(kept, unit, output, log)
    _release(kept, [output for _, _, output in work], log)


def run_decode_units(work: Sequence[tuple[Unit, "ShardJob", Path, Path]], decoders: Mapping[str, Any], device: str,
                     log: logging.Logger, kept: KeptShards | None = None, progress: bool = True,
                     progress_interval: float = INTERVAL) -> None:
    """Decode shards (unit, job, generated parquet, output parquet), building each decoder once (`kept`,
    `progress`: as in `run_lm_units`, each shard with its folder of decoded files)."""
    with ExitStack() as stack:
        meter = _progress(work, log, progress_interval, stack).get("decode") if progress else None
        _run_decode_units(work, decoders, device, log, kept, meter)


def _run_decode_units(work: Sequence[tuple[Unit, "ShardJob", Path, Path]], decoders: Mapping[str, Any], device: str,
                      log: logging.Logger, kept: KeptShards | None, meter: Progress | None) -> None:
    from .decode import decode_shard
    from .decoders import build_decoder
    from .io import read_parquet, read_provenance, write_parquet

    built: dict[str, Any] = {}
    load_seconds = 0.0
    for unit, job, generated, output in work:
        _working_on(meter, unit)
        media = STAGES["decode"].media_of(output)
        if _restored(kept, unit, output, log, media):
            if meter is not None:
                meter.skip(_size(unit, job))
            continue
        kind = job.modality.kind
        if kind not in built:
            began = time.perf_counter()
            built[kind] = build_decoder(kind, decoders[kind], device)
            load_seconds += time.perf_counter() - began
            if meter is not None and not meter.worked:  # the rate counts decoding, not the first build
                meter.start()
        began = time.perf_counter()
        frame = decode_shard(job, read_parquet(generated), decoders[kind], output, media, device,
                             decoders.get("batch_size", 16), decoder=built[kind], progress=meter)
        log.info("%s shard %s: %d of %d decoded", unit.task, unit.shard, int(frame["ok"].sum()), len(frame))
        for reason, count in frame.loc[~frame["ok"], "reason"].str.split(":").str[0].value_counts().items():
            log.info("  not decoded (%s): %d", reason, count)
        meta = job.provenance("decode", decoder=decoders[kind], generation=read_provenance(generated).get("settings"),
                              timing=_timing(load_seconds, time.perf_counter() - began, len(work)))
        write_parquet(frame, output, meta, STAGES["decode"])
        _keep(kept, unit, output, log, media)
    _release(kept, [output for *_, output in work], log)


def job_timing(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The `timing` each shard parquet recorded: stage, task, shard, load and work seconds, shards in its job."""
    from .io import read_provenance

    rows = []
    for path in paths:
        meta = read_provenance(path)
        timing = meta.get("timing")
        if timing:
            rows.append({"file": str(path), "stage": meta.get("stage"), "task": meta.get("task"),
                         "shard": meta.get("shard"), **timing})
    return rows
