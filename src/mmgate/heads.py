r"""The model's own logits from its hidden states: the head path mmgate scores and samples with.

Restricted generation and ablation scoring run the output head by hand, on the rows and positions
they need, instead of the class's `forward`. That is only right where the hand path gives what
`forward` gives, and families differ after the head: Gemma2 soft-caps its logits
(`tanh(logits / cap) * cap`), Cohere multiplies them by `logit_scale`, Granite divides them by
`logits_scaling`, and HF Chameleon sets every image-token logit to the float minimum (the class
cannot write images; Lumina-mGPT and Anole, trained to, can). So:

- `LogitTransform` applies the processing mmgate knows of, from the text config;
- `check_head` compares the hand path with `model(...).logits` as log-probabilities on a few
  real sequences, once per loaded model. Ids the class itself forces to the float minimum where
  the head gives finite logits are *suppressed*: mmgate scores and samples them with the model's
  own head, and the comparison runs over the other ids. Above `TOLERANCE[dtype]` the hand path is
  not used: ablation scores with the full forward and generation runs `generate`, both logged and
  recorded in the provenance;
- `own_head_forward` makes `generate` sample with the head path (for a class that suppresses ids
  the modality writes: its free runs and constrained fall-backs).

Example (Gemma2's soft-cap, which a bare `lm_head` misses):

```python
>>> import torch
>>> from transformers import Gemma2Config, Gemma2ForCausalLM
>>> from mmgate.heads import check_head, head_path
>>> _ = torch.manual_seed(0)
>>> model = Gemma2ForCausalLM(Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
...     num_attention_heads=2, num_key_value_heads=1, head_dim=8, final_logit_softcapping=2.0)).eval()
>>> check = check_head(model, [[1, 5, 9, 13, 2]])
>>> check.exact, check.max_error < 1e-4, head_path(model).transform.softcap
(True, True, 2.0)

```
"""

from __future__ import annotations

import inspect
import logging
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# max |log p(hand path) - log p(forward)| over the probe positions: float32 agrees to rounding; the
# half-precision bounds allow for a different order of the same operations (documented in the README)
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


class Unsupported(Exception):
    """The hand path cannot reproduce the model for this purpose (the message says why)."""


@dataclass(frozen=True)
class LogitTransform:
    """What a family does to `lm_head(hidden)` before its logits are returned."""

    softcap: float | None = None  # Gemma2/Gemma3: tanh(logits / softcap) * softcap
    scale: float | None = None  # Cohere: logits * logit_scale
    divide: float | None = None  # Granite: logits / logits_scaling

    @classmethod
    def of(cls, config: Any) -> "LogitTransform":
        from .families import text_config

        text = text_config(config)
        softcap = getattr(text, "final_logit_softcapping", None)
        scale = getattr(text, "logit_scale", None) if getattr(text, "model_type", "").startswith("cohere") else None
        divide = getattr(text, "logits_scaling", None)
        return cls(float(softcap) if softcap else None, float(scale) if scale not in (None, 1, 1.0) else None,
                   float(divide) if divide not in (None, 1, 1.0) else None)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Applied in the logits' own dtype, in the class's order, so half precision rounds as `forward` does."""
        if self.scale is not None:
            logits = logits * self.scale
        if self.divide is not None:
            logits = logits / self.divide
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def describe(self) -> str:
        parts = [f"soft-cap {self.softcap:g}" if self.softcap else "", f"x {self.scale:g}" if self.scale else "",
                 f"/ {self.divide:g}" if self.divide else ""]
        return ", ".join(p for p in parts if p) or "none"


@dataclass
class RowHead:
    """An output head `x @ W.T + b (+ LoRA: scale * x @ A.T @ B.T)` whose logits can be computed for a row range."""

    weight: torch.Tensor  # [V, H]
    bias: torch.Tensor | None  # [V]
    lora: tuple[tuple[torch.Tensor, torch.Tensor, float], ...] = ()  # (A [r, H], B [V, r], scale) per active adapter

    @classmethod
    def of(cls, head: Any) -> "RowHead":
        """Resolve a head module (a `nn.Linear`, a PEFT `modules_to_save` copy or an unmerged LoRA layer) or raise `Unsupported`."""
        head = _active_module(head)
        lora: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        if hasattr(head, "lora_A") and hasattr(head, "base_layer"):  # peft.tuners.lora.Linear
            if getattr(head, "merged", False) or getattr(head, "disable_adapters", False):
                active: list[str] = []  # merged: the base weight holds the adapter; disabled: the base alone
            else:
                active = [a for a in head.active_adapters if a in head.lora_A]
            for name in active:
                if getattr(head, "use_dora", {}).get(name) or getattr(head, "lora_variant", {}).get(name) is not None:
                    raise Unsupported(f"the output head has a LoRA variant ({type(head).__name__}, DoRA or similar)")
                lora.append((head.lora_A[name].weight, head.lora_B[name].weight, float(head.scaling[name])))
            head = head.base_layer
        if type(head) is not torch.nn.Linear:
            raise Unsupported(f"the output head is a {type(head).__name__}, not a plain Linear layer")
        if head.weight.is_meta:
            raise Unsupported("the output head's weights are offloaded (device_map)")
        return cls(head.weight, head.bias, tuple(lora))

    def logits(self, hidden: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Logits of ids `start:end` for hidden states `[B, H]` -> `[B, end - start]` (the head's dtype)."""
        hidden = hidden.to(self.weight.device)
        bias = None if self.bias is None else self.bias[start:end]
        out = F.linear(hidden, self.weight[start:end], bias)
        for a, b, scale in self.lora:
            out = out + scale * F.linear(F.linear(hidden, a), b[start:end])
        return out


