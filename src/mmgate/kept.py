"""Finished shards of a block job, kept where a failure of a later shard cannot delete them.

Snakemake removes every output of a failed job; `KeptShards` hard-links each finished shard (and a
decode shard's media folder) under `results/.kept/`, keyed by what decides its content, so the next
attempt with the same key restores it instead of recomputing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping


KEPT_ROOT = Path("results") / ".kept"


def code_digest(extra: Iterable[str | Path] = ()) -> str:
    """sha256 of mmgate's own source and `extra` files (a block's script): a changed code is a new key."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in [*sorted(package.rglob("*.py")), *map(Path, extra)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def inputs_identity(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime in ns) of each input: what Snakemake's own rerun triggers look at."""
    identity = []
    for path in paths:
        stat = os.stat(path)
        identity.append((str(path), stat.st_size, stat.st_mtime_ns))
    return sorted(identity)


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link `source` (a file or a folder of files) at `target`; copies where links are refused."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link)
    else:
        link(str(source), str(target))


class KeptShards:
    """Finished shards of a block job, kept where a failure of a later shard cannot delete them.

    Snakemake removes every output of a failed job, so a block of k shards killed in its last shard
    would lose k - 1 finished ones. `keep(output)` hard-links a finished shard's files (its parquet,
    and a decode shard's folder) under `root`, named by the output's path and `key`; `restore(output)`
    puts them back and says whether it could. The key is a digest of what decides a shard's content
    (the job's params, its inputs' sizes and times, mmgate's code): an attempt with anything changed
    finds no entry and recomputes, and its stale entries are dropped. `release` drops a finished
    block's entries (the shards themselves stay: hard links share their data).

    Example:

        >>> import tempfile
        >>> from pathlib import Path
        >>> work = Path(tempfile.mkdtemp())
        >>> shard = work / "results/ablate/ckpt=s1/task=t2a/part-000.parquet"
        >>> shard.parent.mkdir(parents=True); _ = shard.write_text("finished")
        >>> kept = KeptShards(key="3f9a0c", root=work / "results/.kept")  # for_job: a digest of params, inputs, code
        >>> kept.keep(shard)
        >>> shard.unlink()  # what Snakemake does to a failed job's outputs
        >>> kept.restore(shard), shard.read_text()
        (True, 'finished')
        >>> KeptShards(key="77b1e2", root=work / "results/.kept").restore(shard.with_name("part-001.parquet"))
        False
    """

    def __init__(self, key: str, root: str | Path = KEPT_ROOT):
        self.key = key  # part of file names: `for_job` gives a hex digest
        self.root = Path(root)

    @classmethod
    def for_job(cls, params: Mapping[str, Any], inputs: Iterable[str | Path], scripts: Iterable[str | Path] = (),
                root: str | Path = KEPT_ROOT) -> KeptShards:
        """The kept shards of a job with these params and inputs, run by `scripts` and this mmgate."""
        from .io import config_hash

        return cls(config_hash({"params": dict(params), "inputs": inputs_identity(inputs), "code": code_digest(scripts)}),
                   root)

    @classmethod
    def for_snakemake(cls, smk: Any) -> KeptShards:
        """`for_job` of a Snakemake block job (its scripts: the workflow's, not Snakemake's per-job copy)."""
        return cls.for_job(dict(smk.params.items()), list(smk.input), sorted(Path(smk.scriptdir).glob("*.py")))

    def _entries(self, output: Path) -> list[Path]:
        """Every kept entry of `output` (parquet and, for decode, its folder), whatever its key."""
        folder = self._folder(output)
        if not folder.is_dir():
            return []
        return sorted(folder.glob(f"{output.name}@*")) + sorted(folder.glob(f"{output.with_suffix('').name}@*"))

    def _folder(self, output: Path) -> Path:
        parts = Path(output).parts
        below = parts[parts.index("results") + 1 : -1] if "results" in parts else Path(output).resolve().parts[1:-1]
        return self.root.joinpath(*below)

    @staticmethod
    def _sources(output: Path, media: str | Path | None) -> list[tuple[Path, str]]:
        """(file or folder, its entry's name) of a shard: its table, and a decode shard's media folder."""
        return [(output, output.name)] + ([(Path(media), output.with_suffix("").name)] if media is not None else [])

    def keep(self, output: str | Path, media: str | Path | None = None) -> None:
        """Hard-link a finished shard (and a decode shard's `media` folder) under the key."""
        output = Path(output)
        folder = self._folder(output)
        folder.mkdir(parents=True, exist_ok=True)
        for source, name in self._sources(output, media):
            target = folder / f"{name}@{self.key}"
            partial = folder / f".{name}@{self.key}.partial"
            _remove(partial)
            _link_tree(source, partial)
            _replace(partial, target)

    def restore(self, output: str | Path, media: str | Path | None = None) -> bool:
        """Put back a shard (and a decode shard's `media` folder) kept under this key, and drop entries of
        other keys; False when none is."""
        output = Path(output)
        folder = self._folder(output)
        sources = [source for source, _ in self._sources(output, media)]
        entries = [folder / f"{name}@{self.key}" for _, name in self._sources(output, media)]
        for stale in self._entries(output):
            if stale not in entries:
                _remove(stale)
        if not all(entry.exists() for entry in entries):
            return False
        for entry, source in zip(entries, sources):
            source.parent.mkdir(parents=True, exist_ok=True)
            partial = source.with_name(f".{source.name}.restoring")
            _remove(partial)
            _link_tree(entry, partial)
            _replace(partial, source)
        return True

    def release(self, outputs: Iterable[str | Path]) -> None:
        """Drop the entries of a block whose every shard is written."""
        for output in outputs:
            for entry in self._entries(Path(output)):
                _remove(entry)
            folder = self._folder(Path(output))
            while folder.is_dir() and not any(folder.iterdir()):  # up to the root, which goes when empty
                folder.rmdir()
                if folder == self.root:
                    break
                folder = folder.parent


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _replace(source: Path, target: Path) -> None:
    """Rename `source` onto `target` (a folder target is removed first: rename cannot replace one)."""
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(source, target)
