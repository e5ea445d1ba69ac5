"""`mmgate token-space --from-tokenizer`: token_space.json read off a real HF tokenizer and a YAML spec."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmgate.errors import ConfigError, TokenSpaceError
from mmgate.tokenspace import TokenSpace, sha256_file
from mmgate.tokenspace_builder import build_token_space, load_builder_spec, range_names, render_token_space

EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples" / "token-space"
WORDS = ("hello", "world", "music", "image")
SMALL_CODES = [f"<a{cb}_{i}>" for cb in range(2) for i in range(4)]


def hf_tokenizer(added: list[str], base: tuple[str, ...] = ()):
    """A word-level text tokenizer (plus `base` words) with `added` tokens added after it, as Stage 2 does."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(["<unk>", *WORDS, *base])}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    tokenizer.add_tokens(added, special_tokens=True)
    return tokenizer


def small_spec(**audio) -> dict:
    """Two codebooks of four codes named <a{cb}_{i}>, between <soa> and <eoa>."""
    m = {"tokens": "<a{cb}_{i}>", "codebook_size": 4, "n_codebooks": 2, "layout": "frame_major",
         "start_token": "<soa>", "end_token": "<eoa>"}
    return {"modalities": {"audio": {**m, **audio}}}


def build_error(tokenizer, spec, error=TokenSpaceError) -> str:
    with pytest.raises(error) as err:
        build_token_space(tokenizer, spec, source="spec.yaml")
    return str(err.value)


# --- the example specs against full-size tokenizers ---------------------------------------------------------------


def test_anygpt_spec_gives_frame_major_music_with_one_index_over_all_codebooks():
    specials = ["<eoh>", "<som>", "<eom>", "<sosp>", "<eosp>", "<soim>", "<eoim>"]
    music, speech, image = ([f"<{e}{i}>" for i in range(n)] for e, n in (("🎶", 4 * 2048), ("😊", 1024), ("👀", 8192)))
    tok = hf_tokenizer(specials + music + speech + image)
    space = build_token_space(tok, load_builder_spec(EXAMPLES / "anygpt.yaml"))
    first = tok.convert_tokens_to_ids("<🎶0>")
    assert first == len(WORDS) + 1 + len(specials)
    assert space["ranges"] == {**{f"MUSIC_CB{k}": [first + k * 2048, first + (k + 1) * 2048] for k in range(4)},
                               "SPEECH": [first + 8192, first + 9216], "IMAGE": [first + 9216, first + 17408]}
    assert space["special_tokens"] == {t: len(WORDS) + 1 + i for i, t in enumerate(specials)}
    assert space["vocab_size"] == len(tok)
    loaded = TokenSpace.from_dict(space)
    music = loaded.modality("music")
    assert (music.n_codebooks, music.codebook_size, music.layout) == (4, 2048, "frame_major")
    assert (music.start_token, music.end_token, music.codec["sample_rate"]) == ("<som>", "<eom>", 32000)
    assert loaded.modality("speech").n_codebooks == 1 and loaded.modality("image").codebook_size == 8192


def test_mio_spec_gives_codebook_major_speech_and_records_the_chat_markers():
    specials = ["<|im_start|>", "<|im_end|>", "<spch>", "</spch>", "<image>", "</image>"]
    tok = hf_tokenizer(specials + [f"<spch{i}>" for i in range(4096)] + [f"<img{i}>" for i in range(8192)])
    space = build_token_space(tok, load_builder_spec(EXAMPLES / "mio.yaml"))
    first = tok.convert_tokens_to_ids("<spch0>")
    assert [space["ranges"][f"SPEECH_CB{k}"] for k in range(4)] == [[first + k * 1024, first + (k + 1) * 1024] for k in range(4)]
    assert space["ranges"]["IMAGE"] == [first + 4096, first + 4096 + 8192]
    assert space["modalities"]["speech"]["layout"] == "codebook_major"
    assert list(space["special_tokens"]) == specials  # ordered by id
    assert TokenSpace.from_dict(space).modality("speech").start_token == "<spch>"


