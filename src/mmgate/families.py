"""Which transformers class a checkpoint is, read from its own `config.json`.

Any-to-any labs build on causal LMs (Llama, Mistral, Qwen2, Gemma2/3, Phi3) and on multimodal
classes whose text model writes the modality ids (`ChameleonForConditionalGeneration` for
Lumina-mGPT / Anole, `Emu3ForConditionalGeneration`). Loading every checkpoint as
`AutoModelForCausalLM` refuses the second kind or, for Emu3, loads a text-only class with every
weight missing and randomly initialised. So the class is the one the checkpoint names
(`architectures`; for an adapter, its base's), or `model.class` in the config where that is wrong.

    >>> import json, tempfile, pathlib
    >>> ckpt = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (ckpt / "config.json").write_text(json.dumps({"architectures": ["ChameleonForConditionalGeneration"],
    ...                                                    "model_type": "chameleon"}))
    >>> resolve_architecture(ckpt).class_name
    'ChameleonForConditionalGeneration'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import base_of, is_adapter
from .errors import CheckpointError

# the class names that write tokens: a language-model head over the vocabulary
GENERATING_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration")

REMOTE_CODE_ADVICE = (
    "This checkpoint's config names code that lives in the checkpoint (`auto_map`), not in transformers. "
    "Set `model.trust_remote_code: true` in config.yaml only if you trust where the checkpoint came from: "
    "transformers then imports and runs that Python code in every job that loads the model. Otherwise name a "
    "transformers class that holds these weights with `model.class` (e.g. LlamaForCausalLM)."
)


@dataclass(frozen=True)
class Architecture:
    """The class a checkpoint loads as, and why: `source` says where the name came from."""

    class_name: str
    model_type: str | None
    source: str
    config_path: Path
    remote_code: bool = False

    def model_class(self) -> Any:
        """The transformers class (`AutoModelForCausalLM` for remote code, which then picks the checkpoint's own)."""
        import transformers

        if self.remote_code:
            return transformers.AutoModelForCausalLM
        return getattr(transformers, self.class_name)


def config_dir(ckpt: str | Path, base: str | None = None) -> Path:
    """The folder whose `config.json` says the architecture: the base for an adapter, else the checkpoint."""
    if is_adapter(ckpt):
        resolved = base_of(ckpt, base)
        if not resolved:
            raise CheckpointError(f"{ckpt}/adapter_config.json names no base model; set `model.base` in config.yaml.")
        return Path(resolved)
    return Path(ckpt)


def _is_generating_class(name: str) -> bool:
    import transformers

    cls = getattr(transformers, name, None)
    return isinstance(cls, type) and name.endswith(GENERATING_SUFFIXES)


def resolve_architecture(ckpt: str | Path, base: str | None = None, override: str | None = None,
                         trust_remote_code: bool = False) -> Architecture:
    """The class `ckpt` loads as: `override` (`model.class`), else the first of `architectures` that
    transformers has, else the causal-LM class of its `model_type`. Raises CheckpointError naming the
    file, the field and the fix where none fits."""
    directory = config_dir(ckpt, base)
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{path}: no config.json, so the model's class is unknown. Save the model with "
                              "save_pretrained (it writes config.json), or point `model.base` at the base model.")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read JSON ({err}).") from err
    model_type = config.get("model_type")
    if override:
        if not _is_generating_class(override):
            raise CheckpointError(
                f"config.yaml model.class = {override!r}: transformers has no generating class of that name (one "
                f"ending in {' or '.join(GENERATING_SUFFIXES)}, e.g. LlamaForCausalLM, ChameleonForConditionalGeneration).")
        return Architecture(override, model_type, "model.class in config.yaml", path)
    named = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    for name in named:
        if _is_generating_class(name):
            return Architecture(name, model_type, f"{path.name}: architectures", path)
    if config.get("auto_map"):
        if trust_remote_code:
            return Architecture(named[0] if named else "AutoModelForCausalLM", model_type,
                                f"{path.name}: auto_map (remote code, model.trust_remote_code)", path, remote_code=True)
        raise CheckpointError(f"{path}: architectures {named or '(none)'} with model_type {model_type!r}. "
                              + REMOTE_CODE_ADVICE)
    if named:
        raise CheckpointError(
            f"{path}: architectures {named} names no class that writes tokens in this transformers (one ending in "
            f"{' or '.join(GENERATING_SUFFIXES)}). Set `model.class` in config.yaml to the class the checkpoint was "
            "trained as (e.g. LlamaForCausalLM).")
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return Architecture(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type], model_type,
                            f"{path.name}: model_type {model_type!r} (no architectures)", path)
    known = "" if model_type in CONFIG_MAPPING else " (transformers does not know this model_type)"
    raise CheckpointError(f"{path}: no architectures and model_type {model_type!r}{known}, so the class is unknown. "
                          "Set `model.class` in config.yaml (e.g. LlamaForCausalLM).")


def text_config(config: Any) -> Any:
    """The text model's config of a multimodal config (Emu3's `text_config`), else the config itself."""
    inner = config.get_text_config() if hasattr(config, "get_text_config") else None
    return inner if inner is not None else config


# HF Chameleon's convention (ChameleonImageVocabularyMapping): the image codes are base-vocabulary
# tokens named IMGIMG<digits as letters>Z, listed with their ids in config.json `vocabulary_map`
IMAGE_TOKEN_PREFIX = "IMGIMG"


def declared_image_ids(ckpt: str | Path, base: str | None = None) -> set[int]:
    """Ids the model's own config declares as image tokens (`vocabulary_map`, Chameleon / Lumina-mGPT /
    Anole): modality codes that live in the base vocabulary rather than as added tokens."""
    try:
        config = json.loads((config_dir(ckpt, base) / "config.json").read_text())
    except (OSError, ValueError, CheckpointError):
        return set()
    mapping = config.get("vocabulary_map") or {}
    return {int(i) for name, i in mapping.items() if isinstance(name, str) and name.startswith(IMAGE_TOKEN_PREFIX)
            and isinstance(i, int)}
