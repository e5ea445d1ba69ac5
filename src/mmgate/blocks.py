"""Several shards per GPU job: one model load for a block of a checkpoint's shards.

A checkpoint's GPU work is many shards: generate (each write task, free and constrained), ablate
(every task) and decode (each write task). One job per shard loads the model once per shard, which
for a 7B checkpoint on shared storage costs minutes before the first token. With
`sharding.shards_per_job: k`, a `generate_block_NNN` or `ablate_block_NNN` job loads the model
once and runs up to k generation or ablation shards, and a `decode_block_NNN` job builds each
decoder once for up to k decode shards. A block holds one stage only, so that a changed generation
setting reruns the generation blocks and not the ablation ones (and the other way round).

The plan is the same for every checkpoint (it depends on the golden set's rows per task only), so
the workflow defines one rule per block whose outputs are the block's shard files at their usual
paths, each written atomically as a one-shard job writes it: the report, `mmgate diff` and every
reader see the same files whatever k is, and the DAG holds one job per block, not one per shard.
The price of a large k is coarser resumability: a block that fails loses the shards it had
finished (Snakemake removes a failed job's outputs).

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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .tasks import MODES, TASKS, WRITE_TASKS

if TYPE_CHECKING:
    from .ablation import AblationSettings
    from .generation import GenerationSettings
    from .shardjob import ShardJob

# constrained first: the decode block of a checkpoint waits only for those
GENERATION_ORDER = tuple(sorted(MODES, key=lambda mode: mode != "constrained"))


@dataclass(frozen=True)
class Unit:
    """One shard of one stage: what a one-shard job runs and a block runs several of."""

    stage: str  # generate | ablate | decode
    task: str
    shard: str  # "000", as in the file name
    mode: str | None = None  # generate only: free | constrained

    @property
    def relpath(self) -> str:
        """Below `results/<stage>/ckpt=<ckpt>/`."""
        mode = f"mode={self.mode}/" if self.mode else ""
        return f"task={self.task}/{mode}part-{self.shard}.parquet"

    def output(self, ckpt: str) -> str:
        return f"results/{self.stage}/ckpt={ckpt}/{self.relpath}"

    @classmethod
    def from_output(cls, path: str | Path) -> "Unit":
        """The unit whose output is `path` (a block job's outputs say what it runs)."""
        found = _OUTPUT.search(Path(path).as_posix())
        if not found:
            raise ValueError(f"{path}: not a shard output (results/<stage>/ckpt=<c>/task=<t>/[mode=<m>/]part-NNN.parquet)")
        return cls(found["stage"], found["task"], found["shard"], found["mode"])

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


_OUTPUT = re.compile(r"results/(?P<stage>generate|ablate|decode)/ckpt=[^/]+/task=(?P<task>\w+)/"
                     r"(?:mode=(?P<mode>\w+)/)?part-(?P<shard>\d+)\.parquet$")


def _timing(load_seconds: float, work_seconds: float, shards_in_job: int) -> dict[str, Any]:
    """Recorded with each shard: a block's one load is shared by its shards (the report's per-job view)."""
    return {"load_seconds": round(load_seconds, 3), "work_seconds": round(work_seconds, 3),
            "shards_in_job": shards_in_job}


def run_lm_units(work: Sequence[tuple[Unit, "ShardJob", Path]], generation: "GenerationSettings | None",
                 ablation: "AblationSettings | None", log: logging.Logger, progress: bool = True) -> None:
    """Run generate or ablate shards of one checkpoint with one model load, each written to its path
    (`generation` or `ablation` may be None where no shard of that stage is in `work`)."""
    from .ablation import ablate_shard
    from .generation import generate_shard
    from .io import write_parquet

    loaded = None
    load_seconds = 0.0
    for unit, job, output in work:
        if loaded is None:
            began = time.perf_counter()
            loaded = job.load_model()
            load_seconds = time.perf_counter() - began
            log.info("loaded %s in %.1f s for %d shard(s)", job.ckpt_dir, load_seconds, len(work))
        began = time.perf_counter()
        if unit.stage == "generate":
            frame, meta = generate_shard(job, unit.mode, generation, progress=progress, loaded=loaded)
            log.info("%s %s shard %s: %d samples, out-of-range %.2f %%, wrong-slot %d, end emitted %.0f %%",
                     unit.task, unit.mode, unit.shard, len(frame), frame["out_of_range_pct"].mean(),
                     int(frame["wrong_slot"].sum()), 100 * frame["emitted_end"].mean())
        elif unit.stage == "ablate":
            frame, meta = ablate_shard(job, ablation, loaded=loaded)
            means = frame.groupby("condition")["loss"].mean().round(3).to_dict()
            log.info("%s shard %s: %d examples, mean loss %s", unit.task, unit.shard, frame["sample_id"].nunique(), means)
        else:
            raise ValueError(f"{unit.label}: not a language-model shard")
        meta["timing"] = _timing(load_seconds, time.perf_counter() - began, len(work))
        write_parquet(frame, output, meta)


def run_decode_units(work: Sequence[tuple[Unit, "ShardJob", Path, Path]], decoders: Mapping[str, Any], device: str,
                     log: logging.Logger) -> None:
    """Decode shards (unit, job, generated parquet, output parquet), building each decoder once."""
    from .decode import decode_shard
    from .decoders import build_decoder
    from .io import read_parquet, read_provenance, write_parquet

    built: dict[str, Any] = {}
    load_seconds = 0.0
    for unit, job, generated, output in work:
        kind = job.modality.kind
        if kind not in built:
            began = time.perf_counter()
            built[kind] = build_decoder(kind, decoders[kind], device)
            load_seconds += time.perf_counter() - began
        began = time.perf_counter()
        frame = decode_shard(job, read_parquet(generated), decoders[kind], output, device,
                             decoders.get("batch_size", 16), decoder=built[kind])
        log.info("%s shard %s: %d of %d decoded", unit.task, unit.shard, int(frame["ok"].sum()), len(frame))
        for reason, count in frame.loc[~frame["ok"], "reason"].str.split(":").str[0].value_counts().items():
            log.info("  not decoded (%s): %d", reason, count)
        meta = job.provenance("decode", decoder=decoders[kind], generation=read_provenance(generated).get("settings"),
                              timing=_timing(load_seconds, time.perf_counter() - began, len(work)))
        write_parquet(frame, output, meta)


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
