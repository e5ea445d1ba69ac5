"""ModalityConstraint and generation compliance metrics (P0.2)."""

import numpy as np
import pytest
import torch
from conftest import small_spec, write_space

from mmgate.constrain import ModalityConstraint, RowBudget
from mmgate.generation import compliance, split_generation
from mmgate.tokenspace import TokenSpace


def modality(tmp_path, layout, name="audio"):
    return TokenSpace.load(write_space(tmp_path, small_spec(layout), f"{layout}.json")).modality(name)


def reference_allowed(m, position: int, n_frames: int, min_length: int = 0) -> set[int]:
    """Slow, per-id statement of the rules, independent of the processor's tensor tables."""
    k = m.n_codebooks
    allowed = set()
    for token in range(m.vocab_size):
        in_slot = [m.ranges[s].start <= token < m.ranges[s].end for s in range(k)]
        if token == m.end_id:
            if k == 1:
                ok = position >= max(1, min_length)
            elif m.layout == "frame_major":
                ok = position >= max(k, min_length) and position % k == 0
            else:
                ok = position >= k * n_frames
        elif k == 1:
            ok = in_slot[0]
        elif m.layout == "frame_major":
            ok = in_slot[position % k]
        else:
            ok = position < k * n_frames and in_slot[position // n_frames]
        if ok:
            allowed.add(token)
    return allowed


@pytest.mark.parametrize("layout,name", [("frame_major", "audio"), ("codebook_major", "audio"), ("frame_major", "image")])
@pytest.mark.parametrize("starts", ["per_row", "shared", "shared_same_frames"])
def test_allows_exactly_the_reference_ids_at_random_positions(tmp_path, layout, name, starts):
    m = modality(tmp_path, layout, name)
    rng = np.random.default_rng(0)
    for _ in range(60):
        batch, width = 5, int(rng.integers(12, 30))
        if starts == "per_row":  # rows at different positions: the tensor path
            span_start = torch.tensor(rng.integers(1, width, size=batch))
        else:  # a left-padded batch: one start column, the broadcast path where rows agree
            span_start = int(rng.integers(1, width))
        n_frames = torch.tensor(rng.integers(1, 6, size=batch))
        if starts == "shared_same_frames":
            n_frames[:] = n_frames[0]
        min_length = torch.tensor(rng.integers(0, 12, size=batch))
        processor = ModalityConstraint(m, span_start, n_frames=n_frames, min_length=min_length)
        scores = torch.randn(batch, m.vocab_size)
        out = processor(torch.zeros(batch, width, dtype=torch.long), scores)
        for row in range(batch):
            position = width - int(span_start[row] if starts == "per_row" else span_start)
            got = set(torch.isfinite(out[row]).nonzero().flatten().tolist())
            assert got == reference_allowed(m, position, int(n_frames[row]), int(min_length[row])), (layout, name, position)
            assert torch.equal(out[row][torch.isfinite(out[row])], scores[row][torch.isfinite(out[row])])


def test_left_padded_batch_shares_one_span_start(tmp_path):
    m = modality(tmp_path, "frame_major")
    processor = ModalityConstraint(m, span_start=7)
    out = processor(torch.zeros(3, 7 + 3, dtype=torch.long), torch.zeros(3, m.vocab_size))
    assert (torch.isfinite(out).nonzero()[:, 1].view(3, -1) == torch.arange(14, 18)).all()  # slot 1 for every row


def test_end_token_only_at_frame_boundaries(tmp_path):
    m = modality(tmp_path, "frame_major")
    processor = ModalityConstraint(m, span_start=0)
    end_allowed = [bool(torch.isfinite(processor(torch.zeros(1, p, dtype=torch.long), torch.zeros(1, m.vocab_size))[0, m.end_id]))
                   for p in range(7)]
    assert end_allowed == [False, False, True, False, True, False, True]


def test_end_token_is_held_until_each_rows_min_length(tmp_path):
    m = modality(tmp_path, "frame_major")
    processor = ModalityConstraint(m, span_start=0, min_length=torch.tensor([2, 6]))
    end_allowed = [torch.isfinite(processor(torch.zeros(2, p, dtype=torch.long), torch.zeros(2, m.vocab_size))[:, m.end_id]).tolist()
                   for p in (2, 4, 6)]
    assert end_allowed == [[True, False], [True, False], [True, True]]


def test_removed_mass_is_the_probability_outside_the_allowed_slot(tmp_path):
    m = modality(tmp_path, "frame_major")  # 40 ids; slot 0 holds 4 of them
    processor = ModalityConstraint(m, span_start=0, track_removed_mass=True)
    uniform = torch.zeros(2, m.vocab_size)
    processor(torch.zeros(2, 0, dtype=torch.long), uniform)
    peaked = torch.full((2, m.vocab_size), -1e4)
    peaked[0, 10], peaked[1, 0] = 0.0, 0.0  # row 0 wants a slot-0 code, row 1 a text token
    processor(torch.zeros(2, 2, dtype=torch.long), peaked)
    first, second = processor.removed_mass
    assert torch.allclose(first, torch.tensor([36 / 40, 36 / 40]))
    assert torch.allclose(second, torch.tensor([0.0, 1.0]), atol=1e-6)


def test_removed_mass_does_not_count_the_end_token_held_until_min_length(tmp_path):
    m = modality(tmp_path, "frame_major")
    processor = ModalityConstraint(m, span_start=0, min_length=torch.tensor([8]), track_removed_mass=True)
    wants_to_end = torch.full((1, m.vocab_size), -1e4)
    wants_to_end[0, m.end_id] = 0.0
    out = processor(torch.zeros(1, 2, dtype=torch.long), wants_to_end)
    assert not torch.isfinite(out[0, m.end_id]) or out[0, m.end_id] < -1e30  # still held back...
    assert processor.removed_mass[0].item() == pytest.approx(0.0, abs=1e-6)  # ...but legal for the layout


def test_half_precision_rows_stay_constrained_and_finite(tmp_path):
    m = modality(tmp_path, "codebook_major")
    processor = ModalityConstraint(m, span_start=0, n_frames=torch.tensor([2]))
    scores = torch.full((1, m.vocab_size), float("-inf"), dtype=torch.float16)  # overflowed logits
    out = processor(torch.zeros(1, 1, dtype=torch.long), scores)
    assert set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == {10, 11, 12, 13}
    assert out.dtype == torch.float16


def tiny_model(vocab_size):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2)).eval()


