"""P0.1: is the token space the same everywhere?

Compares `token_space.json` against the hash recorded by every Stage-2 shard, the Stage-3 init
checkpoint and the checkpoint under test, and checks that the checkpoint's tokenizer and model
agree with the file (special-token ids, `len(tokenizer)`, embedding and output rows). One row per
artifact; any mismatch fails the job before GPU work, with a table that says what to fix.

Ids alone do not prove that a code means the same thing everywhere: a tokenizer whose code tokens
are shifted by one, with every special token in place, has the same length and the same special
ids. So the id-to-token table of every modality range is compared with the Stage-3 init's
tokenizer (and with the digests a Stage-2 shard records under `token_tables` in its metadata),
range by range, naming the first id that differs.

P0.1 also sees what loading the model will see, so a checkpoint that cannot load, or would load
wrong, fails here with a row that names the file rather than in a GPU job: the class it loads as
(`model` row, `families.resolve_architecture`), whether every weight file is whole (a safetensors
file shorter than its header says, an index naming a missing shard, a .bin torch cannot read:
`weights` rows), NaN/inf in what an adapter saved or in a full model's embedding and head, and the
embedding/head rows the loaded model has (`checkpoints.model_rows`): at least vocab_size (pad rows
beyond it pass), and the same for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import hashlib
import json

import pandas as pd

from .checkpoints import (MODEL_PREFIXES, ModelRows, base_of, embedding_and_head, is_adapter, model_rows, nonfinite_values,
                          noop_adapter, tensor_table, weight_files, weight_problems)
from .errors import CheckpointError, TokenSpaceError, TokenSpaceMismatch
from .families import declared_image_ids
from .io import TOKEN_SPACE_KEY, read_file_metadata
from .tokenspace import TokenSpace, read_sha256_file

HASH_FILE = "token_space.sha256"
TABLES_KEY = "token_tables"  # parquet metadata: {range name: sha256 of its id-to-token table}
COLUMNS = ("kind", "name", "path", "source", "hash", "expected", "found", "match", "detail", "fix")


def _row(kind: str, name: str, path: str | Path, source: str, match: bool, expected: Any = None, found: Any = None,
         detail: str = "", fix: str = "", hash: str | None = None) -> dict[str, Any]:
    return {
        "kind": kind, "name": name, "path": str(path), "source": source, "hash": hash,
        "expected": None if expected is None else str(expected), "found": None if found is None else str(found),
        "match": bool(match), "detail": detail, "fix": "" if match else fix,
    }


def _hash_row(kind: str, name: str, path: Path, source: str, recorded: str | None, expected: str, fix: str,
              missing_fix: str | None = None) -> dict[str, Any]:
    if recorded is None:
        missing_fix = missing_fix or (
            f"record the hash of the token space the artifact was made with ({HASH_FILE} beside it "
            f"or the parquet metadata key {TOKEN_SPACE_KEY!r})"
        )
        return _row(kind, name, path, source, False, expected, None, "no token-space hash recorded", missing_fix)
    match = recorded == expected
    detail = "recorded hash matches token_space.json" if match else "recorded hash differs from token_space.json"
    return _row(kind, name, path, source, match, expected, recorded, detail, fix, hash=recorded)


def _read_recorded(path: Path) -> tuple[str | None, str]:
    """(hash, problem) from a token_space.sha256 file; an unreadable file is a problem, not a crash."""
    try:
        return read_sha256_file(path), ""
    except TokenSpaceError as err:
        return None, str(err)


def token_space_rows(space: TokenSpace) -> list[dict[str, Any]]:
    """The reference itself, and the `.sha256` next to it when there is one (a stale one is caught)."""
    path = Path(space.path)
    rows = [_row("token_space", path.name, path, "sha256 of the file's bytes", True, space.sha256, space.sha256,
                 "reference", hash=space.sha256)]
    sidecar = path.with_name(HASH_FILE)
    if sidecar.exists():
        recorded, problem = _read_recorded(sidecar)
        row = _hash_row("token_space", sidecar.name, sidecar, "sidecar file", recorded, space.sha256,
                        f"regenerate it: sha256sum {path.name} > {sidecar.name}")
        if problem:
            row["detail"] = problem
        rows.append(row)
    return rows


def _recorded_tables(meta: Mapping[str, str]) -> dict[str, str] | None:
    """`token_tables` as a key of its own (JSON) or inside mmgate's provenance record."""
    from .io import METADATA_KEY

    try:
        if TABLES_KEY in meta:
            return json.loads(meta[TABLES_KEY])
        return json.loads(meta.get(METADATA_KEY, "{}")).get(TABLES_KEY)
    except (ValueError, AttributeError):
        return None


