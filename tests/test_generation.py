"""Generation in shards: per-sample length, explicit sampling settings, reproducibility."""

import pandas as pd
import pytest

from mmgate.demo import DEFAULT_TEMPLATES, SyntheticWorld, golden_frame
from mmgate.generation import GenerationSettings, generate_rows, length_batches
from mmgate.golden import normalize_golden, task_shard
from mmgate.loading import load_model
from mmgate.templates import PromptTemplate


@pytest.fixture(scope="module")
def setup(mini_demo):
    space = mini_demo["space"]
    golden = normalize_golden(golden_frame(SyntheticWorld(space), per_task=12, seed=3))
    model, tokenizer = load_model(mini_demo["ckpt"], base=str(mini_demo["stage3"]))
    return space, golden, model, tokenizer


def run(setup, task="t2a", mode="constrained", **settings):
    space, golden, model, tokenizer = setup
    template = PromptTemplate(DEFAULT_TEMPLATES[task], tokenizer, space.special_tokens)
    rows = golden[golden["task"] == task]
    return generate_rows(model, tokenizer, space, rows, task, template, mode, GenerationSettings(batch_size=5, **settings))


def test_rerun_with_the_same_settings_gives_identical_ids(setup):
    first, second = run(setup), run(setup)
    assert first["generated_ids"].map(tuple).tolist() == second["generated_ids"].map(tuple).tolist()


def test_another_seed_gives_other_ids(setup):
    assert run(setup)["generated_ids"].map(tuple).tolist() != run(setup, seed=1)["generated_ids"].map(tuple).tolist()


@pytest.mark.parametrize("task", ["t2a", "t2i"])
def test_each_sample_generates_within_its_own_budget(setup, task):
    frame = run(setup, task=task, mode="free", length_margin=4)
    assert (frame["budget"] == frame["expected_len"] + 4).all()
    assert (frame["n_generated"] <= frame["budget"]).all()
    assert frame["expected_len"].nunique() > 1  # lengths really vary per sample


@pytest.mark.parametrize("task", ["t2a", "t2i"])
def test_constrained_samples_are_compliant_and_long_enough_to_slice(setup, task):
    frame = run(setup, task=task)
    assert frame["out_of_range"].sum() == 0 and frame["wrong_slot"].sum() == 0
    assert (frame["n_generated"] >= frame["expected_len"]).all()


def test_untrained_free_generation_leaves_the_modality(setup):
    frame = run(setup, mode="free")
    assert frame["out_of_range"].sum() > 0  # a random model has no reason to stay in range
    assert frame["removed_mass_mean"].isna().all()  # nothing is removed without a constraint


def test_constrained_generation_records_the_mass_an_untrained_model_loses_to_the_constraint(setup):
    frame = run(setup)
    # a random model spreads its probability over the whole vocabulary: the mask removes most of it
    assert (frame["removed_mass_mean"] > 0.5).all() and (frame["removed_mass_max"] >= frame["removed_mass_mean"]).all()
    assert (frame["removed_mass_max"] <= 1.0).all()


def test_checkpoint_generation_config_does_not_fill_in_sampling_settings(setup):
    space, golden, model, tokenizer = setup
    before = run(setup)
    base = model.get_base_model()
    saved = base.generation_config
    try:
        base.generation_config = type(saved)(do_sample=False, top_k=1, temperature=0.1, repetition_penalty=5.0, max_new_tokens=3)
        after = run(setup)
    finally:
        base.generation_config = saved
    assert before["generated_ids"].map(tuple).tolist() == after["generated_ids"].map(tuple).tolist()


def test_batches_hold_samples_of_similar_length():
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(6)], "expected_len": [40, 8, 40, 8, 24, 24]})
    assert [b["expected_len"].tolist() for b in length_batches(frame, 2)] == [[8, 8], [24, 24], [40, 40]]


def test_task_shard_cuts_by_sample_id_and_rejects_a_stale_shard(setup):
    _, golden, _, _ = setup
    assert task_shard(golden, "t2a", 1, 5)["sample_id"].tolist() == [f"t2a-{i:04d}" for i in range(5, 10)]
    with pytest.raises(Exception, match="golden set changed since the workflow was planned"):
        task_shard(golden, "t2a", 9, 5)