def _active_module(head: Any) -> Any:
    """The module a PEFT `ModulesToSaveWrapper` forwards to (its trained copy, or the original when disabled)."""
    if not hasattr(head, "modules_to_save") or not hasattr(head, "original_module"):
        return head
    active = list(getattr(head, "active_adapters", []))
    if head.disable_adapters or not active or any(a not in head.modules_to_save for a in active):
        return head.original_module
    return head.modules_to_save[active[0]]


@dataclass(frozen=True)
class HeadCheck:
    """The hand path against the class's `forward` on `positions` real positions."""

    max_error: float  # max |log p| difference over the compared ids
    tolerance: float
    positions: int
    suppressed: tuple[int, ...] = ()  # ids `forward` forces to the float minimum where the head is finite

    @property
    def exact(self) -> bool:
        return self.max_error <= self.tolerance

    def describe(self) -> str:
        agree = "agrees with" if self.exact else "DIFFERS from"
        text = (f"head path {agree} the model's forward: max |log p| difference {self.max_error:.2e} "
                f"(tolerance {self.tolerance:g}) over {self.positions} positions")
        if self.suppressed:
            text += (f"; the class's forward suppresses {len(self.suppressed)} ids ({_id_ranges(self.suppressed)}), "
                     "which mmgate scores and samples with the model's own head")
        return text


def _id_ranges(ids: Sequence[int]) -> str:
    spans, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            spans.append(f"{start}-{value}" if value > start else f"{start}")
            start = None
    return ", ".join(spans[:4]) + (f", ... ({len(spans)} spans)" if len(spans) > 4 else "")


