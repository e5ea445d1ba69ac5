"""Restricted-head constrained decoding: the same tokens and the same distribution as transformers
`generate` + `ModalityConstraint`, over the allowed ids only; `generate` where it cannot say the same."""

import logging

import pytest
import torch
from conftest import small_spec
from transformers import (AutoModelForCausalLM, GenerationConfig, GPT2Config, LlamaConfig, Qwen2Config,
                          StoppingCriteriaList, TopKLogitsWarper)

from mmgate.constrain import ModalityConstraint, RowBudget
from mmgate.generation import GenerationSettings
from mmgate.restricted import RestrictedDecoder, RowHead, Unsupported
from mmgate.tokenspace import TokenSpace

PAD = 0


def tiny_model(kind="llama", head_scale=1.0, seed=0):
    """A random 2-layer model over small_spec's 40 ids; `head_scale` sharpens its distributions."""
    shape = dict(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False)
    config = LlamaConfig(**shape) if kind == "llama" else Qwen2Config(**shape)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    return model


def modality(name="audio", layout="frame_major"):
    return TokenSpace.from_dict(small_spec(layout)).modality(name)


def prompts(m, lengths=(3, 6, 4, 5)):
    """Left-padded prompts of different lengths, each ending with the modality's start token."""
    torch.manual_seed(1)
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.randint(1, 10, (n,))
        ids[row, -1] = m.start_id
        mask[row, width - n:] = 1
    return ids, mask


def gen_config(m, do_sample=False, max_new_tokens=9, **sampling):
    sampling = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, **sampling}
    return GenerationConfig(do_sample=do_sample, max_new_tokens=max_new_tokens, min_new_tokens=0, num_beams=1,
                            repetition_penalty=1.0, eos_token_id=m.end_id, pad_token_id=PAD, **sampling)


def constraint_for(m, width, min_length=(2, 4, 4, 6), n_frames=None, track=False):
    frames = None if n_frames is None else torch.tensor(n_frames)
    return ModalityConstraint(m, width, n_frames=frames, min_length=torch.tensor(min_length), track_removed_mass=track)


def budget(width, budgets=(5, 7, 9, 9)):
    return StoppingCriteriaList([RowBudget(width, torch.tensor(budgets))])


def decoder_and_inputs(model, m, config, n_frames=None, track=False, removed_mass_every=16, measure_phase=0):
    """(the restricted decoder with a fresh constraint, (prompt ids, attention mask, per-row budgets))."""
    ids, mask = prompts(m)
    constraint = constraint_for(m, ids.shape[1], n_frames=n_frames, track=track)
    return (RestrictedDecoder.for_model(model, config, constraint, removed_mass_every, measure_phase),
            (ids, mask, budget(ids.shape[1])))


def reference(model, m, config, inputs, n_frames=None, track=False, processors=(), **kwargs):
    """(generate's output, its ModalityConstraint) for the same inputs; `processors` run before the constraint."""
    ids, mask, stop = inputs
    constraint = constraint_for(m, ids.shape[1], n_frames=n_frames, track=track)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=mask, generation_config=config, stopping_criteria=stop,
                             logits_processor=[*processors, constraint], **kwargs)
    return out, constraint


def greedy_pair(model, m, n_frames=None):
    """(the decoder's sequences, generate's sequences), greedy."""
    decoder, inputs = decoder_and_inputs(model, m, gen_config(m), n_frames=n_frames)
    return decoder.generate(*inputs).sequences, reference(model, m, gen_config(m), inputs, n_frames=n_frames)[0]


# --- greedy: identical tokens ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("name", ["audio", "image"])
def test_greedy_gives_the_tokens_of_generate_with_the_constraint(kind, name):
    ours, hf = greedy_pair(tiny_model(kind), modality(name))
    assert torch.equal(ours, hf)


def test_greedy_matches_generate_when_rows_are_in_different_codebooks_at_one_step():
    m = modality("audio", "codebook_major")  # the slot is position // n_frames: rows with other n_frames differ
    ours, hf = greedy_pair(tiny_model(), m, n_frames=(2, 3, 4, 4))
    assert torch.equal(ours, hf)


