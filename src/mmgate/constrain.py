"""Constrained decoding: a transformers `LogitsProcessor` that keeps generated tokens in their modality."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, StoppingCriteria

from .tokenspace import Modality


class ModalityConstraint(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that lets a model write only tokens of one modality of a shared vocabulary.

    For audio it allows, at generated position `p` of the modality span, only the codebook slot the
    token space's layout expects there (`frame_major`: slot `p % K`; `codebook_major`: slot `p // T`)
    and the end token only at a frame boundary (`frame_major`: after a whole frame; `codebook_major`:
    after all `K * T` tokens). For images (one range) it allows the IMAGE range and the end token.

    The masks are built once per modality on the model's device. A step is one `clamp` and one
    `masked_fill` for the whole batch, with no Python loop over rows and no host sync: when every
    row is in the same state (a left-padded batch, outside the few steps where rows differ in
    whether they may end) one mask row is broadcast; otherwise the per-row masks are gathered.
    Disallowed ids get `-inf`, so half precision cannot leave a row unconstrained; allowed ids
    whose score is already `-inf` (an fp16 overflow, or `min_new_tokens` hiding the only allowed
    end token) are raised to a finite floor, so sampling never sees a row of all `-inf`.

    Args:
        modality (`Modality`):
            The modality to write, from `TokenSpace.modality(...)`.
        span_start (`int` or `torch.LongTensor` of shape `(batch_size,)`):
            Column of `input_ids` where each row's modality span starts. For a left-padded batch of
            prompts that end with the start token this is `input_ids.shape[1]`, the same for every
            row; pass a tensor when rows start at different columns.
        n_frames (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Frames per row; required for `codebook_major` layouts, where the slot depends on `T`.
        min_length (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Per-row span length before which the end token is not allowed (a per-sample
            `min_new_tokens` that cannot empty a row's distribution): pass the expected length so
            that every constrained generation can be sliced to exactly that many tokens.
        device (`torch.device` or `str`, *optional*):
            Where the masks live; the model's device.
        track_removed_mass (`bool`, *optional*, defaults to `False`):
            Record, per step and row, the probability mass (softmax of the incoming scores) that the
            constraint removes, in `removed_mass` (one `(batch_size,)` tensor per step, on the device:
            no host sync). The end token held back by `min_length` does not count as removed: it is
            legal for the layout, only deferred. A healthy writer loses little mass; a model that
            wants to write something else half the time is not one, even if the mask hides it.
            `overridden` gets, per step, whether each row's most likely token was one the layout
            does not allow (the constraint changed the model's top choice).

    Examples:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from mmgate.constrain import ModalityConstraint
    >>> from mmgate.tokenspace import TokenSpace
    >>> space = TokenSpace.from_dict({
    ...     "vocab_size": 32, "special_tokens": {"<aud_start>": 2, "<aud_end>": 3},
    ...     "ranges": {"AUDIO_CB0": [10, 14], "AUDIO_CB1": [14, 18]},
    ...     "modalities": {"audio": {"ranges": ["AUDIO_CB0", "AUDIO_CB1"], "start_token": "<aud_start>",
    ...                              "end_token": "<aud_end>", "layout": "frame_major"}}})
    >>> audio = space.modality("audio")
    >>> _ = torch.manual_seed(0)
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
    ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    >>> prompt = torch.tensor([[1, 5, 2]])                      # "... <aud_start>"
    >>> out = model.generate(prompt, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
    ...     max_new_tokens=8, eos_token_id=audio.end_id, pad_token_id=0,
    ...     logits_processor=[ModalityConstraint(audio, span_start=prompt.shape[1])])
    >>> span = [t for t in out[0, prompt.shape[1]:].tolist() if t != audio.end_id]
    >>> audio.slot_of_id(span).tolist() == [i % 2 for i in range(len(span))]   # c0, c1, c0, c1, ...
    True

    ```
    """

    def __init__(self, modality: Modality, span_start: int | torch.Tensor, n_frames: torch.Tensor | None = None,
                 min_length: torch.Tensor | None = None, device: torch.device | str | None = None,
                 track_removed_mass: bool = False, track_overridden: bool = True):
        self.modality = modality
        self.track_removed_mass = track_removed_mass
        self.removed_mass: list[torch.Tensor] = []
        self.overridden: list[torch.Tensor] = []
        self.track_overridden = track_overridden
        k = self.n_codebooks = modality.n_codebooks
        if modality.layout == "codebook_major" and k > 1 and n_frames is None:
            raise ValueError("ModalityConstraint: a codebook_major modality needs n_frames per row")
        slots = torch.from_numpy(modality.slot_masks())  # [K, V]
        end_only = torch.zeros(1, modality.vocab_size, dtype=torch.bool)
        end_only[0, modality.end_id] = True
        # state s allows: slot s (s < K); slot s - K or the end token (K <= s < 2K); the end token only (2K)
        allowed = torch.cat([slots, slots | end_only, end_only])  # [2K+1, V]
        # additive: a broadcast add is far cheaper than masked_fill with a broadcast boolean mask
        self.additive = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")).to(device)
        self._additive_by = {}
        # Host copies of the per-row settings, taken once, decide on the host whether all rows share a
        # state at a step (the common case: one mask row broadcast over the batch, no gather, no sync).
        self._span_start = span_start if isinstance(span_start, int) else None
        self.span_start = torch.as_tensor(span_start, dtype=torch.long, device=device)
        min_length = torch.as_tensor(1 if min_length is None else min_length, dtype=torch.long).clamp(min=1)
        self._min_length_range = (int(min_length.min()), int(min_length.max()))
        self.min_length = min_length.to(device)
        self.n_frames = None
        self._n_frames = None
        if n_frames is not None:
            n_frames = torch.as_tensor(n_frames, dtype=torch.long)
            self._n_frames = int(n_frames[0]) if bool((n_frames == n_frames.reshape(-1)[0]).all()) else None
            self.n_frames = n_frames.to(device)

    def _may_end(self, position: int, hold: bool = True) -> bool | torch.Tensor:
        if not hold:
            return position >= 1
        low, high = self._min_length_range
        if position >= high:
            return True
        if position < low:
            return False
        return position >= self.min_length  # rows differ at this step: [B] bool

    def state(self, input_ids: torch.LongTensor, hold: bool = True) -> int | torch.LongTensor:
        """Row of the mask table for the next position: one int for the whole batch, or one per row `(batch_size,)`.
        `hold=False` ignores `min_length` (the layout's own rule only)."""
        k = self.n_codebooks
        if self._span_start is None:
            return self._row_states(input_ids, hold)
        position = input_ids.shape[1] - self._span_start
        if k > 1 and self.modality.layout == "codebook_major":
            if self._n_frames is None:
                return self._row_states(input_ids, hold)
            slot = position // self._n_frames
            return 2 * k if slot >= k else slot  # the end token only after all K*T tokens
        slot = position % k
        if slot != 0 or position == 0:
            return slot
        may_end = self._may_end(position, hold)
        if isinstance(may_end, bool):
            return k if may_end else 0
        return k * may_end.long()

    def _row_states(self, input_ids: torch.LongTensor, hold: bool = True) -> torch.LongTensor:
        """The general case, every row at its own position: tensor ops only, no host sync."""
        k = self.n_codebooks
        position = input_ids.shape[1] - self.span_start.to(input_ids.device)
        position = position.expand(input_ids.shape[0]) if position.dim() == 0 else position
        if k > 1 and self.modality.layout == "codebook_major":
            slot = torch.div(position, self.n_frames.to(input_ids.device), rounding_mode="floor")
            return torch.where(slot >= k, 2 * k, slot)
        slot = position % k
        min_length = self.min_length.to(input_ids.device) if hold else 1
        may_end = (slot == 0) & (position >= min_length)
        return slot + k * may_end.long()

    def _state_on(self, input_ids: torch.LongTensor, device: torch.device, hold: bool = True) -> int | torch.Tensor:
        """The state where the scores are: a device_map may put the head on another GPU than the input ids."""
        state = self.state(input_ids, hold=hold)
        return state.to(device) if isinstance(state, torch.Tensor) else state

    def _table(self, device: torch.device, dtype: torch.dtype, width: int) -> torch.Tensor:
        """The additive mask [states, width]: a padded vocabulary's rows past `vocab_size` are never allowed."""
        key = (device, dtype, width)
        if key not in self._additive_by:
            table = self.additive
            if width > table.shape[1]:
                table = F.pad(table, (0, width - table.shape[1]), value=float("-inf"))
            elif width < table.shape[1]:
                raise ValueError(f"the model gives {width} logits but the token space has vocab_size {table.shape[1]}: "
                                 "its head has fewer rows than the token space (P0.1 checks this)")
            self._additive_by[key] = table.to(device=device, dtype=dtype)
        return self._additive_by[key]

    def _removed(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        """Probability mass outside what the layout allows at this step, per row `(batch_size,)`, in float32."""
        mask = self._table(scores.device, torch.float32, scores.shape[-1])[self._state_on(input_ids, scores.device, hold=False)]
        log_probs = torch.log_softmax(scores.float(), dim=-1)
        kept = torch.logsumexp(log_probs + mask, dim=-1).exp()
        if self.track_overridden:
            top = scores.argmax(dim=-1)  # [B]
            mask_rows = mask.expand(scores.shape[0], -1) if mask.dim() == 1 else mask
            self.overridden.append(torch.isinf(mask_rows.gather(-1, top[:, None]).squeeze(-1)))
        return (1.0 - kept).clamp_(0.0, 1.0).expand(scores.shape[0])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.track_removed_mass:
            self.removed_mass.append(self._removed(input_ids, scores))
        mask = self._table(scores.device, scores.dtype, scores.shape[-1])[self._state_on(input_ids, scores.device)]  # [V] for the whole batch, or [B, V]
        # Scores are first clamped to a finite range: allowed ids that are already -inf (fp16
        # overflow, or min_new_tokens hiding the end token) get a floor that stays finite after any
        # temperature >= 1/1024, so no row is left with nothing to sample, and no +inf meets -inf.
        info = torch.finfo(scores.dtype)
        return scores.clamp(min=info.min / 1024, max=info.max).add_(mask)


class RowBudget(StoppingCriteria):
    """Stops each row once it has generated its own number of new tokens (per-sample length)."""

    def __init__(self, prompt_length: int, max_new_tokens: torch.Tensor):
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_length
        return generated >= self.max_new_tokens.to(input_ids.device)


class StepBeat(StoppingCriteria):
    """Never stops a row: at each decoding step it tells `progress` where the batch is, so a batch that
    decodes for minutes still puts a line in the job's log every `progress.interval` seconds. It reads
    only the host-side length of `input_ids`, so it never synchronizes the GPU.

        >>> import torch
        >>> class Seen:
        ...     def beat(self, detail): print(detail)
        >>> beat = StepBeat(Seen(), prompt_length=5, max_new_tokens=2000)
        >>> beat(torch.zeros(32, 17, dtype=torch.long), None).any().item()
        step 12/2000 of a batch of 32
        False
    """

    def __init__(self, progress: Any, prompt_length: int, max_new_tokens: int):
        self.progress = progress
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        batch, length = input_ids.shape
        self.progress.beat(f"step {length - self.prompt_length}/{self.max_new_tokens} of a batch of {batch}")
        return torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
