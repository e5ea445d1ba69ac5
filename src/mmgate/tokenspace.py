"""The vocabulary layout of an any-to-any model, loaded from `token_space.json`.

One causal LM vocabulary holds text tokens, special tokens and, per modality, half-open id
ranges: one range per codebook for audio (``AUDIO_CB0`` ... ``AUDIO_CB{K-1}``) and one for
images (``IMAGE``). Everything downstream (constrained decoding, decode, ablation) asks this
module which ids are legal where, so the rules live in one place.

Example:

    >>> import json, tempfile, pathlib
    >>> spec = {
    ...     "vocab_size": 20,
    ...     "special_tokens": {"<aud_start>": 0, "<aud_end>": 1},
    ...     "ranges": {"AUDIO_CB0": [2, 6], "AUDIO_CB1": [6, 10]},
    ...     "modalities": {"audio": {"ranges": ["AUDIO_CB0", "AUDIO_CB1"],
    ...         "start_token": "<aud_start>", "end_token": "<aud_end>",
    ...         "layout": "frame_major"}},
    ... }
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "token_space.json"
    >>> _ = path.write_text(json.dumps(spec))
    >>> audio = TokenSpace.load(path).modality("audio")
    >>> audio.flatten([[0, 1, 2], [3, 3, 3]]).tolist()   # c0[t], c1[t], c0[t+1], ...
    [2, 9, 3, 9, 4, 9]
    >>> audio.slot_at(range(4)).tolist()
    [0, 1, 0, 1]
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import TokenSpaceError
from .tasks import READ_TASKS, TASK_MODALITY, WRITE_TASKS  # noqa: F401  (re-exported)

LAYOUTS = ("frame_major", "codebook_major")
_TOP_KEYS = {"schema_version", "vocab_size", "special_tokens", "ranges", "modalities", "meta"}
_MODALITY_KEYS = {"ranges", "start_token", "end_token", "pad_token", "layout", "codec", "meta"}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def sha256_file(path: str | Path) -> str:
    """Hex digest of the file's bytes, the same as `sha256sum path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_sha256_text(text: str, source: str = "<text>") -> str:
    """Read a digest written bare (`abc...`) or as `sha256sum` output (`abc...  token_space.json`)."""
    words = text.strip().split()
    if not words or not _HEX64.match(words[0]):
        raise TokenSpaceError(
            f"{source}: expected a sha256 hex digest (64 hex characters, bare or as written by "
            f"`sha256sum token_space.json`), found {text.strip()[:80]!r}. "
            "Fix: regenerate it with `sha256sum token_space.json > token_space.sha256`."
        )
    return words[0].lower()


def read_sha256_file(path: str | Path) -> str:
    return parse_sha256_text(Path(path).read_text(), source=str(path))


@dataclass(frozen=True)
class TokenRange:
    """Half-open id range ``[start, end)`` of the shared vocabulary."""

    name: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def contains(self, ids: np.ndarray | Iterable[int]) -> np.ndarray:
        ids = np.asarray(ids)
        return (ids >= self.start) & (ids < self.end)