def stage2_rows(shards: Sequence[str | Path], expected: str) -> list[dict[str, Any]]:
    """Every shard's recorded hash: its parquet metadata key and/or the sidecar in its directory."""
    fix = "re-tokenize this shard with the current token_space.json, or remove it from `stage2.shards`"
    rows = []
    sidecars_done: set[Path] = set()
    for shard in map(Path, shards):
        recorded_somewhere = False
        sidecar = shard.parent / HASH_FILE
        if sidecar.exists():
            recorded_somewhere = True
            if sidecar not in sidecars_done:
                sidecars_done.add(sidecar)
                recorded, problem = _read_recorded(sidecar)
                row = _hash_row("stage2_shard", sidecar.name, sidecar, "sidecar file", recorded, expected, fix)
                if problem:
                    row["detail"] = problem
                rows.append(row)
        if shard.suffix == ".parquet":
            try:
                meta = read_file_metadata(shard)
            except Exception as err:  # a corrupt shard is a failed row, not a crash
                rows.append(_row("stage2_shard", shard.name, shard, "parquet metadata", False, expected, None,
                                 f"unreadable parquet: {err}", "replace the shard with a readable copy"))
                continue
            tables = _recorded_tables(meta)
            if tables:  # compared with each checkpoint's tokenizer in check_checkpoint
                rows.append(_row("stage2_tables", shard.name, shard, f"parquet metadata {TABLES_KEY!r}", True,
                                 detail="id-to-token digests recorded", hash=json.dumps(tables)))
            if TOKEN_SPACE_KEY in meta:
                recorded_somewhere = True
                try:
                    recorded = meta[TOKEN_SPACE_KEY].strip().split()[0].lower()
                except IndexError:
                    recorded = ""
                rows.append(_hash_row("stage2_shard", shard.name, shard, f"parquet metadata {TOKEN_SPACE_KEY!r}",
                                      recorded, expected, fix))
        if not recorded_somewhere:
            rows.append(_hash_row("stage2_shard", shard.name, shard, "none", None, expected, fix))
    if not rows:
        rows.append(_row("stage2_shard", "(none)", "", "stage2.shards", False, expected, None,
                         "no Stage-2 shards matched", "point `stage2.shards` in config.yaml at the Stage-2 data"))
    return rows


def checkpoint_hash_row(kind: str, name: str, directory: str | Path, expected: str) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / HASH_FILE
    if not path.exists():
        return _hash_row(kind, name, path, "missing file", None, expected, "",
                         f"the training run should save {HASH_FILE} into each checkpoint")
    recorded, problem = _read_recorded(path)
    row = _hash_row(kind, name, path, "checkpoint file", recorded, expected,
                    "this checkpoint was trained with another vocabulary layout: check that config.yaml's "
                    "`token_space` is the file this run was tokenized with")
    if problem:
        row["detail"] = problem
    return row


