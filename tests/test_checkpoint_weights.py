"""P0.1 sees what loading the model will see: the rows it loads with, its class, whole weight files
and finite saved values. Each problem is a failing row naming the file, never a traceback."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmgate.checkpoints import model_rows, tensor_shapes
from mmgate.errors import CheckpointError
from mmgate.tokencheck import COLUMNS, check_checkpoint, stage2_rows

COPIED = "incomplete file: was the checkpoint fully copied?"
DIVERGED = "the checkpoint was saved after a diverged step; use an earlier checkpoint or resume from one"


def full_model(path, tensors, config):
    """A model folder of tiny tensors: config.json and model.safetensors, nothing loaded."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file({k: torch.zeros(*shape) for k, shape in tensors.items()}, path / "model.safetensors")
    return path


def adapter(path, tensors, base):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "peft_type": "LORA"}))
    save_file({k: torch.zeros(*shape) for k, shape in tensors.items()}, path / "adapter_model.safetensors")
    return path


LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 48, "tie_word_embeddings": False}
LORA_Q = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (2, 8),
          "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": (8, 2)}


def check(demo, ckpt, **kwargs):
    space = demo["space"]
    stage2 = pd_empty(space)
    return check_checkpoint(space, "ckpt", ckpt, stage2, demo["stage3"], base=str(demo["stage3"]), **kwargs)


def pd_empty(space):
    import pandas as pd

    return pd.DataFrame(stage2_rows([], space.sha256)).iloc[0:0]


def copy(src, tmp_path, name="ckpt"):
    shutil.copytree(src, tmp_path / name)
    return tmp_path / name


# ---- the rows the model has once loaded ------------------------------------------------------

def test_adapter_without_saved_rows_takes_the_base_rows_not_len_tokenizer(tmp_path):
    base = full_model(tmp_path / "base", {"model.embed_tokens.weight": (48, 8), "lm_head.weight": (48, 8)}, LLAMA)
    rows = model_rows(adapter(tmp_path / "lora", LORA_Q, base), tokenizer_len=64)
    assert (rows.embedding_rows, rows.output_rows) == (48, 48)
    assert "model.safetensors:model.embed_tokens.weight" in rows.embedding_source
    assert rows.embedding_source.startswith("base ")


def test_adapter_without_saved_rows_on_a_base_without_weights_takes_the_base_config(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({**LLAMA, "tie_word_embeddings": True}))
    rows = model_rows(adapter(tmp_path / "lora", LORA_Q, base), tokenizer_len=64)
    assert (rows.embedding_rows, rows.output_rows) == (48, 48)
    assert "config.json:vocab_size" in rows.embedding_source


def test_emu3_rows_come_from_the_text_model_embedding_and_text_config(tmp_path):
    config = {"architectures": ["Emu3ForConditionalGeneration"], "model_type": "emu3",
              "text_config": {"vocab_size": 40, "tie_word_embeddings": False}}
    model = full_model(tmp_path / "emu3", {"model.text_model.embed_tokens.weight": (44, 8),
                                           "model.vqmodel.quantize.embedding.weight": (16, 4),
                                           "lm_head.weight": (44, 8)}, config)
    rows = model_rows(model)
    assert (rows.embedding_rows, rows.output_rows) == (44, 44)
    assert rows.embedding_source.endswith("model.text_model.embed_tokens.weight")


def test_a_tied_head_has_the_embedding_rows(tmp_path):
    config = {"architectures": ["ChameleonForConditionalGeneration"], "model_type": "chameleon", "vocab_size": 40}
    rows = model_rows(full_model(tmp_path / "chameleon", {"model.embed_tokens.weight": (40, 8)}, config))
    assert rows.output_rows == 40 and "tie_word_embeddings" in rows.output_source


def test_an_untied_head_missing_from_the_weights_is_not_found(tmp_path):
    rows = model_rows(full_model(tmp_path / "m", {"model.embed_tokens.weight": (48, 8)}, LLAMA))
    assert rows.output_rows is None and "randomly initialised" in rows.output_source