@dataclass(frozen=True)
class Modality:
    """A generated/read modality: its codebook ranges, boundary tokens, layout and codec."""

    name: str
    ranges: tuple[TokenRange, ...]
    start_token: str
    start_id: int
    end_token: str
    end_id: int
    vocab_size: int
    layout: str = "frame_major"
    pad_token: str | None = None
    pad_id: int | None = None
    codec: Mapping[str, Any] = field(default_factory=dict)
    # "audio" or "image": what the task using it writes or reads (decoders, fingerprints); the name by
    # default, set from the task by TokenSpace.modality_for_task (a "music" modality is audio for t2a)
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is None:
            object.__setattr__(self, "kind", self.name)

    @property
    def n_codebooks(self) -> int:
        return len(self.ranges)

    @property
    def codebook_size(self) -> int:
        return self.ranges[0].size

    @property
    def range_starts(self) -> np.ndarray:
        return np.array([r.start for r in self.ranges], dtype=np.int64)

    def slot_at(self, positions: Iterable[int] | np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """Codebook slot expected at each position of the modality span (0 = first token).

        ``frame_major`` interleaves codebooks per frame, so the slot is ``p % K``;
        ``codebook_major`` writes codebook 0 for all ``T`` frames first, so the slot is
        ``p // T`` and needs ``n_frames``. Positions past the last slot get ``-1``.
        """
        positions = np.asarray(list(positions) if not isinstance(positions, np.ndarray) else positions)
        k = self.n_codebooks
        if k == 1:
            return np.zeros_like(positions)
        if self.layout == "frame_major":
            return positions % k
        if n_frames is None or n_frames <= 0:
            raise ValueError("codebook_major layout needs n_frames to know where codebooks change")
        slots = positions // n_frames
        return np.where(slots < k, slots, -1)

    def slot_of_id(self, ids: np.ndarray | Iterable[int]) -> np.ndarray:
        """Slot each absolute id belongs to, ``-1`` for ids outside every range of this modality."""
        ids = np.asarray(ids, dtype=np.int64)
        slots = np.full(ids.shape, -1, dtype=np.int64)
        for k, r in enumerate(self.ranges):
            slots[r.contains(ids)] = k
        return slots

    def in_modality(self, ids: np.ndarray | Iterable[int]) -> np.ndarray:
        return self.slot_of_id(ids) >= 0

    def flatten(self, codes: np.ndarray | Iterable[Iterable[int]]) -> np.ndarray:
        """Codes ``[K, T]`` (0-based within each codebook) -> absolute ids ``[K*T]``."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != self.n_codebooks:
            raise ValueError(f"codes must be shaped [K={self.n_codebooks}, T], got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}) for modality {self.name!r}")
        absolute = codes + self.range_starts[:, None]  # [K, T]
        return (absolute.T if self.layout == "frame_major" else absolute).reshape(-1)

    def unflatten(self, ids: np.ndarray | Iterable[int]) -> np.ndarray:
        """Absolute ids ``[K*T]`` -> codes ``[K, T]``; raises if an id is not in its slot's range."""
        ids = np.asarray(ids, dtype=np.int64)
        k = self.n_codebooks
        if ids.ndim != 1 or ids.size % k:
            raise ValueError(f"need a 1-D sequence whose length is a multiple of K={k}, got {ids.shape}")
        n_frames = ids.size // k
        grid = ids.reshape(n_frames, k).T if self.layout == "frame_major" else ids.reshape(k, n_frames)
        codes = grid - self.range_starts[:, None]  # [K, T]
        bad = (codes < 0) | (codes >= self.codebook_size)
        if bad.any():
            slot, frame = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"id {int(grid[slot, frame])} at frame {frame} is not in {self.ranges[slot].name} "
                f"[{self.ranges[slot].start}, {self.ranges[slot].end})"
            )
        return codes

    def allowed_mask(self, include_end: bool = True) -> np.ndarray:
        """Boolean ``[vocab_size]``: every id of this modality (and its end token)."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        for r in self.ranges:
            mask[r.start : r.end] = True
        if include_end:
            mask[self.end_id] = True
        return mask

    def slot_masks(self) -> np.ndarray:
        """Boolean ``[K, vocab_size]``: row k allows exactly codebook k's ids."""
        masks = np.zeros((self.n_codebooks, self.vocab_size), dtype=bool)
        for k, r in enumerate(self.ranges):
            masks[k, r.start : r.end] = True
        return masks


