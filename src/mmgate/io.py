"""Parquet and text outputs: written atomically, with schema version and provenance in the metadata."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import MMGateError
from .stages import Stage, conform

SCHEMA_VERSION = 1
METADATA_KEY = "mmgate"
TOKEN_SPACE_KEY = "token_space.sha256"
_PACKAGES = ("mmgate", "torch", "transformers", "peft", "encodec", "snakemake", "pandas", "pyarrow")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars as Python numbers, tuples as lists and NaN/inf/NA as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        return [jsonable(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def strict_json(value: Any, **kwargs: Any) -> str:
    """JSON that strict parsers accept: `null`, never `NaN`."""
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable hash of a config mapping (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(stage: str, token_space_sha256: str | None = None, config: Mapping[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    record = {"schema_version": SCHEMA_VERSION, "stage": stage, "packages": package_versions()}
    if token_space_sha256:
        record[TOKEN_SPACE_KEY] = token_space_sha256
    if config is not None:
        record["config_hash"] = config_hash(config)
    record.update(extra)
    return record


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are shared like any other
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(frame: pd.DataFrame, path: str | Path, meta: Mapping[str, Any], stage: "Stage | None" = None) -> None:
    """Write `frame` with `meta` as JSON under the `mmgate` key (and the token-space hash under its own key);
    a table of a catalogued `stage` in exactly its schema (mmgate.stages.conform)."""
    table = conform(frame, stage) if stage is not None else pa.Table.from_pandas(frame, preserve_index=False)
    kv = dict(table.schema.metadata or {})
    kv[METADATA_KEY.encode()] = json.dumps(meta, sort_keys=True, default=str).encode()
    if meta.get(TOKEN_SPACE_KEY):
        kv[TOKEN_SPACE_KEY.encode()] = str(meta[TOKEN_SPACE_KEY]).encode()
    table = table.replace_schema_metadata(kv)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _unreadable(path: Path, err: Exception) -> MMGateError:
    return MMGateError(
        f"{path}: not a readable parquet file ({type(err).__name__}: {err}). It was probably truncated "
        f"or edited by hand; mmgate itself writes atomically. Delete it and rerun snakemake as before: every file "
        "a report rests on is requested by the default target, so only the job that makes this file runs again "
        f"(or name it as the target: `snakemake {path}` plus your usual options)."
    )


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, err) from err


def read_file_metadata(path: str | Path) -> dict[str, str]:
    """Key/value metadata of a parquet file, decoded, without reading its data."""
    path = Path(path)
    try:
        raw = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, err) from err
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}


def read_provenance(path: str | Path) -> dict[str, Any]:
    return json.loads(read_file_metadata(path).get(METADATA_KEY, "{}"))
