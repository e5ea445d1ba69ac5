"""`token_space.json` read off a tokenizer and a short YAML spec, instead of written by hand.

The spec says, per modality, how its tokens are named and how many there are; the tokenizer says
which ids they have. Ranges, special-token ids and ``vocab_size`` come from the tokenizer, so the
file agrees with it by construction, and every claim the spec makes is checked against it::

    modalities:
      music:                      # range names: MUSIC_CB0..MUSIC_CB3 (``audio`` gives AUDIO_CB0..)
        tokens: "<🎶{i}>"          # {i} alone: one index over all codebooks, codebook after codebook
        codebook_size: 2048       # "<a{cb}_{i}>" or a list of one pattern per codebook: {i} per codebook
        n_codebooks: 4
        layout: frame_major       # or codebook_major; required when n_codebooks > 1
        start_token: "<som>"
        end_token: "<eom>"
        pad_token: null           # optional
        codec: {name: encodec_32khz, sample_rate: 32000}   # copied as is
    special_tokens: ["<eoh>"]     # optional: more special tokens to record (e.g. for templates)
    vocab_size: 32000             # optional: asserted equal to len(tokenizer)
    meta: {model: my-model}       # optional: copied as is

Example (a real tokenizer with 2 codebooks of 4 codes added after a 2-word vocabulary):

    >>> from tokenizers import Tokenizer, models
    >>> from transformers import PreTrainedTokenizerFast
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, "<unk>")))
    >>> _ = tok.add_tokens(["<soa>", "<eoa>"] + [f"<a{cb}_{i}>" for cb in range(2) for i in range(4)])
    >>> spec = {"modalities": {"audio": {"tokens": "<a{cb}_{i}>", "codebook_size": 4, "n_codebooks": 2,
    ...     "layout": "frame_major", "start_token": "<soa>", "end_token": "<eoa>"}}}
    >>> space = build_token_space(tok, spec)
    >>> space["vocab_size"], space["special_tokens"], space["ranges"]
    (12, {'<soa>': 2, '<eoa>': 3}, {'AUDIO_CB0': [4, 8], 'AUDIO_CB1': [8, 12]})
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, TokenSpaceError
from .tokenspace import LAYOUTS, TokenSpace, sha256_file

_SPEC_KEYS = {"modalities", "special_tokens", "vocab_size", "meta"}
_MODALITY_KEYS = {"tokens", "codebook_size", "n_codebooks", "layout", "start_token", "end_token", "pad_token", "codec"}
_BOUNDARY_KEYS = ("start_token", "end_token", "pad_token")
DEFAULT_META = {"built_by": "mmgate token-space --from-tokenizer"}


def range_names(modality: str, n_codebooks: int) -> list[str]:
    """``audio``, 4 -> ``AUDIO_CB0``..``AUDIO_CB3``; ``image``, 1 -> ``IMAGE`` (the names token_space.json uses)."""
    stem = modality.upper()
    return [f"{stem}_CB{k}" for k in range(n_codebooks)] if n_codebooks > 1 else [stem]


def load_builder_spec(path: str | Path) -> dict[str, Any]:
    """The YAML spec at `path` as a dict; checked in full by `build_token_space`."""
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the token-space spec ({err}). "
                          "Fix: point --spec at a YAML file like config/examples/token-space/anygpt.yaml.") from err
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: the token-space spec must be a YAML mapping with a `modalities:` key, "
                          f"found {type(spec).__name__}. Fix: start from config/examples/token-space/anygpt.yaml.")
    return spec


def _spec_error(source: str, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}. Fix: {fix}.")


def _unknown_keys(spec: Mapping[str, Any], known: set[str], where: str, source: str) -> None:
    # Unlike token_space.json (hashed as bytes, so unknown keys are kept), the spec is ours: a
    # misspelt key would silently fall back to a default, so it is an error.
    for key in spec:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            raise _spec_error(source, f"{where}{key}", "unknown key" + (f", did you mean {close[0]!r}?" if close else ""),
                              f"use only {sorted(known)}")


def _positive_int(m: Mapping[str, Any], key: str, where: str, source: str, default: int | None = None) -> int:
    value = m.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _spec_error(source, f"{where}.{key}", f"must be a positive integer, found {value!r}",
                          f"set {key} to the codec's number of {'codes per codebook' if key == 'codebook_size' else 'codebooks'}")
    return value


def _codebook_tokens(m: Mapping[str, Any], where: str, source: str) -> list[list[str]]:
    """Token names per codebook, as the spec's pattern(s) spell them."""
    size, n = _positive_int(m, "codebook_size", where, source), _positive_int(m, "n_codebooks", where, source, 1)
    patterns = m.get("tokens")
    if isinstance(patterns, str):
        patterns = [patterns] * n
        per_codebook = "{cb}" in patterns[0]
    elif isinstance(patterns, list) and len(patterns) == n and all(isinstance(p, str) for p in patterns):
        per_codebook = True
    else:
        raise _spec_error(source, f"{where}.tokens", f"must be a pattern or a list of {n} patterns (one per codebook), "
                          f"found {patterns!r}", 'write e.g. tokens: "<a{cb}_{i}>" or tokens: ["<c0_{i}>", "<c1_{i}>"]')
    for p in patterns:
        if p.count("{i}") != 1:
            raise _spec_error(source, f"{where}.tokens", f"pattern {p!r} must hold {{i}} exactly once (the code's index)",
                              'write e.g. "<🎶{i}>" (index over all codebooks) or "<a{cb}_{i}>" (index per codebook)')
    # {i} alone runs on across codebooks (AnyGPT's <🎶0>..<🎶8191> for 4 x 2048); with {cb} or one
    # pattern per codebook it restarts at 0 in every codebook.
    return [[p.replace("{cb}", str(k)).replace("{i}", str(j + (0 if per_codebook else k * size))) for j in range(size)]
            for k, p in enumerate(patterns)]