def test_rows_of_a_truncated_file_are_not_found_with_the_problem_instead_of_a_crash(tmp_path):
    model = full_model(tmp_path / "m", {"model.embed_tokens.weight": (48, 8), "lm_head.weight": (48, 8)}, LLAMA)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[:-100])
    rows = model_rows(model)
    assert rows.embedding_rows is None and COPIED in rows.embedding_source
    with pytest.raises(CheckpointError, match="was the checkpoint fully copied"):
        tensor_shapes(model)


# ---- the class the model loads as ------------------------------------------------------------

def test_the_class_row_names_the_class_of_a_clean_checkpoint(mini_demo):
    rows = check(mini_demo, mini_demo["ckpt"])
    row = rows[rows["source"] == "class (config.json architectures or model.class)"].iloc[0]
    assert row["match"] and row["found"] == "LlamaForCausalLM"


def test_an_unknown_model_class_fails_with_advice(mini_demo):
    rows = check(mini_demo, mini_demo["ckpt"], model_class="NoSuchModelForCausalLM")
    failed = rows[~rows["match"]]
    assert failed["source"].tolist() == ["class (config.json architectures or model.class)"]
    assert "model.class = 'NoSuchModelForCausalLM'" in failed["fix"].iloc[0]


def test_auto_map_without_trust_remote_code_fails_with_the_remote_code_advice(mini_demo, tmp_path):
    ckpt = copy(mini_demo["stage3"], tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config.update(architectures=["MyLabForCausalLM"], auto_map={"AutoModelForCausalLM": "modeling_mylab.MyLab"})
    (ckpt / "config.json").write_text(json.dumps(config))
    failed = check(mini_demo, ckpt).query("~match")
    assert failed["kind"].tolist() == ["model"]
    assert "model.trust_remote_code: true" in failed["fix"].iloc[0] and "config.json" in failed["detail"].iloc[0]


# ---- whole weight files ----------------------------------------------------------------------

def test_truncated_adapter_safetensors_names_the_file_and_asks_whether_it_was_copied(mini_demo, tmp_path):
    ckpt = copy(mini_demo["ckpt"], tmp_path)
    path = ckpt / "adapter_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rows = check(mini_demo, ckpt)
    assert list(rows.columns) == list(COLUMNS)
    weights = rows[(rows["kind"] == "weights") & ~rows["match"]].iloc[0]
    assert weights["path"] == str(path) and COPIED in weights["detail"]
    assert "bytes of data, the file has" in weights["detail"]
    assert not rows[rows["source"].str.startswith("embedding rows (")]["match"].any()


def test_truncated_base_weights_fail_naming_the_base_file(mini_demo, tmp_path):
    base = copy(mini_demo["stage3"], tmp_path, "base")
    path = base / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    rows = check_checkpoint(mini_demo["space"], "ckpt", mini_demo["ckpt"], pd_empty(mini_demo["space"]),
                            mini_demo["stage3"], base=str(base))
    failed = rows.query("~match")
    assert failed["source"].tolist() == ["base weight file"] and failed["path"].tolist() == [str(path)]
    assert "10 bytes missing" in failed["detail"].iloc[0]


def test_unreadable_safetensors_header_is_an_incomplete_file(mini_demo, tmp_path):
    ckpt = copy(mini_demo["ckpt"], tmp_path)
    (ckpt / "adapter_model.safetensors").write_bytes((200).to_bytes(8, "little") + b"{" * 200)
    failed = check(mini_demo, ckpt).query("~match and kind == 'weights'")
    assert "Unreadable safetensors header" in failed["detail"].iloc[0] and COPIED in failed["detail"].iloc[0]


def test_missing_shard_of_an_index_names_the_shard(mini_demo, tmp_path):
    ckpt = copy(mini_demo["stage3"], tmp_path)
    weights = load_file(ckpt / "model.safetensors")
    names = sorted(weights)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    save_file({n: weights[n] for n in names[:half]}, ckpt / "model-00001-of-00002.safetensors")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: shard for shard, ns in shards.items() for n in ns}}))
    failed = check(mini_demo, ckpt).query("~match and kind == 'weights'")
    assert failed["path"].tolist() == [str(ckpt / "model-00002-of-00002.safetensors")]
    assert "model-00002-of-00002.safetensors" in failed["detail"].iloc[0] and COPIED in failed["detail"].iloc[0]
    assert "1 of 2 shard files" in failed["detail"].iloc[0]