def test_chameleon_spec_gives_one_image_range_and_no_layout():
    tok = hf_tokenizer(["<racm3:break>", "<eoss>"] + [f"<img{i}>" for i in range(8192)])
    space = build_token_space(tok, load_builder_spec(EXAMPLES / "chameleon.yaml"))
    first = tok.convert_tokens_to_ids("<img0>")
    assert space["ranges"] == {"IMAGE": [first, first + 8192]}
    assert space["modalities"]["image"] == {"ranges": ["IMAGE"], "start_token": "<racm3:break>", "end_token": "<eoss>",
                                            "codec": {"name": "chameleon_vqgan", "codebook_size": 8192, "downsample": 16,
                                                      "n_tokens": 1024}}


def test_demo_spec_reproduces_the_demo_token_space_byte_for_byte():
    from mmgate.demo import build_tokenizer, token_space_spec

    tok = build_tokenizer()
    space = build_token_space(tok, load_builder_spec(EXAMPLES / "demo.yaml"))
    assert space == token_space_spec(tok)
    assert render_token_space(space) == json.dumps(token_space_spec(tok), indent=2) + "\n"  # the demo's bytes, so its hash


# --- how the spec is read -----------------------------------------------------------------------------------------


def test_range_names_are_the_upper_cased_modality_with_a_codebook_suffix_when_several():
    assert range_names("audio", 4) == ["AUDIO_CB0", "AUDIO_CB1", "AUDIO_CB2", "AUDIO_CB3"]
    assert range_names("music", 2) == ["MUSIC_CB0", "MUSIC_CB1"]
    assert range_names("image", 1) == ["IMAGE"]
    assert range_names("speech", 1) == ["SPEECH"]


def test_a_list_of_patterns_names_each_codebook_with_its_own_index():
    codes = [f"<c0_{i}>" for i in range(4)] + [f"<c1_{i}>" for i in range(4)]
    space = build_token_space(hf_tokenizer(["<soa>", "<eoa>"] + codes), small_spec(tokens=["<c0_{i}>", "<c1_{i}>"]))
    assert space["ranges"] == {"AUDIO_CB0": [7, 11], "AUDIO_CB1": [11, 15]}


def test_spec_meta_and_codec_are_copied_as_given():
    spec = small_spec(codec={"name": "x", "sample_rate": 8000}) | {"meta": {"model": "m"}}
    space = build_token_space(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES), spec)
    assert (space["modalities"]["audio"]["codec"], space["meta"]) == ({"name": "x", "sample_rate": 8000}, {"model": "m"})


# --- each disagreement between spec and tokenizer is an error naming the spec, the field and the fix ---------------


def test_a_missing_token_is_an_error_naming_the_first_one():
    message = build_error(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES[:-1]), small_spec())
    assert "spec.yaml: modalities.audio.tokens: 1 of its 8 tokens, first '<a1_3>', are not in the tokenizer" in message
    assert "Fix: make tokens, codebook_size and n_codebooks match" in message


def test_a_base_vocabulary_token_is_not_accepted_as_a_modality_code():
    message = build_error(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES[1:], base=("<a0_0>",)), small_spec())
    assert "modalities.audio.tokens: 1 of its 8 tokens, first '<a0_0>' (id 5), are in the tokenizer's base vocabulary" in message
    assert "Fix: point tokens at this modality's added tokens" in message


def test_a_gap_in_a_codebook_reports_the_first_break():
    tok = hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES[:2] + ["<filler>"] + SMALL_CODES[2:])
    message = build_error(tok, small_spec())
    assert "modalities.audio.tokens: codebook 0 is not one contiguous, increasing id range" in message
    assert "token '<a0_2>' has id 10, expected 9" in message
    assert "Fix: check codebook_size and how the index runs" in message


def test_ranges_that_overlap_are_an_error_naming_both_modalities():
    spec = small_spec()
    spec["modalities"]["image"] = {"tokens": "<a1_{i}>", "codebook_size": 4, "start_token": "<soa>", "end_token": "<eoa>"}
    message = build_error(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES), spec)
    assert "modalities.audio and modalities.image: ranges.AUDIO_CB1 [11, 15) and ranges.IMAGE [11, 15) overlap" in message
    assert "Fix: give each modality and codebook its own tokens" in message


def test_a_missing_start_token_is_an_error_suggesting_the_closest_one():
    message = build_error(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES), small_spec(start_token="<sao>"))
    assert "spec.yaml: modalities.audio.start_token: '<sao>' is not in the tokenizer" in message
    assert "Fix: did you mean '<soa>'?" in message