@dataclass(frozen=True)
class TokenSpace:
    vocab_size: int
    special_tokens: Mapping[str, int]
    ranges: Mapping[str, TokenRange]
    modalities: Mapping[str, Modality]
    sha256: str | None = None
    path: str | None = None
    # which modality each task writes or reads; config `task_modalities` names another where the
    # vocabulary has several of a kind (AnyGPT: speech and music)
    task_modalities: Mapping[str, str] = field(default_factory=lambda: dict(TASK_MODALITY))

    @classmethod
    def load(cls, path: str | Path, task_modalities: Mapping[str, str] | None = None) -> "TokenSpace":
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise TokenSpaceError(f"{path}: cannot read the token space file ({err}).") from err
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as err:
            raise TokenSpaceError(f"{path}: not valid JSON ({err}).") from err
        space = cls.from_dict(spec, source=str(path), sha256=hashlib.sha256(raw).hexdigest())
        return space.for_tasks(task_modalities) if task_modalities else space

    def for_tasks(self, task_modalities: Mapping[str, str]) -> "TokenSpace":
        """This space with config `task_modalities` (task -> modality name) over the defaults.

            >>> space = TokenSpace(10, {}, {}, {"music": None}).for_tasks({"t2a": "music"})
            >>> space.task_modalities["t2a"], space.task_modalities["a2t"]
            ('music', 'audio')
        """
        problems = [f"task_modalities.{task}: unknown task; use one of {sorted(TASK_MODALITY)}"
                    for task in task_modalities if task not in TASK_MODALITY]
        problems += [f"task_modalities.{task} = {name!r}: {self.path} has no such modality (it has {sorted(self.modalities)})"
                     for task, name in task_modalities.items() if task in TASK_MODALITY and name not in self.modalities]
        if problems:
            raise TokenSpaceError("The config's task_modalities do not fit the token space:\n  - " + "\n  - ".join(problems))
        return replace(self, task_modalities={**TASK_MODALITY, **task_modalities})

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], source: str = "token_space", sha256: str | None = None) -> "TokenSpace":
        problems = _validate(spec)
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise TokenSpaceError(
                f"{source} is not a valid token space ({len(problems)} problem(s)):\n{listing}\n"
                "Fix the file so that it describes the vocabulary the model was trained with; "
                "every id must be < vocab_size and ranges must not overlap."
            )
        vocab_size = int(spec["vocab_size"])
        special = {str(k): int(v) for k, v in spec["special_tokens"].items()}
        ranges = {name: TokenRange(name, int(se[0]), int(se[1])) for name, se in spec["ranges"].items()}
        modalities = {}
        for name, m in spec.get("modalities", {}).items():
            pad = m.get("pad_token")
            modalities[name] = Modality(
                name=name,
                ranges=tuple(ranges[r] for r in m["ranges"]),
                start_token=m["start_token"],
                start_id=special[m["start_token"]],
                end_token=m["end_token"],
                end_id=special[m["end_token"]],
                vocab_size=vocab_size,
                layout=m.get("layout", "frame_major") if len(m["ranges"]) > 1 else "frame_major",
                pad_token=pad,
                pad_id=special[pad] if pad else None,
                codec=dict(m.get("codec", {})),
            )
        return cls(vocab_size, special, ranges, modalities, sha256=sha256, path=source)

    def modality(self, name: str) -> Modality:
        try:
            return self.modalities[name]
        except KeyError:
            raise TokenSpaceError(
                f"{self.path}: no modality {name!r} (has {sorted(self.modalities)}). "
                f"Add a modalities.{name} entry or remove the tasks that need it from the golden set."
            ) from None

    def modality_for_task(self, task: str) -> Modality:
        """The modality `task` writes or reads, its `kind` the task's (audio for t2a/a2t, image for t2i/i2t)."""
        if task not in TASK_MODALITY:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_MODALITY)}")
        return replace(self.modality(self.task_modalities[task]), kind=TASK_MODALITY[task])


# names other tools give the keys mmgate reads: a near-miss to report, never a key ignored in silence
ALIASES = {"start": "start_token", "end": "end_token", "pad": "pad_token", "bos_token": "start_token",
           "eos_token": "end_token", "begin_token": "start_token", "start_id": "start_token", "end_id": "end_token",
           "codebooks": "ranges", "special": "special_tokens", "vocab": "vocab_size"}
# keys that mean something elsewhere in mmgate's inputs (golden-set meta, codec fields): informative
# extras of a token space, never typos of a key they happen to resemble (`n_tokens` is not `end_token`)
VALID_ELSEWHERE = {"n_tokens", "n_frames", "n_codebooks", "codebook_size", "sample_rate", "channels", "proc_size",
                   "frame_rate", "hop_length", "bandwidth_kbps", "downsample", "name", "kind", "description", "roles"}


def _typos(spec: Mapping[str, Any], known: set[str], where: str) -> list[str]:
    """Unknown keys are kept (they are part of the hashed bytes) and ignored, except near-misses of
    a known key, which are almost certainly typos of it, and other tools' names for one (`start` for
    `start_token`). A key valid elsewhere in mmgate's inputs is never taken for a typo."""
    import difflib

    problems = []
    for key in spec:
        if key in known or key in VALID_ELSEWHERE:
            continue
        alias = ALIASES.get(key)
        if alias in known and alias not in spec:
            problems.append(f"{where}{key}: unknown key; mmgate reads {alias!r} (rename {key!r} to {alias!r})")
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close:
            problems.append(f"{where}{key}: unknown key, did you mean {close[0]!r}?")
    return problems


def ignored_keys(spec: Mapping[str, Any]) -> list[str]:
    """Keys mmgate does not know and ignores (kept in the file: removing them would change its hash)."""
    out = [k for k in spec if k not in _TOP_KEYS]
    for name, m in (spec.get("modalities") or {}).items():
        if isinstance(m, Mapping):
            out += [f"modalities.{name}.{k}" for k in m if k not in _MODALITY_KEYS]
    return out