def tokenizer_rows(tokenizer: Any, space: TokenSpace, name: str, source: str,
                   declared: set[int] | frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """Each special token's id, the ends of every modality range and `len(tokenizer)` against the token space.

    A modality code must be a token text cannot produce: an added or special token, or one the model's
    config declares an image token (`declared`: Chameleon's `vocabulary_map`, whose image codes are
    base-vocabulary IMGIMG... tokens). Ranges no modality writes (a TEXT range) are not judged.
    """
    rows = []
    vocab = tokenizer.get_vocab()
    for token, expected_id in sorted(space.special_tokens.items(), key=lambda kv: kv[1]):
        found = vocab.get(token)
        rows.append(_row(
            "tokenizer", name, source, f"special token {token}", found == expected_id, expected_id, found,
            f"{token} has id {found}" if found is not None else f"{token} is not in the tokenizer",
            f"the tokenizer and token_space.json disagree on {token}: save the Stage-2 tokenizer with the "
            "checkpoint, or regenerate token_space.json from that tokenizer",
        ))
    added = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    written = {r.name for m in space.modalities.values() for r in m.ranges}
    for range_ in (r for r in space.ranges.values() if r.name in written):
        for tid in (range_.start, range_.end - 1):
            token = tokenizer.convert_ids_to_tokens(tid) if tid < len(tokenizer) else None
            is_added, is_declared = token is not None and token in added, tid in declared
            rows.append(_row(
                "tokenizer", name, source, f"{range_.name} id {tid}", is_added or is_declared,
                "an added token (or an image token of the model's vocabulary_map)", token,
                f"id {tid} is {token!r}" + (", an image token by the model's vocabulary_map" if is_declared and not is_added else ""),
                f"id {tid} of {range_.name} is not an added modality token in this tokenizer: the ranges in "
                "token_space.json do not describe this tokenizer",
            ))
    rows.append(_row("tokenizer", name, source, "len(tokenizer)", len(tokenizer) == space.vocab_size,
                     space.vocab_size, len(tokenizer), f"len(tokenizer) = {len(tokenizer)}",
                     "vocab_size in token_space.json must equal len(tokenizer) of the Stage-2 tokenizer"))
    return rows


def range_tokens(tokenizer: Any, space: TokenSpace) -> dict[str, list[str | None]]:
    """The token string of every id of every range (None past the end of the tokenizer)."""
    size = len(tokenizer)
    return {name: [tokenizer.convert_ids_to_tokens(i) if i < size else None for i in range(r.start, r.end)]
            for name, r in space.ranges.items()}


def table_digest(tokens: Sequence[str | None]) -> str:
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()


def token_table_digests(tokenizer: Any, space: TokenSpace) -> dict[str, str]:
    """What a Stage-2 shard records under `token_tables`, so P0.1 can check its codes' meaning."""
    return {name: table_digest(tokens) for name, tokens in range_tokens(tokenizer, space).items()}


_TABLE_FIX = ("this tokenizer maps the ids of {range} to other tokens than {reference}: every code would be read "
              "and written as another code. Save the Stage-2 tokenizer with the checkpoint (tokenizer.save_pretrained) "
              "and retrain or re-tokenize whatever used this one")


def token_table_rows(tokens: Mapping[str, list[str | None]], reference: Mapping[str, list[str | None]], space: TokenSpace,
                     name: str, source: str, reference_name: str) -> list[dict[str, Any]]:
    """One row per range: does this tokenizer give every id of the range the reference's token?"""
    rows = []
    for range_name, expected in reference.items():
        found = tokens.get(range_name, [])
        differing = [k for k, (a, b) in enumerate(zip(expected, found)) if a != b] + (
            [min(len(expected), len(found))] if len(expected) != len(found) else [])
        start = space.ranges[range_name].start
        if differing:
            k = differing[0]
            detail = (f"first differing id {start + k}: {reference_name} has "
                      f"{expected[k] if k < len(expected) else None!r}, this tokenizer "
                      f"{found[k] if k < len(found) else None!r} ({len(differing)} of {len(expected)} ids differ)")
        else:
            detail = f"all {len(expected)} ids map to the same tokens as {reference_name}"
        rows.append(_row("tokenizer", name, source, f"{range_name} id-to-token table vs {reference_name}",
                         not differing, table_digest(expected)[:12], table_digest(found)[:12], detail,
                         _TABLE_FIX.format(range=range_name, reference=reference_name)))
    return rows


def stage2_table_rows(stage2: pd.DataFrame, digests: Mapping[str, str], name: str, source: str) -> list[dict[str, Any]]:
    """Each Stage-2 shard that recorded id-to-token digests, against this tokenizer's."""
    rows = []
    for shard in stage2[stage2["kind"] == "stage2_tables"].itertuples():
        recorded = json.loads(shard.hash)
        differing = [r for r in recorded if recorded[r] != digests.get(r)]
        detail = (f"{len(differing)} of {len(recorded)} ranges differ, first {differing[0]}" if differing
                  else f"all {len(recorded)} recorded ranges match")
        rows.append(_row("stage2_shard", shard.name, shard.path, f"{TABLES_KEY} vs the {name} tokenizer", not differing,
                         recorded[differing[0]][:12] if differing else None,
                         (digests.get(differing[0]) or "")[:12] if differing else None, detail,
                         f"this shard was tokenized with another id-to-token table than {source}: re-tokenize it "
                         "with the Stage-2 tokenizer, or save that tokenizer with the checkpoint"))
    return rows


RESIZE_FIX = ("resize_token_embeddings(len(tokenizer)) before training and save the resized matrices "
              "(modules_to_save=[\"embed_tokens\", \"lm_head\"] for LoRA)")
DIVERGED_FIX = "the checkpoint was saved after a diverged step; use an earlier checkpoint or resume from one"


def model_row_checks(ckpt: str | Path, base: str | None, space: TokenSpace, name: str,
                     tokenizer_len: int | None = None) -> list[dict[str, Any]]:
    """Embedding and output rows of the model as it loads (`checkpoints.model_rows`) against vocab_size.

    More rows than vocab_size pass (a vocabulary padded to a multiple of 64 or 128: the pad rows
    are never generated once sampling is restricted); fewer fail, as do an embedding and a head of
    different sizes (an untied model where only one matrix was resized)."""
    try:
        rows = model_rows(ckpt, base, tokenizer_len)
    except CheckpointError as err:  # e.g. a config.json that is not JSON: a failed row, not a crash
        rows = ModelRows(None, f"not found: {err}", None, f"not found: {err}")
    vocab = space.vocab_size
    checks = []
    for what, count, source in (("embedding rows", rows.embedding_rows, rows.embedding_source),
                                ("output rows", rows.output_rows, rows.output_source)):
        if count is None:
            detail = f"{what}: {source}"
            why = source.removeprefix("not found: ").removeprefix("base not found: ")
            fix = (f"no {what} for the loaded model: {why.rstrip('.')}. Save the model with save_pretrained (it "
                   "writes config.json and every matrix), or fix the weight files the 'weights' rows name")
        elif count < vocab:
            detail = f"{what} = {count}: {vocab - count} fewer than vocab_size {vocab}"
            fix = (f"the model's {what} ({count}) are fewer than vocab_size {vocab} in token_space.json, so ids "
                   f"{count}..{vocab - 1} have no row: {RESIZE_FIX}")
        elif count > vocab:
            detail = f"{what} = {count}: {count - vocab} pad rows beyond vocab_size {vocab}"
            fix = ""
        else:
            detail, fix = f"{what} = {count}", ""
        checks.append(_row("model", name, str(ckpt), f"{what} ({source})", count is not None and count >= vocab,
                           f">= {vocab}", count, detail, fix))
    emb, out = rows.embedding_rows, rows.output_rows
    if emb is not None and out is not None and emb != out:
        checks.append(_row(
            "model", name, str(ckpt), "embedding and output rows agree", False, emb, out,
            f"embedding rows = {emb} ({rows.embedding_source}), output rows = {out} ({rows.output_source})",
            "the input embedding and the output head have different row counts (an untied model where only one "
            f"was resized, or an adapter that saved only one of them): {RESIZE_FIX}",
        ))
    return checks


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def architecture_row(ckpt: str | Path, base: str | None, model_class: str | None, name: str,
                     trust_remote_code: bool) -> dict[str, Any]:
    """The class the model loads as (`families.resolve_architecture`), or why there is none."""
    from .families import resolve_architecture

    source = "class (config.json architectures or model.class)"
    try:
        arch = resolve_architecture(ckpt, base, model_class, trust_remote_code)
    except Exception as err:  # CheckpointError says the file, the field and the fix; anything else is a row too
        message = str(err) if isinstance(err, CheckpointError) else _first_line(err)
        return _row("model", name, str(ckpt), source, False, model_class or "a generating class", None, message,
                    message)
    return _row("model", name, str(arch.config_path), source, True, model_class, arch.class_name,
                f"{arch.class_name} ({arch.source})" + (", remote code" if arch.remote_code else ""))


def weight_rows(ckpt: str | Path, base: str | None, name: str) -> list[dict[str, Any]]:
    """Can the weight files load, and are the saved values finite?

    One row per weight folder (the checkpoint and, for an adapter, its base): a shard an index names
    that is missing, a file shorter than its header says, an unreadable header or .bin fails it,
    naming the file. Then NaN/inf: every tensor an adapter saved (LoRA factors, modules_to_save
    copies), and a full model's embedding and output head, read a chunk of rows at a time."""
    ckpt = Path(ckpt)
    rows = []
    folders = [("checkpoint", ckpt)]
    if is_adapter(ckpt):
        try:
            resolved = base_of(ckpt, base)
        except CheckpointError:  # adapter_config.json unreadable: the class row says so
            resolved = None
        if resolved and Path(resolved).is_dir():
            folders.append(("base", Path(resolved)))
    clean: dict[Path, bool] = {}
    for role, folder in folders:
        try:
            files, _ = weight_files(folder)
        except CheckpointError as err:
            files, problems = [], [(str(folder), str(err))]
        else:
            problems = weight_problems(folder)
        if not files and not problems:
            expected = ("adapter_model.safetensors or adapter_model.bin" if is_adapter(folder) else
                        "model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json")
            problems = [(str(folder), f"{folder}: no weight files ({expected}), so the {role} cannot load. Save it "
                                      f"with save_pretrained, or point config.yaml at the folder that holds it.")]
        for path, problem in problems:  # each problem names the file and says what to do
            state = "incomplete" if "incomplete file" in problem else "missing" if "no weight files" in problem else "unreadable"
            fix = problem[len(path) + 2:] if problem.startswith(f"{path}: ") else problem  # the path is printed beside it
            rows.append(_row("weights", name, path, f"{role} weight file", False, "complete", state, problem, fix))
        if not problems:
            rows.append(_row("weights", name, folder, f"{role} weight files (headers)", True, "complete", "complete",
                             f"{len(files)} file(s) complete: " + ", ".join(f.name for f in files[:4])
                             + (", ..." if len(files) > 4 else "")))
        clean[folder] = not problems
    if not clean.get(ckpt):
        return rows
    try:
        if is_adapter(ckpt):
            targets = [(f, None) for f in weight_files(ckpt)[0]]
            what = "every tensor the adapter saved"
        else:
            table = tensor_table(ckpt, MODEL_PREFIXES)
            names = [n for n in embedding_and_head(table) if n]
            targets = [(table[n][0], [n]) for n in names]
            what = "embedding and output head"
        found = [bad for path, names in targets for bad in nonfinite_values(path, names)]
    except Exception as err:  # an unreadable tensor is a failed row, not a crash of the P0.1 job
        rows.append(_row("weights", name, ckpt, "non-finite values", False, "finite", None,
                         f"cannot read the saved tensors ({_first_line(err)})",
                         "copy the checkpoint again from where training saved it (compare sizes or sha256 with "
                         "the source), then rerun"))
        return rows
    for bad in found:
        rows.append(_row("weights", name, bad.path, f"non-finite values: {bad.tensor}", False, "finite",
                         f"{bad.count} non-finite", bad.describe(), f"{bad.describe()}: {DIVERGED_FIX}"))
    if not found:
        rows.append(_row("weights", name, ckpt, "non-finite values", True, "finite", "finite",
                         f"no NaN or inf in the {what}"))
    return rows


def noop_adapter_rows(ckpt: str | Path, base: str | None, name: str, fails: bool = True) -> list[dict[str, Any]]:
    """An adapter that changes nothing (checkpoints.noop_adapter) fails P0.1 by name (a row that passes,
    saying so, with `gates.noop_adapter_fails: false`); nothing for a full model."""
    if not is_adapter(ckpt):
        return []
    try:
        reason = noop_adapter(ckpt, base)
    except (CheckpointError, OSError, RuntimeError, ValueError) as err:  # the weights rows say what is unreadable
        return [_row("adapter", name, ckpt, "the adapter changes the model", True, "trained", None,
                     f"not checked: {_first_line(err)}")]
    if reason is None:
        return [_row("adapter", name, ckpt, "the adapter changes the model", True, "trained", "trained",
                     "some LoRA B matrix or saved embedding/head copy differs from the base")]
    return [_row("adapter", name, ckpt, "the adapter changes the model", not fails, "trained", "no-op", reason,
                 "save the adapter after training, and check that its target_modules name modules of this class "
                 "(peft lists them in adapter_config.json)")]


def check_checkpoint(space: TokenSpace, ckpt_name: str, ckpt_dir: str | Path, stage2: pd.DataFrame,
                     stage3_dir: str | Path | None, base: str | None = None, trust_remote_code: bool = False,
                     model_class: str | None = None, noop_adapter_fails: bool = True) -> pd.DataFrame:
    """All P0.1 rows for one checkpoint; `stage2` is the cached table from `stage2_rows`.

    Besides the token space, it sees what loading the model will see: the class it loads as
    (`model_class` is config.yaml's `model.class`), whether every weight file is whole, NaN/inf in
    the saved weights, and the embedding/head rows the loaded model has."""
    from .loading import load_tokenizer, tokenizer_dir

    from .checkpoints import has_tokenizer

    rows = token_space_rows(space)
    rows += stage2[stage2["kind"] != "stage2_tables"].to_dict("records")
    if stage3_dir:
        rows.append(checkpoint_hash_row("stage3_init", Path(stage3_dir).name, stage3_dir, space.sha256))
    rows.append(checkpoint_hash_row("checkpoint", ckpt_name, ckpt_dir, space.sha256))
    try:
        source = tokenizer_dir(ckpt_dir, base)
        tokenizer = load_tokenizer(ckpt_dir, base, trust_remote_code)
    except Exception as err:  # a failed row; the model rows below still say what else is wrong
        message = str(err) if isinstance(err, CheckpointError) else (
            f"{ckpt_dir}: cannot load the tokenizer ({_first_line(err)}). Save the Stage-2 tokenizer with the "
            "checkpoint (tokenizer.save_pretrained)")
        rows.append(_row("tokenizer", ckpt_name, str(ckpt_dir), "load the tokenizer", False, "a tokenizer", None,
                         message, message))
        tokenizer = None
    if tokenizer is not None:
        rows += tokenizer_rows(tokenizer, space, ckpt_name, source, declared_image_ids(ckpt_dir, base))
        tokens = range_tokens(tokenizer, space)
        if stage3_dir and has_tokenizer(stage3_dir) and Path(stage3_dir).resolve() != Path(source).resolve():
            reference = range_tokens(load_tokenizer(stage3_dir, None, trust_remote_code), space)
            rows += token_table_rows(tokens, reference, space, ckpt_name, source, "the Stage-3 init tokenizer")
        rows += stage2_table_rows(stage2, {r: table_digest(t) for r, t in tokens.items()}, ckpt_name, source)
    rows.append(architecture_row(ckpt_dir, base, model_class, ckpt_name, trust_remote_code))
    rows += weight_rows(ckpt_dir, base, ckpt_name)
    if all(row["match"] for row in rows if row["kind"] == "weights"):
        rows += noop_adapter_rows(ckpt_dir, base, ckpt_name, noop_adapter_fails)
    rows += model_row_checks(ckpt_dir, base, space, ckpt_name, None if tokenizer is None else len(tokenizer))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _short(value: Any) -> Any:
    return value[:12] + "..." if isinstance(value, str) and len(value) == 64 else value


def failure_message(frame: pd.DataFrame, ckpt_name: str, evidence: str | Path) -> str:
    bad = frame[~frame["match"].astype(bool)].reset_index(drop=True)
    table = bad[["kind", "name", "source", "expected", "found"]].map(_short)
    table.index = [f"[{i + 1}]" for i in range(len(bad))]
    lines = [
        f"P0.1 token-space check FAILED for checkpoint {ckpt_name!r}: {len(bad)} of {len(frame)} artifacts disagree "
        "with token_space.json, so generated ids would not mean what the decoders and the golden set assume. "
        f"No GPU job runs for this checkpoint until this is fixed; its report says P0.1 FAIL. Every row is in {evidence}.",
        "",
        table.to_string(max_colwidth=60),
        "",
        "How to fix:",
    ]
    for i, row in bad.iterrows():
        lines.append(f"  [{i + 1}] {row['path']}: {row['fix']}")
    return "\n".join(lines)


def raise_on_mismatch(frame: pd.DataFrame, ckpt_name: str, evidence: str | Path) -> None:
    if not frame["match"].astype(bool).all():
        raise TokenSpaceMismatch(failure_message(frame, ckpt_name, evidence))


def raise_on_any_mismatch(checks: Mapping[str, pd.DataFrame]) -> None:
    """One error listing every checkpoint's mismatches (`checks`: check.parquet path -> its rows)."""
    failed = [failure_message(frame, _ckpt_of(path), path)
              for path, frame in checks.items() if not frame["match"].astype(bool).all()]
    if failed:
        raise TokenSpaceMismatch("\n\n".join(failed))


def _ckpt_of(path: str | Path) -> str:
    parent = Path(path).parent.name
    return parent.split("=", 1)[1] if "=" in parent else parent


def require_p01(check_path: str | Path) -> None:
    """Refuse GPU work for a checkpoint whose token-space check failed (e.g. a target asked for by hand)."""
    from .io import read_parquet

    frame = read_parquet(check_path)
    if not frame["match"].astype(bool).all():
        raise TokenSpaceMismatch(failure_message(frame, _ckpt_of(check_path), check_path))