def test_a_boundary_token_that_is_a_code_is_an_error():
    message = build_error(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES), small_spec(pad_token="<a0_0>"))
    assert "modalities.audio.pad_token: '<a0_0>' (id 7) lies inside ranges.AUDIO_CB0" in message


def test_a_stated_vocab_size_must_equal_len_tokenizer():
    message = build_error(hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES), small_spec() | {"vocab_size": 99})
    assert "spec.yaml: vocab_size: the spec says 99 but len(the tokenizer) is 15" in message


# --- a malformed spec is a ConfigError ----------------------------------------------------------------------------


def test_several_codebooks_need_a_layout():
    message = build_error(hf_tokenizer(SMALL_CODES), small_spec(layout=None), ConfigError)
    assert "spec.yaml: modalities.audio.layout: None is not one of ['frame_major', 'codebook_major']" in message


def test_a_misspelt_key_is_an_error_with_a_suggestion():
    spec = small_spec()
    spec["modalities"]["audio"]["codebook_sise"] = spec["modalities"]["audio"].pop("codebook_size")
    message = build_error(hf_tokenizer([]), spec, ConfigError)
    assert "spec.yaml: modalities.audio.codebook_sise: unknown key, did you mean 'codebook_size'?" in message


def test_a_pattern_without_an_index_is_an_error():
    message = build_error(hf_tokenizer([]), small_spec(tokens="<a>"), ConfigError)
    assert "modalities.audio.tokens: pattern '<a>' must hold {i} exactly once" in message


# --- the command line ---------------------------------------------------------------------------------------------


@pytest.fixture
def tokenizer_and_spec(tmp_path):
    tokenizer_dir, spec_path = tmp_path / "tokenizer", tmp_path / "spec.yaml"
    hf_tokenizer(["<soa>", "<eoa>"] + SMALL_CODES).save_pretrained(tokenizer_dir)
    spec_path.write_text(json.dumps(small_spec()))  # JSON is YAML
    return str(tokenizer_dir), str(spec_path)


def test_cli_writes_the_token_space_and_its_sha256_sidecar(tokenizer_and_spec, tmp_path, capsys):
    from mmgate.cli import main as cli

    out = tmp_path / "out" / "token_space.json"
    assert cli(["token-space", str(out), "--from-tokenizer", tokenizer_and_spec[0], "--spec", tokenizer_and_spec[1]]) == 0
    assert (tmp_path / "out" / "token_space.sha256").read_text() == f"{sha256_file(out)}  token_space.json\n"
    assert TokenSpace.load(out).ranges["AUDIO_CB1"].start == 11
    assert f"{out}: valid, vocab_size 15" in capsys.readouterr().out


def test_cli_refuses_to_overwrite_a_different_token_space_without_force(tokenizer_and_spec, tmp_path, capsys):
    from mmgate.cli import main as cli

    out = tmp_path / "token_space.json"
    out.write_text("{}\n")
    args = ["token-space", str(out), "--from-tokenizer", tokenizer_and_spec[0], "--spec", tokenizer_and_spec[1]]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert f"{out} exists with other content" in err and "may already record its hash" in err and "--force" in err
    assert out.read_text() == "{}\n"
    assert cli(args + ["--force"]) == 0
    assert TokenSpace.load(out).vocab_size == 15


def test_cli_leaves_an_identical_token_space_untouched(tokenizer_and_spec, tmp_path):
    from mmgate.cli import main as cli

    out = tmp_path / "token_space.json"
    args = ["token-space", str(out), "--from-tokenizer", tokenizer_and_spec[0], "--spec", tokenizer_and_spec[1]]
    assert cli(args) == 0
    os.utime(out, (1, 1))  # Snakemake compares mtimes: an unchanged file must not look new
    assert cli(args) == 0
    assert out.stat().st_mtime == 1


def test_cli_needs_spec_with_from_tokenizer(tokenizer_and_spec, tmp_path, capsys):
    from mmgate.cli import main as cli

    assert cli(["token-space", str(tmp_path / "token_space.json"), "--from-tokenizer", tokenizer_and_spec[0]]) == 2
    assert "--from-tokenizer DIR and --spec SPEC.yaml go together" in capsys.readouterr().err
