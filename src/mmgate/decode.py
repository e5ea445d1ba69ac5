"""P0.3: decode every constrained generation, or say precisely why a sample cannot be decoded.

Each sample is validated first (long enough to slice to its expected length, every token in the
codebook slot its position expects, every code inside the decoder's codebook); a bad sample is a
row with its reason and never stops the others. A decoder that fails on valid codes fails the
job (`DecoderFailure`), so that a broken decoder never becomes the model's P0.3 verdict; a decoder
out of memory is retried on half the batch; codes a decoder documents it cannot decode
(`mmgate.decoders.InvalidCodes`) are that sample's failed row. Valid samples are decoded in batches of equal
length, the output is checked against the expected sample rate, channel count and length
(`n_frames * hop`) or image size (`proc_size`), and written as WAV or PNG under `results/media/` (outside the parquet datasets).
"""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .decoders import InvalidCodes
from .errors import MMGateError
from .io import atomic_path
from .stages import STAGES
from .tokenspace import Modality

if TYPE_CHECKING:
    from .progress import Progress
    from .shardjob import ShardJob

COLUMNS = ("sample_id", "ok", "reason", "sample_rate", "channels", "samples", "duration", "width", "height",
           "file", "decode_seconds")


def validate_sample(generated: np.ndarray, expected_len: int, modality: Modality, codebook_size: int,
                    n_frames: int | None) -> tuple[np.ndarray | None, str | None]:
    """(codes [K, T] ready for the decoder, None) or (None, the reason it cannot be decoded)."""
    ids = np.asarray(generated, dtype=np.int64)
    if ids.size < expected_len:
        return None, f"too short: {ids.size} of {expected_len} expected tokens were generated"
    span = ids[:expected_len]
    slots = modality.slot_of_id(span)
    outside = np.flatnonzero(slots < 0)
    if outside.size:
        p = int(outside[0])
        return None, f"out of range: id {int(span[p])} at position {p} is not a {modality.name} token"
    if modality.n_codebooks > 1:
        expected = modality.slot_at(np.arange(span.size), n_frames)
        wrong = np.flatnonzero(slots != expected)
        if wrong.size:
            p = int(wrong[0])
            return None, (f"wrong slot: id {int(span[p])} at position {p} is in {modality.ranges[slots[p]].name}, "
                          f"the {modality.layout} layout expects {modality.ranges[expected[p]].name}")
    codes = modality.unflatten(span)  # [K, T]
    too_big = np.argwhere(codes >= codebook_size)
    if too_big.size:
        k, t = map(int, too_big[0])
        return None, f"code {int(codes[k, t])} of codebook {k} at frame {t} is outside the decoder's codebook of {codebook_size}"
    return codes, None


def write_wav(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """waveform [C, S] float in [-1, 1] -> 16-bit PCM WAV, written atomically."""
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767).round().astype("<i2").T  # [S, C] interleaved
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(waveform.shape[0])
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(pcm.tobytes())


def write_png(path: Path, image: Any) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _meta(row: Any, name: str) -> int | None:
    value = getattr(row, name, None)
    return None if value is None or pd.isna(value) else int(value)


def decode_rows(generated: pd.DataFrame, golden: pd.DataFrame, modality: Modality, decoder: Any, files_dir: Path,
                relative_to: Path, batch_size: int = 16, progress: "Progress | None" = None) -> pd.DataFrame:
    """One row per generated sample; decoded files go to `files_dir`, named by sample_id. `progress` counts
    each decoded batch's samples, and those that cannot be decoded as done without work."""
    meta = golden.set_index("sample_id")
    rows = generated.join(meta[[c for c in ("n_frames", "sample_rate", "channels", "proc_size") if c in meta]], on="sample_id")
    records: dict[str, dict[str, Any]] = {}
    ready: dict[int, list[tuple[Any, np.ndarray]]] = {}
    for row in rows.itertuples():
        codes, reason = validate_sample(np.asarray(row.generated_ids), int(row.expected_len), modality,
                                        decoder.codebook_size, _meta(row, "n_frames"))
        records[row.sample_id] = {"sample_id": row.sample_id, "ok": False, "reason": reason}
        if codes is not None:
            ready.setdefault(codes.shape[1], []).append((row, codes))
    files_dir.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress.skip(len(records) - sum(map(len, ready.values())))
    for length, items in sorted(ready.items()):
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            began = time.perf_counter()
            for (row, _), output in zip(batch, _decode_or_fail(decoder, modality, batch)):
                if isinstance(output, InvalidCodes):  # the decoder's documented refusal: the model's fault
                    records[row.sample_id]["reason"] = f"decoder error: the decoder rejected the codes: {output}"
                    continue
                records[row.sample_id].update(_check_and_write(row, output, modality, decoder, files_dir, relative_to))
                records[row.sample_id]["decode_seconds"] = (time.perf_counter() - began) / len(batch)
            if progress is not None:
                progress.update(len(batch))
    frame = pd.DataFrame([records[sid] for sid in rows["sample_id"]]).reindex(columns=list(COLUMNS))
    for column in ("sample_rate", "channels", "samples", "width", "height"):
        frame[column] = frame[column].astype("Int64")
    frame["ok"] = frame["ok"].astype(bool)
    return frame


