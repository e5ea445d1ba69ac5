"""Shards the current plan no longer makes, moved out of the datasets a user browses.

After the golden set shrinks (or loses a task, or its shards are cut differently), the shard files
of the earlier plan stay on disk: the verdicts never read them (the report reads exactly its
declared inputs), but `pd.read_parquet("results/generate")` or DuckDB over `results/generate/**`
would count them. At the end of a successful run they move to `results/.stale/<the same path>`, with
a line each, so a browser sees the current plan only and nothing computed is deleted.

    >>> planned = {"generate": {"t2a": {"000"}}, "ablate": {"t2a": {"000"}}, "decode": {"t2a": {"000"}}}
    >>> is_stale("results/generate/ckpt=good/task=t2a/mode=free/part-001.parquet", planned)
    True
    >>> is_stale("results/generate/ckpt=good/task=t2a/mode=free/part-000.parquet", planned)
    False
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Set

from .blocks import Unit

STAGES = ("generate", "ablate", "decode")  # the stages written in shards
STALE = ".stale"


def is_stale(path: str | Path, planned: Mapping[str, Mapping[str, Set[str]]]) -> bool:
    """Whether a shard file belongs to no shard of the plan (`planned[stage][task]`: its shard ids)."""
    unit = Unit.from_output(path)
    return unit.shard not in planned.get(unit.stage, {}).get(unit.task, set())


# folders of per-task summaries, the stage whose plan each follows, and the one file it holds
SUMMARIES = {"fingerprint": ("generate", "fingerprints.parquet"), "collapse": ("generate", "collapse.parquet"),
             "ablation_summary": ("ablate", "summary.parquet")}
SHARD = re.compile(r"part-\d+(\.parquet)?$")  # a shard's parquet, or a decode shard's folder of outputs


def stale_paths(results: str | Path, checkpoints: Iterable[str],
                planned: Mapping[str, Mapping[str, Set[str]]]) -> list[Path]:
    """What the plan no longer makes under `results` for `checkpoints`: the folder of a task it no longer
    holds, each shard file (part-NNN.parquet) of no planned shard, and a file a folder does not hold in
    this layout (a summary from before summaries had folders of their own)."""
    results = Path(results)
    found = []
    for ckpt in checkpoints:
        for stage in (*STAGES, *SUMMARIES):
            folder = results / stage / f"ckpt={ckpt}"
            follows, own = SUMMARIES.get(stage, (stage, None))
            tasks = planned.get(follows, {})
            for task_dir in sorted(folder.glob("task=*")) if folder.is_dir() else []:
                if not tasks.get(task_dir.name.split("=", 1)[1]):
                    found.append(task_dir)
                    continue
                for path in sorted(task_dir.rglob("*")):
                    if path.parent.name.startswith("part-"):
                        continue  # a decode shard's outputs go with their shard
                    if own is not None:
                        found += [path] if path.is_file() and path.name != own else []
                    elif not SHARD.match(path.name) and not path.name.startswith("mode="):
                        found.append(path)  # e.g. results/ablate/.../summary.parquet of the earlier layout
                    elif path.suffix == ".parquet" and is_stale(Path("results") / path.relative_to(results), planned):
                        found.append(path)
    return found


def move_stale(results: str | Path, checkpoints: Iterable[str], planned: Mapping[str, Mapping[str, Set[str]]],
               log=print) -> list[Path]:
    """Move what the plan no longer makes (a decode shard with its folder of outputs) to results/.stale/,
    keeping its path (an older copy there is replaced); returns where each went. A path that cannot
    move is named and left: tidying never fails a run."""
    import shutil

    results = Path(results)
    moved = []
    for path in stale_paths(results, checkpoints, planned):
        sources = [path] if path.is_dir() else [path, path.with_suffix("")]  # a decode shard's media folder
        for source in (s for s in sources if s.exists()):
            target = results / STALE / source.relative_to(results)
            try:
                if target.is_dir():
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
            except OSError as err:
                log(f"mmgate: {source} is not in the current plan but could not be moved to {target} ({err})")
                continue
            moved.append(target)
            log(f"mmgate: {source} is not in the current plan (the golden set, the shard size or the results "
                f"layout changed): moved to {target}")
    return moved