def _check_spec(spec: Mapping[str, Any], source: str) -> dict[str, tuple[dict[str, Any], list[list[str]]]]:
    """Structural checks; returns each modality's spec with its token names per codebook."""
    if not isinstance(spec, Mapping):
        raise _spec_error(source, "top level", "must be a mapping", "start from config/examples/token-space/anygpt.yaml")
    _unknown_keys(spec, _SPEC_KEYS, "", source)
    modalities = spec.get("modalities")
    if not isinstance(modalities, Mapping) or not modalities:
        raise _spec_error(source, "modalities", f"must map modality names to their tokens, found {modalities!r}",
                          "add e.g. `modalities: {image: {tokens: '<img{i}>', codebook_size: 8192, ...}}`")
    extra = spec.get("special_tokens", [])
    if not isinstance(extra, list) or not all(isinstance(t, str) for t in extra):
        raise _spec_error(source, "special_tokens", f"must be a list of token names, found {extra!r}",
                          'write e.g. special_tokens: ["<|im_start|>", "<|im_end|>"]')
    if not isinstance(spec.get("meta", {}), Mapping):
        raise _spec_error(source, "meta", "must be a mapping", "write e.g. meta: {model: my-model}")
    checked = {}
    for name, m in modalities.items():
        where = f"modalities.{name}"
        if not isinstance(m, Mapping):
            raise _spec_error(source, where, "must be a mapping", "give tokens, codebook_size, start_token and end_token")
        _unknown_keys(m, _MODALITY_KEYS, f"{where}.", source)
        tokens = _codebook_tokens(m, where, source)
        if len(tokens) > 1 and m.get("layout") not in LAYOUTS:
            raise _spec_error(source, f"{where}.layout", f"{m.get('layout')!r} is not one of {list(LAYOUTS)}",
                              "say how training flattened the codebooks: frame_major (c0[t], c1[t], ..., as AnyGPT) "
                              "or codebook_major (all of c0, then all of c1, ..., as MIO); the tokenizer cannot tell")
        for key, role in zip(_BOUNDARY_KEYS, ("opens", "closes", "pads")):
            if not isinstance(m.get(key), str) and not (key == "pad_token" and m.get(key) is None):
                raise _spec_error(source, f"{where}.{key}", f"must be a token name, found {m.get(key)!r}",
                                  f"name the token that {role} a {name} span in training")
        if not isinstance(m.get("codec", {}), Mapping):
            raise _spec_error(source, f"{where}.codec", "must be a mapping",
                              "write e.g. codec: {name: encodec_24khz, sample_rate: 24000}")
        checked[str(name)] = (dict(m), tokens)
    return checked


def _first(tokens: list[str], bad: list[str]) -> str:
    return f"{len(bad)} of its {len(tokens)} tokens, first {bad[0]!r}"