@dataclass
class HeadPath:
    """The body that gives hidden states, the head and the family's logit processing of one model."""

    body: Any
    head: Any  # the output head module (PEFT wrappers resolve when called)
    transform: LogitTransform
    model_class: str
    check: HeadCheck | None = None
    _rows: RowHead | None = field(default=None, repr=False)

    @classmethod
    def of(cls, model: Any) -> "HeadPath":
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        body = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        return cls(body, base.get_output_embeddings(), LogitTransform.of(base.config), type(base).__name__)

    @property
    def exact(self) -> bool:
        return self.check is None or self.check.exact

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's logits over the whole vocabulary for hidden states `[..., H]`."""
        return self.transform(self.head(hidden))

    def row_head(self) -> RowHead:
        """The head as row slices (restricted generation), or `Unsupported`."""
        if self._rows is None:
            self._rows = RowHead.of(self.head)
        return self._rows

    def row_logits(self, hidden: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """The model's logits of ids `start:end` for hidden states `[B, H]` (elementwise processing only)."""
        return self.transform(self.row_head().logits(hidden, start, end))

    @property
    def suppresses(self) -> bool:
        """The class's forward suppresses ids the head gives finite logits: generate must use the head path."""
        return bool(self.check and self.check.suppressed)

    def require_usable(self) -> None:
        """Raise where neither the head path (it differs from forward) nor the forward (it suppresses ids) is right."""
        from .errors import MMGateError

        if not self.exact and self.suppresses:
            raise MMGateError(
                f"{self.model_class}: {self.check.describe()}. mmgate can score and sample with neither the head path "
                "(it differs from the model's forward) nor the forward (it suppresses ids the modality writes). Set "
                "`model.class` to the class the checkpoint was trained as.")

    def describe(self) -> dict[str, Any]:
        """What the provenance records: the class, the path and its check."""
        return {"model_class": self.model_class, "logit_processing": self.transform.describe(),
                "head_path": "head path (hidden states -> head)" if self.exact else "full forward",
                "head_check": self.check.describe() if self.check else "not checked",
                "suppressed_ids": len(self.check.suppressed) if self.check else 0}


_PATHS: "weakref.WeakKeyDictionary[Any, HeadPath]" = weakref.WeakKeyDictionary()


def head_path(model: Any) -> HeadPath:
    """The model's `HeadPath`, checked against its forward on a synthetic probe when no `check_head` ran yet."""
    path = _PATHS.get(model)
    if path is None:
        path = HeadPath.of(model)
        _PATHS[model] = path
    if path.check is None:
        vocab = int(model.get_input_embeddings().weight.shape[0])
        generator = torch.Generator().manual_seed(0)
        probe = torch.randint(0, vocab, (2, 24), generator=generator).tolist()
        check_head(model, probe)
    return path


def check_head(model: Any, sequences: Sequence[Sequence[int]]) -> HeadCheck:
    """Compare the hand path with `model(...).logits` on `sequences` (each scored alone, unpadded) and
    record the result on the model's `HeadPath`. Logged; never raises for a mismatch."""
    path = _PATHS.get(model) or HeadPath.of(model)
    _PATHS[model] = path
    device = model.get_input_embeddings().weight.device
    dtype = next(model.parameters()).dtype
    errors, suppressed, positions = [], None, 0
    training = model.training
    model.eval()  # dropout would make the two paths differ at random, and the result is kept for the model
    with torch.inference_mode():
        for ids in sequences:
            if len(ids) < 2:
                continue
            input_ids = torch.tensor([list(ids)], device=device)
            forward = model(input_ids=input_ids).logits[0]  # [L, V]
            hidden = path.body(input_ids=input_ids).last_hidden_state[0]
            mine = path.logits(hidden).to(forward.device)  # [L, V]
            minimum = torch.finfo(forward.dtype).min
            forced = ((forward <= minimum / 2) & torch.isfinite(mine) & (mine > minimum / 2)).all(0)  # [V]
            suppressed = forced if suppressed is None else suppressed & forced
            keep = ~forced
            a = F.log_softmax(forward[:, keep].float(), dim=-1)
            b = F.log_softmax(mine[:, keep].float(), dim=-1)
            errors.append(float((a - b).abs().max()))
            positions += int(input_ids.shape[1])
    model.train(training)
    ids = tuple(int(i) for i in suppressed.nonzero().flatten()) if suppressed is not None else ()
    check = HeadCheck(max(errors) if errors else float("inf"), TOLERANCE.get(dtype, 1e-2), positions, ids)
    path.check = check
    (logger.info if check.exact else logger.warning)("%s: %s", path.model_class, check.describe())
    return check


@contextmanager
def own_head_forward(model: Any) -> Iterator[None]:
    """Within the block the model's `forward` returns the head path's logits (its body's outputs otherwise
    unchanged), so `generate` samples ids the class would suppress with the model's own head."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    path = head_path(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    accepted = set(inspect.signature(path.body.forward).parameters)

    def forward(input_ids: Any = None, attention_mask: Any = None, logits_to_keep: int = 0, **kwargs: Any) -> Any:
        if "past_key_values" in kwargs and "past_key_values" not in accepted:
            kwargs["cache"] = kwargs.pop("past_key_values")
        out = path.body(input_ids=input_ids, attention_mask=attention_mask,
                        **{k: v for k, v in kwargs.items() if k in accepted and k not in ("return_dict", "labels")})
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        return CausalLMOutputWithPast(logits=path.logits(hidden), cache=getattr(out, "cache", None))

    base.forward = forward
    try:
        yield
    finally:
        del base.forward
