"""Generation for T2A/T2I in shards: per-sample length, free or constrained, compliance per row.

Each sample generates up to its own ``expected + margin`` tokens (``expected`` from its meta),
samples of similar length are batched together so little is wasted on padding, and the decode
input is the first ``expected`` tokens. Every sampling parameter is set explicitly: transformers
otherwise fills unset fields from the checkpoint's own `generation_config.json` (and applies
top-k 50 when sampling). With `restricted_head`, constrained mode computes the head and samples
only over the ids the constraint allows (mmgate.restricted), and falls back to `generate`, with
one log line saying why, where that cannot reproduce it. A class whose forward suppresses ids
(HF Chameleon's image tokens) generates with the model's own head (mmgate.heads.own_head_forward).
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from .progress import Progress
from .settings import FromConfig
from .tasks import MODES
from .templates import PromptTemplate
from .tokenspace import Modality, TokenSpace

if TYPE_CHECKING:
    from .shardjob import ShardJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings(FromConfig):
    section = "generation"
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    length_margin: int = 8
    hold_end_until_expected: bool = True
    batch_size: int = 32
    seed: int = 0
    # constrained mode: logits and sampling only over the ids the constraint allows (mmgate.restricted)
    restricted_head: bool = True  # x1.65 of unconstrained generate on a 0.5B-shaped model; other random draws
    # ... measuring the mass the constraint removes (a full-vocabulary step) every n-th step
    removed_mass_every: int = 16
    # transformers generate (free mode; constrained where the restricted head does not apply): a static
    # KV cache, for which transformers compiles the forward pass (torch.compile) on a GPU unless `compile` is off
    static_cache: bool = False
    compile: bool = True
    # generate for this many golden rows per task (golden.generation_subset); None: all of them
    samples_per_task: int | None = None


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compliance(generated: np.ndarray, modality: Modality, n_frames: int | None) -> dict[str, Any]:
    """Token-type compliance of one generated modality span (without its end token).

    `out_of_range`: tokens outside every range of the modality; `wrong_slot`: tokens of the
    modality in a codebook other than the one the layout expects at their position.
    """
    generated = np.asarray(generated, dtype=np.int64)
    slots = modality.slot_of_id(generated)
    out_of_range = slots < 0
    if modality.n_codebooks > 1:
        expected = modality.slot_at(np.arange(generated.size), n_frames)
        wrong_slot = (slots >= 0) & (slots != expected)
    else:
        wrong_slot = np.zeros(generated.size, dtype=bool)
    violations = np.flatnonzero(out_of_range | wrong_slot)
    n = int(generated.size)
    return {
        "out_of_range": int(out_of_range.sum()),
        "out_of_range_pct": float(100.0 * out_of_range.sum() / n) if n else 0.0,
        "wrong_slot": int(wrong_slot.sum()),
        "first_violation": int(violations[0]) if violations.size else None,
        **slot_confusion(generated, modality, n_frames),
    }


def slot_confusion(generated: np.ndarray, modality: Modality, n_frames: int | None) -> dict[str, Any]:
    """Where the tokens of one span fall, by the slot the declared layout expects there.

    `slot_counts[e * (K + 1) + a]`: tokens at positions expecting codebook `e` that hold a code of
    codebook `a` (`a = K`: out of every range). `other_layout_slots`: in-range tokens whose codebook is
    the one the *other* layout (frame-major <-> codebook-major) expects there, or None where that
    cannot be told (one codebook, or codebook-major without n_frames). `layout`: the declared one.
    P0.2 reads a systematic pattern off their sum over a task's free runs (gates.layout_diagnosis).

        >>> from mmgate.tokenspace import TokenSpace
        >>> audio = TokenSpace.from_dict({"vocab_size": 20, "special_tokens": {"<a>": 0, "</a>": 1},
        ...     "ranges": {"CB0": [4, 8], "CB1": [8, 12]}, "modalities": {"audio": {"ranges": ["CB0", "CB1"],
        ...     "start_token": "<a>", "end_token": "</a>", "layout": "frame_major"}}}).modality("audio")
        >>> slot_confusion(np.array([8, 4, 9, 5]), audio, 2)["slot_counts"]   # every code one slot off
        [0, 2, 0, 2, 0, 0]
    """
    k = modality.n_codebooks
    actual = modality.slot_of_id(generated)
    actual = np.where(actual < 0, k, actual)
    positions = np.arange(generated.size)
    counts = np.zeros((k, k + 1), dtype=np.int64)
    if k == 1:
        np.add.at(counts, (np.zeros_like(actual), actual), 1)
        return {"slot_counts": counts.ravel().tolist(), "other_layout_slots": None, "layout": None}
    frames = int(n_frames) if n_frames else 0
    if modality.layout == "codebook_major" and frames <= 0:
        return {"slot_counts": None, "other_layout_slots": None, "layout": modality.layout}
    expected = modality.slot_at(positions, frames if frames > 0 else None)
    inside = expected >= 0
    np.add.at(counts, (expected[inside], actual[inside]), 1)
    other = None
    if frames > 0:
        alternative = positions // frames if modality.layout == "frame_major" else positions % k
        alternative = np.where(alternative < k, alternative, -1)
        other = int(((actual < k) & (actual == alternative)).sum())
    return {"slot_counts": counts.ravel().tolist(), "other_layout_slots": other, "layout": modality.layout}


def removed_mass_stats(removed: np.ndarray | None, row: int, steps: int, first: np.ndarray | None = None,
                       overridden: np.ndarray | None = None) -> dict[str, float | None]:
    """Probability mass the constraint removed over one row's own measured steps (NaN: a step not measured;
    None in free mode): the mean and max of the periodic steps, the first step's, the peak of all of them,
    and the share of measured steps where the constraint changed the model's top choice."""
    none = {"removed_mass_mean": None, "removed_mass_max": None, "removed_mass_first": None,
            "removed_mass_peak": None, "overridden_share": None}
    if removed is None or steps <= 0:
        return none
    own = removed[row, : min(steps, removed.shape[1])]
    first_mass = float(first[row]) if first is not None else (float(own[0]) if own.size else float("nan"))
    out = dict(none)
    if not np.isnan(own).all():
        out.update(removed_mass_mean=float(np.nanmean(own)), removed_mass_max=float(np.nanmax(own)))
    if np.isfinite(first_mass):
        out["removed_mass_first"] = first_mass
    measured = [v for v in (out["removed_mass_max"], out["removed_mass_first"]) if v is not None]
    out["removed_mass_peak"] = max(measured) if measured else None
    if overridden is not None:
        flags = overridden[row, : min(steps, overridden.shape[1])]
        if not np.isnan(flags).all():
            out["overridden_share"] = float(np.nanmean(flags))
    return out


