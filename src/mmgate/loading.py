"""Loading a checkpoint exactly as it was trained: the class its config names, the base in the
configured dtype, resized to the rows the adapter saved, then the adapter; every weight accounted for. Weights load from safetensors where present, otherwise with
`torch.load(weights_only=True)` (transformers and peft both do so); remote code stays off unless
the config turns it on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from .checkpoints import base_of, has_tokenizer, is_adapter, unsafe_pickle_is_an_error
from .errors import CheckpointError

DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(device: str = "auto") -> str:
    """`auto` is the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tokenizer_dir(ckpt: str | Path, base: str | None = None) -> str:
    """Where the checkpoint's tokenizer lives: in the checkpoint, else in its base."""
    if has_tokenizer(ckpt):
        return str(ckpt)
    resolved = base_of(ckpt, base)
    if resolved and has_tokenizer(resolved):
        return str(resolved)
    raise CheckpointError(
        f"{ckpt}: no tokenizer files ({', '.join(('tokenizer.json', 'tokenizer_config.json'))}) in the checkpoint "
        f"or its base {resolved!r}. Save the Stage-2 tokenizer with the checkpoint (tokenizer.save_pretrained)."
    )


def load_tokenizer(ckpt: str | Path, base: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir(ckpt, base), trust_remote_code=trust_remote_code)


def load_model(ckpt: str | Path, base: str | None = None, dtype: str = "float32", device: str = "cpu",
               trust_remote_code: bool = False, device_map: str | dict[str, Any] | None = None,
               merge_adapter: bool = False, model_class: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer). The class is the one the checkpoint's (for an adapter: its base's)
    config.json names, or `model_class` (mmgate.families); a weight it expects but the files lack, or
    the reverse, is an error. Adapters: base -> resized to the rows the adapter's saved embedding holds
    -> PeftModel, merged into the base with `merge_adapter` (one matmul per layer fewer at every step).

    `device_map` (e.g. "auto") spreads a model too large for one GPU over all visible ones, with
    accelerate, after the adapter is loaded (and merged): resizing a model already dispatched would
    drop the hooks of the embedding and head it replaces. Without it, the whole model goes to `device`.
    """
    import torch

    if dtype not in DTYPES:
        raise CheckpointError(f"model.dtype = {dtype!r} is not one of {DTYPES}")
    torch_dtype = getattr(torch, dtype)
    tokenizer = load_tokenizer(ckpt, base, trust_remote_code)
    with unsafe_pickle_is_an_error(ckpt):
        model = _load_weights(ckpt, base, torch_dtype, tokenizer, trust_remote_code, model_class)
    if merge_adapter and is_adapter(ckpt):
        model = model.merge_and_unload()
    model = _dispatch(model, device_map) if device_map else model.to(device)
    return model.eval(), tokenizer


def _dispatch(model: Any, device_map: str | dict[str, Any]) -> Any:
    """Place the model's layers over the visible devices (accelerate), balanced for "auto"/"balanced"."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if isinstance(device_map, str):
        if device_map not in ("auto", "balanced", "sequential"):
            raise CheckpointError(f"model.device_map = {device_map!r}: use auto, balanced, sequential or a "
                                  "{module name: device} map")
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        no_split = list(getattr(inner, "_no_split_modules", None) or [])
        memory = None if device_map == "sequential" else get_balanced_memory(model, no_split_module_classes=no_split)
        device_map = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)
    return dispatch_model(model, device_map=device_map)


def _load_weights(ckpt: str | Path, base: str | None, torch_dtype: Any, tokenizer: Any, trust_remote_code: bool,
                  model_class: str | None = None) -> Any:
    from .checkpoints import model_rows
    from .families import resolve_architecture

    architecture = resolve_architecture(ckpt, base, model_class, trust_remote_code)
    source = architecture.config_path.parent
    model, info = architecture.model_class().from_pretrained(
        str(source), dtype=torch_dtype, trust_remote_code=trust_remote_code, output_loading_info=True)
    _require_every_weight(info, source, architecture)
    if is_adapter(ckpt):
        from peft import PeftModel

        # exactly as in training: the rows the adapter's saved embedding/head hold exist before they load; a
        # padded base keeps its rows (never shrunk to len(tokenizer))
        rows = model_rows(ckpt, base).embedding_rows
        current = model.get_input_embeddings().weight.shape[0]
        if rows is not None and rows > current:
            model.resize_token_embeddings(rows, mean_resizing=False)
        elif rows is not None and rows < current:
            raise CheckpointError(
                f"{ckpt}: the adapter's saved embedding has {rows} rows but its base {source} has {current}; the "
                "adapter was trained on another base. Set `model.base` to the base it was trained on.")
        try:
            model = PeftModel.from_pretrained(model, str(ckpt), is_trainable=False)
        except (KeyError, RuntimeError, ValueError) as err:  # peft: a saved key with no module, or another shape
            raise CheckpointError(
                f"{ckpt}: the adapter does not fit its base {source} loaded as {architecture.class_name} "
                f"({type(err).__name__}: {str(err).splitlines()[0][:300]}). The adapter was trained on another class or "
                "base: set `model.class` (and `model.base`) to the ones it was trained with.") from None
        _require_every_adapter_weight(model, ckpt)
    return model