@pytest.mark.parametrize("adapter", ["lora_on_head", "head_in_modules_to_save"])
def test_greedy_matches_generate_through_an_unmerged_lora_adapter(adapter):
    from peft import LoraConfig, get_peft_model

    if adapter == "lora_on_head":
        lora = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False)
    else:
        lora = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"], init_lora_weights=False)
    model = get_peft_model(tiny_model(), lora).eval()
    if adapter == "head_in_modules_to_save":  # the trained copy differs from the base head
        with torch.no_grad():
            model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(-3.0)
    ours, hf = greedy_pair(model, modality())
    assert torch.equal(ours, hf)


def test_a_lora_head_gives_the_rows_of_its_full_output():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(), LoraConfig(r=4, target_modules=["lm_head"], init_lora_weights=False)).eval()
    head = model.get_base_model().lm_head
    hidden = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.allclose(RowHead.of(head).logits(hidden, 10, 14), head(hidden)[:, 10:14], atol=1e-6)


# --- sampling: the same distribution at every step --------------------------------------------------

def follow(hf_sequences, width):
    """A chooser that takes generate's token at each step and records (probabilities [B, C], ids [C])."""
    trace = []

    def choose(scores, ids):
        step = len(trace)
        trace.append((torch.softmax(scores, dim=-1), ids))
        return hf_sequences[:, width + step]

    return choose, trace


def largest_gap(hf, trace):
    """Largest difference in any id's probability between generate's processed scores and the trace."""
    gap = 0.0
    for (probs, ids), scores in zip(trace, hf.scores, strict=True):
        reference = torch.softmax(scores, dim=-1)  # [B, V]
        gap = max(gap, float((reference[:, ids] - probs).abs().max()),
                  float(1 - reference[:, ids].sum(-1).min()))  # mass generate puts outside the ids
    return gap


def sampled_trace(model, m, config, removed_mass_every=16, decoder_config=None, hf_processors=(), tamper=None):
    """generate's sampled output (with its processed scores) and the trace of a decoder that follows its tokens;
    the decoder gets `decoder_config` where given (a deliberately wrong one), else `config`."""
    decoder, inputs = decoder_and_inputs(model, m, decoder_config or config, track=True,
                                         removed_mass_every=removed_mass_every)
    hf, _ = reference(model, m, config, inputs, processors=hf_processors, output_scores=True,
                      return_dict_in_generate=True)
    if tamper:
        tamper(decoder)
    choose, trace = follow(hf.sequences, inputs[0].shape[1])
    assert torch.equal(decoder.generate(*inputs, choose=choose).sequences, hf.sequences)
    return hf, trace


SAMPLINGS = {
    "plain": {},
    "temperature_top_k_top_p": {"temperature": 0.7, "top_k": 3, "top_p": 0.9},
    "top_k_above_the_allowed_count": {"top_k": 30},  # 4 codes (+ end) allowed: keeps them all, as generate
    "min_p": {"min_p": 0.2, "temperature": 1.3},
}


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("name", ["audio", "image"])
def test_sampling_distribution_equals_generate_at_every_step(sampling, name):
    m = modality(name)
    hf, trace = sampled_trace(tiny_model(head_scale=20.0), m, gen_config(m, do_sample=True, **SAMPLINGS[sampling]),
                              removed_mass_every=3)
    assert largest_gap(hf, trace) < 1e-5


def never_offer_the_end_token(decoder):
    decoder.allowed[:, -1] = False


WRONG = {  # (generate's config, the wrong decoder's config, processors generate runs before the constraint, tamper)
    "temperature": ({}, {"temperature": 0.5}, (), None),
    "top_k_over_the_full_vocabulary": ({}, {"top_k": 2}, (TopKLogitsWarper(2),), None),
    "no_end_token": ({}, {}, (), never_offer_the_end_token),
}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_the_step_comparison_detects_a_wrong_distribution(wrong):
    """Guard: the check above fails for a decoder that gets the distribution wrong in a plausible way."""
    m = modality()
    reference, decoder, processors, tamper = WRONG[wrong]
    hf, trace = sampled_trace(tiny_model(head_scale=20.0), m, gen_config(m, do_sample=True, **reference),
                              removed_mass_every=10**6, decoder_config=gen_config(m, do_sample=True, **decoder),
                              hf_processors=processors, tamper=tamper)
    assert largest_gap(hf, trace) > 1e-2


