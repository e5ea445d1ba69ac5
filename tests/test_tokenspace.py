import copy

import numpy as np
import pytest
from conftest import small_spec, two_audio_spec, write_space

from mmgate.errors import TokenSpaceError
from mmgate.tokenspace import TokenSpace, parse_sha256_text, read_sha256_file, sha256_file


def load_bad(tmp_path, mutate) -> str:
    spec = copy.deepcopy(small_spec())
    mutate(spec)
    with pytest.raises(TokenSpaceError) as err:
        TokenSpace.load(write_space(tmp_path, spec))
    return str(err.value)


def test_valid_file_loads_with_its_byte_hash(tmp_path):
    path = write_space(tmp_path, small_spec())
    space = TokenSpace.load(path)
    assert space.sha256 == sha256_file(path)
    assert space.modality("audio").n_codebooks == 2


def test_overlapping_ranges_are_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["ranges"].update(IMAGE=[16, 26]))
    assert "AUDIO_CB1 and ranges.IMAGE overlap" in message


def test_range_past_vocab_size_is_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["ranges"].update(IMAGE=[20, 41]))
    assert "ranges.IMAGE = [20, 41) runs past vocab_size 40" in message


def test_special_id_at_vocab_size_is_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["special_tokens"].update({"<aud_end>": 40}))
    assert "special_tokens.<aud_end> = 40" in message


def test_special_id_inside_a_range_is_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["special_tokens"].update({"<aud_end>": 12}))
    assert "lies inside ranges.AUDIO_CB0" in message


def test_modality_naming_unknown_range_is_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["modalities"]["audio"]["ranges"].append("AUDIO_CB7"))
    assert "unknown range 'AUDIO_CB7'" in message


def test_modality_naming_unknown_token_is_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["modalities"]["image"].update(end_token="<image_end>"))
    assert "modalities.image.end_token = '<image_end>' is not in special_tokens" in message


def test_unknown_layout_is_rejected(tmp_path):
    message = load_bad(tmp_path, lambda s: s["modalities"]["audio"].update(layout="interleaved"))
    assert "layout = 'interleaved' is unknown" in message


def test_codebook_ranges_of_unequal_size_are_rejected(tmp_path):
    def mutate(s):
        s["ranges"]["AUDIO_CB1"] = [14, 19]
        del s["modalities"]["audio"]["codec"]

    assert "codebook ranges differ in size" in load_bad(tmp_path, mutate)


def test_every_problem_is_listed_with_the_file(tmp_path):
    def mutate(s):
        s["ranges"]["IMAGE"] = [20, 99]
        s["modalities"]["audio"]["layout"] = "x"

    message = load_bad(tmp_path, mutate)
    assert "token_space.json" in message and "2 problem(s)" in message


@pytest.mark.parametrize("layout", ["frame_major", "codebook_major"])
def test_flatten_unflatten_round_trip(tmp_path, layout):
    audio = TokenSpace.load(write_space(tmp_path, small_spec(layout))).modality("audio")
    codes = np.random.default_rng(0).integers(0, 4, size=(2, 7))
    ids = audio.flatten(codes)
    assert ids.shape == (14,)
    assert np.array_equal(audio.unflatten(ids), codes)


def test_frame_major_interleaves_codebooks_per_frame(space):
    ids = space.modality("audio").flatten([[0, 1], [2, 3]])
    assert ids.tolist() == [10, 16, 11, 17]


def test_codebook_major_writes_each_codebook_whole(tmp_path):
    audio = TokenSpace.load(write_space(tmp_path, small_spec("codebook_major"))).modality("audio")
    assert audio.flatten([[0, 1], [2, 3]]).tolist() == [10, 11, 16, 17]


def test_unflatten_rejects_an_id_in_the_wrong_slot(space):
    with pytest.raises(ValueError, match="not in AUDIO_CB1"):
        space.modality("audio").unflatten([10, 11, 12, 17])


def test_slot_at_follows_the_layout(tmp_path, space):
    assert space.modality("audio").slot_at(np.arange(6)).tolist() == [0, 1, 0, 1, 0, 1]
    cb_major = TokenSpace.load(write_space(tmp_path, small_spec("codebook_major"), "cb.json")).modality("audio")
    assert cb_major.slot_at(np.arange(7), n_frames=3).tolist() == [0, 0, 0, 1, 1, 1, -1]


def test_allowed_mask_holds_the_ranges_and_the_end_token(space):
    mask = space.modality("image").allowed_mask()
    assert np.flatnonzero(mask).tolist() == [20, 21, 22, 23, 24, 25, 33]
    assert not space.modality("image").allowed_mask(include_end=False)[33]


def test_slot_masks_allow_exactly_each_codebook(space):
    masks = space.modality("audio").slot_masks()
    assert np.flatnonzero(masks[0]).tolist() == [10, 11, 12, 13]
    assert np.flatnonzero(masks[1]).tolist() == [14, 15, 16, 17]


def test_sha256_is_read_from_bare_and_sha256sum_forms(tmp_path):
    digest = "ab" * 32
    (tmp_path / "bare").write_text(digest + "\n")
    (tmp_path / "sum").write_text(f"{digest.upper()}  token_space.json\n")
    (tmp_path / "binary").write_text(f"{digest} *token_space.json\n")
    assert {read_sha256_file(tmp_path / n) for n in ("bare", "sum", "binary")} == {digest}


