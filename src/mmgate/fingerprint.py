"""P1.3: are outputs alive and distinct? Per-sample fingerprints and collapse across prompts.

Audio: RMS, peak, clipping share, zero-crossing rate, log-mel variance, spectral flatness, and
flags for silence and for noise (a flat spectrum). Images: perceptual and difference hashes,
per-channel mean and variance. Tokens: unique ratio, distinct bigrams, the longest loop (a run of
frames repeating the frames just before it) and codebook usage. Across the prompts of one
checkpoint and task, collapse becomes numbers: identical outputs, near-duplicate pairs (token
agreement, or image hash distance) and unique outputs per sample.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .settings import FromConfig
from .tokenspace import Modality


@dataclass(frozen=True)
class FingerprintSettings(FromConfig):
    section = "fingerprint"
    silence_rms: float = 1e-3  # -60 dBFS
    noise_flatness: float = 0.4  # white noise gives ~0.56 (exp(-Euler gamma)), tones near 0
    clip_level: float = 0.999
    near_duplicate_token_agreement: float = 0.9
    near_duplicate_hash_distance: int = 4
    near_duplicate_waveform_correlation: float = 0.95
    max_loop_period: int = 16
    loop_frames: int = 8


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(waveform [C, S] float in [-1, 1], sample rate) of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as handle:
        channels, rate, n = handle.getnchannels(), handle.getframerate(), handle.getnframes()
        data = np.frombuffer(handle.readframes(n), dtype="<i2").astype(np.float32) / 32767.0
    return data.reshape(-1, channels).T, rate


def audio_features(waveform: np.ndarray, sample_rate: int, settings: FingerprintSettings) -> dict[str, Any]:
    mono = waveform.mean(axis=0)
    rms = float(np.sqrt(np.mean(mono**2))) if mono.size else 0.0
    signs = np.signbit(mono)
    frame = 512
    n_frames = max(1, mono.size // frame)
    frames = np.resize(mono[: n_frames * frame], (n_frames, frame)) if mono.size >= frame else np.pad(mono, (0, frame - mono.size))[None]
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2 + 1e-12  # [frames, bins]
    flatness = float(np.mean(np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)))
    mel = _log_mel(power, sample_rate, frame)
    return {
        "rms": rms,
        "peak": float(np.abs(mono).max()) if mono.size else 0.0,
        "clipping_share": float(np.mean(np.abs(waveform) >= settings.clip_level)) if waveform.size else 0.0,
        "zero_crossing_rate": float(np.mean(signs[1:] != signs[:-1])) if mono.size > 1 else 0.0,
        "mel_variance": float(mel.var()),
        "spectral_flatness": flatness,
        "silent": rms < settings.silence_rms,
        "noise": rms >= settings.silence_rms and flatness >= settings.noise_flatness,
    }


def _log_mel(power: np.ndarray, sample_rate: int, frame: int, n_mels: int = 40) -> np.ndarray:
    """Log mel energies [frames, n_mels] from a power spectrogram (triangular filters on the mel scale)."""
    def to_mel(f):
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(0, to_mel(sample_rate / 2), n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(frame, 1 / sample_rate)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    filters = np.clip(np.minimum((bins - low) / (centre - low), (high - bins) / (high - centre)), 0, None)  # [mels, bins]
    return np.log(power @ filters.T + 1e-10)


def image_features(path: str | Path) -> dict[str, Any]:
    import imagehash
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        pixels = np.asarray(rgb, dtype=np.float32) / 255.0
        features = {"phash": str(imagehash.phash(rgb)), "dhash": str(imagehash.dhash(rgb))}
    for i, channel in enumerate("rgb"):
        features[f"mean_{channel}"] = float(pixels[..., i].mean())
        features[f"var_{channel}"] = float(pixels[..., i].var())
    return features


def token_features(ids: np.ndarray, modality: Modality, settings: FingerprintSettings) -> dict[str, Any]:
    ids = np.asarray(ids, dtype=np.int64)
    k = modality.n_codebooks
    frames = ids[: ids.size - ids.size % k].reshape(-1, k) if modality.layout == "frame_major" or k == 1 else ids.reshape(k, -1).T
    bigrams = {(int(a), int(b)) for a, b in zip(ids[:-1], ids[1:])}
    usage = [len(set(frames[:, s].tolist())) / modality.codebook_size for s in range(k)] if frames.size else [0.0]
    return {
        "n_tokens": int(ids.size),
        "unique_token_ratio": len(set(ids.tolist())) / ids.size if ids.size else 0.0,
        "distinct_2": len(bigrams) / max(1, ids.size - 1),
        "longest_loop_frames": longest_loop(frames, settings.max_loop_period),
        "codebook_usage": float(np.mean(usage)),
    }


def longest_loop(frames: np.ndarray, max_period: int) -> int:
    """Frames in the longest loop: a stretch of `p` frames (p <= max_period) repeated at least once
    right after itself; 0 when there is none. Counts the first copy too."""
    best = 0
    n = len(frames)
    for period in range(1, min(max_period, n - 1) + 1):
        same = np.all(frames[period:] == frames[:-period], axis=1)  # frame t equals frame t - period
        run = longest = 0
        for flag in same:
            run = run + 1 if flag else 0
            longest = max(longest, run)
        if longest >= period:
            best = max(best, longest + period)
    return best


def prefix_agreement(tokens: list[np.ndarray], block: int = 512) -> np.ndarray:
    """[N, N] share of equal tokens over each pair's common prefix (0 where one is empty), diagonal 0.

    Golden lengths differ per sample, so two clips that are the same music differ in length:
    comparing only the tokens both have makes them near-duplicates all the same.

    No loop over pairs: each (position, token) that some sequence holds is a column of a sparse 0/1
    matrix X [sequences, columns], so X @ X.T counts the positions where two sequences hold the
    same token. A position past either one's end is in only one row, so the count covers the
    common prefix. Identical sequences are merged first: a collapsed model writes one output for
    every prompt, which would make the product dense.
    """
    from scipy.sparse import csr_matrix

    arrays = [np.asarray(t).reshape(-1).astype(np.int64, copy=False) for t in tokens]
    index: dict[bytes, int] = {}
    unique: list[np.ndarray] = []
    inverse = np.zeros(len(arrays), dtype=np.int64)  # [N] -> row of its distinct sequence
    for i, a in enumerate(arrays):
        inverse[i] = index.setdefault(a.tobytes(), len(unique))
        if inverse[i] == len(unique):
            unique.append(a)
    lengths = np.array([a.size for a in unique], dtype=np.int64)  # [U]
    flat = np.concatenate(unique) if unique else np.zeros(0, np.int64)
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(flat.size) - np.repeat(starts, lengths)
    values, codes = np.unique(flat, return_inverse=True)
    _, columns = np.unique(positions * max(1, values.size) + codes.reshape(-1), return_inverse=True)
    x = csr_matrix((np.ones(flat.size), (np.repeat(np.arange(len(unique)), lengths), columns.reshape(-1))),
                   shape=(len(unique), int(columns.max(initial=-1)) + 1))
    agreement = (x @ x.T).toarray()  # [U, U] positions where both hold the same token (exact small integers)
    for begin in range(0, len(unique), block):  # / the common length, in place (an empty one has 0 equal: 0 / 1)
        rows = slice(begin, begin + block)
        agreement[rows] /= np.maximum(np.minimum(lengths[rows, None], lengths[None, :]), 1)
    out = agreement if len(unique) == len(arrays) else agreement[np.ix_(inverse, inverse)]
    np.fill_diagonal(out, 0.0)
    return out


def hash_distances(hashes: list[str | None]) -> np.ndarray:
    """[N, N] Hamming distances of hex perceptual hashes (a large value where a hash is missing).

    One matrix product: differing bits = ones(a) + ones(b) - 2 * ones both have (exact: the counts
    are small integers).
    """
    import imagehash

    bits = [imagehash.hex_to_hash(h).hash.reshape(-1) if isinstance(h, str) else None for h in hashes]
    size = next((b.size for b in bits if b is not None), 64)
    valid = np.array([b is not None for b in bits], dtype=bool)
    ones = np.zeros((len(bits), size), dtype=np.float32)  # [N, bits]
    for i, b in enumerate(bits):
        if b is not None:
            ones[i] = b
    counts = ones.sum(axis=1)
    both = ones @ ones.T  # [N, N] ones both hashes have, then the differing bits, in place
    both *= -2
    both += counts[:, None]
    both += counts[None, :]
    out = np.rint(both, out=both).astype(np.int64)
    out[~valid, :] = size + 1
    out[:, ~valid] = size + 1
    np.fill_diagonal(out, size + 1)
    return out


def waveform_correlation(waveforms: list[np.ndarray | None], min_samples: int = 256, chunk: int = 4096,
                         block: int = 512) -> np.ndarray:
    """[N, N] Pearson correlation of mono waveforms over their shared duration (0 where too short or missing).

    No loop over pairs: for a pair whose shared duration is m, the correlation follows from the dot
    product of the two zero-padded waveforms (one matrix product for all pairs, in float64, `chunk`
    samples at a time) and each one's sum and sum of squares over its first m samples (running
    sums, looked up `block` rows at a time). Each waveform is centred on its own mean first, which
    keeps those sums small (correlation does not change when a waveform is shifted). A pair where
    either is constant over the shared duration gets 1.0 when both are the same there, else 0.0.
    """
    n = len(waveforms)
    keep = [i for i, w in enumerate(waveforms) if w is not None and np.size(w) >= min_samples]
    if len(keep) < 2:
        return np.zeros((n, n))
    raw = [np.asarray(waveforms[i]).reshape(-1) for i in keep]
    centred = [w.astype(np.float64) - w.astype(np.float64).mean() for w in raw]
    lengths = np.array([w.size for w in raw], dtype=np.int64)  # [K]
    longest = int(lengths.max())
    dot = np.zeros((len(raw), len(raw)))
    for begin in range(0, longest, chunk):
        piece = np.zeros((len(raw), min(chunk, longest - begin)))
        for r, w in enumerate(centred):
            part = w[begin : begin + piece.shape[1]]
            piece[r, : part.size] = part
        dot += piece @ piece.T
    offsets = np.cumsum(lengths) - lengths  # where each waveform's running sums start
    sums = np.concatenate([np.cumsum(w) for w in centred])
    squares = np.concatenate([np.cumsum(w * w) for w in centred])
    # constant over the shared duration: its first changing sample comes at or after it
    first_change = np.array([int(np.argmax(w != w[0])) or w.size for w in raw])
    first = np.array([w[0] for w in raw])
    corr = dot  # each block of rows of the products becomes that block of correlations
    for begin in range(0, len(raw), block):
        rows = slice(begin, begin + block)
        shared = np.minimum(lengths[rows, None], lengths[None, :])  # [B, K]
        at_a, at_b = offsets[rows, None] + shared - 1, offsets[None, :] + shared - 1
        s_a, s_b = sums[at_a], sums[at_b]
        var_a = squares[at_a] - s_a**2 / shared
        var_b = squares[at_b] - s_b**2 / shared
        flat_a, flat_b = shared <= first_change[rows, None], shared <= first_change[None, :]
        same_flat = flat_a & flat_b & (first[rows, None] == first[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            corr[rows] = np.where(flat_a | flat_b, same_flat, (dot[rows] - s_a * s_b / shared) / np.sqrt(var_a * var_b))
    np.fill_diagonal(corr, 0.0)
    if len(keep) == n:
        return corr
    out = np.zeros((n, n))
    out[np.ix_(keep, keep)] = corr
    return out


def collapse(frame: pd.DataFrame, tokens: list[np.ndarray], settings: FingerprintSettings,
             waveforms: list[np.ndarray | None] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mark identical and near-duplicate outputs across prompts; returns (frame with columns, summary).

    Near-duplicates: identical tokens, token agreement over the common prefix, image hash
    distance, or (audio) waveform correlation over the shared duration. `unique_outputs` counts groups of outputs
    linked by identity or near-duplication, so outputs that are the same music at different
    lengths count once.
    """
    from scipy.sparse.csgraph import connected_components

    n = len(frame)
    keys = [t.tobytes() for t in tokens]
    first: dict[bytes, int] = {}
    group = [first.setdefault(key, i) for i, key in enumerate(keys)]
    by_tokens = prefix_agreement(tokens) >= settings.near_duplicate_token_agreement if n else np.zeros((0, 0), bool)
    for i, g in enumerate(group):
        if g != i:
            by_tokens[i, g] = by_tokens[g, i] = True
    similar = by_tokens.copy()
    if n and "phash" in frame and frame["phash"].notna().any():
        similar |= hash_distances(frame["phash"].tolist()) <= settings.near_duplicate_hash_distance
    if n and waveforms is not None and any(w is not None for w in waveforms):
        similar |= waveform_correlation(waveforms) >= settings.near_duplicate_waveform_correlation
    np.fill_diagonal(similar, False)

    def groups(links: np.ndarray) -> int:
        return int(connected_components(links, directed=False)[0]) if n else 0

    unique = groups(similar)
    near = similar.any(axis=1) if n else np.zeros(0, dtype=bool)
    frame = frame.copy()
    frame["duplicate_of"] = [frame["sample_id"].iloc[g] if g != i else None for i, g in enumerate(group)]
    frame["near_duplicate"] = near
    summary = {
        "n": n,
        "unique_outputs": unique,
        "identical_groups": len(set(keys)),
        "unique_ratio": unique / n if n else float("nan"),
        # the same count from the codes alone: when it is high but unique_ratio is low, distinct
        # codes decode alike (a decoder problem, not a collapsed model)
        "unique_code_ratio": groups(by_tokens) / n if n else float("nan"),
        "near_duplicate_pairs": int(np.triu(similar, 1).sum()) if n else 0,
        "near_duplicate_share": float(near.mean()) if n else float("nan"),
        "silent_share": float(frame["silent"].mean()) if "silent" in frame and n else float("nan"),
        "noise_share": float(frame["noise"].mean()) if "noise" in frame and n else float("nan"),
        "loop_share": float((frame["longest_loop_frames"] >= settings.loop_frames).mean()) if n else float("nan"),
    }
    summary["collapsed"] = bool(n > 1 and (summary["unique_ratio"] < 0.5 or summary["near_duplicate_share"] > 0.5))
    return frame, summary