def test_sampled_tokens_follow_the_restricted_distribution():
    """Real draws (not the chooser hook) land on the codes with the probabilities of generate's first step."""
    m = modality()
    model = tiny_model(head_scale=5.0)
    n = 4000
    ids = torch.tensor([[3, 7, m.start_id]]).repeat(n, 1)
    mask = torch.ones_like(ids)
    config = gen_config(m, do_sample=True, max_new_tokens=1, temperature=0.8)
    decoder = RestrictedDecoder.for_model(model, config, ModalityConstraint(m, ids.shape[1]))
    torch.manual_seed(0)
    drawn = decoder.generate(ids, mask).sequences[:, -1]
    slot = torch.arange(m.ranges[0].start, m.ranges[0].end)
    counts = torch.stack([(drawn == i).sum() for i in slot]).double() / n
    with torch.no_grad():
        logits = model(ids[:1]).logits[0, -1, slot].double()
    exact = torch.softmax(logits / 0.8, -1)
    other = torch.softmax(logits / 1.2, -1)  # guard: a wrong temperature is far outside the tolerance
    tolerance = 0.03  # total variation; sampling noise at n=4000 over 4 codes is about 0.01
    assert float(0.5 * (counts - exact).abs().sum()) < tolerance < float(0.5 * (counts - other).abs().sum())


# --- removed mass ---------------------------------------------------------------------------------

def measured_run(**measure):
    """(the restricted decoder's output, generate's constraint) on the same greedy trajectory, tracking the mass."""
    m = modality()
    model = tiny_model()
    decoder, inputs = decoder_and_inputs(model, m, gen_config(m), track=True, **measure)
    _, hf_constraint = reference(model, m, gen_config(m), inputs, track=True)
    return decoder.generate(*inputs), hf_constraint


def test_removed_mass_is_measured_every_nth_step_coprime_to_the_codebook_count():
    out, hf_constraint = measured_run(removed_mass_every=4)  # 2 codebooks: every 4th step becomes every 5th
    measured = [step for step, mass in enumerate(out.removed_mass) if not mass.isnan().any()]
    assert measured == [0, 5]
    for step in measured:  # the same trajectory (greedy): the same mass as generate recorded there
        assert torch.allclose(out.removed_mass[step], hf_constraint.removed_mass[step], atol=1e-6)


def test_the_measured_steps_start_at_the_phase_so_the_first_step_is_not_in_every_batch():
    out, hf_constraint = measured_run(removed_mass_every=4, measure_phase=6)
    measured = [step for step, mass in enumerate(out.removed_mass) if not mass.isnan().any()]
    assert measured == [1, 6]  # phase 6 mod 5
    for step in measured:
        assert torch.allclose(out.removed_mass[step], hf_constraint.removed_mass[step], atol=1e-6)


def test_the_first_step_is_always_measured_and_kept_out_of_the_per_step_mean():
    out, hf_constraint = measured_run(removed_mass_every=4, measure_phase=6)
    assert out.removed_mass[0].isnan().all()  # not a periodic step: not in the mean
    assert torch.allclose(out.first_removed, hf_constraint.removed_mass[0], atol=1e-6)
    flagged = [step for step, flags in enumerate(out.overridden) if not flags.isnan().any()]
    assert flagged == [0, 1, 6]


def test_overridden_steps_are_the_steps_generates_constraint_flags():
    m = modality()
    model = tiny_model(head_scale=8.0)  # sharp distributions: the model's top choice often lies outside the slot
    decoder, inputs = decoder_and_inputs(model, m, gen_config(m), track=True, removed_mass_every=1)
    _, hf_constraint = reference(model, m, gen_config(m), inputs, track=True)
    out = decoder.generate(*inputs)
    for step, flags in enumerate(out.overridden):
        assert torch.equal(flags.bool(), hf_constraint.overridden[step])
    assert any(flags.bool().any() for flags in out.overridden)


# --- in generate_rows, and where it falls back ------------------------------------------------------