def test_malformed_sha256_file_is_an_error_naming_the_fix():
    with pytest.raises(TokenSpaceError, match="sha256sum token_space.json"):
        parse_sha256_text("not-a-hash", source="x/token_space.sha256")


def test_keys_mmgate_does_not_know_are_kept_and_ignored(spec, tmp_path):
    from mmgate.tokenspace import ignored_keys

    spec["roles"] = {"system": 1}
    spec["modalities"]["image"]["description"] = "SEED tokens"
    space = TokenSpace.load(write_space(tmp_path, spec))
    assert space.vocab_size == 40 and ignored_keys(spec) == ["roles", "modalities.image.description"]


def test_a_near_miss_of_a_known_key_is_a_typo(spec, tmp_path):
    spec["special_token"] = spec.pop("special_tokens")
    with pytest.raises(TokenSpaceError, match="special_token: unknown key, did you mean 'special_tokens'"):
        TokenSpace.load(write_space(tmp_path, spec))


def test_a_text_range_may_hold_the_special_tokens(spec, tmp_path):
    spec["ranges"]["TEXT"] = [26, 40]  # text ids after the image codes, the specials (30-34) among them
    assert TokenSpace.load(write_space(tmp_path, spec)).modality("audio").n_codebooks == 2


def test_a_special_token_inside_a_modality_range_is_an_error(spec, tmp_path):
    spec["special_tokens"]["<aud_end>"] = 12
    with pytest.raises(TokenSpaceError, match="<aud_end> = 12 lies inside ranges.AUDIO_CB0 .* which modalities.audio writes"):
        TokenSpace.load(write_space(tmp_path, spec))


def test_a_range_used_by_two_modalities_is_an_error(spec, tmp_path):
    spec["modalities"]["image"]["ranges"] = ["AUDIO_CB0"]
    with pytest.raises(TokenSpaceError, match="modalities.image and modalities.audio both use ranges.AUDIO_CB0"):
        TokenSpace.load(write_space(tmp_path, spec))


def test_token_space_command_flags_a_stale_sha256_beside_the_file(spec, tmp_path, capsys):
    from mmgate.cli import main as cli

    path = write_space(tmp_path, spec)
    (tmp_path / "token_space.sha256").write_text("0" * 64 + "\n")
    assert cli(["token-space", str(path)]) == 1
    assert "token_space.sha256 records 000" in capsys.readouterr().err
    (tmp_path / "token_space.sha256").write_text(TokenSpace.load(path).sha256 + "  token_space.json\n")
    assert cli(["token-space", str(path)]) == 0


def test_a_layout_on_a_one_codebook_modality_is_moot_not_an_error(spec, tmp_path):
    spec["modalities"]["image"]["layout"] = "raster"  # e.g. how a VQ tokenizer's docs describe its grid
    assert TokenSpace.load(write_space(tmp_path, spec)).modality("image").n_codebooks == 1


# Tasks and their modalities --------------------------------------------------------------------------

def test_a_task_uses_the_modality_its_config_names_with_the_kind_of_the_task(tmp_path):
    space = TokenSpace.load(write_space(tmp_path, two_audio_spec()), {"t2a": "music", "a2t": "music"})
    music = space.modality_for_task("t2a")
    assert (music.name, music.kind, music.start_token) == ("music", "audio", "<mus_start>")
    assert space.modality_for_task("t2i").name == "image"


def test_without_task_modalities_audio_tasks_use_the_audio_modality(tmp_path):
    space = TokenSpace.load(write_space(tmp_path, two_audio_spec()))
    assert space.modality_for_task("a2t").name == "audio"


def test_task_modalities_naming_a_modality_the_space_lacks_is_an_error(tmp_path):
    with pytest.raises(TokenSpaceError, match=r"task_modalities.t2a = 'speech': .* has no such modality"):
        TokenSpace.load(write_space(tmp_path, two_audio_spec()), {"t2a": "speech"})


def test_decoders_are_checked_against_the_modality_their_write_task_writes(tmp_path):
    from mmgate.decoders import decoder_config_problems

    spec = two_audio_spec(music_codebooks=3)
    space = TokenSpace.load(write_space(tmp_path, spec), {"t2a": "music"})
    decoders = {"audio": {"backend": "encodec", "n_codebooks": 2}, "image": {"backend": "vqvae", "model_class": "x"}}
    problems = decoder_config_problems(decoders, space)
    assert any("decoders.audio.n_codebooks = 2 but the token space's music has 3 codebooks" in p for p in problems)


def test_another_tools_start_and_end_names_are_reported_as_near_misses_with_the_fix(tmp_path):
    def rename(spec):
        image = spec["modalities"]["image"]
        image["start"], image["end"] = image.pop("start_token"), image.pop("end_token")

    message = load_bad(tmp_path, rename)
    assert "modalities.image.start: unknown key; mmgate reads 'start_token' (rename 'start' to 'start_token')" in message
    assert "modalities.image.end: unknown key; mmgate reads 'end_token' (rename 'end' to 'end_token')" in message
    assert "start_token = None" not in message and "end_token = None" not in message


def test_a_key_valid_elsewhere_is_never_taken_for_a_typo(tmp_path):
    spec = small_spec()
    spec["modalities"]["image"]["n_tokens"] = 6  # golden-set meta, not a misspelt end_token
    TokenSpace.load(write_space(tmp_path, spec))