def fingerprint_rows(decoded: pd.DataFrame, generated: pd.DataFrame, modality: Modality, settings: FingerprintSettings,
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-sample fingerprints of one checkpoint and task, and its collapse summary.

    `decoded` carries `file_path` (absolute or relative to the working directory); samples that did
    not decode keep their reason and get token fingerprints only.
    """
    spans = generated.set_index("sample_id")
    records, tokens, waveforms = [], [], []
    for row in decoded.sort_values("sample_id").itertuples():
        gen = spans.loc[row.sample_id]
        ids = np.asarray(gen["generated_ids"], dtype=np.int64)[: int(gen["expected_len"])]
        record = {"sample_id": row.sample_id, "decoded": bool(row.ok), "reason": row.reason}
        record.update(token_features(ids, modality, settings))
        mono = None
        if isinstance(row.file_path, str) and Path(row.file_path).exists():
            if modality.kind == "audio":
                waveform, rate = read_wav(row.file_path)
                record.update(audio_features(waveform, rate, settings))
                # silence is its own finding; two silent clips "correlating" would add a false collapse
                mono = None if record["silent"] else _downsample(waveform.mean(axis=0), rate)
            else:
                record.update(image_features(row.file_path))
        records.append(record)
        tokens.append(ids)
        waveforms.append(mono)
    return collapse(pd.DataFrame(records), tokens, settings, waveforms if modality.kind == "audio" else None)


def _downsample(mono: np.ndarray, rate: int, target: int = 8000) -> np.ndarray:
    """Block means down to about `target` Hz: enough to tell two clips apart, a fraction of the memory."""
    factor = max(1, rate // target)
    usable = mono[: mono.size - mono.size % factor]
    return usable.reshape(-1, factor).mean(axis=1) if factor > 1 else mono
