"""What the current plan no longer makes, moved out of the datasets a user browses.

After the golden set shrinks (or loses a task, or its shards are cut differently), the files of the
earlier plan stay on disk: the verdicts never read them (the report reads exactly its declared
inputs), but `pd.read_parquet("results/generate")` or DuckDB over `results/generate/**` would count
them. The same holds for files of an earlier results layout. At the end of a successful run every
such file under a catalogued stage's folder (`mmgate.stages`) moves to `results/.stale/<the same
path>`, with a line each, so a browser sees the current plan only and nothing computed is deleted.

The walk follows each stage's path pattern level by level and never descends into a shard's media
folder, so it costs a few directory listings per checkpoint and task, however many outputs there are.

    >>> planned = {"generation": {"t2a": {"000"}}, "golden": {"t2a": {"000"}}}
    >>> is_planned("generate", {"ckpt": "good", "task": "t2a", "mode": "free", "shard": "001"}, planned)
    False
    >>> is_planned("generate", {"ckpt": "good", "task": "t2a", "mode": "free", "shard": "000"}, planned)
    True
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Mapping, Set

from .stages import PAGES, RESULTS, STAGES, Stage, pattern_regex
from .tasks import MODES

STALE = ".stale"
Plan = Mapping[str, Mapping[str, Set[str]]]  # {"generation" | "golden": {task: shard ids}}


def is_planned(stage: str, keys: Mapping[str, str], planned: Plan) -> bool:
    """Whether a file of `stage` with these key values is one the plan makes (its checkpoint is planned)."""
    shards = planned.get(STAGES[stage].samples or "", {}).get(keys.get("task", ""))
    if "task" in keys and not shards:
        return False
    if "mode" in keys and keys["mode"] not in MODES:
        return False
    return "shard" not in keys or keys["shard"] in shards


def _levels(pattern: str) -> list[re.Pattern[str]]:
    """One regex per path component of `pattern` (below its folder), its `{key}`s as named groups."""
    return [re.compile(pattern_regex(part) + "$") for part in pattern.split("/")]


def _walk(folder: Path, levels: list[re.Pattern[str]], keys: dict[str, str], checkpoints: Set[str],
          accept, found: list[Path], kept: list[Path] | None = None) -> None:
    """Collect under `folder` whatever does not fit `levels` or is not `accept`ed: at the last level a
    whole entry (a file, or a media folder), above it a whole folder that no pattern level names;
    and in `kept` the entries that fit."""
    last = len(levels) == 1
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue  # an atomic write in flight, or .stale/.kept themselves
        matched = levels[0].match(entry.name)
        here = {**keys, **matched.groupdict()} if matched else keys
        if matched and "ckpt" in matched.groupdict() and here["ckpt"] not in checkpoints:
            continue  # another config's checkpoint: not this plan's to judge
        if not matched or (not last and not entry.is_dir()):
            found.append(entry)
        elif last:
            if not accept(here):
                found.append(entry)
            elif kept is not None:
                kept.append(entry)
        elif "task" in matched.groupdict() and not accept({"task": here["task"]}):
            found.append(entry)  # a task the plan no longer holds: its whole folder
        else:
            _walk(entry, levels[1:], here, checkpoints, accept, found, kept)


def stale_paths(results: str | Path, checkpoints: Iterable[str], planned: Plan) -> list[Path]:
    """What the plan no longer makes under `results` for `checkpoints`, per catalogued stage: files of
    shards or tasks it no longer holds, and anything a stage's folder holds that its pattern does not
    name (a summary or media folder of an earlier layout). Also any parquet file among the pages."""
    results, checkpoints = Path(results), set(checkpoints)
    found: list[Path] = []
    for stage in STAGES.values():
        folders = [(stage.folder, stage.file)] + ([tuple(stage.media.split("/", 1))] if stage.media else [])
        for folder, pattern in folders:
            if (results / folder).is_dir():
                _walk(results / folder, _levels(pattern), {}, checkpoints, _acceptor(stage, planned), found)
    pages = results / Path(PAGES["gates_json"]).relative_to(RESULTS).parts[0]
    if pages.is_dir():
        found += sorted(p for p in pages.rglob("*.parquet") if not p.name.startswith("."))
    return found


def earlier_schema_files(results: str | Path, checkpoints: Iterable[str], planned: Plan) -> list[tuple[Path, Stage]]:
    """The planned files of each stage under `results` whose schema is not their stage's (written by an
    earlier mmgate: an all-null column typed null, a column it did not write yet)."""
    import pyarrow.parquet as pq

    results, checkpoints = Path(results), set(checkpoints)
    found: list[tuple[Path, Stage]] = []
    for stage in STAGES.values():
        if not (results / stage.folder).is_dir():
            continue
        kept: list[Path] = []
        _walk(results / stage.folder, _levels(stage.file), {}, checkpoints, _acceptor(stage, planned), [], kept)
        found += [(path, stage) for path in kept if not pq.read_schema(path).remove_metadata().equals(stage.schema)]
    return found


def conform_earlier_files(results: str | Path, checkpoints: Iterable[str], planned: Plan, log=print) -> list[Path]:
    """Rewrite each file of an earlier version in its stage's schema (mmgate.stages.conform): the same
    rows, values and metadata, and the same modification time, so that Snakemake reruns nothing. A
    file that cannot be conformed (a column its stage no longer declares) is named and left."""
    import pyarrow.parquet as pq

    from .io import atomic_path
    from .stages import conform

    done = []
    for path, stage in earlier_schema_files(results, checkpoints, planned):
        try:
            table = pq.read_table(path)
            conformed = conform(table.to_pandas(), stage)
            meta = {**(conformed.schema.metadata or {}),
                    **{k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}}  # provenance kept
            conformed = conformed.replace_schema_metadata(meta)
            stat = path.stat()
            with atomic_path(path) as tmp:
                pq.write_table(conformed, tmp)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        except (OSError, ValueError) as err:  # pyarrow's errors are ValueErrors too
            log(f"mmgate: {path} was written by an earlier mmgate and could not be given its stage's schema ({err}); "
                "readers of its folder may see other column types there. Delete it to have it remade.")
            continue
        done.append(path)
    if done:
        log(f"mmgate: {len(done)} file(s) written by an earlier mmgate now have their stage's schema (mmgate.stages; "
            "same rows, values and times), so each folder reads as one table")
    return done


def _acceptor(stage: Stage, planned: Plan):
    if stage.samples is None:  # per checkpoint or across them: nothing the golden set can outdate
        return lambda keys: True
    return lambda keys: is_planned(stage.name, keys, planned)


def move_stale(results: str | Path, checkpoints: Iterable[str], planned: Plan, log=print) -> list[Path]:
    """Move what the plan no longer makes to results/.stale/, keeping its path (an older copy there is
    replaced); returns where each went. A path that cannot move is named and left: tidying never
    fails a run."""
    results = Path(results)
    moved = []
    for source in stale_paths(results, checkpoints, planned):
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
