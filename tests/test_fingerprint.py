"""Fingerprints and collapse detection (P1.3)."""

import numpy as np
import pandas as pd
import pytest

from mmgate.fingerprint import FingerprintSettings, audio_features, collapse, longest_loop, token_features

SETTINGS = FingerprintSettings()


def tone(freq=440.0, rate=24000, seconds=0.5, amplitude=0.3):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t))[None].astype(np.float32)


def test_silent_clip_is_flagged_and_a_tone_is_not():
    assert audio_features(np.zeros((1, 12000), np.float32), 24000, SETTINGS)["silent"]
    features = audio_features(tone(), 24000, SETTINGS)
    assert not features["silent"] and not features["noise"]
    assert features["rms"] == pytest.approx(0.3 / np.sqrt(2), rel=1e-2)
    assert features["zero_crossing_rate"] == pytest.approx(2 * 440 / 24000, rel=0.05)


def test_white_noise_is_flagged_as_noise():
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 24000)).astype(np.float32)
    features = audio_features(noise, 24000, SETTINGS)
    assert features["noise"] and features["spectral_flatness"] > 0.5


def test_clipping_share_counts_samples_at_full_scale():
    clip = np.clip(tone(amplitude=2.0), -1, 1)
    assert audio_features(clip, 24000, SETTINGS)["clipping_share"] > 0.3


def test_longest_loop_finds_a_repeated_phrase():
    rng = np.random.default_rng(0)
    phrase = rng.integers(0, 100, (3, 2))
    frames = np.concatenate([rng.integers(100, 200, (5, 2)), phrase, phrase, phrase, rng.integers(200, 300, (4, 2))])
    assert longest_loop(frames, 16) == 9
    assert longest_loop(rng.integers(0, 10**6, (30, 2)), 16) == 0


def fingerprints(n, tokens):
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "silent": False, "noise": False,
                          "longest_loop_frames": 0})
    return collapse(frame, tokens, SETTINGS)


def test_one_output_repeated_for_every_prompt_is_collapse():
    same = np.arange(40)
    frame, summary = fingerprints(8, [same.copy() for _ in range(8)])
    assert summary["collapsed"] and summary["unique_outputs"] == 1 and summary["near_duplicate_pairs"] == 28
    assert frame["duplicate_of"].isna().tolist() == [True] + [False] * 7 and set(frame["duplicate_of"][1:]) == {"s0"}


def test_distinct_outputs_are_not_collapse():
    rng = np.random.default_rng(0)
    frame, summary = fingerprints(8, [rng.integers(0, 1024, 40) for _ in range(8)])
    assert not summary["collapsed"] and summary["unique_ratio"] == 1.0 and summary["near_duplicate_pairs"] == 0


def test_near_identical_outputs_count_as_near_duplicates():
    base = np.arange(40)
    variants = [base.copy() for _ in range(4)]
    for i, v in enumerate(variants):
        v[i] = 999  # one token in 40 differs
    _, summary = fingerprints(4, variants)
    assert summary["identical_groups"] == 4 and summary["near_duplicate_pairs"] == 6 and summary["collapsed"]
    assert summary["unique_outputs"] == 1  # near-duplicates are one output, not four


def test_clips_of_different_lengths_sharing_a_prefix_are_near_duplicates():
    rng = np.random.default_rng(0)
    music = rng.integers(0, 1024, 2000)
    lengths = [600, 800, 1200, 1600, 2000]  # golden lengths differ per sample, as they should
    frame, summary = fingerprints(5, [music[:n] for n in lengths])
    assert summary["near_duplicate_pairs"] == 10 and summary["unique_outputs"] == 1 and summary["collapsed"]
    assert frame["near_duplicate"].all()


def test_a_shared_opening_then_different_music_is_not_a_near_duplicate():
    rng = np.random.default_rng(0)
    opening = rng.integers(0, 1024, 20)
    clips = [np.concatenate([opening, rng.integers(0, 1024, 180)]) for _ in range(4)]
    _, summary = fingerprints(4, clips)
    assert summary["near_duplicate_pairs"] == 0 and summary["unique_outputs"] == 4


