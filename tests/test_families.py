"""The conformance matrix: on every family labs build on, mmgate's numbers are the model's own.

Tiny random instances (tests/families.py: built from configs, the demo's vocabulary, heads re-drawn
so logits reach 30-70), each as a full checkpoint, a LoRA with `modules_to_save` embedding/head,
and that LoRA merged. "The model's own" is its class's `forward`; for HF Chameleon, which sets every
image-token logit to the float minimum, it is that forward with the suppression switched off (the
class cannot write images; Lumina-mGPT and Anole, trained to, do).
"""

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from families import FAMILIES, build, class_for, rows_for
from mmgate.ablation import Scored, target_losses
from mmgate.errors import CheckpointError
from mmgate.heads import check_head, head_path, own_head_forward
from mmgate.loading import load_model

VARIANTS = ("full", "lora", "lora_merged")


@pytest.fixture(scope="module")
def built(tmp_path_factory, mini_demo):
    root = tmp_path_factory.mktemp("families")
    return {name: build(name, root, mini_demo["tokenizer"], mini_demo["space"]) for name in FAMILIES}


@pytest.fixture(scope="module")
def loaded(built):
    cache = {}

    def get(name, variant):
        if (name, variant) not in cache:
            folder = built[name]["full" if variant == "full" else "lora"]
            cache[name, variant] = load_model(folder, merge_adapter=variant == "lora_merged")[0]
        return cache[name, variant]

    return get


