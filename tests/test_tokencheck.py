import shutil

import pandas as pd
import pytest

from mmgate.errors import TokenSpaceMismatch
from mmgate.io import write_parquet
from mmgate.tokencheck import check_checkpoint, raise_on_mismatch, stage2_rows, token_space_rows
from mmgate.tokenspace import TokenSpace

OTHER = "0" * 64


def shards(tmp_path, hashes, sidecar=None):
    directory = tmp_path / "stage2"
    directory.mkdir()
    paths = []
    for i, digest in enumerate(hashes):
        path = directory / f"part-{i:03d}.parquet"
        meta = {"token_space.sha256": digest} if digest else {}
        write_parquet(pd.DataFrame({"input_ids": [[1, 2]]}), path, meta)
        paths.append(path)
    if sidecar:
        (directory / "token_space.sha256").write_text(sidecar)
    return paths


def frame(rows):
    return pd.DataFrame(rows)


def test_every_shard_with_the_right_hash_matches(space, tmp_path):
    rows = frame(stage2_rows(shards(tmp_path, [space.sha256] * 3), space.sha256))
    assert len(rows) == 3 and rows["match"].all()
    assert set(rows["source"]) == {"parquet metadata 'token_space.sha256'"}


def test_one_retokenized_shard_fails_naming_that_shard(space, tmp_path):
    rows = frame(stage2_rows(shards(tmp_path, [space.sha256, OTHER, space.sha256]), space.sha256))
    assert rows.loc[~rows["match"], "name"].tolist() == ["part-001.parquet"]


def test_hash_is_collected_from_a_sha256sum_style_sidecar(space, tmp_path):
    paths = shards(tmp_path, [None, None], sidecar=f"{space.sha256}  token_space.json\n")
    rows = frame(stage2_rows(paths, space.sha256))
    assert rows["source"].tolist() == ["sidecar file"] and rows["match"].all()


def test_hash_is_collected_from_a_bare_sidecar(space, tmp_path):
    rows = frame(stage2_rows(shards(tmp_path, [None], sidecar=OTHER + "\n"), space.sha256))
    assert rows["source"].tolist() == ["sidecar file"] and not rows["match"].any()


def test_shard_with_no_recorded_hash_fails(space, tmp_path):
    rows = frame(stage2_rows(shards(tmp_path, [None]), space.sha256))
    assert not rows["match"].any() and rows["detail"].tolist() == ["no token-space hash recorded"]


def test_corrupt_shard_is_a_failed_row_not_a_crash(space, tmp_path):
    paths = shards(tmp_path, [space.sha256])
    paths[0].write_bytes(b"PAR1 truncated")
    rows = frame(stage2_rows(paths, space.sha256))
    assert not rows["match"].any() and "unreadable parquet" in rows["detail"][0]


def test_stale_sidecar_of_the_token_space_is_caught(space, tmp_path):
    (tmp_path / "token_space.sha256").write_text(OTHER)
    rows = frame(token_space_rows(space))
    assert rows["match"].tolist() == [True, False]


def check(demo, ckpt=None, stage2=None):
    space = demo["space"]
    stage2 = stage2 if stage2 is not None else frame(stage2_rows([], space.sha256)).iloc[0:0]
    return check_checkpoint(space, "ckpt", ckpt or demo["ckpt"], stage2, demo["stage3"], base=str(demo["stage3"]))


