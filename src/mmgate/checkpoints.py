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
# characters Snakemake reads in a file path as a wildcard ({x}) or a path variable (<b>)
UNCARRIED = re.compile(r"[{}<>]")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
OUTPUT_SUFFIXES = ("lm_head.weight", "embed_out.weight", "output.weight")
# the weight files loading reads, in the order peft and transformers look for them
WEIGHT_PREFIXES = ("adapter_model", "model", "pytorch_model")


@dataclass(frozen=True)
class Discovered:
    checkpoints: dict[str, str]
    # (name, path, "missing" | "incomplete" | "unusable path") per checkpoint not picked up: its directory
    # does not exist, its completion marker does not yet, or its path holds {, }, < or > (Snakemake
    # would read them as wildcards or path variables)
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
        if UNCARRIED.search(str(path)):
            skipped.append((name, str(path), "unusable path"))
        elif not Path(path).is_dir():
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


INCOMPLETE = "incomplete file: was the checkpoint fully copied?"
_COPY_AGAIN = ("Copy it again from where training saved it (compare sizes or sha256 with the source), and write "
               "the completion marker only once the copy has finished.")
ADAPTER_PREFIXES = ("adapter_model",)  # what peft reads
MODEL_PREFIXES = ("model", "pytorch_model")  # what transformers reads


def weight_prefixes(directory: str | Path) -> tuple[str, ...]:
    return ADAPTER_PREFIXES if is_adapter(directory) else MODEL_PREFIXES