@contextmanager
def unsuppressed(model):
    """HF Chameleon's forward without its image-token suppression (every other class: unchanged)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mapping = getattr(getattr(base, "model", None), "vocabulary_mapping", None)
    if mapping is None or not hasattr(type(mapping), "image_tokens"):
        yield
        return
    mapping.__dict__["image_tokens"] = []
    try:
        yield
    finally:
        del mapping.__dict__["image_tokens"]


def sequence(mini_demo, modality="image", n=24):
    space, tokenizer = mini_demo["space"], mini_demo["tokenizer"]
    m = space.modality(modality)
    codes = [r.start + (7 * k) % (r.end - r.start) for k, r in zip(range(n), [*m.ranges] * n)]
    text = tokenizer.encode("Draw a large blue circle and drums")
    assert tokenizer.unk_token_id not in text
    return text + [m.start_id, *codes, m.end_id]


def own_log_probs(model, ids):
    with torch.inference_mode(), unsuppressed(model):
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)


MATRIX = [(name, variant) for name in FAMILIES for variant in VARIANTS]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_class_is_the_one_the_checkpoint_names(loaded, name):
    model = loaded(name, "lora")
    assert type(model.get_base_model()).__name__ == class_for(name)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_heads_reach_logits_where_processing_shows(loaded, mini_demo, name):
    with torch.inference_mode(), unsuppressed(loaded(name, "full")):
        logits = loaded(name, "full")(input_ids=torch.tensor([sequence(mini_demo)])).logits
    assert 25 < float(logits.abs().max()) < 80  # a soft-cap of 30 changes logits of this size by several nats


@pytest.mark.parametrize("name, variant", MATRIX)
def test_ablation_losses_equal_the_models_own_cross_entropy(loaded, mini_demo, name, variant):
    model = loaded(name, variant)
    ids = sequence(mini_demo)
    own = own_log_probs(model, ids)
    expected = -own[torch.arange(4, len(ids) - 1), torch.tensor(ids[5:])].mean()
    mine, _ = target_losses(model, [Scored(ids[:5], ids[5:])], pad_id=0)
    assert abs(float(mine[0]) - float(expected)) < 1e-4


@pytest.mark.parametrize("name, variant", MATRIX)
def test_restricted_head_log_probs_equal_the_models_own(loaded, mini_demo, name, variant):
    model = loaded(name, variant)
    path = head_path(model)
    ids = sequence(mini_demo, "audio")
    with torch.inference_mode():
        hidden = path.body(input_ids=torch.tensor([ids])).last_hidden_state[0]
        own = own_log_probs(model, ids)
        for r in mini_demo["space"].modality("audio").ranges[:2] + mini_demo["space"].modality("image").ranges:
            mine = torch.log_softmax(path.row_logits(hidden, r.start, r.end).float(), dim=-1)
            expected = torch.log_softmax(own[:, r.start : r.end], dim=-1)  # renormalised over the same ids
            torch.testing.assert_close(mine, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_head_check_passes_on_every_family(loaded, mini_demo, name):
    for variant in VARIANTS:
        check = check_head(loaded(name, variant), [sequence(mini_demo), sequence(mini_demo, "audio")])
        assert check.exact, (variant, check.describe())


def test_the_head_check_names_the_image_ids_chameleon_suppresses(loaded, mini_demo):
    check = check_head(loaded("chameleon", "lora"), [sequence(mini_demo)])
    image = mini_demo["space"].modality("image").ranges[0]
    assert check.suppressed == tuple(range(image.start, image.end))
    assert "suppresses 512 ids" in check.describe()


def test_gemma2s_softcap_is_applied(loaded):
    path = head_path(loaded("gemma2", "full"))
    assert path.transform.softcap == 30.0 and path.describe()["logit_processing"] == "soft-cap 30"


def test_coheres_logit_scale_is_applied(loaded):
    assert head_path(loaded("cohere", "lora")).describe()["logit_processing"] == "x 0.25"


def test_the_head_check_at_load_runs_on_golden_sequences(built, mini_demo):
    from mmgate import demo
    from mmgate.golden import normalize_golden
    from mmgate.shardjob import ShardJob

    golden = normalize_golden(demo.golden_frame(demo.SyntheticWorld(mini_demo["space"], seed=0), 4, seed=1))
    job = ShardJob(mini_demo["space"], golden, "gemma2", "t2a", 0, 4, ckpt_dir=str(built["gemma2"]["lora"]),
                   model_config={"dtype": "float32", "device": "cpu"})
    probe = job.head_probe(mini_demo["tokenizer"])
    assert len(probe) == 4  # one example of each task, text then its modality span
    assert {mini_demo["space"].modality(m).start_id for m in ("audio", "image")} <= {i for seq in probe for i in seq}
    model, _, _ = job.load_model()
    assert head_path(model).check.positions == sum(map(len, probe))


@pytest.mark.parametrize("name", ["gemma2", "chameleon", "emu3", "qwen2_padded"])
@pytest.mark.parametrize("mode", ["constrained", "free"])
def test_generation_writes_the_modality_and_obeys_the_constraint(loaded, mini_demo, caplog, name, mode):
    from mmgate import demo
    from mmgate.generation import GenerationSettings, generate_rows
    from mmgate.golden import normalize_golden
    from mmgate.templates import PromptTemplate

    space, tokenizer = mini_demo["space"], mini_demo["tokenizer"]
    golden = normalize_golden(demo.golden_frame(demo.SyntheticWorld(space, seed=0), 4, seed=1))
    model = loaded(name, "lora")
    for task in ("t2a", "t2i"):
        rows = golden[golden["task"] == task].reset_index(drop=True)
        template = PromptTemplate(demo.DEFAULT_TEMPLATES[task], tokenizer, space.special_tokens, name=task)
        with caplog.at_level("WARNING"):
            frame = generate_rows(model, tokenizer, space, rows, task, template, mode, GenerationSettings(seed=3))
        assert "falls back" not in caplog.text
        spans = np.concatenate([np.asarray(g, dtype=np.int64) for g in frame["generated_ids"]])
        assert spans.size
        if mode == "constrained":
            assert spans.max() < space.vocab_size  # never a pad row of a padded vocabulary
            assert frame["out_of_range"].sum() == 0 and frame["wrong_slot"].sum() == 0
            assert frame["removed_mass_mean"].notna().any()
        else:  # a free run may write a pad row: it is out of range, never a crash
            assert frame["out_of_range"].sum() >= (spans >= space.vocab_size).sum()


def test_generate_samples_ids_the_class_suppresses_with_the_models_own_head(loaded, mini_demo):
    """HF Chameleon's forward gives image ids the float minimum; within `own_head_forward` they get the head's logits."""
    model = loaded("chameleon", "lora")
    image = mini_demo["space"].modality("image").ranges[0]
    prompt = torch.tensor([sequence(mini_demo)[:8]])
    kwargs = dict(max_new_tokens=2, do_sample=False, output_scores=True, return_dict_in_generate=True,
                  attention_mask=torch.ones_like(prompt), pad_token_id=0)
    suppressed = model.generate(input_ids=prompt, **kwargs).scores[0][0, image.start : image.end]
    with own_head_forward(model):
        own = model.generate(input_ids=prompt, **kwargs).scores[0][0, image.start : image.end]
    assert float(suppressed.max()) <= torch.finfo(torch.float32).min / 2
    expected = own_log_probs(model, prompt[0].tolist())[-1]
    torch.testing.assert_close(torch.log_softmax(own.float(), -1), torch.log_softmax(expected, -1)[image.start : image.end]
                               - torch.logsumexp(torch.log_softmax(expected, -1)[image.start : image.end], -1), atol=1e-4, rtol=0)


def test_a_padded_vocabulary_keeps_its_rows(loaded, mini_demo):
    rows = rows_for("qwen2_padded", len(mini_demo["tokenizer"]))
    assert rows > len(mini_demo["tokenizer"])
    for variant in VARIANTS:
        model = loaded("qwen2_padded", variant)
        assert model.get_input_embeddings().weight.shape[0] == rows
        assert model.get_output_embeddings().weight.shape[0] == rows


def test_a_padded_lora_passes_p01(built, mini_demo):
    from mmgate.tokencheck import model_row_checks

    checks = model_row_checks(built["qwen2_padded"]["lora"], None, mini_demo["space"], "padded", len(mini_demo["tokenizer"]))
    assert all(row["match"] for row in checks), checks


def test_missing_weights_are_an_error_never_a_random_model(built):
    """A full Emu3 loaded as the text-only class would have every weight random (AutoModelForCausalLM did this)."""
    with pytest.raises(CheckpointError, match=r"Emu3ForCausalLM.*weights the class expects are not in the files"):
        load_model(built["emu3"]["full"], model_class="Emu3ForCausalLM")


def test_an_adapter_whose_tensors_match_no_module_is_an_error(built):
    with pytest.raises(CheckpointError, match="the adapter does not fit its base .* loaded as LlamaForCausalLM"):
        load_model(built["emu3"]["lora"], base=str(built["llama"]["full"]))


def test_a_model_class_that_transformers_lacks_is_named(built):
    with pytest.raises(CheckpointError, match="model.class = 'NoSuchForCausalLM'"):
        load_model(built["llama"]["full"], model_class="NoSuchForCausalLM")


def test_remote_code_gets_mmgates_advice(built, tmp_path):
    import json
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(built["llama"]["full"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["MyLabForCausalLM"], auto_map={"AutoModelForCausalLM": "modeling_mylab.MyLabForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model.trust_remote_code: true.*only if you trust"):
        load_model(folder)


def with_unknown_processing(model):
    """`model` whose class halves its logits after the head: processing mmgate does not know of."""
    original = type(model).forward

    class Halved(type(model)):
        def forward(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            out.logits = out.logits * 0.5
            return out

    model.__class__ = Halved
    return model


def test_a_head_path_that_differs_from_forward_scores_with_the_forward(built):
    """A family with processing after the head that mmgate does not know: the check fails, ablation uses forward."""
    model = with_unknown_processing(load_model(built["llama"]["full"])[0])
    ids = list(range(40, 70))
    assert not check_head(model, [ids]).exact
    own = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    expected = -own[torch.arange(4, len(ids) - 1), torch.tensor(ids[5:])].mean()
    mine, _ = target_losses(model, [Scored(ids[:5], ids[5:])], pad_id=0)
    assert abs(float(mine[0]) - float(expected)) < 1e-4
    assert head_path(model).describe()["head_path"] == "full forward"


def test_a_suppressing_class_whose_head_path_differs_cannot_be_scored(built):
    from mmgate.errors import MMGateError

    model = with_unknown_processing(load_model(built["chameleon"]["full"])[0])
    check_head(model, [list(range(40, 70))])
    with pytest.raises(MMGateError, match="can score and sample with neither"):
        target_losses(model, [Scored([40, 41], [42, 43])], pad_id=0)