def test_decoded_waveforms_that_agree_over_their_shared_duration_are_near_duplicates():
    rng = np.random.default_rng(0)
    song = rng.standard_normal(24000).astype(np.float32)
    waves = [song[:12000], song[:20000], rng.standard_normal(16000).astype(np.float32)]
    tokens = [rng.integers(0, 1024, 40) for _ in range(3)]  # different codes, e.g. two codecs' tokens of one song
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "silent": False, "noise": False, "longest_loop_frames": 0})
    out, summary = collapse(frame, tokens, SETTINGS, waves)
    assert out["near_duplicate"].tolist() == [True, True, False] and summary["unique_outputs"] == 2


def test_image_hash_distance_finds_near_duplicates():
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "phash": ["ffff0000ffff0000", "ffff0000ffff0001", "0123456789abcdef"],
                          "longest_loop_frames": 0})
    rng = np.random.default_rng(1)
    out, summary = collapse(frame, [rng.integers(0, 512, 16) for _ in range(3)], SETTINGS)
    assert out["near_duplicate"].tolist() == [True, True, False] and summary["near_duplicate_pairs"] == 1


def test_token_features_measure_diversity(mini_demo):
    audio = mini_demo["space"].modality("audio")
    loop = audio.flatten(np.tile(np.arange(4)[:, None], (1, 12)))  # one frame repeated 12 times
    features = token_features(loop, audio, SETTINGS)
    assert features["unique_token_ratio"] == pytest.approx(4 / 48) and features["longest_loop_frames"] == 12


def test_silent_clips_count_as_silence_not_as_near_duplicates_of_each_other(mini_demo, tmp_path):
    from mmgate.decode import write_wav
    from mmgate.fingerprint import fingerprint_rows

    audio = mini_demo["space"].modality("audio")
    rng = np.random.default_rng(0)
    waves = {"a": np.zeros((1, 12000), np.float32), "b": np.zeros((1, 12000), np.float32), "c": tone(seconds=0.5)}
    decoded, generated = [], []
    for sid, wave in waves.items():
        write_wav(tmp_path / f"{sid}.wav", wave, 24000)
        decoded.append({"sample_id": sid, "ok": True, "reason": None, "file_path": str(tmp_path / f"{sid}.wav")})
        ids = audio.flatten(rng.integers(0, 1024, (4, 10)))  # distinct codes: the tokens are not collapsed
        generated.append({"sample_id": sid, "generated_ids": ids.tolist(), "expected_len": len(ids)})
    frame, summary = fingerprint_rows(pd.DataFrame(decoded), pd.DataFrame(generated), audio, SETTINGS)
    assert frame["silent"].tolist() == [True, True, False]
    assert summary["silent_share"] == pytest.approx(2 / 3) and summary["near_duplicate_pairs"] == 0


# The pairwise loops the vectorised near-duplicate search replaced: kept as its specification.
def reference_prefix_agreement(tokens):
    n = len(tokens)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            common = min(len(tokens[i]), len(tokens[j]))
            if i != j and common:
                out[i, j] = int(np.sum(np.asarray(tokens[i][:common]) == np.asarray(tokens[j][:common]))) / common
    return out


def reference_hash_distances(hashes):
    import imagehash

    bits = [imagehash.hex_to_hash(h).hash.reshape(-1) if isinstance(h, str) else None for h in hashes]
    size = next((b.size for b in bits if b is not None), 64)
    out = np.full((len(bits), len(bits)), size + 1, dtype=np.int64)
    for i, a in enumerate(bits):
        for j, b in enumerate(bits):
            if i != j and a is not None and b is not None:
                out[i, j] = int((a != b).sum())
    return out


def reference_waveform_correlation(waveforms, min_samples=256):
    n = len(waveforms)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            a, b = waveforms[i], waveforms[j]
            if a is None or b is None or min(a.size, b.size) < min_samples:
                continue
            m = min(a.size, b.size)
            x, y = a[:m] - a[:m].mean(), b[:m] - b[:m].mean()
            norm = float(np.sqrt((x @ x) * (y @ y)))
            out[i, j] = out[j, i] = float(x @ y) / norm if norm > 0 else float(np.array_equal(a[:m], b[:m]))
    return out


def ragged_tokens(rng, n, vocab=4, max_len=12):
    """Short sequences over a tiny vocabulary: many ties, shared prefixes, copies and empty ones."""
    tokens = [rng.integers(0, vocab, rng.integers(0, max_len + 1)) for _ in range(n)]
    for _ in range(n // 4):  # exact copies and truncated copies
        i, j = rng.integers(0, n, 2)
        tokens[i] = tokens[j][: rng.integers(0, len(tokens[j]) + 1)].copy() if rng.random() < 0.5 else tokens[j].copy()
    return tokens


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_prefix_agreement_equals_the_pairwise_loop(seed):
    from mmgate.fingerprint import prefix_agreement

    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 17, 60):
        tokens = ragged_tokens(rng, n, vocab=int(rng.integers(1, 6)))
        assert np.array_equal(prefix_agreement(tokens), reference_prefix_agreement(tokens))
        assert np.array_equal(prefix_agreement(tokens, block=3), reference_prefix_agreement(tokens))


