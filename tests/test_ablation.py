"""Teacher-forced ablation: exact per-sample losses, conditions, integrity and statistics."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmgate import ablation
from mmgate.ablation import (
    AblationIntegrityError,
    build_conditions,
    check_integrity,
    derangement,
    score_conditions,
    summarize,
    target_losses,
)
from mmgate.demo import DEFAULT_TEMPLATES, SyntheticWorld, golden_frame
from mmgate.golden import normalize_golden
from mmgate.loading import load_model
from mmgate.templates import PromptTemplate


@pytest.fixture(scope="module")
def setup(mini_demo):
    space = mini_demo["space"]
    golden = normalize_golden(golden_frame(SyntheticWorld(space), per_task=16, seed=5))
    model, tokenizer = load_model(mini_demo["ckpt"], base=str(mini_demo["stage3"]))
    templates = {t: PromptTemplate(s, tokenizer, space.special_tokens) for t, s in DEFAULT_TEMPLATES.items()}
    return space, golden, model, tokenizer, templates


def conditions(setup, task):
    space, golden, model, tokenizer, templates = setup
    rows = golden[golden["task"] == task]
    return rows, build_conditions(rows, task, templates[task], tokenizer, space, seed=0)


@pytest.mark.parametrize("task", ["t2a", "i2t"])
def test_per_sample_loss_equals_one_at_a_time_labels_loss(setup, task):
    model, tokenizer = setup[2], setup[3]
    _, conds = conditions(setup, task)
    items = conds["correct"][:6]
    batched, counts = target_losses(model, items, tokenizer.pad_token_id)
    for item, loss, count in zip(items, batched, counts):
        ids = torch.tensor([item.context + item.target])
        labels = torch.tensor([[-100] * len(item.context) + item.target])
        with torch.no_grad():
            reference = model(input_ids=ids, labels=labels).loss
        assert loss == pytest.approx(float(reference), abs=1e-4)
        assert count == len(item.target)


def test_chunked_and_unchunked_losses_agree(setup):
    model, tokenizer = setup[2], setup[3]
    items = conditions(setup, "t2a")[1]["correct"][:8]
    whole, _ = target_losses(model, items, tokenizer.pad_token_id, chunk_tokens=10**6)
    chunked, _ = target_losses(model, items, tokenizer.pad_token_id, chunk_tokens=7)
    np.testing.assert_allclose(whole, chunked, rtol=1e-5)


def test_derangement_never_maps_an_example_to_itself_or_an_identical_key():
    rng = np.random.default_rng(0)
    for seed in range(200):
        n = int(rng.integers(2, 40))
        keys = [int(k) for k in rng.integers(0, max(2, n // 2), size=n)]
        if max(np.bincount(keys)) > n / 2:
            continue
        perm = derangement(keys, seed)
        assert sorted(perm) == list(range(n))
        assert all(keys[perm[i]] != keys[i] for i in range(n))


def test_derangement_is_fixed_by_its_seed():
    keys = list("abcdefgh")
    assert derangement(keys, 3).tolist() == derangement(keys, 3).tolist()


def test_derangement_refuses_when_one_input_dominates():
    with pytest.raises(AblationIntegrityError, match="shared by 3 of 4"):
        derangement(["a", "a", "a", "b"], 0)


def test_write_conditions_change_only_the_prompt(setup):
    _, conds = conditions(setup, "t2a")
    for correct, shuffled, empty in zip(conds["correct"], conds["shuffled"], conds["empty"]):
        assert correct.target == shuffled.target == empty.target
        assert shuffled.context != correct.context and len(empty.context) >= 1 and len(empty.context) < len(correct.context)


def test_read_zero_and_noise_stay_in_each_tokens_own_slot(setup):
    space = setup[0]
    rows, conds = conditions(setup, "a2t")
    audio = space.modality("audio")
    for row, zero, noise in zip(rows.itertuples(), conds["zero"], conds["noise"]):
        n, start = len(row.modality_tokens), zero.context.index(audio.start_id) + 1
        slots = audio.slot_of_id(row.modality_tokens)
        assert (audio.slot_of_id(zero.context[start:start + n]) == slots).all()
        assert (np.asarray(zero.context[start:start + n]) == audio.range_starts[slots]).all()
        assert (audio.slot_of_id(noise.context[start:start + n]) == slots).all()


def test_planted_bug_feeding_the_correct_prompt_as_shuffled_is_caught(setup, monkeypatch):
    space, golden, model, tokenizer, templates = setup
    monkeypatch.setattr(ablation, "derangement", lambda keys, seed: np.arange(len(keys)))
    rows, conds = conditions(setup, "t2a")
    with pytest.raises(AblationIntegrityError, match="shuffled: 16 example"):
        score_conditions(model, conds, rows["sample_id"].tolist(), tokenizer.pad_token_id)


def test_targets_that_differ_between_conditions_are_caught():
    frame = pd.DataFrame({"sample_id": ["a", "a"], "condition": ["correct", "empty"],
                          "input_hash": ["1", "2"], "target_hash": ["t", "u"]})
    with pytest.raises(AblationIntegrityError, match="empty: 1 example.*different target"):
        check_integrity(frame)


def test_statistics_on_a_hand_made_table():
    # correct vs shuffled: deltas 1, 2, -1, 0 -> mean 0.5; wins 2, losses 1, ties 1
    frame = pd.DataFrame({
        "sample_id": list("abcd") * 2,
        "condition": ["correct"] * 4 + ["shuffled"] * 4,
        "loss": [1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 2.0, 4.0],
    })
    row = summarize(frame, "t2a", min_n=256).set_index("condition").loc["shuffled"]
    assert row["n"] == 4 and row["delta"] == pytest.approx(0.5) and row["win_rate"] == pytest.approx(0.5)
    assert row["mean_loss_correct"] == pytest.approx(2.5) and row["mean_loss"] == pytest.approx(3.0)
    assert row["ties"] == 1 and row["sign_test_p"] == pytest.approx(1.0)  # 2 of 3 non-ties: two-sided p = 1
    assert row["delta_ci_low"] <= 0.5 <= row["delta_ci_high"]
    assert "N = 4 < 256" in row["warning"]


def test_sign_test_and_intervals_separate_a_clear_effect():
    n = 300
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)] * 2, "condition": ["correct"] * n + ["empty"] * n,
                          "loss": list(np.full(n, 1.0)) + list(np.full(n, 1.5))})
    row = summarize(frame, "t2a").set_index("condition").loc["empty"]
    assert row["win_rate"] == 1.0 and row["delta_ci_low"] == pytest.approx(0.5) and row["sign_test_p"] < 1e-50
    assert row["warning"] is None
