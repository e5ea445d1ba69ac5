"""Finding checkpoints and reading what they declare without loading their weights.

A checkpoint is a directory holding either a PEFT adapter (``adapter_config.json``) on a base
model, or a full model (``config.json``). It is picked up only once its completion marker
exists, so a half-copied checkpoint never starts jobs.
"""

from __future__ import annotations

import glob as globlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .errors import CheckpointError

CKPT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
OUTPUT_SUFFIXES = ("lm_head.weight", "embed_out.weight", "output.weight")


@dataclass(frozen=True)
class Discovered:
    checkpoints: dict[str, str]
    # (name, path, "missing" | "incomplete") per checkpoint not picked up: its directory does not
    # exist, or its completion marker does not yet
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


STEP_AFTER_WORD = re.compile(r"(?<![A-Za-z])(?:checkpoint|ckpt|global_step|step|iter)[-_]?(\d+)(?!\d)", re.IGNORECASE)


def checkpoint_step(name: str) -> int | None:
    """Training step from a checkpoint's name, or None where the name does not say it unambiguously.

    The number right after `checkpoint`, `ckpt`, `step`, `global_step` or `iter` (joined by `-`, `_`
    or nothing): `ckpt_2000_v2` is step 2000. Else the name's only number, where it stands alone:
    `run-1500` is 1500, but `lora-7b` and `llama7b-2000` give None. A wrong step would misplace the
    checkpoint in the trend, so a name that could mean two steps gets none.

        >>> [checkpoint_step(n) for n in ("checkpoint-2000", "ckpt_2000_v2", "global_step500", "run-1500", "lora-7b", "good")]
        [2000, 2000, 500, 1500, None, None]
    """
    after_word = {int(n) for n in STEP_AFTER_WORD.findall(name)}
    if after_word:
        return after_word.pop() if len(after_word) == 1 else None
    numbers = re.findall(r"[A-Za-z]?\d+[A-Za-z]?", name)
    return int(numbers[0]) if len(numbers) == 1 and numbers[0].isdigit() else None


def trainer_step(ckpt_dir: str | Path, name: str) -> int | None:
    """Training step: `global_step` of the checkpoint's `trainer_state.json` when there is one, else from the name."""
    state = Path(ckpt_dir) / "trainer_state.json"
    if state.exists():
        try:
            step = json.loads(state.read_text()).get("global_step")
        except (OSError, json.JSONDecodeError):
            step = None
        if isinstance(step, int):
            return step
    return checkpoint_step(name)


def discover_checkpoints(explicit: Mapping[str, str] | None, pattern: str | None, marker: str | None) -> Discovered:
    """Complete checkpoints from an explicit `name: path` map and/or a glob, keyed by name."""
    found: dict[str, str] = {}
    skipped: list[tuple[str, str, str]] = []
    candidates = list((explicit or {}).items())
    for path in sorted(globlib.glob(pattern)) if pattern else []:
        if Path(path).is_dir():
            candidates.append((re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name), path))
    for name, path in candidates:
        if not CKPT_NAME.match(name):
            raise CheckpointError(f"config.yaml: checkpoint name {name!r} must match [A-Za-z0-9._-]{{1,128}} (it names result folders).")
        if name in found and found[name] != str(path):
            raise CheckpointError(
                f"config.yaml: two checkpoints are named {name!r} ({found[name]} and {path}); rename one in `checkpoints:`."
            )
        if not Path(path).is_dir():
            skipped.append((name, str(path), "missing"))
        elif marker and not (Path(path) / marker).exists():
            skipped.append((name, str(path), "incomplete"))
        else:
            found[name] = str(path)
    return Discovered(found, skipped)


@contextmanager
def unsafe_pickle_is_an_error(path: str | Path) -> Iterator[None]:
    """Turn torch's refusal to unpickle code (weights_only) into a CheckpointError with a safe remedy.

    torch's own message suggests `weights_only=False`, which would run whatever code the file holds.
    """
    import pickle

    try:
        yield
    except (pickle.UnpicklingError, RuntimeError) as err:
        if "weights_only" not in str(err) and "Weights only" not in str(err) and not isinstance(err, pickle.UnpicklingError):
            raise
        raise CheckpointError(
            f"{path}: this pickle needs to run code to load, and mmgate loads weights only as data "
            f"(torch.load(weights_only=True)). Convert it to safetensors with a tool you trust, in an environment you "
            f"trust, e.g. `safetensors.torch.save_file(torch.load(path, weights_only=False), 'model.safetensors')` "
            f"after checking where the file came from; do not turn weights_only off in mmgate. ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})") from None


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / f).exists() for f in TOKENIZER_FILES)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read JSON ({err}).") from err


