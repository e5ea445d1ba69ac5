"""Constrained decoding: a transformers `LogitsProcessor` that keeps generated tokens in their modality."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, StoppingCriteria

from .tokenspace import Modality


class ModalityConstraint(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that lets a model write only tokens of one modality of a shared vocabulary.

    For audio it allows, at generated position `p` of the modality span, only the codebook slot the
    token space's layout expects there (`frame_major`: slot `p % K`; `codebook_major`: slot `p // T`)
    and the end token only at a frame boundary (`frame_major`: after a whole frame; `codebook_major`:
    after all `K * T` tokens). For images (one range) it allows the IMAGE range and the end token.

    The masks are built once per modality on the model's device; each step is one gather and one
    `masked_fill` for the whole batch, with no Python loop over rows and no host sync. Disallowed ids
    get `-inf`, so half precision cannot leave a row unconstrained; a row whose allowed scores are
    all `-inf` (an fp16 overflow, or `min_new_tokens` hiding the only allowed end token) gets them
    reset to 0 rather than a NaN distribution.

    Args:
        modality (`Modality`):
            The modality to write, from `TokenSpace.modality(...)`.
        span_start (`int` or `torch.LongTensor` of shape `(batch_size,)`):
            Column of `input_ids` where each row's modality span starts. For a left-padded batch of
            prompts that end with the start token this is `input_ids.shape[1]`, the same for every
            row; pass a tensor when rows start at different columns.
        n_frames (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Frames per row; required for `codebook_major` layouts, where the slot depends on `T`.
        device (`torch.device` or `str`, *optional*):
            Where the masks live; the model's device.

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
                 device: torch.device | str | None = None):
        self.modality = modality
        self.n_codebooks = modality.n_codebooks
        if modality.layout == "codebook_major" and self.n_codebooks > 1 and n_frames is None:
            raise ValueError("ModalityConstraint: a codebook_major modality needs n_frames per row")
        k = self.n_codebooks
        slots = torch.from_numpy(modality.slot_masks())  # [K, V]
        end_only = torch.zeros(1, modality.vocab_size, dtype=torch.bool)
        end_only[0, modality.end_id] = True
        # state s: slot s only (s < K), slot s - K or the end token (K <= s < 2K), the end token only (2K)
        self.allowed = torch.cat([slots, slots | end_only, end_only]).to(device)  # [2K+1, V]
        self.span_start = torch.as_tensor(span_start, dtype=torch.long, device=device)
        self.n_frames = None if n_frames is None else torch.as_tensor(n_frames, dtype=torch.long, device=device)

    def state(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Row of `self.allowed` for each sequence at the next position, shape `(batch_size,)`."""
        k = self.n_codebooks
        position = input_ids.shape[1] - self.span_start.to(input_ids.device)  # [B] or scalar
        position = position.expand(input_ids.shape[0]) if position.dim() == 0 else position
        if k == 1:
            return torch.where(position > 0, k, 0)  # image: the range, and the end after one token
        if self.modality.layout == "frame_major":
            slot = position % k
            boundary = (slot == 0) & (position > 0)
            return slot + k * boundary.long()
        n_frames = self.n_frames.to(input_ids.device)
        slot = torch.div(position, n_frames, rounding_mode="floor")
        return torch.where(slot >= k, 2 * k, slot)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        allowed = self.allowed.to(scores.device)[self.state(input_ids)]  # [B, V]
        masked = scores.masked_fill(~allowed, float("-inf"))
        dead = torch.isneginf(masked).all(dim=-1, keepdim=True)  # [B, 1]
        return torch.where(dead & allowed, torch.zeros_like(masked), masked)


class RowBudget(StoppingCriteria):
    """Stops each row once it has generated its own number of new tokens (per-sample length)."""

    def __init__(self, prompt_length: int, max_new_tokens: torch.Tensor):
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_length
        return generated >= self.max_new_tokens.to(input_ids.device)