def copy_ckpt(demo, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(demo["ckpt"], target)
    return target


def test_matching_checkpoint_passes_every_row(mini_demo):
    rows = check(mini_demo)
    assert rows["match"].all(), rows[~rows["match"]].to_string()
    assert {"stage3_init", "checkpoint", "tokenizer", "model"} <= set(rows["kind"])
    assert rows.loc[rows["source"].str.startswith("embedding rows ("), "found"].tolist() == [str(mini_demo["space"].vocab_size)]
    assert {"class (config.json architectures or model.class)", "checkpoint weight files (headers)",
            "base weight files (headers)", "non-finite values"} <= set(rows["source"])


def test_tokenizer_with_a_different_aud_end_id_fails_naming_the_token(mini_demo, tmp_path):
    from mmgate.demo import SPECIAL_TOKENS, build_tokenizer

    ckpt = copy_ckpt(mini_demo, tmp_path)
    order = list(SPECIAL_TOKENS)  # Stage-2 added <img_end> before <aud_end> in this run
    a, b = order.index("<aud_end>"), order.index("<img_end>")
    order[a], order[b] = order[b], order[a]
    build_tokenizer(order).save_pretrained(ckpt)
    rows = check(mini_demo, ckpt)
    failed = rows[~rows["match"]]
    assert {"special token <aud_end>", "special token <img_end>"} == set(failed["source"])
    with pytest.raises(TokenSpaceMismatch, match="special token <aud_end>"):
        raise_on_mismatch(rows, "ckpt", tmp_path / "check.parquet")


def resize_saved(ckpt, suffixes, rows):
    """Give the adapter's saved matrices ending in `suffixes` `rows` rows (cut, or padded with copies)."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(ckpt / "adapter_model.safetensors")
    for name in list(weights):
        if name.endswith(suffixes):
            w = weights[name]
            weights[name] = w[:rows].clone() if rows <= len(w) else torch.cat([w, w[: rows - len(w)]])
    save_file(weights, ckpt / "adapter_model.safetensors")


def test_checkpoint_whose_embedding_rows_differ_from_its_head_fails(mini_demo, tmp_path):
    ckpt = copy_ckpt(mini_demo, tmp_path)
    vocab = mini_demo["space"].vocab_size
    resize_saved(ckpt, ("embed_tokens.weight",), vocab + 64)
    failed = check(mini_demo, ckpt).query("~match")
    assert failed["source"].tolist() == ["embedding and output rows agree"]
    assert failed[["expected", "found"]].values.tolist() == [[str(vocab + 64), str(vocab)]]
    assert "only one was resized" in failed["fix"].iloc[0]


def test_padded_vocabulary_passes_with_the_pad_rows_in_the_detail(mini_demo, tmp_path):
    ckpt = copy_ckpt(mini_demo, tmp_path)
    vocab = mini_demo["space"].vocab_size
    resize_saved(ckpt, ("embed_tokens.weight", "lm_head.weight"), vocab + 24)
    rows = check(mini_demo, ckpt)
    assert rows["match"].all(), rows[~rows["match"]].to_string()
    embedding = rows[rows["source"].str.startswith("embedding rows (")].iloc[0]
    assert embedding["detail"] == f"embedding rows = {vocab + 24}: 24 pad rows beyond vocab_size {vocab}"


def test_fewer_rows_than_vocab_size_fail_with_the_resize_fix(mini_demo, tmp_path):
    ckpt = copy_ckpt(mini_demo, tmp_path)
    vocab = mini_demo["space"].vocab_size
    resize_saved(ckpt, ("embed_tokens.weight", "lm_head.weight"), vocab - 8)
    failed = check(mini_demo, ckpt).query("~match")
    assert [s.split(" (")[0] for s in failed["source"]] == ["embedding rows", "output rows"]
    assert failed["found"].tolist() == [str(vocab - 8)] * 2
    assert all("resize_token_embeddings(len(tokenizer))" in fix and "modules_to_save" in fix for fix in failed["fix"])


def test_checkpoint_recording_another_hash_fails(mini_demo, tmp_path):
    ckpt = copy_ckpt(mini_demo, tmp_path)
    (ckpt / "token_space.sha256").write_text(OTHER)
    rows = check(mini_demo, ckpt)
    assert rows.loc[~rows["match"], "kind"].tolist() == ["checkpoint"]


def test_failure_message_is_a_table_with_the_fix(mini_demo, tmp_path):
    ckpt = copy_ckpt(mini_demo, tmp_path)
    (ckpt / "token_space.sha256").unlink()
    rows = check(mini_demo, ckpt)
    with pytest.raises(TokenSpaceMismatch) as err:
        raise_on_mismatch(rows, "ckpt", tmp_path / "check.parquet")
    message = str(err.value)
    assert "P0.1 token-space check FAILED for checkpoint 'ckpt'" in message
    assert "should save token_space.sha256 into each checkpoint" in message


def test_codes_shifted_by_one_with_every_special_token_in_place_fail_naming_the_first_differing_id(mini_demo, tmp_path):
    from mmgate.demo import build_tokenizer

    ckpt = copy_ckpt(mini_demo, tmp_path)
    build_tokenizer(code_shift=1).save_pretrained(ckpt)
    rows = check(mini_demo, ckpt)
    failed = rows[~rows["match"]]
    # ids, length and specials all agree: only the id-to-token tables can tell
    assert set(failed["source"]) == {f"{r} id-to-token table vs the Stage-3 init tokenizer" for r in mini_demo["space"].ranges}
    first = mini_demo["space"].ranges["AUDIO_CB0"].start
    cb0 = failed[failed["source"].str.startswith("AUDIO_CB0")].iloc[0]
    assert f"first differing id {first}: the Stage-3 init tokenizer has '<a0_0>', this tokenizer '<shift_0>'" in cb0["detail"]


def test_a_stage2_shard_records_its_id_to_token_tables_and_a_shifted_checkpoint_fails_against_it(mini_demo, tmp_path):
    from mmgate.demo import build_tokenizer
    from mmgate.tokencheck import TABLES_KEY, token_table_digests

    space = mini_demo["space"]
    shard = tmp_path / "stage2" / "part-000.parquet"
    write_parquet(pd.DataFrame({"input_ids": [[1, 2]]}), shard,
                  {"token_space.sha256": space.sha256, TABLES_KEY: token_table_digests(mini_demo["tokenizer"], space)})
    stage2 = frame(stage2_rows([shard], space.sha256))
    assert check(mini_demo, stage2=stage2)["match"].all()
    ckpt = copy_ckpt(mini_demo, tmp_path)
    build_tokenizer(code_shift=1).save_pretrained(ckpt)
    rows = check(mini_demo, ckpt, stage2=stage2)
    shard_rows = rows[rows["kind"] == "stage2_shard"]
    assert shard_rows["match"].tolist() == [True, False]  # its hash is right; its tables are not this tokenizer's
    assert shard_rows["detail"].iloc[1].startswith(f"{len(space.ranges)} of {len(space.ranges)} ranges differ")


def chameleon_like_tokenizer():
    """Image codes as base-vocabulary tokens (IMGIMG...Z, as Chameleon's), begin/end of image added."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "a", "cat", "sky"] + [f"IMGIMG{chr(65 + i)}Z" for i in range(4)]
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "<unk>")))
    tok.add_tokens(["<boi>", "<eoi>"])
    space = TokenSpace.from_dict({"vocab_size": 10, "special_tokens": {"<boi>": 8, "<eoi>": 9},
                                  "ranges": {"TEXT": [1, 4], "IMAGE": [4, 8]},
                                  "modalities": {"image": {"ranges": ["IMAGE"], "start_token": "<boi>", "end_token": "<eoi>"}}})
    return tok, space