class DecoderFailure(MMGateError):
    """The decoder failed on codes that were valid: its fault (weights, install, device, memory), not the model's."""


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or "out of memory" in str(err).lower()


def _decode_or_fail(decoder: Any, modality: Modality, batch: list[tuple[Any, np.ndarray]]) -> list[Any]:
    """The decoder's outputs for a batch of validated samples (an `InvalidCodes` in a sample's place where the
    decoder refused its codes). Out of memory: the batch is halved until it fits. Any other exception of the
    decoder on valid codes raises DecoderFailure: no verdict may rest on a broken decoder."""
    try:
        return list(_decode_batch(decoder, modality, [codes for _, codes in batch]))
    except InvalidCodes as err:
        if len(batch) == 1:
            return [err]
        return [out for item in batch for out in _decode_or_fail(decoder, modality, [item])]  # whose codes?
    except Exception as err:
        if _is_out_of_memory(err) and len(batch) > 1:
            _free_cache()
            half = len(batch) // 2
            return _decode_or_fail(decoder, modality, batch[:half]) + _decode_or_fail(decoder, modality, batch[half:])
        ids = [row.sample_id for row, _ in batch]
        memory = " even one sample at a time" if _is_out_of_memory(err) else ""
        raise DecoderFailure(
            f"The {modality.kind} decoder ({type(decoder).__name__}) failed{memory} with {type(err).__name__}: "
            f"{str(err).splitlines()[0][:300] if str(err) else '(no message)'}, on {len(ids)} sample(s) whose codes are "
            f"valid (every token in its codebook slot, every code inside the decoder's codebook of "
            f"{decoder.codebook_size}), e.g. {', '.join(ids[:3])}. This is the decoder's failure, not the model's, so "
            "this job writes no decode table and no verdict rests on it. Check the decoder's weights, install and "
            "device (the `decoders:` section of the config), or give it more memory (decoders.batch_size, the rule's "
            "mem_mb); a decoder that cannot decode some valid codes should raise mmgate.decoders.InvalidCodes for "
            "them, which P0.3 reports per sample. Shards this job already decoded are kept for the next attempt."
        ) from err


def _free_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _decode_batch(decoder: Any, modality: Modality, codes: list[np.ndarray]) -> list[Any]:
    import torch

    stacked = np.stack(codes)  # [B, K, T]
    if modality.kind == "audio":
        return list(decoder.decode(torch.from_numpy(stacked)).numpy())  # each [C, S]
    return decoder.decode(stacked[:, 0, :], None)  # images: [B, N] -> PIL


def _check_and_write(row: Any, output: Any, modality: Modality, decoder: Any, files_dir: Path, relative_to: Path) -> dict[str, Any]:
    if modality.kind == "audio":
        channels, samples = output.shape
        expected_samples = _meta(row, "n_frames") * decoder.hop_length
        problems = []
        if _meta(row, "sample_rate") not in (None, decoder.sample_rate):
            problems.append(f"sample rate {decoder.sample_rate} but the golden meta says {_meta(row, 'sample_rate')}")
        if _meta(row, "channels") not in (None, channels):
            problems.append(f"{channels} channel(s) but the golden meta says {_meta(row, 'channels')}")
        if samples != expected_samples:
            problems.append(f"{samples} samples but n_frames x hop = {expected_samples}")
        if not np.isfinite(output).all():
            problems.append("the waveform has NaN or infinite samples")
        path = files_dir / f"{row.sample_id}.wav"
        write_wav(path, np.nan_to_num(output), decoder.sample_rate)
        return {"ok": not problems, "reason": "; ".join(problems) or None, "sample_rate": decoder.sample_rate,
                "channels": channels, "samples": samples, "duration": samples / decoder.sample_rate,
                "file": path.relative_to(relative_to).as_posix()}
    width, height = output.size
    proc_size = _meta(row, "proc_size")
    problem = f"image is {width}x{height}, proc_size says {proc_size}" if proc_size and (width, height) != (proc_size, proc_size) else None
    path = files_dir / f"{row.sample_id}.png"
    write_png(path, output)
    return {"ok": problem is None, "reason": problem, "width": width, "height": height, "file": path.relative_to(relative_to).as_posix()}


def decode_shard(job: "ShardJob", generated: pd.DataFrame, decoder_config: dict[str, Any], output: Path,
                 media: Path, device: str = "cpu", batch_size: int = 16, decoder: Any = None,
                 progress: "Progress | None" = None) -> pd.DataFrame:
    """Decode one generation shard with `decoder` (else one built from `decoder_config`); files go to
    `media` (mmgate.stages: results/media/..., outside every dataset) and each row's `file` names its
    file relative to the `results/` folder `output` lies in (`progress`: as in `decode_rows`)."""
    from .decoders import build_decoder

    modality = job.modality
    decoder = decoder or build_decoder(modality.kind, decoder_config, device)
    if modality.kind == "audio" and getattr(decoder, "n_codebooks", modality.n_codebooks) != modality.n_codebooks:
        from .errors import ConfigError

        raise ConfigError(f"decoders.audio uses {decoder.n_codebooks} codebooks but the token space's audio has "
                          f"{modality.n_codebooks}; set decoders.audio.n_codebooks: {modality.n_codebooks}")
    return decode_rows(generated, job.rows, modality, decoder, Path(media), STAGES["decode"].results_of(output),
                       batch_size, progress)