def split_generation(new_tokens: np.ndarray, budget: int, end_id: int) -> tuple[np.ndarray, int | None]:
    """(span before the end token, end position or None) of one row's new tokens."""
    row = np.asarray(new_tokens[:budget], dtype=np.int64)
    ends = np.flatnonzero(row == end_id)
    if ends.size:
        return row[: ends[0]], int(ends[0])
    return row, None


def length_batches(frame: pd.DataFrame, batch_size: int) -> Iterator[pd.DataFrame]:
    """Batches of samples with similar expected length (sorted, then chunked)."""
    ordered = frame.sort_values(["expected_len", "sample_id"], kind="stable")
    for start in range(0, len(ordered), batch_size):
        yield ordered.iloc[start : start + batch_size]


def generate_rows(model: Any, tokenizer: Any, space: TokenSpace, rows: pd.DataFrame, task: str, template: PromptTemplate,
                  mode: str, settings: GenerationSettings, progress: "Progress | bool | None" = None) -> pd.DataFrame:
    """Generate for every golden row of one write task; one output row per sample. `progress` counts each
    batch's samples and the tokens it generated (a job's `Progress`; True: one of its own, logged here)."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    from .constrain import ModalityConstraint, RowBudget, StepBeat
    from .loading import pad_id
    from .heads import head_path, own_head_forward
    from .restricted import RestrictedDecoder, Unsupported

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    modality = space.modality_for_task(task)
    device = model.get_input_embeddings().weight.device  # where a device_map puts the first layer
    pad = pad_id(tokenizer, modality.end_id)
    batches = list(length_batches(rows, settings.batch_size))
    own = Progress(len(rows), "samples", logger, label=f"generate {task}/{mode}") if progress is True else None
    progress = own if progress is True else (progress or None)
    out: list[dict[str, Any]] = []
    fallback_logged = False
    path = head_path(model)
    path.require_usable()
    if path.suppresses:
        logger.info("generate %s/%s: %s", task, mode, path.check.describe())
    for batch_index, batch in enumerate(batches):
        contexts = [template.encode(prompt=p) for p in batch["prompt"]]
        width = max(map(len, contexts))
        input_ids = torch.full((len(contexts), width), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, ctx in enumerate(contexts):  # left padding: every row's span starts at column `width`
            input_ids[i, width - len(ctx) :] = torch.tensor(ctx)
            attention[i, width - len(ctx) :] = 1
        expected = batch["expected_len"].to_numpy(dtype=np.int64).copy()
        budgets = expected + settings.length_margin
        n_frames = (batch["n_frames"].fillna(1).to_numpy(dtype=np.int64)) if modality.n_codebooks > 1 else None
        config = GenerationConfig(
            do_sample=settings.do_sample, temperature=settings.temperature, top_k=settings.top_k,
            top_p=settings.top_p, repetition_penalty=settings.repetition_penalty, num_beams=1,
            max_new_tokens=int(budgets.max()), min_new_tokens=0, eos_token_id=modality.end_id,
            pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, use_cache=True,
            cache_implementation="static" if settings.static_cache else None, disable_compile=not settings.compile,
        )
        processors = LogitsProcessorList()
        constraint = decoder = None
        if mode == "constrained":
            frames = None if n_frames is None else torch.from_numpy(n_frames)
            min_length = torch.from_numpy(expected) if settings.hold_end_until_expected else None
            constraint = ModalityConstraint(modality, span_start=width, n_frames=frames, min_length=min_length, device=device,
                                            track_removed_mass=True)
            processors.append(constraint)
        seed = (settings.seed * 1_000_003 + zlib.crc32(",".join(batch["sample_id"]).encode())) % (2**31)
        if constraint is not None and settings.restricted_head:
            try:
                decoder = RestrictedDecoder.for_model(model, config, constraint, settings.removed_mass_every,
                                                      measure_phase=seed)
            except Unsupported as reason:
                if not fallback_logged:
                    logger.warning("generate %s: restricted_head falls back to transformers generate: %s", task, reason)
                fallback_logged = True
        stopping = StoppingCriteriaList([RowBudget(width, torch.from_numpy(budgets).to(device))])
        if progress is not None:
            stopping.append(StepBeat(progress, width, int(budgets.max())))
        torch.manual_seed(seed)
        start = time.perf_counter()
        removed_mass = constraint.removed_mass if constraint else []
        overridden_steps = constraint.overridden if constraint else []
        first_removed = None
        with torch.inference_mode():
            if decoder is not None:
                result = decoder.generate(input_ids.to(device), attention.to(device), stopping)
                sequences, removed_mass = result.sequences, result.removed_mass
                overridden_steps, first_removed = result.overridden or [], result.first_removed
            else:
                with own_head_forward(model) if path.suppresses else nullcontext():
                    sequences = model.generate(
                        input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config,
                        logits_processor=processors, stopping_criteria=stopping,
                    )
        seconds = time.perf_counter() - start
        new_tokens = sequences[:, width:].cpu().numpy()
        spans = [split_generation(new_tokens[i], int(budgets[i]), modality.end_id) for i in range(len(batch))]
        removed = torch.stack(removed_mass, dim=1).cpu().numpy() if removed_mass else None
        overridden = torch.stack(overridden_steps, dim=1).float().cpu().numpy() if overridden_steps else None
        first = first_removed.float().cpu().numpy() if first_removed is not None else None
        n_new = sum(len(span) + (end is not None) for span, end in spans)
        if progress is not None:
            progress.update(len(batch), tokens=n_new)
        for i, row in enumerate(batch.itertuples()):
            span, end = spans[i]
            frames = int(n_frames[i]) if n_frames is not None else None
            out.append({
                "sample_id": row.sample_id,
                "prompt_hash": prompt_hash(row.prompt),
                "generated_ids": span.tolist(),
                "expected_len": int(expected[i]),
                "budget": int(budgets[i]),
                "n_generated": int(len(span)),
                "emitted_end": end is not None,
                "end_position": end,
                "ragged_tail": int(len(span) % modality.n_codebooks),
                **compliance(span, modality, frames),
                **removed_mass_stats(removed, i, len(span) + (end is not None), first, overridden),
                "seed": int(seed),
                "batch_index": batch_index,
                "generation_seconds": seconds,
                "tokens_per_second": n_new / seconds if seconds > 0 else None,
            })
    if own is not None:
        own.close()
    frame = pd.DataFrame(out)
    for column in ("end_position", "first_violation"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    for column in ("removed_mass_mean", "removed_mass_max", "removed_mass_first", "removed_mass_peak", "overridden_share"):
        if column in frame:
            frame[column] = frame[column].astype("float64")
    return frame.sort_values("sample_id", kind="stable").reset_index(drop=True)


def generate_shard(job: "ShardJob", mode: str, settings: GenerationSettings, progress: "Progress | bool | None" = True,
                   loaded: tuple[Any, Any, str] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Generate the job's shard with `loaded` (model, tokenizer, device), else load the checkpoint;
    returns (rows, metadata for the parquet file). `progress`: as in `generate_rows`."""
    model, tokenizer, template, device = job.load(loaded)
    frame = generate_rows(model, tokenizer, job.space, job.rows, job.task, template, mode, settings, progress=progress)
    meta = {"mode": mode, **job.model_meta(device, model), "tokenizer_len": len(tokenizer), "settings": asdict(settings)}
    return frame, job.provenance("generate", **meta)