def _first(keys: Any, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (and {len(keys) - n} more)" if len(keys) > n else "")


def _require_every_weight(info: dict[str, Any], source: Path, architecture: Any) -> None:
    """A weight the class expects but the files lack would be random: an error, never a silently random model."""
    missing, unexpected = info.get("missing_keys") or [], info.get("unexpected_keys") or []
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or []]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{len(missing)} weights the class expects are not in the files (they would be random): {_first(missing)}"
             if missing else "",
             f"{len(unexpected)} weights in the files have no place in the class: {_first(unexpected)}" if unexpected else "",
             f"{len(mismatched)} weights have another shape: {_first(mismatched)}" if mismatched else ""]
    raise CheckpointError(
        f"{source}: loading it as {architecture.class_name} ({architecture.source}) does not use its weights as saved: "
        + "; ".join(p for p in parts if p) + ". The checkpoint was saved from another class (or is incomplete): set "
        "`model.class` in config.yaml to the class it was trained as, or save it again with save_pretrained.")


def _require_every_adapter_weight(model: Any, ckpt: str | Path) -> None:
    """Every tensor the adapter saved must land in the model (peft only warns about the rest)."""
    from peft import get_peft_model_state_dict

    from .checkpoints import tensor_shapes

    saved, _ = tensor_shapes(ckpt, ("adapter_model",))
    expected = set(get_peft_model_state_dict(model).keys())
    unused = set(saved) - expected
    if unused:
        raise CheckpointError(
            f"{ckpt}: {len(unused)} tensors of the adapter match no module of the loaded model: {_first(unused)}. "
            "The adapter was trained on another class or base: set `model.class` (and `model.base`) to the ones it "
            "was trained with.")


def body_and_head(model: Any) -> tuple[Any, Any]:
    """(the body that gives hidden states, the output head) of a causal LM or a PEFT model on one,
    so callers can run the head on the positions they score only."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    return decoder, base.get_output_embeddings()


def pad_id(tokenizer: Any, fallback: int) -> int:
    """The id that fills padding, for generation and scoring alike: the tokenizer's pad token, else
    `fallback` (the modality's end token). Padded positions are masked either way; one rule keeps
    generate and ablate from drifting apart."""
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else int(fallback)


def load_configured(ckpt: str | Path, model_config: dict[str, Any],
                    probe: Callable[[Any], Sequence[Sequence[int]]] | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, device) from the config's `model:` section: what one job loads once and
    every shard it runs shares (a block of `sharding.shards_per_job` shards). `probe(tokenizer)`: token
    sequences (real golden examples) on which the head path is checked against the model's forward
    (mmgate.heads.check_head); without it, a synthetic probe is used when the path is first needed."""
    from .heads import check_head

    device = resolve_device(model_config.get("device", "auto"))
    model, tokenizer = load_model(ckpt, model_config.get("base"), model_config["dtype"], device,
                                  model_config.get("trust_remote_code", False), model_config.get("device_map"),
                                  model_config.get("merge_adapter", False), model_config.get("class"))
    if model_config.get("device_map"):
        device = str(model.get_input_embeddings().weight.device)
    if probe is not None:
        check_head(model, probe(tokenizer))
    return model, tokenizer, device


def load_for_task(ckpt: str | Path, model_config: dict[str, Any], special_ids: dict[str, int], task: str,
                  template_text: str, loaded: tuple[Any, Any, str] | None = None,
                  probe: Callable[[Any], Sequence[Sequence[int]]] | None = None) -> tuple[Any, Any, Any, str]:
    """(model, tokenizer, the task's PromptTemplate, device); `loaded` is a (model, tokenizer, device)
    that `load_configured` already gave, else the checkpoint is loaded here."""
    from .templates import PromptTemplate

    model, tokenizer, device = loaded or load_configured(ckpt, model_config, probe)
    return model, tokenizer, PromptTemplate(template_text, tokenizer, special_ids, name=f"templates.{task}"), device