def test_truncated_bin_adapter_fails_with_the_torch_error(mini_demo, tmp_path):
    ckpt = copy(mini_demo["ckpt"], tmp_path)
    torch.save(load_file(ckpt / "adapter_model.safetensors"), ckpt / "adapter_model.bin")
    (ckpt / "adapter_model.safetensors").unlink()
    assert check(mini_demo, ckpt)["match"].all()  # the .bin as saved passes
    data = (ckpt / "adapter_model.bin").read_bytes()
    (ckpt / "adapter_model.bin").write_bytes(data[: len(data) // 2])
    failed = check(mini_demo, ckpt).query("~match and kind == 'weights'")
    assert failed["path"].tolist() == [str(ckpt / "adapter_model.bin")]
    assert "torch cannot read it" in failed["detail"].iloc[0] and COPIED in failed["detail"].iloc[0]
    assert "\n" not in failed["detail"].iloc[0]


# ---- finite saved values ---------------------------------------------------------------------

def test_nan_in_three_audio_rows_of_an_adapter_lm_head_fails_naming_the_rows(mini_demo, tmp_path):
    ckpt = copy(mini_demo["ckpt"], tmp_path)
    weights = load_file(ckpt / "adapter_model.safetensors")
    head = next(n for n in weights if n.endswith("lm_head.weight"))
    audio = mini_demo["space"].ranges["AUDIO_CB0"].start
    weights[head][[audio, audio + 1, audio + 7]] = float("nan")
    save_file(weights, ckpt / "adapter_model.safetensors")
    failed = check(mini_demo, ckpt).query("~match")
    assert failed["kind"].tolist() == ["weights"]
    width = weights[head].shape[1]
    assert failed["detail"].iloc[0] == (f"{head}: {3 * width} non-finite values ({3 * width} NaN, 0 inf) in rows "
                                        f"{audio}, {audio + 1}, {audio + 7}")
    assert failed["fix"].iloc[0] == f"{failed['detail'].iloc[0]}: {DIVERGED}"


def test_inf_in_a_full_model_embedding_fails_naming_the_tensor(mini_demo, tmp_path):
    ckpt = copy(mini_demo["stage3"], tmp_path)
    weights = load_file(ckpt / "model.safetensors")
    weights["model.embed_tokens.weight"][4200, 3] = float("inf")
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    failed = check(mini_demo, ckpt).query("~match")
    assert failed["source"].tolist() == ["non-finite values: model.embed_tokens.weight"]
    assert failed["detail"].iloc[0] == "model.embed_tokens.weight: 1 non-finite values (0 NaN, 1 inf) in row 4200"


def test_non_finite_rows_are_found_across_chunks_and_the_first_few_named(tmp_path):
    from mmgate.checkpoints import nonfinite_values

    weights = {"lm_head.weight": torch.zeros(100, 4)}
    weights["lm_head.weight"][[3, 40, 41, 77, 90, 99]] = float("nan")
    save_file(weights, tmp_path / "m.safetensors")
    (found,) = nonfinite_values(tmp_path / "m.safetensors", chunk_bytes=10 * 16)
    assert (found.count, found.rows, found.first_rows) == (24, 6, (3, 40, 41, 77, 90))
    assert found.describe().endswith("rows 3, 40, 41, 77, 90, ... (6 rows in all)")


# ---- clean checkpoints -----------------------------------------------------------------------

def test_a_clean_full_model_passes_every_row(mini_demo, tmp_path):
    rows = check(mini_demo, copy(mini_demo["stage3"], tmp_path))
    assert rows["match"].all(), rows[~rows["match"]].to_string()
    assert "no NaN or inf in the embedding and output head" in rows["detail"].tolist()


def test_a_tokenizer_that_cannot_load_is_a_failed_row_and_the_model_rows_still_come(mini_demo, tmp_path):
    ckpt = copy(mini_demo["ckpt"], tmp_path)
    (ckpt / "tokenizer.json").write_text("{ not json")
    rows = check(mini_demo, ckpt)
    failed = rows.query("~match")
    assert failed["source"].tolist() == ["load the tokenizer"]
    assert str(ckpt) in failed["detail"].iloc[0] and "tokenizer.save_pretrained" in failed["fix"].iloc[0]
    assert rows["source"].str.startswith("embedding rows (").any()


# ---- an adapter that changes nothing ---------------------------------------------------------------

def saved_adapter(tmp_path, base_tensors, adapter_tensors):
    """A base of `base_tensors` and an adapter of `adapter_tensors` (values given), as safetensors."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(LLAMA))
    save_file(base_tensors, base / "model.safetensors")
    ckpt = tmp_path / "adapter"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "peft_type": "LORA"}))
    save_file(adapter_tensors, ckpt / "adapter_model.safetensors")
    return ckpt


def lora(b_value=0.0):
    return {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.randn(2, 8),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.full((8, 2), b_value)}


def test_an_adapter_with_zero_b_and_copies_equal_to_the_base_is_named_a_noop(tmp_path):
    from mmgate.tokencheck import noop_adapter_rows

    head = torch.randn(48, 8)
    ckpt = saved_adapter(tmp_path, {"model.embed_tokens.weight": torch.randn(48, 8), "lm_head.weight": head},
                         {**lora(), "base_model.model.lm_head.weight": head.clone()})
    [row] = noop_adapter_rows(ckpt, None, "noop")
    assert not row["match"] and row["found"] == "no-op"
    assert row["detail"].startswith("the adapter is a no-op: every LoRA B matrix (1) is zero and its 1 saved "
                                    "embedding/head copies equal the base's")


def test_a_trained_b_matrix_is_not_a_noop(tmp_path):
    from mmgate.tokencheck import noop_adapter_rows

    ckpt = saved_adapter(tmp_path, {"lm_head.weight": torch.randn(48, 8)}, lora(b_value=0.01))
    assert noop_adapter_rows(ckpt, None, "trained")[0]["match"]


def test_zero_b_with_a_trained_head_copy_is_not_a_noop(tmp_path):
    from mmgate.tokencheck import noop_adapter_rows

    head = torch.randn(48, 8)
    ckpt = saved_adapter(tmp_path, {"lm_head.weight": head}, {**lora(), "base_model.model.lm_head.weight": head + 0.1})
    assert noop_adapter_rows(ckpt, None, "head_only")[0]["match"]


def test_a_noop_adapter_passes_with_a_note_where_the_config_allows_it(tmp_path):
    from mmgate.tokencheck import noop_adapter_rows

    ckpt = saved_adapter(tmp_path, {"lm_head.weight": torch.randn(48, 8)}, lora())
    [row] = noop_adapter_rows(ckpt, None, "noop", fails=False)
    assert row["match"] and "no-op" in row["detail"]


def test_an_untrained_peft_adapter_fails_p01(mini_demo, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(mini_demo["stage3"]),
                           LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"]))
    model.save_pretrained(tmp_path / "untrained")
    mini_demo["tokenizer"].save_pretrained(tmp_path / "untrained")
    (tmp_path / "untrained" / "token_space.sha256").write_text(mini_demo["space"].sha256 + "\n")
    frame = check(mini_demo, tmp_path / "untrained")
    bad = frame[~frame["match"]]
    assert list(bad["kind"]) == ["adapter"] and "the adapter is a no-op" in bad["detail"].iloc[0]
