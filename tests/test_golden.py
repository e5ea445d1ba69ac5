import json

import numpy as np
import pandas as pd
import pytest

from mmgate.errors import GoldenSetError
from mmgate.golden import load_golden, validate_golden


def row(**over):
    base = {
        "sample_id": "a-1", "task": "t2a", "prompt": "slow piano", "caption": "",
        # frame_major, 2 codebooks, 3 frames: c0 ids 10..13, c1 ids 14..17
        "modality_tokens": [10, 14, 11, 15, 12, 16], "n_frames": 3, "n_codebooks": 2,
        "n_tokens": None,
    }
    base.update(over)
    return base


def image_row(**over):
    base = {"sample_id": "i-1", "task": "t2i", "prompt": "a red square", "caption": "",
            "modality_tokens": [20, 21, 22, 23], "n_frames": None, "n_codebooks": None, "n_tokens": 4}
    base.update(over)
    return base


def problems(space, *rows) -> str:
    with pytest.raises(GoldenSetError) as err:
        validate_golden(pd.DataFrame(list(rows)), space, source="golden.parquet")
    return str(err.value)


def test_valid_rows_pass_and_get_their_own_expected_length(space, tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (row(), image_row(), row(sample_id="a-2", task="a2t", prompt="", caption="slow piano"))))
    frame = load_golden(path, space)
    assert frame["expected_len"].tolist() == [6, 4, 6]


def test_unknown_task_is_reported(space):
    assert "unknown task 't2v'" in problems(space, row(task="t2v"))


def test_missing_meta_is_reported(space):
    assert "audio needs meta n_frames" in problems(space, row(n_frames=None))
    assert "image needs meta n_tokens" in problems(space, image_row(n_tokens=None))


def test_duplicate_sample_id_is_reported(space):
    assert "duplicate sample_id (first at row 0)" in problems(space, row(), row())


@pytest.mark.parametrize("sample_id", ["../x", "a/b", "..", "", "x" * 129, "naïve"])
def test_path_unsafe_sample_id_is_reported(space, sample_id):
    assert "sample_id must match" in problems(space, row(sample_id=sample_id))


def test_ids_outside_the_modality_ranges_are_reported(space):
    message = problems(space, image_row(modality_tokens=[20, 21, 14, 23]))
    assert "outside the image ranges, first id 14 at position 2" in message


def test_ids_in_the_wrong_codebook_slot_are_reported(space):
    message = problems(space, row(modality_tokens=[10, 14, 15, 11, 12, 16]))
    assert "wrong codebook for the frame_major layout, first at position 2" in message


def test_length_that_disagrees_with_the_meta_is_reported(space):
    assert "has 6 modality tokens but its meta expects 8" in problems(space, row(n_frames=4))


def test_n_codebooks_must_match_the_token_space(space):
    assert "n_codebooks=3 but the token space's audio has 2" in problems(space, row(n_codebooks=3, modality_tokens=list(range(10, 19))))


def test_write_task_needs_a_prompt_and_read_task_a_caption(space):
    message = problems(space, row(prompt=""), row(sample_id="a-2", task="a2t", caption=""))
    assert "needs a non-empty 'prompt'" in message and "needs a non-empty 'caption'" in message


def test_one_message_lists_every_bad_row(space):
    message = problems(space, row(sample_id="../x"), image_row(n_tokens=9), row(sample_id="ok", task="zzz"))
    assert "3 problem(s)" in message
    for label in ("row 0 (sample_id='../x')", "row 1 (sample_id='i-1')", "row 2 (sample_id='ok')"):
        assert label in message


def test_missing_columns_are_named(space):
    with pytest.raises(GoldenSetError, match=r"missing column\(s\) \['modality_tokens'\]"):
        validate_golden(pd.DataFrame([{"sample_id": "a", "task": "t2a"}]), space)


def test_parquet_golden_set_round_trips(space, tmp_path):
    from mmgate.io import write_parquet

    path = tmp_path / "golden.parquet"
    write_parquet(pd.DataFrame([row(), image_row()]), path, {"schema_version": 1})
    frame = load_golden(path, space)
    assert isinstance(frame["modality_tokens"][0], np.ndarray) and frame["expected_len"].tolist() == [6, 4]


def test_fractional_meta_in_a_column_the_row_does_not_use_is_a_row_problem_not_a_traceback(space):
    from mmgate.errors import GoldenSetError
    from mmgate.golden import validate_golden

    frame = pd.DataFrame([{"sample_id": "a", "task": "t2i", "prompt": "p", "modality_tokens": [20, 21, 22, 23],
                           "n_tokens": 4, "n_frames": 2.5}])
    with pytest.raises(GoldenSetError, match=r"row 0 \(sample_id='a'\): n_frames=2.5 must be a positive integer when given"):
        validate_golden(frame, space)


# The generation subset ---------------------------------------------------------------------------

def lengths_frame(lengths):
    return pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(len(lengths))], "task": "t2a", "expected_len": lengths})


def test_generation_subset_keeps_the_shortest_and_the_longest_and_spreads_over_lengths():
    from mmgate.golden import generation_subset

    rows = lengths_frame([5, 900, 40, 41, 42, 43, 44, 45, 46, 2000])
    picked = generation_subset(rows, 4)
    assert sorted(picked["expected_len"]) == [5, 42, 45, 2000]
    assert picked["sample_id"].tolist() == sorted(picked["sample_id"])


def test_generation_subset_is_every_row_without_a_size_or_below_it():
    from mmgate.golden import generation_subset

    rows = lengths_frame([3, 1, 2])
    assert generation_subset(rows, None)["sample_id"].tolist() == ["s00", "s01", "s02"]
    assert generation_subset(rows, 5)["sample_id"].tolist() == ["s00", "s01", "s02"]


def test_generation_subset_does_not_depend_on_row_order():
    from mmgate.golden import generation_subset

    rows = lengths_frame(list(range(100, 0, -3)))
    assert generation_subset(rows, 7)["sample_id"].tolist() == generation_subset(rows.sample(frac=1, random_state=1), 7)[
        "sample_id"].tolist()


def test_a_task_reads_the_modality_the_config_names(tmp_path):
    from mmgate.tokenspace import TokenSpace
    from conftest import two_audio_spec, write_space

    spec = two_audio_spec()
    space = TokenSpace.load(write_space(tmp_path, spec), {"t2a": "music"})
    music = row(modality_tokens=[40, 42, 41, 43, 40, 42])
    validate_golden(pd.DataFrame([music]), space, source="golden.parquet")
    assert "outside the music ranges" in problems(space, row())  # speech codes are not music's