def test_a_text_range_of_ordinary_words_is_not_required_to_be_added_tokens():
    from mmgate.tokencheck import tokenizer_rows

    tok, space = chameleon_like_tokenizer()
    rows = tokenizer_rows(tok, space, "ckpt", "here", declared={4, 5, 6, 7})
    assert all(r["match"] for r in rows), [r for r in rows if not r["match"]]
    assert not any("TEXT" in r["source"] for r in rows)


def test_image_codes_in_the_base_vocabulary_pass_where_the_models_vocabulary_map_declares_them():
    from mmgate.tokencheck import tokenizer_rows

    tok, space = chameleon_like_tokenizer()
    rows = {r["source"]: r for r in tokenizer_rows(tok, space, "ckpt", "here", declared={4, 5, 6, 7})}
    assert rows["IMAGE id 4"]["match"] and "image token by the model's vocabulary_map" in rows["IMAGE id 4"]["detail"]


def test_image_codes_in_the_base_vocabulary_fail_where_nothing_declares_them():
    from mmgate.tokencheck import tokenizer_rows

    tok, space = chameleon_like_tokenizer()
    rows = {r["source"]: r for r in tokenizer_rows(tok, space, "ckpt", "here")}
    assert not rows["IMAGE id 4"]["match"] and "not an added modality token" in rows["IMAGE id 4"]["fix"]


def test_declared_image_ids_are_read_from_the_models_vocabulary_map(tmp_path):
    import json as _json

    from mmgate.families import declared_image_ids

    (tmp_path / "config.json").write_text(_json.dumps({"architectures": ["ChameleonForConditionalGeneration"],
                                                       "vocabulary_map": {"IMGIMGAZ": 4, "IMGIMGBZ": 5, "<image>": 9}}))
    assert declared_image_ids(tmp_path) == {4, 5}
