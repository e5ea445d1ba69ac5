"""Decoders (P0.3): every backend on real codes, per-sample failure reasons, output checks."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmgate.decode import decode_rows, validate_sample
from mmgate.decoders import build_decoder

JANUS = {"backend": "vqvae", "model_class": "JanusVQVAE", "config": {
    "num_embeddings": 512, "embed_dim": 8, "base_channels": 32, "latent_channels": 64, "channel_multiplier": [1, 1, 2, 2, 4],
    "num_res_blocks": 1, "projection_dim": 32, "image_token_embed_dim": 32, "num_patches": 4}}
SMALL_HF_ENCODEC = {"num_filters": 8, "hidden_size": 16, "codebook_dim": 16, "num_lstm_layers": 1, "codebook_size": 512}


@pytest.fixture(scope="module")
def encodec():
    return build_decoder("audio", {"backend": "encodec", "n_codebooks": 4, "randomize_codebooks": True, "seed": 0})


def test_encodec_package_decodes_codes_to_24khz_mono_of_n_frames_times_hop(encodec):
    codes = torch.randint(0, 1024, (2, 4, 10))
    wav = encodec.decode(codes)
    assert (encodec.sample_rate, encodec.hop_length) == (24000, 320)
    assert wav.shape == (2, 1, 10 * 320) and torch.isfinite(wav).all()


def test_randomized_codebooks_make_encodec_outputs_depend_on_the_codes(encodec):
    codes = torch.randint(0, 1024, (2, 4, 10))
    wav = encodec.decode(codes)
    assert (wav[0] - wav[1]).abs().mean() > 1e-4
    plain = build_decoder("audio", {"backend": "encodec", "n_codebooks": 4, "randomize_codebooks": False})
    same = plain.decode(codes)
    assert torch.equal(same[0], same[1])  # all-zero codebooks: every input decodes alike


def test_transformers_encodec_decodes_chunked_codes():
    decoder = build_decoder("audio", {"backend": "transformers_encodec", "config": SMALL_HF_ENCODEC, "randomize_codebooks": True})
    wav = decoder.decode(torch.randint(0, 512, (3, 4, 7)))
    assert wav.shape == (3, 1, 7 * decoder.hop_length) and decoder.codebook_size == 512


@pytest.mark.parametrize("n_tokens,side", [(16, 64), (36, 96), (64, 128)])
def test_janus_vqvae_decodes_any_square_grid(n_tokens, side):
    decoder = build_decoder("image", JANUS)
    images = decoder.decode(np.random.default_rng(0).integers(0, 512, (2, n_tokens)), None)
    assert [im.size for im in images] == [(side, side)] * 2


def test_seed_adapter_calls_image_tokenizer_decode_one_image_at_a_time():
    from plugins import fake_seed

    decoder = build_decoder("image", {"backend": "seed", "factory": "plugins.fake_seed:ImageTokenizer",
                                      "kwargs": {"model_path": "q.pt", "diffusion_model_path": "unclip"},
                                      "decode_kwargs": {"num_inference_steps": 5}})
    fake_seed.calls.clear()
    images = decoder.decode(np.arange(64).reshape(2, 32), None)
    assert [im.size for im in images] == [(224, 224)] * 2 and fake_seed.calls == [((1, 32), 5)] * 2


def test_plugin_decoder_is_named_by_module_and_function():
    decoder = build_decoder("image", {"backend": "plugin", "function": "plugins.fake_seed:stripes", "codebook_size": 512})
    assert [im.size for im in decoder.decode(np.zeros((3, 16), dtype=int), 48)] == [(48, 48)] * 3


TONE = {"backend": "plugin", "function": "mmgate.demo:tone_codec", "sample_rate": 24000, "hop_length": 320,
        "n_codebooks": 4, "codebook_size": 1024}


def test_audio_plugin_decoder_calls_the_function_with_codes_and_declares_its_format():
    decoder = build_decoder("audio", TONE)
    wav = decoder.decode(torch.randint(0, 1024, (2, 4, 10)))
    assert (decoder.sample_rate, decoder.channels, decoder.hop_length) == (24000, 1, 320)
    assert wav.shape == (2, 1, 3200) and wav.dtype == torch.float32


def test_audio_plugin_needs_its_format_declared():
    with pytest.raises(Exception, match=r"decoders.audio \(backend plugin\): set \['sample_rate'\]"):
        build_decoder("audio", {**TONE, "sample_rate": 0})


def test_tone_codec_decodes_the_same_codes_alike_and_other_codes_apart():
    from mmgate.fingerprint import waveform_correlation

    decoder = build_decoder("audio", TONE)
    codes = torch.randint(0, 1024, (2, 4, 20))
    wav, shorter = decoder.decode(codes), decoder.decode(codes[:1, :, :12])  # the same music, 12 of its 20 frames
    corr = waveform_correlation([wav[0, 0].numpy(), shorter[0, 0].numpy(), wav[1, 0].numpy()])
    assert corr[0, 1] == pytest.approx(1.0) and abs(corr[0, 2]) < 0.5


def test_random_encodec_decodes_different_codes_to_nearly_the_same_sound(encodec):
    """Why the demo decodes audio with the tone codec: P1.3 would rightly call these outputs identical."""
    from mmgate.fingerprint import waveform_correlation

    wav = encodec.decode(torch.randint(0, 1024, (2, 4, 30)))
    assert waveform_correlation([wav[0, 0].numpy(), wav[1, 0].numpy()])[0, 1] > 0.9


def test_unknown_backend_option_names_the_key():
    with pytest.raises(Exception, match=r"decoders.image: unknown option\(s\) \['pth'\]"):
        build_decoder("image", {**JANUS, "pth": "x"})


def audio_rows(space, n=4, frames=5, seed=0):
    audio = space.modality("audio")
    rng = np.random.default_rng(seed)
    gen, golden = [], []
    for i in range(n):
        ids = audio.flatten(rng.integers(0, 1024, (4, frames)))
        gen.append({"sample_id": f"a{i}", "generated_ids": np.concatenate([ids, ids[:4]]).tolist(), "expected_len": ids.size})
        golden.append({"sample_id": f"a{i}", "n_frames": frames, "sample_rate": 24000, "channels": 1, "proc_size": None})
    return pd.DataFrame(gen), pd.DataFrame(golden)


def test_planted_faults_are_failed_rows_with_precise_reasons_and_the_rest_decodes(mini_demo, encodec, tmp_path):
    space = mini_demo["space"]
    audio = space.modality("audio")
    gen, golden = audio_rows(space, n=5)
    ids = [list(x) for x in gen["generated_ids"]]
    ids[1][6], ids[1][7] = ids[1][7], ids[1][6]  # slot 2 and slot 3 swapped at frame 1
    ids[2] = ids[2][:10]  # too short
    ids[3][0] = space.modality("image").ranges[0].start  # an image token in the audio span
    gen["generated_ids"] = ids
    frame = decode_rows(gen, golden, audio, encodec, tmp_path / "part-000", tmp_path)
    reasons = frame.set_index("sample_id")["reason"]
    assert frame["ok"].tolist() == [True, False, False, False, True]
    assert reasons["a1"].startswith("wrong slot: id") and "at position 6 is in AUDIO_CB3, the frame_major layout expects AUDIO_CB2" in reasons["a1"]
    assert reasons["a2"] == "too short: 10 of 20 expected tokens were generated"
    assert reasons["a3"].startswith("out of range: id") and "at position 0 is not a audio token" in reasons["a3"]
    ok = frame[frame["ok"]]
    assert (ok["sample_rate"] == 24000).all() and (ok["channels"] == 1).all() and (ok["samples"] == 5 * 320).all()
    assert (tmp_path / ok["file"].iloc[0]).exists()


def test_code_outside_the_decoders_codebook_is_a_failed_row(mini_demo, tmp_path):
    space = mini_demo["space"]
    decoder = build_decoder("audio", {"backend": "transformers_encodec", "config": SMALL_HF_ENCODEC, "randomize_codebooks": True})
    gen, golden = audio_rows(space, n=2)
    ids = [list(x) for x in gen["generated_ids"]]
    starts = space.modality("audio").range_starts
    for i in range(2):  # fold every code into the decoder's 512
        ids[i] = [int(starts[j % 4] + (t - starts[j % 4]) % 512) for j, t in enumerate(ids[i])]
    ids[1][5] = space.modality("audio").ranges[1].start + 700  # code 700 >= 512
    gen["generated_ids"] = ids
    frame = decode_rows(gen, golden, space.modality("audio"), decoder, tmp_path / "p", tmp_path)
    assert frame["ok"].tolist() == [True, False]
    assert frame["reason"][1] == "code 700 of codebook 1 at frame 1 is outside the decoder's codebook of 512"


def test_output_with_the_wrong_sample_rate_or_size_is_flagged(mini_demo, encodec, tmp_path):
    space = mini_demo["space"]
    gen, golden = audio_rows(space, n=1)
    golden["sample_rate"] = 32000
    frame = decode_rows(gen, golden, space.modality("audio"), encodec, tmp_path / "p", tmp_path)
    assert not frame["ok"][0] and frame["reason"][0] == "sample rate 24000 but the golden meta says 32000"
    image = space.modality("image")
    decoder = build_decoder("image", JANUS)
    ids = (image.ranges[0].start + np.arange(16)).tolist()
    frame = decode_rows(pd.DataFrame([{"sample_id": "i0", "generated_ids": ids, "expected_len": 16}]),
                        pd.DataFrame([{"sample_id": "i0", "n_frames": None, "proc_size": 128}]), image, decoder, tmp_path / "q", tmp_path)
    assert frame["reason"][0] == "image is 64x64, proc_size says 128"


def test_validate_sample_slices_to_exactly_the_expected_length(mini_demo):
    audio = mini_demo["space"].modality("audio")
    ids = audio.flatten(np.zeros((4, 3), dtype=int))
    codes, reason = validate_sample(np.concatenate([ids, ids]), 12, audio, 1024, 3)
    assert reason is None and codes.shape == (4, 3)


def test_a_one_argument_image_plugin_is_called_with_the_codes_alone():
    decoder = build_decoder("image", {"backend": "plugin", "function": "plugins.fake_seed:solid", "codebook_size": 512})
    assert [im.size for im in decoder.decode(np.zeros((2, 16), dtype=int), 48)] == [(8, 8)] * 2


def image_rows(space, firsts):
    """Valid image generations (16 codes each) whose first codes are `firsts`."""
    image = space.modality("image")
    gen = [{"sample_id": f"i{n}", "generated_ids": [image.ranges[0].start + f] + [image.ranges[0].start] * 15,
            "expected_len": 16} for n, f in enumerate(firsts)]
    golden = [{"sample_id": f"i{n}", "n_frames": None, "proc_size": None} for n in range(len(firsts))]
    return pd.DataFrame(gen), pd.DataFrame(golden), image


def plugin(name):
    return build_decoder("image", {"backend": "plugin", "function": f"plugins.fake_seed:{name}", "codebook_size": 512})


@pytest.mark.parametrize("name", ["broken", "picky"])
def test_a_decoder_that_fails_on_valid_codes_fails_the_job_not_the_model(mini_demo, tmp_path, name):
    from mmgate.decode import DecoderFailure

    gen, golden, image = image_rows(mini_demo["space"], [2, 3, 4, 6])
    with pytest.raises(DecoderFailure, match=r"failed with RuntimeError: .* whose codes are valid .* This is the "
                                             r"decoder's failure, not the model's"):
        decode_rows(gen, golden, image, plugin(name), tmp_path / "p", tmp_path)


def test_codes_a_decoder_documents_it_cannot_decode_are_rows_of_their_own(mini_demo, tmp_path):
    gen, golden, image = image_rows(mini_demo["space"], [2, 3, 4, 5])
    frame = decode_rows(gen, golden, image, plugin("strict"), tmp_path / "p", tmp_path)
    assert frame["ok"].tolist() == [True, False, True, False]
    assert frame["reason"][1] == "decoder error: the decoder rejected the codes: the first code must be even"


def test_a_decoder_out_of_memory_is_retried_on_smaller_batches(mini_demo, tmp_path):
    from plugins import fake_seed

    gen, golden, image = image_rows(mini_demo["space"], [2, 4, 6, 8, 10])
    fake_seed.oom_batches.clear()
    frame = decode_rows(gen, golden, image, plugin("small_memory"), tmp_path / "p", tmp_path, batch_size=8)
    assert frame["ok"].all() and fake_seed.oom_batches == [5, 2, 3, 1, 2]  # halved until each part fits


def test_a_decoder_out_of_memory_one_sample_at_a_time_fails_the_job(mini_demo, tmp_path):
    from mmgate.decode import DecoderFailure

    gen, golden, image = image_rows(mini_demo["space"], [2, 4])
    with pytest.raises(DecoderFailure, match="failed even one sample at a time with OutOfMemoryError"):
        decode_rows(gen, golden, image, plugin("no_memory"), tmp_path / "p", tmp_path)


def test_a_plugin_name_with_a_typo_is_a_config_problem_before_any_job(mini_demo):
    from mmgate.decoders import decoder_config_problems

    image = {"backend": "plugin", "function": "plugins.fake_seed:no_such_codec", "codebook_size": 512}
    problems = decoder_config_problems({"image": image, "audio": {"backend": "encodec", "n_codebooks": 4}},
                                       mini_demo["space"])
    assert problems == ["decoders.image.function = 'plugins.fake_seed:no_such_codec': module 'plugins.fake_seed' has "
                        "no 'no_such_codec'"]


def test_a_plugin_that_cannot_take_the_codes_is_a_config_problem():
    from mmgate.decoders import plugin_problems

    assert plugin_problems("plugins.fake_seed:calls", "f") == ["f = 'plugins.fake_seed:calls' is a list, not a function"]
    assert "requires 3 arguments (codes, proc_size, palette)" in plugin_problems("plugins.fake_seed:three", "f")[0]
    assert plugin_problems("plugins.fake_seed:stripes", "f") == [] and plugin_problems("plugins.fake_seed:solid", "f") == []