def safetensors_header(path: str | Path) -> dict[str, dict[str, Any]]:
    """The tensor entries of a safetensors file's header (name -> dtype, shape, data_offsets), read
    without touching the data: 8 bytes of little-endian header length, then that much JSON.

    Raises CheckpointError naming the file and both sizes where the file is shorter or longer than
    its header says (a half-copied checkpoint: the marker is there, the weights are cut off) or the
    header cannot be read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else None
            raw = handle.read(length) if length is not None and length <= size - 8 else b""
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the file ({err}).") from err
    if length is None:
        raise CheckpointError(f"{path}: {INCOMPLETE} The file has {size} bytes, fewer than the 8 that give the "
                              f"length of a safetensors header. {_COPY_AGAIN}")
    if length > size - 8:
        raise CheckpointError(f"{path}: {INCOMPLETE} Unreadable safetensors header: its length field says "
                              f"{length} bytes of header, the file has {size - 8} after it. {_COPY_AGAIN}")
    try:
        header = json.loads(raw)
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
        for v in tensors.values():
            [int(d) for d in v["shape"]]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}" if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: {INCOMPLETE} Unreadable safetensors header ({reason}); the file has "
                              f"{size} bytes. {_COPY_AGAIN}") from None
    data = size - 8 - length
    if data < end:
        raise CheckpointError(f"{path}: {INCOMPLETE} Its header says {end} bytes of data, the file has {data} "
                              f"({end - data} bytes missing). {_COPY_AGAIN}")
    if data > end:
        raise CheckpointError(f"{path}: its header says {end} bytes of data, the file has {data} ({data - end} "
                              "bytes more than the header describes), so safetensors refuses it: was the file "
                              f"written over in place, or two copies into one? {_COPY_AGAIN}")
    return tensors


def weight_files(directory: str | Path, prefixes: Iterable[str] | None = None) -> tuple[list[Path], Path | None]:
    """(the weight files loading reads from `directory`, the index that names them). Looked for in
    the order peft and transformers do (per prefix: safetensors, its index, .bin, its index); an
    adapter's prefix is `adapter_model`, a full model's `model` and `pytorch_model`. Files an index
    names are listed whether or not they exist: `weight_problems` checks them."""
    directory = Path(directory)
    for prefix in weight_prefixes(directory) if prefixes is None else prefixes:
        for suffix in (".safetensors", ".bin"):
            single = directory / f"{prefix}{suffix}"
            index = directory / f"{prefix}{suffix}.index.json"
            if single.exists():
                return [single], None
            if index.exists():
                weight_map = read_json(index).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise CheckpointError(f"{index}: no `weight_map` naming the shard files: {INCOMPLETE} "
                                          f"{_COPY_AGAIN}")
                return sorted({directory / str(f) for f in weight_map.values()}), index
    return [], None


def _missing_shard(index: Path, shard: Path, shards: list[Path]) -> CheckpointError:
    present = sum(s.exists() for s in shards)
    return CheckpointError(f"{index}: its weight_map names {shard.name}, which is not in {index.parent}: {INCOMPLETE} "
                           f"({present} of {len(shards)} shard files are there.) {_COPY_AGAIN}")


def _load_bin(path: Path) -> dict[str, Any]:
    """A .bin state dict memory-mapped as data only (weights_only=True). A truncated or unreadable
    file is a CheckpointError with torch's first line, not a raw traceback."""
    import pickle

    import torch

    with unsafe_pickle_is_an_error(path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
            text = str(err).strip()
            if "weights_only" in text or "Weights only" in text:
                raise
            first = text.splitlines()[0][:300] if text else ""
            raise CheckpointError(f"{path}: torch cannot read it ({type(err).__name__}: {first}): {INCOMPLETE} "
                                  f"The file has {path.stat().st_size} bytes. {_COPY_AGAIN}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors; save the "
                              "model with save_pretrained.")
    return state


def tensor_table(directory: str | Path, prefixes: Iterable[str] | None = None) -> dict[str, tuple[Path, list[int]]]:
    """name -> (the file holding it, its shape) for every tensor of the directory's weight files,
    from safetensors headers parsed here (no tensor read) or a memory-mapped .bin. Raises
    CheckpointError naming the file for a missing shard, a truncated file or an unreadable header."""
    files, index = weight_files(directory, prefixes)
    table: dict[str, tuple[Path, list[int]]] = {}
    for path in files:
        if not path.exists():
            raise _missing_shard(index or path, path, files)
        if path.name.endswith(".safetensors"):
            table.update({k: (path, [int(d) for d in v["shape"]]) for k, v in safetensors_header(path).items()})
        else:
            table.update({k: (path, list(v.shape)) for k, v in _load_bin(path).items() if hasattr(v, "shape")})
    return table


def tensor_shapes(directory: str | Path, prefixes: Iterable[str] = WEIGHT_PREFIXES) -> tuple[dict[str, list[int]], str | None]:
    """Shapes of every tensor in the directory's weight files, read from headers (safetensors) or
    memory-mapped with `weights_only=True` (.bin), never loaded whole. Returns (shapes, files read).
    A truncated file, an unreadable header or a missing shard raises CheckpointError naming the file."""
    files, _ = weight_files(directory, prefixes)
    if not files:
        return {}, None
    table = tensor_table(directory, prefixes)
    return {k: shape for k, (_, shape) in table.items()}, ",".join(f.name for f in files)


def weight_problems(directory: str | Path, prefixes: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(file, problem) for each weight file of `directory` that loading would fail on: a shard its
    index names that is not there, a safetensors file shorter or longer than its header says, an
    unreadable header or .bin. Cheap: headers only (a .bin is memory-mapped); no tensor is read."""
    directory = Path(directory)
    try:
        files, index = weight_files(directory, prefixes)
    except CheckpointError as err:
        return [(str(directory), str(err))]
    problems = []
    for path in files:
        try:
            if not path.exists():
                raise _missing_shard(index or path, path, files)
            if path.name.endswith(".safetensors"):
                safetensors_header(path)
            else:
                _load_bin(path)
        except CheckpointError as err:
            problems.append((str(path), str(err)))
    return problems


@dataclass(frozen=True)
class NonFinite:
    """The NaN/inf values of one saved tensor: how many, in how many rows, and the first of those rows."""

    path: str
    tensor: str
    count: int
    nan: int
    rows: int
    first_rows: tuple[int, ...]

    def describe(self) -> str:
        shown = ", ".join(map(str, self.first_rows))
        more = f", ... ({self.rows} rows in all)" if self.rows > len(self.first_rows) else ""
        return (f"{self.tensor}: {self.count} non-finite values ({self.nan} NaN, {self.count - self.nan} inf) in "
                f"{'rows' if self.rows > 1 else 'row'} {shown}{more}")


class TensorReader:
    """The tensors of one weight file read a slice of rows at a time (safetensors slices, or a
    memory-mapped .bin), so a big matrix never has to be in memory whole."""

    def __init__(self, path: Path, handle: Any = None, state: Mapping[str, Any] | None = None):
        self.path, self._handle, self._state = path, handle, state
        self.keys = list(handle.keys()) if handle is not None else [k for k, v in state.items() if hasattr(v, "shape")]

    def shape(self, name: str) -> list[int]:
        if self._handle is not None:
            return [int(d) for d in self._handle.get_slice(name).get_shape()]
        return list(self._state[name].shape)

    def is_float(self, name: str) -> bool:
        if self._handle is not None:
            return str(self._handle.get_slice(name).get_dtype()).upper().startswith(("F", "BF"))
        return bool(self._state[name].is_floating_point())

    def rows(self, name: str, start: int, end: int) -> Any:
        """Rows `start:end` of a tensor (the whole of a 0-d one)."""
        if self._handle is not None:
            return self._handle.get_slice(name)[start:end] if self.shape(name) else self._handle.get_tensor(name)
        tensor = self._state[name]
        return tensor[start:end] if tensor.dim() else tensor

    def chunks(self, name: str, chunk_bytes: int = 64 << 20) -> Iterator[tuple[int, Any]]:
        """(first row, float32 rows) of a tensor in chunks of about `chunk_bytes`."""
        shape = self.shape(name)
        rows = shape[0] if shape else 1
        per_row = 1
        for d in shape[1:]:
            per_row *= d
        step = max(1, chunk_bytes // max(1, per_row * 4))
        for start in range(0, rows, step):
            yield start, self.rows(name, start, min(rows, start + step)).float()


@contextmanager
def tensor_reader(path: str | Path) -> Iterator[TensorReader]:
    path = Path(path)
    if path.name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            yield TensorReader(path, handle=handle)
    else:
        yield TensorReader(path, state=_load_bin(path))


def nonfinite_values(path: str | Path, names: Iterable[str] | None = None, chunk_bytes: int = 64 << 20,
                     show: int = 5) -> list[NonFinite]:
    """NaN/inf in the floating-point tensors `names` (every one when None) of one weight file, read
    one tensor at a time, and a big matrix in chunks of rows, so memory stays bounded."""
    import torch

    found = []
    with tensor_reader(path) as reader:
        wanted = reader.keys if names is None else [n for n in names if n in set(reader.keys)]
        for name in (n for n in wanted if reader.is_float(n)):
            count = nan = n_rows = 0
            first: list[int] = []
            for start, chunk in reader.chunks(name, chunk_bytes):
                bad = ~torch.isfinite(chunk)
                if not bool(bad.any()):
                    continue
                count += int(bad.sum())
                nan += int(torch.isnan(chunk).sum())
                hits = (torch.nonzero(bad.reshape(max(1, bad.shape[0] if bad.dim() else 1), -1).any(dim=1))
                        .flatten() + start).tolist()
                n_rows += len(hits)
                first += hits[: max(0, show - len(first))]
            if count:
                found.append(NonFinite(str(path), name, count, nan, n_rows, tuple(first)))
    return found


LORA_B = ("lora_B", "lora_embedding_B")
LORA_A = ("lora_A", "lora_embedding_A")


def noop_adapter(ckpt: str | Path, base: str | None = None, chunk_bytes: int = 64 << 20) -> str | None:
    """Why the adapter at `ckpt` changes nothing (every LoRA B is zero and every saved embedding/head copy
    equals the base's tensor: saved before training, or target modules that never matched), or None
    where it changes something or that cannot be told (a tensor of another kind, a base not on disk)."""
    import torch

    if not is_adapter(ckpt):
        return None
    resolved = base_of(ckpt, base)
    adapter = tensor_table(ckpt, ADAPTER_PREFIXES)
    b_names = [n for n in adapter if any(f".{b}." in n or n.endswith(f".{b}") for b in LORA_B)]
    a_names = [n for n in adapter if any(f".{a}." in n or n.endswith(f".{a}") for a in LORA_A)]
    copies = [n for n in adapter if n not in b_names and n not in a_names]
    for name in b_names:
        with tensor_reader(adapter[name][0]) as reader:
            if any(bool(chunk.any()) for _, chunk in reader.chunks(name, chunk_bytes)):
                return None
    if copies:
        if not resolved or not Path(resolved).is_dir():
            return None
        base_table = tensor_table(resolved, MODEL_PREFIXES)
        for name in copies:
            base_name = name.removeprefix("base_model.model.")
            if base_name not in base_table or base_table[base_name][1] != adapter[name][1]:
                return None  # another shape (resized rows) or a tensor the base lacks: something changed
            with tensor_reader(adapter[name][0]) as mine, tensor_reader(base_table[base_name][0]) as theirs:
                for start, chunk in mine.chunks(name, chunk_bytes):
                    if not torch.equal(chunk, theirs.rows(base_name, start, start + chunk.shape[0]).float()):
                        return None
    saved = f" and its {len(copies)} saved embedding/head copies equal the base's" if copies else ""
    return (f"the adapter is a no-op: every LoRA B matrix ({len(b_names)}) is zero{saved}, so the checkpoint is its "
            "base model. It was saved before training, or its target_modules matched nothing that trained")


def _is(name: str, suffixes: Iterable[str]) -> bool:
    return "lora_" not in name and any(name == s or name.endswith("." + s) for s in suffixes)


def embedding_and_head(table: Mapping[str, tuple[Path, list[int]]]) -> tuple[str | None, str | None]:
    """Names of the input embedding and output head matrices among saved tensors (not LoRA factors):
    `embed_tokens.weight` covers Llama-likes, Chameleon (`model.embed_tokens`) and Emu3
    (`model.text_model.embed_tokens`); `lm_head.weight` the heads."""
    def first(suffixes: Iterable[str]) -> str | None:
        names = [n for n, (_, shape) in table.items() if _is(n, suffixes) and len(shape) == 2]
        return min(names, key=lambda n: n.count(".")) if names else None

    return first(EMBED_SUFFIXES), first(OUTPUT_SUFFIXES)


def model_config(directory: str | Path) -> dict[str, Any]:
    """config.json of a model directory ({} when there is none)."""
    path = Path(directory) / "config.json"
    return read_json(path) if path.exists() else {}


def _text_value(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`key` of a multimodal config's `text_config` (Emu3), else of the config itself."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and key in inner:
        return inner[key]
    return config.get(key, default)


def config_vocab_size(directory: str | Path) -> tuple[int | None, str]:
    """(vocab_size, where) from config.json: `text_config.vocab_size` for multimodal configs."""
    config = model_config(directory)
    inner = config.get("text_config")
    if isinstance(inner, dict) and isinstance(inner.get("vocab_size"), int):
        return inner["vocab_size"], f"{Path(directory) / 'config.json'}:text_config.vocab_size"
    if isinstance(config.get("vocab_size"), int):
        return config["vocab_size"], f"{Path(directory) / 'config.json'}:vocab_size"
    return None, ""


def ties_head(directory: str | Path) -> bool:
    """Whether the output head shares the input embedding (`tie_word_embeddings`, transformers' default True)."""
    return bool(_text_value(model_config(directory), "tie_word_embeddings", True))


@dataclass(frozen=True)
class ModelRows:
    """Vocabulary rows of the input embedding and the output head, and where each number came from."""

    embedding_rows: int | None
    embedding_source: str
    output_rows: int | None
    output_source: str


def _own_rows(directory: Path) -> ModelRows:
    """The rows a full model loads with: its saved matrices, else config.json (a tied head: the embedding's)."""
    try:
        table = tensor_table(directory, MODEL_PREFIXES)
    except CheckpointError as err:
        return ModelRows(None, f"not found: {err}", None, f"not found: {err}")
    emb_name, out_name = embedding_and_head(table)
    emb = out = None
    emb_src = out_src = ""
    if emb_name:
        emb, emb_src = table[emb_name][1][0], f"{table[emb_name][0]}:{emb_name}"
    else:
        emb, emb_src = config_vocab_size(directory)
    tied = ties_head(directory)
    if out_name:
        out, out_src = table[out_name][1][0], f"{table[out_name][0]}:{out_name}"
    elif tied:
        out, out_src = emb, "tied to the input embedding (tie_word_embeddings)"
    elif table:
        out_src = (f"not found: config.json unties the head (tie_word_embeddings false) and the weight files of "
                   f"{directory} hold no {' / '.join(OUTPUT_SUFFIXES)}, so the head would load randomly initialised")
    else:
        out, out_src = config_vocab_size(directory)
    return ModelRows(emb, emb_src or "not found", out, out_src or "not found")


def model_rows(ckpt: str | Path, base: str | None = None, tokenizer_len: int | None = None) -> ModelRows:
    """Embedding and output rows the checkpoint has once loaded, read from headers and config.json
    without loading a tensor.

    A full model: its own saved embedding/head matrices (safetensors headers, or a memory-mapped
    .bin), else config.json's `vocab_size` (`text_config.vocab_size` for multimodal configs such as
    Emu3); a tied head (`tie_word_embeddings`) has the embedding's rows. An adapter: the matrices it
    saved (modules_to_save), else its BASE's own rows, read the same way: that is what the base is
    resized to at load, never `len(tokenizer)` by assumption (`tokenizer_len` is accepted and not
    used). A weight file that cannot be read leaves the rows None with the problem as the source.
    """
    ckpt = Path(ckpt)
    if not is_adapter(ckpt):
        return _own_rows(ckpt)
    try:
        table = tensor_table(ckpt, ADAPTER_PREFIXES)
    except CheckpointError as err:
        return ModelRows(None, f"not found: {err}", None, f"not found: {err}")
    emb_name, out_name = embedding_and_head(table)
    saved = {
        "emb": (table[emb_name][1][0], f"{table[emb_name][0]}:{emb_name}") if emb_name else None,
        "out": (table[out_name][1][0], f"{table[out_name][0]}:{out_name}") if out_name else None,
    }
    if saved["emb"] and saved["out"]:
        return ModelRows(*saved["emb"], *saved["out"])
    resolved = base_of(ckpt, base)
    if not resolved:
        base_rows = ModelRows(None, "not found: the adapter saved no such matrix and names no base model "
                              "(set `model.base`)", None, "not found: the adapter saved no such matrix and names no "
                              "base model (set `model.base`)")
    elif not Path(resolved).is_dir():
        why = f"not found: the adapter saved no such matrix and its base {resolved!r} is not a local directory"
        base_rows = ModelRows(None, why, None, why)
    else:
        own = _own_rows(Path(resolved))
        base_rows = ModelRows(own.embedding_rows, f"base {own.embedding_source}", own.output_rows,
                              f"base {own.output_source}")
    emb, emb_src = saved["emb"] or (base_rows.embedding_rows, base_rows.embedding_source)
    out, out_src = saved["out"] or (base_rows.output_rows, base_rows.output_source)
    return ModelRows(emb, emb_src, out, out_src)


# What a checkpoint's verdict depends on: its weights, configs and tokenizer. Trainer state, optimizer
# and RNG files, logs and the completion marker change without changing the model.
IDENTITY_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".sha256", ".tiktoken")
NOT_THE_MODEL = ("trainer_state.json", "training_args.bin", "optimizer", "scheduler", "rng_state", "train_log")
SMALL_FILE = 1 << 20


def content_identity(ckpt: str | Path, base: str | None = None) -> str:
    """A digest of what the checkpoint's (and, for an adapter, its base's) model is made of: each weight,
    config and tokenizer file's name, size and modification time, and the bytes of the small ones
    (configs). A checkpoint saved again in place gets another identity, and its jobs run again; an
    untouched one keeps it (cheap: stat calls and a few small reads, at every DAG build).

        >>> import tempfile, pathlib, os
        >>> ckpt = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (ckpt / "adapter_config.json").write_text('{"r": 8}')
        >>> _ = (ckpt / "adapter_model.safetensors").write_bytes(b"0" * 64)
        >>> before = content_identity(ckpt)
        >>> _ = (ckpt / "train_log.csv").write_text("step,loss")      # not the model
        >>> content_identity(ckpt) == before
        True
        >>> os.utime(ckpt / "adapter_model.safetensors", ns=(1, 1))   # saved again
        >>> content_identity(ckpt) == before
        False
    """
    import hashlib

    digest = hashlib.sha256()
    folders = [Path(ckpt)]
    if is_adapter(ckpt):
        try:
            resolved = base_of(ckpt, base)
        except CheckpointError:
            resolved = None
        if resolved and Path(resolved).is_dir():
            folders.append(Path(resolved))
    for folder in folders:
        digest.update(str(folder.resolve()).encode())
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            name = path.name
            if not path.is_file() or not name.endswith(IDENTITY_SUFFIXES) or name.startswith(NOT_THE_MODEL):
                continue
            stat = path.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            if stat.st_size <= SMALL_FILE and name.endswith((".json", ".sha256")):
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