def _validate(spec: Any) -> list[str]:
    if not isinstance(spec, Mapping):
        return ["the top level must be a JSON object"]
    problems = _typos(spec, _TOP_KEYS, "")
    vocab_size = spec.get("vocab_size")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
        return problems + [f"vocab_size must be a positive integer, found {vocab_size!r}"]
    special = spec.get("special_tokens")
    if not isinstance(special, Mapping):
        return problems + ["special_tokens must be an object mapping token name to id"]
    ranges = spec.get("ranges")
    if not isinstance(ranges, Mapping):
        return problems + ["ranges must be an object mapping range name to [start, end)"]

    good_ranges: dict[str, tuple[int, int]] = {}
    for name, se in ranges.items():
        if not (isinstance(se, (list, tuple)) and len(se) == 2 and all(isinstance(x, int) for x in se)):
            problems.append(f"ranges.{name} must be [start, end) as two integers, found {se!r}")
            continue
        start, end = se
        if not 0 <= start < end:
            problems.append(f"ranges.{name} = [{start}, {end}) is empty or negative")
        elif end > vocab_size:
            problems.append(f"ranges.{name} = [{start}, {end}) runs past vocab_size {vocab_size}")
        else:
            good_ranges[name] = (start, end)
    modalities = spec.get("modalities", {})
    # Ranges a modality writes must be its own: no overlap, no special token inside. Other ranges
    # (a TEXT range that holds the specials, say) are the vocabulary's business and may do either.
    owner: dict[str, str] = {}
    for mname, m in (modalities.items() if isinstance(modalities, Mapping) else []):
        for r in (m.get("ranges") or []) if isinstance(m, Mapping) and isinstance(m.get("ranges"), list) else []:
            if r in owner and owner[r] != mname:
                problems.append(f"modalities.{mname} and modalities.{owner[r]} both use ranges.{r}; a range belongs to "
                                "one modality")
            owner.setdefault(r, mname)
    ordered = sorted(good_ranges.items(), key=lambda item: item[1])
    for i, (name_a, (start_a, end_a)) in enumerate(ordered):
        for name_b, (start_b, end_b) in ordered[i + 1 :]:
            if start_b >= end_a:
                break
            if name_a in owner or name_b in owner:
                problems.append(f"ranges.{name_a} and ranges.{name_b} overlap (ids {start_b}..{min(end_a, end_b) - 1})")

    seen_ids: dict[int, str] = {}
    for token, tid in special.items():
        if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid < vocab_size:
            problems.append(f"special_tokens.{token} = {tid!r} is not an id in [0, vocab_size={vocab_size})")
            continue
        if tid in seen_ids:
            problems.append(f"special_tokens.{token} and special_tokens.{seen_ids[tid]} share id {tid}")
        seen_ids[tid] = token
        for name, (start, end) in good_ranges.items():
            if start <= tid < end and name in owner:
                problems.append(f"special_tokens.{token} = {tid} lies inside ranges.{name} [{start}, {end}), which "
                                f"modalities.{owner[name]} writes")

    if not isinstance(modalities, Mapping):
        return problems + ["modalities must be an object"]
    for mname, m in modalities.items():
        where = f"modalities.{mname}"
        if not isinstance(m, Mapping):
            problems.append(f"{where} must be an object")
            continue
        problems += _typos(m, _MODALITY_KEYS, f"{where}.")
        names = m.get("ranges")
        if not isinstance(names, list) or not names:
            problems.append(f"{where}.ranges must be a non-empty list of range names")
            names = []
        unknown = [r for r in names if r not in ranges]
        problems += [f"{where}.ranges names unknown range {r!r} (known: {sorted(ranges)})" for r in unknown]
        sizes = {r: good_ranges[r][1] - good_ranges[r][0] for r in names if r in good_ranges}
        if len(set(sizes.values())) > 1:
            problems.append(f"{where}: codebook ranges differ in size {sizes}; every codebook must have the same number of codes")
        for key in ("start_token", "end_token", "pad_token"):
            token = m.get(key)
            if token is None and (key == "pad_token" or any(ALIASES.get(k) == key for k in m)):
                continue  # no pad token; or the near-miss above already says what to rename
            if token not in special:
                problems.append(f"{where}.{key} = {token!r} is not in special_tokens")
        layout = m.get("layout", "frame_major")
        if layout not in LAYOUTS and len(names) > 1:  # one codebook has no interleaving: any value is moot
            problems.append(f"{where}.layout = {layout!r} is unknown; use one of {list(LAYOUTS)}")
        codec = m.get("codec", {})
        if not isinstance(codec, Mapping):
            problems.append(f"{where}.codec must be an object")
            continue
        size = next(iter(sizes.values()), None)
        if "codebook_size" in codec and size is not None and codec["codebook_size"] != size:
            problems.append(f"{where}.codec.codebook_size = {codec['codebook_size']} but its ranges hold {size} ids each")
        if "n_codebooks" in codec and codec["n_codebooks"] != len(names):
            problems.append(f"{where}.codec.n_codebooks = {codec['n_codebooks']} but it lists {len(names)} ranges")
    return problems