def test_min_new_tokens_past_the_span_does_not_crash_sampling(tmp_path):
    m = modality(tmp_path, "codebook_major")
    model, prompt = tiny_model(m.vocab_size), torch.tensor([[1, 2, m.start_id]])
    n_frames = 2  # only the end token is allowed after 4 tokens, and min_new_tokens forbids it there
    out = model.generate(prompt, do_sample=True, top_k=0, top_p=1.0, temperature=1.0, min_new_tokens=6, max_new_tokens=8,
                         eos_token_id=m.end_id, pad_token_id=0,
                         logits_processor=[ModalityConstraint(m, prompt.shape[1], n_frames=torch.tensor([n_frames]))])
    new = out[0, prompt.shape[1]:].numpy()
    span, end = split_generation(new, 8, m.end_id)
    assert compliance(span[:4], m, n_frames)["wrong_slot"] == 0 and end == 4


def test_generate_with_the_constraint_has_no_violations(tmp_path):
    m = modality(tmp_path, "frame_major")
    model = tiny_model(m.vocab_size)
    prompt = torch.tensor([[0, 1, m.start_id], [1, 1, m.start_id]])
    out = model.generate(prompt, do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=12,
                         eos_token_id=m.end_id, pad_token_id=0,
                         stopping_criteria=[RowBudget(3, torch.tensor([6, 12]))],
                         logits_processor=[ModalityConstraint(m, span_start=3)])
    for row, budget in zip(out[:, 3:].numpy(), (6, 12)):
        span, _ = split_generation(row, budget, m.end_id)
        assert len(span) <= budget
        metrics = compliance(span, m, None)
        assert metrics["out_of_range"] == 0 and metrics["wrong_slot"] == 0


def test_metrics_count_a_planted_out_of_range_token(tmp_path):
    m = modality(tmp_path, "frame_major")
    ids = m.flatten([[0, 1, 2], [3, 2, 1]])
    ids[3] = 25  # an image id inside the audio span
    metrics = compliance(ids, m, 3)
    assert {k: metrics[k] for k in ("out_of_range", "out_of_range_pct", "wrong_slot", "first_violation")} == {
        "out_of_range": 1, "out_of_range_pct": 100 / 6, "wrong_slot": 0, "first_violation": 3}
    assert metrics["slot_counts"] == [3, 0, 0, 0, 2, 1]  # slot CB1: 2 of its codes and the planted id


def test_metrics_count_a_one_token_shift_as_wrong_slots(tmp_path):
    m = modality(tmp_path, "frame_major")
    ids = m.flatten([[0, 1, 2], [3, 2, 1]])
    shifted = np.concatenate([ids[1:], ids[:1]])  # a dropped first token puts every token one slot off
    metrics = compliance(shifted, m, 3)
    assert metrics["out_of_range"] == 0 and metrics["wrong_slot"] == 6 and metrics["first_violation"] == 0


def test_split_generation_cuts_at_the_end_token_and_the_budget():
    assert split_generation(np.array([5, 6, 9, 7, 7]), 5, end_id=9)[0].tolist() == [5, 6]
    span, end = split_generation(np.array([5, 6, 7, 0, 0]), 3, end_id=9)
    assert span.tolist() == [5, 6, 7] and end is None


def test_the_constraint_flags_a_row_whose_top_choice_it_disallows(tmp_path):
    import torch

    from mmgate.constrain import ModalityConstraint

    m = modality(tmp_path, "frame_major")
    constraint = ModalityConstraint(m, span_start=1, track_removed_mass=True)
    scores = torch.zeros(2, m.end_id + 64)
    scores[0, m.ranges[1].start] = 20.0  # row 0 wants codebook 1 at a codebook-0 step: overridden
    scores[1, m.ranges[0].start] = 20.0  # row 1 wants what the slot allows
    constraint(torch.zeros(2, 1, dtype=torch.long), scores)
    assert constraint.overridden[-1].tolist() == [True, False]
    assert constraint.removed_mass[-1][0] > 0.99 and constraint.removed_mass[-1][1] < 0.01
