"""Tiny random instances of the transformers families labs build any-to-any models on, over the demo's
vocabulary, saved as checkpoints the way their trainers save them (no download: configs only).

`build(name, root)` writes `root/<name>/full` (the whole model, its tokenizer, the token-space hash)
and `root/<name>/lora` (a LoRA on that base with `modules_to_save` embedding and head, its B
matrices drawn so the adapter changes the logits). The head is re-drawn so logits reach 30-70: a
soft-cap or a class's suppression only shows with large logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FAMILIES = ("llama", "mistral", "phi3", "qwen2_tied", "qwen2_padded", "gemma2", "gemma3", "cohere", "chameleon", "emu3")
PAD_TO = 64  # a padded vocabulary rounds its rows up to a multiple of this (as Qwen2's 151,936 rows)


def _shape(vocab: int, **extra: Any) -> dict[str, Any]:
    return dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, **extra)


def rows_for(name: str, tokenizer_len: int) -> int:
    return -(-tokenizer_len // PAD_TO) * PAD_TO + PAD_TO if name == "qwen2_padded" else tokenizer_len


def config_for(name: str, vocab: int, space: Any) -> Any:
    import transformers as T

    if name == "llama":
        return T.LlamaConfig(**_shape(vocab, tie_word_embeddings=False))
    if name == "mistral":
        return T.MistralConfig(**_shape(vocab, tie_word_embeddings=False))
    if name == "phi3":
        return T.Phi3Config(**_shape(vocab, tie_word_embeddings=False, pad_token_id=0))
    if name in ("qwen2_tied", "qwen2_padded"):
        return T.Qwen2Config(**_shape(vocab, tie_word_embeddings=name == "qwen2_tied"))
    if name == "gemma2":
        return T.Gemma2Config(**_shape(vocab, head_dim=16, final_logit_softcapping=30.0, attn_logit_softcapping=50.0))
    if name == "gemma3":
        return T.Gemma3TextConfig(**_shape(vocab, head_dim=16))
    if name == "cohere":  # logits * logit_scale
        return T.CohereConfig(**_shape(vocab, logit_scale=0.25, tie_word_embeddings=False))
    if name == "chameleon":
        # Lumina-mGPT / Anole: the image codes are tokens of the vocabulary, named IMGIMG... as Chameleon's
        image = space.modality("image")
        ids = [i for r in image.ranges for i in range(r.start, r.end)]
        names = {f"IMGIMG{''.join(chr(65 + int(d)) for d in str(k))}Z": i for k, i in enumerate(ids)}
        vq = dict(embed_dim=8, num_embeddings=16, base_channels=32, channel_multiplier=[1], num_res_blocks=1,
                  attn_resolutions=[], resolution=16, latent_channels=8, in_channels=3, out_channels=3,
                  double_latent=False)
        return T.ChameleonConfig(**_shape(vocab, vocabulary_map={**names, "<image>": image.start_id}), vq_config=vq)
    if name == "emu3":
        vq = dict(embed_dim=8, codebook_size=16, base_channels=32, channel_multiplier=[1], num_res_blocks=1,
                  attn_resolutions=[], latent_channels=8, in_channels=3, out_channels=3, temporal_downsample_factor=1)
        return T.Emu3Config(text_config=_shape(vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2), vq_config=vq,
                            vocabulary_map={"<image>": space.modality("image").start_id})
    raise ValueError(name)


def class_for(name: str) -> str:
    return {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "phi3": "Phi3ForCausalLM",
            "qwen2_tied": "Qwen2ForCausalLM", "qwen2_padded": "Qwen2ForCausalLM", "gemma2": "Gemma2ForCausalLM",
            "gemma3": "Gemma3ForCausalLM", "cohere": "CohereForCausalLM", "chameleon": "ChameleonForConditionalGeneration",
            "emu3": "Emu3ForConditionalGeneration"}[name]


def large_logits_(model: Any, reach: float = 50.0, seed: int = 0) -> None:
    """Re-draw the output head (the embedding too where tied) so the largest logits on a probe reach about
    `reach` (rescaled until they do: a tied head also changes the hidden states)."""
    head = model.get_output_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    probe = torch.arange(2, 66)[None]
    with torch.no_grad():
        head.copy_(torch.randn(head.shape, generator=generator))
        for _ in range(6):
            logits = model.get_output_embeddings()(model.get_decoder()(input_ids=probe).last_hidden_state)
            scale = getattr(model.config, "logit_scale", None) if model.config.model_type == "cohere" else None
            top = float(logits.abs().max()) * (scale or 1.0)
            if abs(top - reach) < 0.1 * reach:
                break
            head.mul_(reach / top)


def build(name: str, root: Path, tokenizer: Any, space: Any, seed: int = 0) -> dict[str, Path]:
    """Save the family's full checkpoint and a LoRA on it; returns their folders."""
    import transformers as T
    from peft import LoraConfig, get_peft_model

    folder = Path(root) / name
    rows = rows_for(name, len(tokenizer))
    torch.manual_seed(seed)
    model = getattr(T, class_for(name))(config_for(name, rows, space)).eval()
    large_logits_(model, seed=seed)
    full = folder / "full"
    model.save_pretrained(full)
    tokenizer.save_pretrained(full)
    (full / "token_space.sha256").write_text(space.sha256 + "\n")
    targets = ["qkv_proj"] if name == "phi3" else ["q_proj", "v_proj"]
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=targets,
                                            modules_to_save=["embed_tokens", "lm_head"]))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        for parameter_name, weight in lora.named_parameters():
            if "lora_B" in parameter_name:  # trained: B starts at zero, which would make the adapter a no-op
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.5)
    adapter = folder / "lora"
    lora.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    (adapter / "token_space.sha256").write_text(space.sha256 + "\n")
    import json

    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(full)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    return {"full": full, "lora": adapter}