@pytest.fixture(scope="module")
def demo(mini_demo):
    from mmgate.demo import DEFAULT_TEMPLATES, SyntheticWorld, golden_frame
    from mmgate.golden import normalize_golden
    from mmgate.loading import load_model
    from mmgate.templates import PromptTemplate

    space = mini_demo["space"]
    golden = normalize_golden(golden_frame(SyntheticWorld(space), per_task=6, seed=3))
    model, tokenizer = load_model(mini_demo["ckpt"], base=str(mini_demo["stage3"]))
    template = PromptTemplate(DEFAULT_TEMPLATES["t2a"], tokenizer, space.special_tokens)
    return space, golden[golden["task"] == "t2a"], model, tokenizer, template


def generate_t2a(demo, **settings):
    from mmgate.generation import generate_rows

    space, rows, model, tokenizer, template = demo
    settings = GenerationSettings(batch_size=4, **{"length_margin": 2, **settings})
    return generate_rows(model, tokenizer, space, rows, "t2a", template, "constrained", settings)


def test_generate_rows_gives_the_same_rows_with_and_without_the_restricted_head(demo):
    ours = generate_t2a(demo, do_sample=False, restricted_head=True, removed_mass_every=1)
    reference = generate_t2a(demo, do_sample=False, restricted_head=False)
    timing = ["generation_seconds", "tokens_per_second"]
    assert list(ours.columns) == list(reference.columns)
    measured = ["removed_mass_mean", "removed_mass_max", "removed_mass_first", "removed_mass_peak", "overridden_share"]
    assert ours.drop(columns=timing + measured).equals(reference.drop(columns=timing + measured))
    for column in measured:
        assert (ours[column] - reference[column]).abs().max() < 1e-5, column


def test_a_static_kv_cache_generates_the_tokens_the_dynamic_cache_does(demo, monkeypatch):
    """generation.static_cache (on a GPU transformers also compiles the forward pass for it)."""
    from transformers import cache_utils

    made = []
    init = cache_utils.StaticCache.__init__
    monkeypatch.setattr(cache_utils.StaticCache, "__init__", lambda self, *a, **k: made.append(1) or init(self, *a, **k))
    static = generate_t2a(demo, do_sample=False, restricted_head=False, static_cache=True)
    assert made, "generate did not use a static cache"
    made.clear()
    dynamic = generate_t2a(demo, do_sample=False, restricted_head=False, static_cache=False)
    assert not made
    assert static["generated_ids"].map(tuple).tolist() == dynamic["generated_ids"].map(tuple).tolist()
    assert (static["removed_mass_mean"] - dynamic["removed_mass_mean"]).abs().max() < 1e-5


def test_unreproducible_settings_fall_back_to_generate_with_one_log_line(demo, caplog):
    with caplog.at_level(logging.WARNING, logger="mmgate.generation"):
        ours = generate_t2a(demo, repetition_penalty=1.3, restricted_head=True)
    reference = generate_t2a(demo, repetition_penalty=1.3, restricted_head=False)
    lines = [r.getMessage() for r in caplog.records if "falls back" in r.getMessage()]
    assert len(lines) == 1 and "RepetitionPenaltyLogitsProcessor" in lines[0]
    assert ours["generated_ids"].map(tuple).tolist() == reference["generated_ids"].map(tuple).tolist()


def test_a_model_whose_forward_processes_the_head_unknown_to_mmgate_is_unsupported():
    """A family that does something after the head that mmgate does not know of fails the head check."""
    from transformers import LlamaForCausalLM

    class Scaled(LlamaForCausalLM):  # stands for any family with its own processing after lm_head
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3.0
            return out

    m = modality()
    base = tiny_model()
    model = Scaled(base.config).eval()
    model.load_state_dict(base.state_dict())
    with pytest.raises(Unsupported, match="DIFFERS from the model's forward"):
        RestrictedDecoder.for_model(model, gen_config(m), ModalityConstraint(m, 3))


def test_a_family_outside_the_known_list_is_restricted_where_its_head_check_passes():
    m = modality()
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2)).eval()
    RestrictedDecoder.for_model(model, gen_config(m), ModalityConstraint(m, 3))


def test_a_processor_from_the_checkpoints_generation_config_is_unsupported():
    m = modality()
    model = tiny_model()
    model.generation_config.no_repeat_ngram_size = 3  # what a generation_config.json could fill in
    with pytest.raises(Unsupported, match="NoRepeatNGramLogitsProcessor"):
        RestrictedDecoder.for_model(model, gen_config(m), ModalityConstraint(m, 3))
