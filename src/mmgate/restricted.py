r"""Restricted-head constrained decoding: logits and sampling only over the ids the constraint allows.

At a constrained step of an audio span only one codebook's rows (and, at a frame boundary, the end
token) can be sampled; for an image span only the image range and the end token. HF `generate`
still runs the whole output head and a softmax over the whole vocabulary (150k+ ids) every step,
which on a small model costs about as much as the transformer body. `RestrictedDecoder` runs the
body with its KV cache, then the head only over the allowed rows (contiguous row slices of the head
weight: views, no copies), and samples among them with HF's own warpers, applied in HF's order.

Why this is the same distribution as `generate` + `ModalityConstraint`: the constraint gives every
disallowed id a score of `-inf`, so its probability is 0 after every warper. Temperature divides
each score; top-k keeps the scores >= the k-th largest, which over a masked vocabulary (where the
k-th largest is `-inf` when k exceeds the allowed count) is the k-th largest allowed score, i.e.
`TopKLogitsWarper`'s own `min(k, n)` over the allowed subset; top-p and min-p sort and normalise
probabilities, to which the `-inf` ids add exact zeros. Greedy decoding takes the same argmax
(columns are kept in id order, so ties resolve to the same id). What differs is the random stream:
`torch.multinomial` draws one number per column, so the same seed picks other tokens.

Every `removed_mass_every`-th step (raised to the next number coprime to the codebook count, so
each codebook is measured alike), and the span's first step, run the full head once more, to
record the probability mass the constraint removes and whether it changed the model's top choice
(P0.2); such a step samples from the full vocabulary exactly as `generate` does. Steps not
measured hold NaN. The first step is kept apart (`first_removed`): where the constraint forces the
first token into a codebook the model would not write (a codebook-order mismatch), it removes
nearly all of the model's probability there and little after, when the model's own order lines up
with the slots again. The measured steps start at `measure_phase` (generate_rows: the
batch's seed), not at step 0: the first step after the start token is not typical, and measuring
it in every batch weighted it 1/n of the mean instead of 1/length (2.74 % of the demo's T2A
probability removed, measured every step, read 3.86 % at every 17th step from step 0).

The logits are the model's own: `mmgate.heads.HeadPath` applies the family's processing after the
head (Gemma2's soft-cap and the like; elementwise, so it applies to row slices too), and the path is
used only where its check against the model's `forward` passed. Ids the class's `forward` would
suppress (HF Chameleon's image tokens) are sampled with the model's own head.

Where it cannot reproduce `generate` (a head path that failed its check, a head it cannot slice, a logits processor other than the constraint,
temperature, top-k, top-p and min-p, a model in training mode), `RestrictedDecoder.for_model`
raises `Unsupported` with the reason, and the caller falls back to `generate`.

Examples:

```python
>>> import torch
>>> from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
>>> from mmgate.constrain import ModalityConstraint
>>> from mmgate.restricted import RestrictedDecoder
>>> from mmgate.tokenspace import TokenSpace
>>> image = TokenSpace.from_dict({"vocab_size": 48, "special_tokens": {"<img_start>": 4, "<img_end>": 5},
...     "ranges": {"IMAGE": [16, 40]}, "modalities": {"image": {"ranges": ["IMAGE"],
...     "start_token": "<img_start>", "end_token": "<img_end>"}}}).modality("image")
>>> _ = torch.manual_seed(0)
>>> model = Qwen2ForCausalLM(Qwen2Config(vocab_size=48, hidden_size=16, intermediate_size=32,
...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)).eval()
>>> prompt = torch.tensor([[0, 7, 9, 4], [6, 8, 7, 4]])      # left-padded "... <img_start>"
>>> mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
>>> config = GenerationConfig(do_sample=False, max_new_tokens=5, eos_token_id=image.end_id, pad_token_id=0)
>>> hf = model.generate(prompt, attention_mask=mask, generation_config=config,
...                     logits_processor=[ModalityConstraint(image, span_start=4)])
>>> decoder = RestrictedDecoder.for_model(model, config, ModalityConstraint(image, span_start=4))
>>> torch.equal(decoder.generate(prompt, mask).sequences, hf)   # the same tokens, greedy
True

```
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from transformers import (GenerationConfig, LogitsProcessorList, MinPLogitsWarper, StoppingCriteriaList,
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from .constrain import ModalityConstraint
from .heads import HeadPath, RowHead, Unsupported, head_path

__all__ = ["RestrictedDecoder", "RestrictedOutput", "RowHead", "Unsupported"]

logger = logging.getLogger(__name__)

# HF warpers that give the same probabilities over the allowed ids as over a vocabulary where every
# other id is -inf (module docstring)
WARPERS = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper)

# choose(scores [B, C] after the warpers, ids [C]) -> next token ids [B]
Chooser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RestrictedOutput:
    sequences: torch.Tensor  # [B, width + steps]: prompt, new tokens, pad after a row's end (as `generate`)
    removed_mass: list[torch.Tensor]  # one [B] float32 per step: mass the constraint removed, NaN where not measured
    first_removed: torch.Tensor | None = None  # [B]: the mass removed at the span's first step (always measured)
    overridden: list[torch.Tensor] | None = None  # one [B] float32 per step: 1 where the top choice was disallowed, NaN where not measured


class RestrictedDecoder:
    """Decoding with the head restricted to the ids `constraint` allows; build with `for_model`."""

    def __init__(self, body: Any, head: HeadPath, constraint: ModalityConstraint, warpers: list[Any],
                 config: GenerationConfig, removed_mass_every: int = 16, measure_phase: int = 0,
                 measure_first: bool = True):
        self.body, self.head, self.constraint, self.warpers, self.config = body, head, constraint, warpers, config
        m = constraint.modality
        k = m.n_codebooks
        # blocks of contiguous ids: one per codebook slot, and the end token; columns are kept in id order
        self.blocks = [(r.start, r.end) for r in m.ranges] + [(m.end_id, m.end_id + 1)]
        # state s (ModalityConstraint.state) allows: block s (s < K); block s-K and the end (K <= s < 2K); the end (2K)
        self.allowed = torch.zeros(2 * k + 1, k + 1, dtype=torch.bool)  # [states, blocks]
        for s in range(k):
            self.allowed[s, s] = self.allowed[k + s, s] = self.allowed[k + s, k] = True
        self.allowed[2 * k, k] = True
        stride = max(1, int(removed_mass_every))
        while math.gcd(stride, k) != 1:
            stride += 1
        self.measure_every = stride if constraint.track_removed_mass else 0
        self.measure_phase = int(measure_phase) % stride  # the first measured step
        self.measure_first = measure_first and bool(self.measure_every)  # benchmarks switch it off to time it
        self._columns: dict[tuple[int, ...], torch.Tensor] = {}
        self._blocks_of: dict[int, tuple[int, ...]] = {}
        self._cache_kw = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"

    @classmethod
    def for_model(cls, model: Any, config: GenerationConfig, constraint: ModalityConstraint,
                  removed_mass_every: int = 16, measure_phase: int = 0, measure_first: bool = True) -> "RestrictedDecoder":
        """The decoder for `model` generating with `config` and `constraint`, or `Unsupported` (with the reason)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        path = head_path(model)
        if not path.exact:
            raise Unsupported(f"{path.model_class}: {path.check.describe()}")
        if model.training:
            raise Unsupported("the model is in training mode (dropout)")
        if (config.num_beams or 1) > 1:
            raise Unsupported(f"num_beams={config.num_beams}")
        path.row_head()  # raises Unsupported for a head that cannot be sliced
        return cls(path.body, path, constraint, _warpers(base, config, constraint), config, removed_mass_every,
                   measure_phase, measure_first)

    def _step_columns(self, state: int | torch.Tensor) -> tuple[tuple[int, ...], torch.Tensor | None]:
        """(blocks to compute, in id order; additive mask [B, C] or None) for one state, or one state per row."""
        if isinstance(state, int):  # every row in one state: the common step, cached
            if state not in self._blocks_of:
                self._blocks_of[state] = self._order(self.allowed[state])
            return self._blocks_of[state], None
        per_row = self.allowed[state.cpu()]  # [B, blocks]
        needed = self._order(per_row.any(0))
        sizes = torch.tensor([self.blocks[b][1] - self.blocks[b][0] for b in needed])
        keep = per_row[:, list(needed)].repeat_interleave(sizes, dim=1)  # [B, C]
        return needed, torch.zeros(keep.shape).masked_fill_(~keep, float("-inf"))

    def _order(self, used: torch.Tensor) -> tuple[int, ...]:
        """Block numbers flagged in `used` [blocks], in id order (argmax ties then resolve as in `generate`)."""
        return tuple(sorted((int(b) for b in used.nonzero().flatten()), key=lambda b: self.blocks[b][0]))

    def _ids(self, blocks: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if blocks not in self._columns:
            self._columns[blocks] = torch.cat([torch.arange(*self.blocks[b]) for b in blocks]).to(device)
        return self._columns[blocks]

    def _restricted_scores(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [B, C] after the constraint and the warpers, ids [C]) over the allowed blocks only."""
        blocks, mask = self._step_columns(self.constraint.state(input_ids))
        logits = torch.cat([self.head.row_logits(hidden, *self.blocks[b]) for b in blocks], dim=-1).float()  # [B, C]
        info = torch.finfo(logits.dtype)
        scores = logits.clamp_(min=info.min / 1024, max=info.max)  # as ModalityConstraint: no allowed id left at -inf
        if mask is not None:
            scores = scores + mask.to(scores.device)
        return self._warp(input_ids, scores), self._ids(blocks, scores.device)

    def _warp(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        return scores

    def _choose(self, scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.config.do_sample:
            return ids[torch.multinomial(F.softmax(scores, dim=-1), num_samples=1).squeeze(1)]
        return ids[scores.argmax(dim=-1)]

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 stopping_criteria: StoppingCriteriaList | None = None, choose: Chooser | None = None) -> RestrictedOutput:
        """Decode from left-padded prompts `[B, L]` with their `attention_mask` `[B, L]`, until every row has
        emitted the end token or met a stopping criterion, or `config.max_new_tokens` steps (as `generate`).
        `choose` replaces sampling / argmax (tests use it to follow another decoder's draws)."""
        from transformers import DynamicCache

        choose = choose or self._choose
        config, batch, width = self.config, input_ids.shape[0], input_ids.shape[1]
        end_id, pad = self.constraint.modality.end_id, config.pad_token_id
        pad = end_id if pad is None else int(pad)
        max_length = width + int(config.max_new_tokens)
        full_ids = torch.arange(self.head.row_head().weight.shape[0], device=input_ids.device)
        cache = DynamicCache(config=getattr(self.body, "config", None))
        position = (attention_mask.long().cumsum(-1) - 1).masked_fill_(attention_mask == 0, 0)  # [B, L], as generate
        step_ids, removed, overridden, first_removed = input_ids, [], [], None
        unfinished = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
        with torch.inference_mode():
            while True:
                out = self.body(input_ids=step_ids, attention_mask=attention_mask, position_ids=position,
                                use_cache=True, **{self._cache_kw: cache})
                hidden = out.last_hidden_state[:, -1]  # [B, H]
                step = input_ids.shape[1] - width
                periodic = bool(self.measure_every) and (step - self.measure_phase) % self.measure_every == 0
                if periodic or (self.measure_first and step == 0):
                    scores = self.constraint(input_ids, self.head.row_logits(hidden).float())  # [B, V]; records the mass
                    scores, ids = self._warp(input_ids, scores), full_ids
                    mass = self.constraint.removed_mass[-1].float()
                    overridden.append(self.constraint.overridden[-1].float() if self.constraint.track_overridden
                                      else torch.full((batch,), float("nan"), device=input_ids.device))
                    first_removed = mass if step == 0 else first_removed
                    # the span's first step is not typical: it is kept apart, out of the per-step mean
                    removed.append(mass if periodic else torch.full((batch,), float("nan"), device=input_ids.device))
                else:
                    scores, ids = self._restricted_scores(input_ids, hidden)
                    removed.append(torch.full((batch,), float("nan"), device=input_ids.device))
                    overridden.append(torch.full((batch,), float("nan"), device=input_ids.device))
                next_ids = choose(scores, ids).to(input_ids.device)  # [B]
                next_ids = torch.where(unfinished, next_ids, torch.full_like(next_ids, pad))
                input_ids = torch.cat([input_ids, next_ids[:, None]], dim=-1)
                done = next_ids == end_id
                if stopping_criteria is not None:
                    done = done | stopping_criteria(input_ids, None).to(done.device)
                unfinished = unfinished & ~done
                if not bool(unfinished.any()) or input_ids.shape[1] >= max_length:
                    break
                step_ids = next_ids[:, None]
                position = position[:, -1:] + 1
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
        return RestrictedOutput(input_ids, removed, first_removed, overridden)


def _warpers(base: Any, config: GenerationConfig, constraint: ModalityConstraint) -> list[Any]:
    """The processors `generate` would run after the constraint, from HF's own builder, with the checkpoint's
    generation_config.json filling unset fields as it does; `Unsupported` if any cannot be restricted."""
    try:
        merged, _ = base._prepare_generation_config(config)
        processors = base._get_logits_processor(merged, input_ids_seq_length=1,
                                                 logits_processor=LogitsProcessorList([constraint]), device="cpu")
    except Exception as error:  # internals of another transformers version: do not guess
        raise Unsupported(f"could not list generate's logits processors ({type(error).__name__}: {error})") from error
    if (merged.min_length or 0) > 0 or (merged.min_new_tokens or 0) > 0:
        raise Unsupported(f"min_length={merged.min_length}, min_new_tokens={merged.min_new_tokens} (the constraint's "
                          "min_length holds the end token instead)")
    others = [p for p in processors if p is not constraint]
    unknown = [type(p).__name__ for p in others if not isinstance(p, WARPERS)]
    if unknown:
        raise Unsupported(f"generate would also run {', '.join(unknown)}, which the restricted head does not reproduce")
    if not processors or processors[0] is not constraint:
        raise Unsupported("generate would run a warper before the constraint")
    return others
