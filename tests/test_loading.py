import pytest
import torch

from mmgate.checkpoints import model_rows
from mmgate.loading import load_model


@pytest.fixture(scope="module")
def unresized(tmp_path_factory):
    """A base with only the text vocabulary, and a LoRA trained after resizing it (as in Stage 4)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mmgate import demo

    root = tmp_path_factory.mktemp("unresized")
    tokenizer = demo.build_tokenizer()
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(demo.tiny_llama_config(64))
    base.save_pretrained(root / "base")
    base.resize_token_embeddings(len(tokenizer))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"]))
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.normal_()
        for name, weight in model.named_parameters():
            if "lora_B" in name:  # a trained LoRA: B starts at zero, which would make merging trivial
                weight.normal_(std=0.5)
    model.save_pretrained(root / "adapter")
    model.save_pretrained(root / "adapter_bin", safe_serialization=False)
    for name in ("adapter", "adapter_bin"):
        tokenizer.save_pretrained(root / name)
    ids = torch.tensor([[1, 2, len(tokenizer) - 1]])
    return {"root": root, "tokenizer": tokenizer, "expected": model(input_ids=ids).logits, "ids": ids}


def test_adapter_loads_onto_a_base_resized_to_the_tokenizer(unresized):
    model, tokenizer = load_model(unresized["root"] / "adapter", base=str(unresized["root"] / "base"))
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    torch.testing.assert_close(model(input_ids=unresized["ids"]).logits, unresized["expected"])


def test_a_merged_adapter_gives_the_logits_of_the_adapter_on_its_base(unresized):
    from peft import PeftModel

    model, _ = load_model(unresized["root"] / "adapter", base=str(unresized["root"] / "base"), merge_adapter=True)
    assert not isinstance(model, PeftModel)
    torch.testing.assert_close(model(input_ids=unresized["ids"]).logits, unresized["expected"], atol=1e-5, rtol=1e-4)


def test_the_lora_in_the_merge_test_changes_the_logits(unresized):
    """Guards the merge test: with a LoRA that did nothing, merged and unmerged would agree trivially."""
    model, _ = load_model(unresized["root"] / "adapter", base=str(unresized["root"] / "base"))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.zero_()
    assert (model(input_ids=unresized["ids"]).logits - unresized["expected"]).abs().max() > 1e-3


def test_a_device_map_dispatches_the_model_and_keeps_its_logits(unresized):
    model, _ = load_model(unresized["root"] / "adapter", base=str(unresized["root"] / "base"), device_map="auto")
    assert getattr(model, "hf_device_map", None)  # placed by accelerate (every module on the CPU here)
    torch.testing.assert_close(model(input_ids=unresized["ids"]).logits, unresized["expected"])


def test_an_unknown_device_map_is_a_checkpoint_error(unresized):
    from mmgate.errors import CheckpointError

    with pytest.raises(CheckpointError, match="model.device_map = 'everywhere'"):
        load_model(unresized["root"] / "adapter", base=str(unresized["root"] / "base"), device_map="everywhere")


def test_adapter_saved_as_bin_loads_the_same_weights(unresized):
    model, _ = load_model(unresized["root"] / "adapter_bin", base=str(unresized["root"] / "base"))
    torch.testing.assert_close(model(input_ids=unresized["ids"]).logits, unresized["expected"])


def test_loading_the_adapter_without_resizing_fails(unresized):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(unresized["root"] / "base")
    with pytest.raises(RuntimeError, match="size mismatch"):
        PeftModel.from_pretrained(base, str(unresized["root"] / "adapter"))


def test_rows_are_read_from_adapter_headers_without_loading(unresized):
    rows = model_rows(unresized["root"] / "adapter", tokenizer_len=len(unresized["tokenizer"]))
    assert rows.embedding_rows == rows.output_rows == len(unresized["tokenizer"])
    assert "adapter_model.safetensors" in rows.embedding_source


def test_rows_are_read_from_a_bin_adapter(unresized):
    rows = model_rows(unresized["root"] / "adapter_bin", tokenizer_len=None)
    assert rows.embedding_rows == len(unresized["tokenizer"]) and "adapter_model.bin" in rows.embedding_source


class RunsCode:
    """Unpickling this calls a function: what weights_only=True exists to refuse."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_pickle_that_would_run_code_is_a_checkpoint_error_with_a_safe_remedy(unresized, tmp_path):
    import shutil

    from mmgate.checkpoints import tensor_shapes
    from mmgate.errors import CheckpointError

    ckpt = tmp_path / "ckpt"
    shutil.copytree(unresized["root"] / "adapter_bin", ckpt)
    torch.save({"lm_head.weight": torch.zeros(2, 2), "hook": RunsCode()}, ckpt / "adapter_model.bin")
    for load in (lambda: tensor_shapes(ckpt), lambda: load_model(ckpt, base=str(unresized["root"] / "base"))):
        with pytest.raises(CheckpointError) as err:
            load()
        message = str(err.value)
        assert "adapter_model.bin" in message or str(ckpt) in message
        assert "Convert it to safetensors" in message and "do not turn weights_only off" in message