def base_of(ckpt: str | Path, base: str | None = None) -> str | None:
    """The base model of an adapter: the configured one, else the adapter's own record."""
    if base:
        return str(base)
    if is_adapter(ckpt):
        return read_json(Path(ckpt) / "adapter_config.json").get("base_model_name_or_path")
    return None


def tensor_shapes(directory: str | Path, prefixes: Iterable[str] = ("adapter_model", "model", "pytorch_model")) -> tuple[dict[str, list[int]], str | None]:
    """Shapes of every tensor in the directory's weight files, read from headers (safetensors) or
    memory-mapped with `weights_only=True` (.bin), never loaded whole. Returns (shapes, file read)."""
    directory = Path(directory)
    for prefix in prefixes:
        single = directory / f"{prefix}.safetensors"
        index = directory / f"{prefix}.safetensors.index.json"
        files: list[Path] = []
        if single.exists():
            files = [single]
        elif index.exists():
            files = sorted({directory / f for f in read_json(index).get("weight_map", {}).values()})
        if files:
            from safetensors import safe_open

            shapes = {}
            for f in files:
                with safe_open(str(f), framework="pt") as handle:
                    shapes.update({k: list(handle.get_slice(k).get_shape()) for k in handle.keys()})
            return shapes, ",".join(f.name for f in files)
        binary = directory / f"{prefix}.bin"
        if binary.exists():
            with unsafe_pickle_is_an_error(binary):
                import torch

                state = torch.load(binary, map_location="cpu", weights_only=True, mmap=True)
            return {k: list(v.shape) for k, v in state.items()}, binary.name
    return {}, None


def _rows_of(shapes: Mapping[str, list[int]], suffixes: Iterable[str]) -> tuple[int | None, str | None]:
    for name, shape in shapes.items():
        if "lora_" in name:
            continue
        if any(name.endswith(s) for s in suffixes) and len(shape) == 2:
            return int(shape[0]), name
    return None, None


@dataclass(frozen=True)
class ModelRows:
    """Vocabulary rows of the input embedding and the output head, and where each number came from."""

    embedding_rows: int | None
    embedding_source: str
    output_rows: int | None
    output_source: str


def model_rows(ckpt: str | Path, base: str | None = None, tokenizer_len: int | None = None) -> ModelRows:
    """Embedding and output rows the checkpoint will have once loaded as DESIGN.md says.

    An adapter that saved `embed_tokens`/`lm_head` (modules_to_save) carries its own full matrices;
    otherwise the base is resized to `len(tokenizer)` at load, so the rows are that length.
    """
    ckpt = Path(ckpt)
    shapes, source = tensor_shapes(ckpt)
    emb, emb_name = _rows_of(shapes, EMBED_SUFFIXES)
    out, out_name = _rows_of(shapes, OUTPUT_SUFFIXES)
    emb_src = f"{ckpt / source}:{emb_name}" if emb is not None else ""
    out_src = f"{ckpt / source}:{out_name}" if out is not None else ""
    if is_adapter(ckpt):
        if emb is None and tokenizer_len is not None:
            emb, emb_src = tokenizer_len, "base resized to len(tokenizer) at load"
        if out is None:
            if tokenizer_len is not None:
                out, out_src = tokenizer_len, "base resized to len(tokenizer) at load"
    else:
        config = read_json(ckpt / "config.json") if (ckpt / "config.json").exists() else {}
        text_config = config.get("text_config", config)
        if emb is None and "vocab_size" in text_config:
            emb, emb_src = int(text_config["vocab_size"]), f"{ckpt / 'config.json'}:vocab_size"
        if out is None and emb is not None and text_config.get("tie_word_embeddings", config.get("tie_word_embeddings", True)):
            out, out_src = emb, "tied to the input embedding (tie_word_embeddings)"
    return ModelRows(emb, emb_src or "not found", out, out_src or "not found")