def build_token_space(tokenizer: Any, spec: Mapping[str, Any], source: str = "token-space spec") -> dict[str, Any]:
    """The token_space.json dict for `tokenizer` (anything with `get_vocab`, `get_added_vocab`, `len`).

    Raises ConfigError for a malformed spec and TokenSpaceError where the tokenizer disagrees with
    it, each naming `source`, the field and the fix.
    """
    modalities = _check_spec(spec, source)
    vocab, added, n_vocab = tokenizer.get_vocab(), tokenizer.get_added_vocab(), len(tokenizer)
    tok_name = f"the tokenizer{f' at {tokenizer.name_or_path}' if getattr(tokenizer, 'name_or_path', '') else ''}"
    codes = {t for _, tokens in modalities.values() for cb in tokens for t in cb}

    def fail(where: str, problem: str, fix: str) -> TokenSpaceError:
        return TokenSpaceError(f"{source}: {where}: {problem}. Fix: {fix}.")

    if "vocab_size" in spec and spec["vocab_size"] != n_vocab:
        raise fail("vocab_size", f"the spec says {spec['vocab_size']} but len({tok_name}) is {n_vocab} (the model's "
                   "embeddings are resized to len(tokenizer))", "point at the tokenizer the model was trained with, "
                   "or correct vocab_size (or drop it: it is read off the tokenizer)")
    ranges: dict[str, list[int]] = {}
    owner: dict[str, str] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name, (m, tokens) in modalities.items():
        where, flat = f"modalities.{name}.tokens", [t for cb in tokens for t in cb]
        missing = [t for t in flat if t not in vocab]
        if missing:
            by_id = sorted(set(added) - codes, key=added.__getitem__)
            spread = [by_id[i * (len(by_id) - 1) // 7] for i in range(8)] if len(by_id) > 8 else by_id  # first to last
            hint = "" if len(missing) < len(flat) else (
                f"; none of them exists, and its added tokens include {spread}")
            raise fail(where, f"{_first(flat, missing)}, are not in {tok_name}", "make tokens, codebook_size and "
                       f"n_codebooks match the tokens the model was trained with{hint}")
        base = [t for t in flat if t not in added]
        if base:
            raise fail(where, f"{_first(flat, base)} (id {vocab[base[0]]}), are in {tok_name}'s base vocabulary, not "
                       "added tokens", "point tokens at this modality's added tokens (tokenizer.get_added_vocab() "
                       "lists them) and check that the tokenizer is the one with the modality tokens added")
        for k, cb in enumerate(tokens):
            ids = [vocab[t] for t in cb]
            first = ids[0]
            for j, tid in enumerate(ids):
                if tid != first + j:  # one range [start, end) per codebook is what the model's heads are masked with
                    raise fail(where, f"codebook {k} is not one contiguous, increasing id range: token {cb[j]!r} has id "
                               f"{tid}, expected {first + j} ({cb[0]!r} has id {first})", "check codebook_size and how "
                               "the index runs ({i} alone: one index over all codebooks; {cb} or one pattern per "
                               "codebook: {i} restarts per codebook); a tokenizer whose codes have gaps cannot be "
                               "described by ranges")
            if ids[-1] >= n_vocab:
                raise fail(where, f"token {cb[-1]!r} has id {ids[-1]} >= len({tok_name}) = {n_vocab}",
                           "use a tokenizer whose ids run without holes (the model's vocabulary is len(tokenizer))")
        names = range_names(name, len(tokens))
        for rname, cb in zip(names, tokens):
            if rname in ranges:
                raise _spec_error(source, f"modalities.{name}", f"its range name {rname} is also modalities.{owner[rname]}'s",
                                  "rename one of the modalities (range names are the upper-cased modality name)")
            ranges[rname], owner[rname] = [vocab[cb[0]], vocab[cb[-1]] + 1], name
        entry: dict[str, Any] = {"ranges": names, "start_token": m["start_token"], "end_token": m["end_token"]}
        if m.get("pad_token") is not None:
            entry["pad_token"] = m["pad_token"]
        if len(tokens) > 1:  # one codebook has no interleaving: a layout there would be moot
            entry["layout"] = m["layout"]
        if "codec" in m:
            entry["codec"] = dict(m["codec"])
        entries[name] = entry

    ordered = sorted(ranges.items(), key=lambda item: item[1])
    for (a, (start_a, end_a)), (b, (start_b, end_b)) in zip(ordered, ordered[1:]):
        if start_b < end_a:
            raise fail(f"modalities.{owner[a]} and modalities.{owner[b]}", f"ranges.{a} [{start_a}, {end_a}) and "
                       f"ranges.{b} [{start_b}, {end_b}) overlap (ids {start_b}..{min(end_a, end_b) - 1})",
                       "give each modality and codebook its own tokens (patterns and codebook_size must not name the "
                       "same tokens twice)")

    special: dict[str, int] = {}
    wanted = [(f"modalities.{n}.{key}", m[key]) for n, (m, _) in modalities.items() for key in _BOUNDARY_KEYS
              if m.get(key) is not None] + [("special_tokens", t) for t in spec.get("special_tokens", [])]
    for where, token in wanted:
        if token not in vocab:
            candidates = sorted(set(added) - codes)
            close = difflib.get_close_matches(token, candidates, n=1, cutoff=0.6)
            raise fail(where, f"{token!r} is not in {tok_name}", (f"did you mean {close[0]!r}? Otherwise n" if close else "N")
                       + f"ame a token the model was trained with (its non-code added tokens: {candidates[:12]})")
        inside = [r for r, (s, e) in ranges.items() if s <= vocab[token] < e]
        if inside:
            raise fail(where, f"{token!r} (id {vocab[token]}) lies inside ranges.{inside[0]}, which "
                       f"modalities.{owner[inside[0]]} writes", "name a boundary token that is not one of the codes")
        special[token] = vocab[token]
    space = {
        "schema_version": 1,
        "vocab_size": n_vocab,
        "special_tokens": dict(sorted(special.items(), key=lambda item: item[1])),
        "ranges": ranges,
        "modalities": entries,
        "meta": dict(spec.get("meta", DEFAULT_META)),
    }
    TokenSpace.from_dict(space, source=f"the token space built from {source}")  # the reader's rules, once more
    return space


def render_token_space(space: Mapping[str, Any]) -> str:
    """The bytes to hash: the same JSON layout the demo writes."""
    return json.dumps(space, indent=2) + "\n"


def sidecar_path(out_path: str | Path) -> Path:
    """``token_space.json`` -> ``token_space.sha256``, where `mmgate token-space` looks for it."""
    return Path(out_path).with_suffix(".sha256")


def write_token_space(tokenizer_dir: str | Path, spec_path: str | Path, out_path: str | Path, force: bool = False,
                      trust_remote_code: bool = False) -> TokenSpace:
    """Build from the tokenizer in `tokenizer_dir` and the spec, write `out_path` and its sha256 sidecar.

    An existing `out_path` with other content is kept unless `force`: artifacts may already record
    its hash. Files whose content would not change are not rewritten, so their mtimes (which
    Snakemake compares) stay put.
    """
    from transformers import AutoTokenizer

    from .io import write_text

    spec = load_builder_spec(spec_path)
    fix = ("Fix: point --from-tokenizer at the directory holding the tokenizer the model was trained with "
           "(tokenizer.json or tokenizer_config.json; a checkpoint's or its base's).")
    if not Path(tokenizer_dir).is_dir():  # a directory, never a hub id: what was trained with is on disk
        raise TokenSpaceError(f"{tokenizer_dir}: not a directory. {fix}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise TokenSpaceError(f"{tokenizer_dir}: cannot load a tokenizer ({err}). {fix}") from err
    text = render_token_space(build_token_space(tokenizer, spec, source=str(spec_path)))
    out = Path(out_path)
    space = TokenSpace.from_dict(json.loads(text), source=str(out), sha256=hashlib.sha256(text.encode()).hexdigest())
    if out.exists() and out.read_bytes() != text.encode():
        if not force:
            raise TokenSpaceError(
                f"{out} exists with other content (sha256 {sha256_file(out)}; the tokenizer and spec give {space.sha256}). "
                "Stage-2 shards, checkpoints and results may already record its hash, and P0.1 fails every artifact "
                "whose recorded hash differs. Fix: compare the two (write elsewhere first), then pass --force to "
                "overwrite it if the change is intended.")
    if not out.exists() or out.read_bytes() != text.encode():
        write_text(out, text)
    sidecar, line = sidecar_path(out), f"{space.sha256}  {out.name}\n"
    if not sidecar.exists() or sidecar.read_text() != line:
        write_text(sidecar, line)
    return space