def test_prefix_agreement_edge_cases():
    from mmgate.fingerprint import prefix_agreement

    empty = np.zeros(0, np.int64)
    assert prefix_agreement([]).shape == (0, 0)
    assert np.array_equal(prefix_agreement([empty, empty, np.arange(3)]), np.zeros((3, 3)))
    ten = np.arange(10)
    one_off = ten.copy()
    one_off[3] = 99
    out = prefix_agreement([ten, one_off, ten[:5], np.array([10**12, -5])])  # 9 of 10 agree: exactly 0.9, a tie
    assert out[0, 1] == 0.9 and out[0, 2] == 1.0 and out[1, 2] == 0.8 and out[3, 0] == 0.0
    assert prefix_agreement([[1, 2, 3], [1, 2]])[0, 1] == 1.0  # lists work too


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_hash_distances_equal_the_pairwise_loop(seed):
    from mmgate.fingerprint import hash_distances

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, 4)
    hashes = [f"{int(base[rng.integers(0, 4)]) ^ (1 << int(rng.integers(0, 64))):016x}" for _ in range(30)]
    hashes += [None, float("nan"), hashes[0]]
    assert np.array_equal(hash_distances(hashes), reference_hash_distances(hashes))
    assert np.array_equal(hash_distances(hashes[:1]), reference_hash_distances(hashes[:1]))


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_waveform_correlation_matches_the_pairwise_loop(seed):
    from mmgate.fingerprint import waveform_correlation

    rng = np.random.default_rng(seed)
    song = rng.standard_normal(3000).astype(np.float32)
    waves = [song[: rng.integers(200, 3000)] + 0.3 * rng.standard_normal(1).astype(np.float32) for _ in range(8)]
    waves += [rng.standard_normal(rng.integers(200, 3000)).astype(np.float32) for _ in range(8)]
    waves += [None, np.full(700, 0.5, np.float32), np.full(900, 0.5, np.float32), np.full(400, -0.25, np.float32),
              np.concatenate([np.full(300, 0.5, np.float32), song[:500]]), song[:100]]
    order = rng.permutation(len(waves))
    waves = [waves[i] for i in order]
    got, want = waveform_correlation(waves), reference_waveform_correlation(waves)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(waveform_correlation(waves, chunk=100, block=5), got, atol=1e-12)  # only rounding
    threshold = SETTINGS.near_duplicate_waveform_correlation
    assert np.array_equal(got >= threshold, want >= threshold)


def test_collapse_columns_equal_those_of_the_pairwise_loops(monkeypatch):
    import mmgate.fingerprint as fp

    rng = np.random.default_rng(7)
    n = 40
    tokens = ragged_tokens(rng, n, vocab=3, max_len=10)
    hashes = [f"{int(h):016x}" for h in rng.choice([0xFFFF0000FFFF0000, 0xFFFF0000FFFF0001, 0x0123456789ABCDEF], n)]
    hashes[5] = None
    frame = pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(n)], "phash": hashes, "silent": False,
                          "noise": False, "longest_loop_frames": 0})
    song = rng.standard_normal(2000).astype(np.float32)
    waves = [song[: rng.integers(300, 2000)] if rng.random() < 0.3 else
             (None if rng.random() < 0.2 else rng.standard_normal(rng.integers(300, 2000)).astype(np.float32))
             for _ in range(n)]
    new_frame, new_summary = fp.collapse(frame, tokens, SETTINGS, waves)
    monkeypatch.setattr(fp, "prefix_agreement", reference_prefix_agreement)
    monkeypatch.setattr(fp, "hash_distances", reference_hash_distances)
    monkeypatch.setattr(fp, "waveform_correlation", reference_waveform_correlation)
    old_frame, old_summary = fp.collapse(frame, tokens, SETTINGS, waves)
    pd.testing.assert_frame_equal(new_frame, old_frame)
    assert new_summary == old_summary and new_frame["near_duplicate"].any() and new_frame["duplicate_of"].notna().any()
