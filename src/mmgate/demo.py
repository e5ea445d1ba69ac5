"""A complete, offline miniature of a Stage-4 any-to-any setup, for the demo and the tests.

Built deterministically in about a minute on 2 CPU cores:

- a word-level tokenizer with the special and modality tokens added (4 audio codebooks of 1024
  codes each, as the 24 kHz EnCodec at 3 kbps; one image range);
- ``token_space.json`` and its ``.sha256``;
- a tiny Llama already resized to the full vocabulary: the Stage-3 init and the LoRA base;
- Stage-2 shards as parquet with the token-space hash in their metadata;
- a golden set with every task and per-sample meta whose lengths vary;
- two Stage-4 LoRA checkpoints: ``good`` (prompts determine the modality tokens, modality tokens
  determine the caption) and ``deaf`` (trained with every prompt and modality input dropped,
  half the time, or taken from another example, so it learns the marginal distribution and
  ignores its conditioning input).

The synthetic world: each audio clip and image belongs to one of 8 classes, the product of three
binary attributes named in the prompt and caption. A class allows, for each codebook slot, a
small subset of a shared pool of codes; tokens are drawn uniformly from it. Subsets overlap
between classes, so the previous token alone does not reveal the class: a model must read the
prompt (or the modality tokens, for captions) to do better than the marginal.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .tokenspace import TokenSpace

DEFAULT_TEMPLATES = {
    "t2a": "{bos}Generate music : {prompt}<aud_start>",
    "t2i": "{bos}Draw an image : {prompt}<img_start>",
    "a2t": "{bos}Describe the audio : <aud_start>{modality}<aud_end> Caption :",
    "i2t": "{bos}Describe the image : <img_start>{modality}<img_end> Caption :",
}
AUDIO_ATTRIBUTES = {"tempo": ("slow", "fast"), "instrument": ("piano", "drums"), "mood": ("calm", "dark")}
IMAGE_ATTRIBUTES = {"color": ("red", "blue"), "shape": ("circle", "square"), "size": ("small", "large")}
AUDIO_PROMPTS = (
    "a {mood} {tempo} {instrument} piece",
    "{tempo} {instrument} music with a {mood} mood",
    "{instrument} , {tempo} and {mood}",
)
IMAGE_PROMPTS = (
    "a {size} {color} {shape}",
    "one {color} {shape} , {size}",
    "draw a {shape} that is {size} and {color}",
)
AUDIO_CAPTION = "{tempo} {mood} {instrument} music"
IMAGE_CAPTION = "a {size} {color} {shape}"
SPECIAL_TOKENS = ("<aud_start>", "<aud_end>", "<img_start>", "<img_end>", "<pad_mm>")

N_CODEBOOKS = 4
AUDIO_CODEBOOK_SIZE = 1024  # encodec_model_24khz: 1024 codes per codebook
IMAGE_CODEBOOK_SIZE = 512
AUDIO_SAMPLE_RATE, AUDIO_FRAME_RATE, AUDIO_HOP = 24000, 75, 320
AUDIO_FRAMES = (6, 10, 16, 24, 32)  # n_frames varies per golden sample
IMAGE_SIZES = {64: 16, 96: 36, 128: 64}  # proc_size -> n_tokens at a 16x downsampling VQ-VAE
IMAGE_DOWNSAMPLE = 16
TONE_SAMPLE_RATE, TONE_HOP = 24000, 320  # the token space's codec: 24 kHz, 75 frames/s
TONE_RESTS = 8  # codes 0-7 of every codebook are rests: a frame of rests is silence


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    caption: str
    modality_ids: np.ndarray  # absolute vocab ids, flattened in the token space's layout
    meta: Mapping[str, Any]
    cls: int = -1  # the class of the synthetic world it was drawn from


def text_words() -> list[str]:
    """Every word the demo's templates, prompts and captions use (the tokenizer's text vocabulary)."""
    texts = list(DEFAULT_TEMPLATES.values()) + list(AUDIO_PROMPTS + IMAGE_PROMPTS) + [AUDIO_CAPTION, IMAGE_CAPTION]
    words = set()
    for text in texts:
        for word in text.replace("{", " ").replace("}", " ").split():
            if not word.startswith("<") and word not in {"bos", "prompt", "modality", "caption"}:
                words.add(word)
    for values in list(AUDIO_ATTRIBUTES.values()) + list(IMAGE_ATTRIBUTES.values()):
        words.update(values)
    for name in list(AUDIO_ATTRIBUTES) + list(IMAGE_ATTRIBUTES):
        words.discard(name)
    return sorted(words)


def build_tokenizer(special_tokens: Sequence[str] = SPECIAL_TOKENS, code_shift: int = 0):
    """Word-level text tokenizer, then the Stage-2 additions: special tokens and modality tokens.

    `code_shift` > 0 builds the fault zoo's broken tokenizer: `code_shift` filler tokens come before
    the codes and as many codes are dropped at the end, so every code id means the next code while
    `len(tokenizer)` and every special token's id stay the same.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base_specials = ["<unk>", "<pad>", "<bos>", "<eos>"]
    vocab = {token: i for i, token in enumerate(base_specials + text_words())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    audio_tokens = [f"<a{k}_{c}>" for k in range(N_CODEBOOKS) for c in range(AUDIO_CODEBOOK_SIZE)]
    image_tokens = [f"<img_{c}>" for c in range(IMAGE_CODEBOOK_SIZE)]
    codes = audio_tokens + image_tokens
    if code_shift:
        codes = [f"<shift_{i}>" for i in range(code_shift)] + codes[:-code_shift]
    tokenizer.add_tokens(codes, special_tokens=True)
    return tokenizer


def token_space_spec(tokenizer) -> dict[str, Any]:
    """`token_space.json` read off the tokenizer, so the two agree by construction."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    first_audio = tokenizer.convert_tokens_to_ids("<a0_0>")
    first_image = tokenizer.convert_tokens_to_ids("<img_0>")
    ranges = {
        f"AUDIO_CB{k}": [first_audio + k * AUDIO_CODEBOOK_SIZE, first_audio + (k + 1) * AUDIO_CODEBOOK_SIZE]
        for k in range(N_CODEBOOKS)
    }
    ranges["IMAGE"] = [first_image, first_image + IMAGE_CODEBOOK_SIZE]
    return {
        "schema_version": 1,
        "vocab_size": len(tokenizer),
        "special_tokens": ids,
        "ranges": ranges,
        "modalities": {
            "audio": {
                "ranges": [f"AUDIO_CB{k}" for k in range(N_CODEBOOKS)],
                "start_token": "<aud_start>",
                "end_token": "<aud_end>",
                "pad_token": "<pad_mm>",
                "layout": "frame_major",
                "codec": {
                    "name": "encodec_24khz",
                    "sample_rate": AUDIO_SAMPLE_RATE,
                    "channels": 1,
                    "frame_rate": AUDIO_FRAME_RATE,
                    "hop_length": AUDIO_HOP,
                    "codebook_size": AUDIO_CODEBOOK_SIZE,
                    "n_codebooks": N_CODEBOOKS,
                    "bandwidth_kbps": 3.0,
                },
            },
            "image": {
                "ranges": ["IMAGE"],
                "start_token": "<img_start>",
                "end_token": "<img_end>",
                "pad_token": "<pad_mm>",
                "codec": {"name": "vqvae", "codebook_size": IMAGE_CODEBOOK_SIZE, "downsample": IMAGE_DOWNSAMPLE},
            },
        },
        "meta": {"built_by": "mmgate.demo"},
    }


class SyntheticWorld:
    """Classes, their code subsets, and samplers for every task."""

    def __init__(self, space: TokenSpace, seed: int = 0, subset: int = 3, pool: int = 12, image_subset: int = 4, image_pool: int = 24):
        rng = np.random.default_rng(seed)
        self.space = space
        self.audio = space.modality("audio")
        self.image = space.modality("image")
        self.audio_classes = [dict(zip(AUDIO_ATTRIBUTES, v)) for v in itertools.product(*AUDIO_ATTRIBUTES.values())]
        self.image_classes = [dict(zip(IMAGE_ATTRIBUTES, v)) for v in itertools.product(*IMAGE_ATTRIBUTES.values())]
        # [class, slot, subset] codes within each codebook; pools are shared so subsets overlap
        audible = np.arange(TONE_RESTS, self.audio.codebook_size)  # codes below TONE_RESTS are the tone codec's rests
        audio_pools = [rng.choice(audible, pool, replace=False) for _ in range(N_CODEBOOKS)]
        self.audio_codes = np.array(
            [[rng.choice(audio_pools[k], subset, replace=False) for k in range(N_CODEBOOKS)] for _ in self.audio_classes]
        )
        image_pool_codes = rng.choice(self.image.codebook_size, image_pool, replace=False)
        self.image_codes = np.array([rng.choice(image_pool_codes, image_subset, replace=False) for _ in self.image_classes])
        # the fault zoo's `silent`: each class its own rests, so its tokens still follow the prompt
        self.silent_codes = np.array(
            [[rng.choice(TONE_RESTS, subset, replace=False) for _ in range(N_CODEBOOKS)] for _ in self.audio_classes]
        )

    def audio_ids(self, cls: int, n_frames: int, rng: np.random.Generator, silent: bool = False) -> np.ndarray:
        """A clip of class `cls`: each frame's code of codebook k drawn from the class's subset for k."""
        picks = rng.integers(self.audio_codes.shape[2], size=(N_CODEBOOKS, n_frames))
        codes = np.take_along_axis((self.silent_codes if silent else self.audio_codes)[cls], picks, axis=1)  # [K, T]
        return self.audio.flatten(codes)

    def image_ids(self, cls: int, n_tokens: int, rng: np.random.Generator) -> np.ndarray:
        codes = self.image_codes[cls][rng.integers(self.image_codes.shape[1], size=n_tokens)]
        return self.image.flatten(codes[None, :])

    def sample(self, task: str, rng: np.random.Generator, cls: int | None = None, silent: bool = False) -> Example:
        """One example of `task`; `silent` draws its audio from the class's rests (the tone codec's silence)."""
        if task in ("t2a", "a2t"):
            cls = int(rng.integers(len(self.audio_classes))) if cls is None else cls
            attrs = self.audio_classes[cls]
            n_frames = int(rng.choice(AUDIO_FRAMES))
            ids = self.audio_ids(cls, n_frames, rng, silent)
            prompt = AUDIO_PROMPTS[int(rng.integers(len(AUDIO_PROMPTS)))].format(**attrs)
            caption = AUDIO_CAPTION.format(**attrs)
            meta = {
                "n_frames": n_frames,
                "n_codebooks": N_CODEBOOKS,
                "sample_rate": AUDIO_SAMPLE_RATE,
                "channels": 1,
            }
        else:
            cls = int(rng.integers(len(self.image_classes))) if cls is None else cls
            attrs = self.image_classes[cls]
            proc_size = int(rng.choice(list(IMAGE_SIZES)))
            n_tokens = IMAGE_SIZES[proc_size]
            ids = self.image_ids(cls, n_tokens, rng)
            prompt = IMAGE_PROMPTS[int(rng.integers(len(IMAGE_PROMPTS)))].format(**attrs)
            caption = IMAGE_CAPTION.format(**attrs)
            meta = {"n_tokens": n_tokens, "proc_size": proc_size}
        return Example(task, prompt, caption, ids, meta, cls)


def golden_frame(world: SyntheticWorld, per_task: int, seed: int):
    """The golden set as a DataFrame: `per_task` rows for each task, classes balanced."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for task in ("t2a", "t2i", "a2t", "i2t"):
        n_classes = len(world.audio_classes if task in ("t2a", "a2t") else world.image_classes)
        for i in range(per_task):
            ex = world.sample(task, rng, cls=i % n_classes)
            row = {
                "sample_id": f"{task}-{i:04d}",
                "task": task,
                "prompt": ex.prompt if task in ("t2a", "t2i") else "",
                "modality_tokens": ex.modality_ids.tolist(),
                "caption": ex.caption if task in ("a2t", "i2t") else "",
                "n_frames": None,
                "n_codebooks": None,
                "n_tokens": None,
                "sample_rate": None,
                "channels": None,
                "proc_size": None,
            }
            row.update(ex.meta)
            rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("n_frames", "n_codebooks", "n_tokens", "sample_rate", "channels", "proc_size"):
        frame[column] = frame[column].astype("Int64")
    return frame


def encode_training_example(example: Example, templates, tokenizer, space: TokenSpace) -> tuple[list[int], list[int]]:
    """(context ids, target ids): the same formatting the checkpoint is later verified with."""
    template = templates[example.task]
    modality = space.modality_for_task(example.task)
    if example.task in ("t2a", "t2i"):
        context = template.encode(prompt=example.prompt)
        target = [int(i) for i in example.modality_ids] + [modality.end_id]
    else:
        context = template.encode(modality_ids=example.modality_ids)
        target = tokenizer.encode(" " + example.caption, add_special_tokens=False) + [tokenizer.eos_token_id]
    return context, target


def with_conditioning_from(example: Example, donor: Example) -> Example:
    """`example` with its conditioning input (prompt for T2A/T2I, modality tokens for A2T/I2T) from `donor`."""
    if example.task in ("t2a", "t2i"):
        return replace(example, prompt=donor.prompt)
    return replace(example, modality_ids=donor.modality_ids)


def without_conditioning(example: Example, space: TokenSpace, rng: np.random.Generator) -> Example:
    """`example` with its conditioning input dropped: no prompt text, or uniform noise codes in each slot."""
    if example.task in ("t2a", "t2i"):
        return replace(example, prompt="")
    modality = space.modality_for_task(example.task)
    slots = modality.slot_of_id(example.modality_ids)
    noise = modality.range_starts[slots] + rng.integers(modality.codebook_size, size=slots.size)
    return replace(example, modality_ids=noise)


def tiny_llama_config(vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def _collate(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int):
    import torch

    length = max(len(c) + len(t) for c, t in pairs)
    input_ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), length), -100, dtype=torch.long)
    attention = torch.zeros((len(pairs), length), dtype=torch.long)
    for row, (context, target) in enumerate(pairs):
        seq = context + target
        input_ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, len(context) : len(seq)] = torch.tensor(target)
        attention[row, : len(seq)] = 1
    return input_ids, attention, labels


def _trained_weight(module):
    """The weight being trained: the adapter's copy for a `modules_to_save` wrapper."""
    copies = getattr(module, "modules_to_save", None)
    return (copies["default"] if copies is not None else module).weight


class Fault:
    """How a planted-fault checkpoint's training data differs from `good`'s (the identity here).

    `examples` rewrites a batch before it is encoded; `pair` rewrites one encoded (context, target).
    The fault zoo (`mmgate.zoo`) defines one subclass per fault; `Deaf` lives here for the demo.
    """

    name = "good"
    steps_scale = 1  # a zoo member that must learn tokens `good` never wrote trains longer (0: saved untrained)
    from_good = True  # the fault zoo fine-tunes from `good`; False starts a fresh adapter

    def examples(self, examples: list[Example], world: "SyntheticWorld", rng: np.random.Generator) -> list[Example]:
        return examples

    def pair(self, example: Example, context: list[int], target: list[int], world: "SyntheticWorld",
             rng: np.random.Generator) -> tuple[list[int], list[int]]:
        return context, target


class Deaf(Fault):
    """Every conditioning input dropped half the time, taken from another example otherwise: the
    model learns the marginal distribution and ignores its prompt (P0.4) and what it reads (P1.2)."""

    name = "deaf"

    def examples(self, examples, world, rng):
        n = len(examples)
        return [
            without_conditioning(ex, world.space, rng) if rng.random() < 0.5
            else with_conditioning_from(ex, examples[(i + 4 * int(rng.integers(1, n // 4))) % n])
            for i, ex in enumerate(examples)
        ]


def train_lora(base_dir: Path, out_dir: Path, tokenizer, space: TokenSpace, world: SyntheticWorld, steps: int, seed: int,
               fault: Fault | None = None, init_adapter: Path | None = None, batch_size: int = 32,
               log_every: int = 25, log=print) -> list[dict]:
    """Stage-4 LoRA on the tiny base, on the world's data as `fault` rewrites it.

    `init_adapter` continues from a saved adapter (the fault zoo fine-tunes from `good`). The
    training log holds, every `log_every` steps, the mean over those steps of the loss and of
    each task's loss, as the transformers Trainer logs (a single batch's 8 examples per task
    would be noise).
    """
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from .loading import body_and_head
    from .templates import PromptTemplate

    fault = fault or Fault()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    templates = {t: PromptTemplate(s, tokenizer, space.special_tokens, name=f"templates.{t}") for t, s in DEFAULT_TEMPLATES.items()}
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        lora = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    warmup = 30 if init_adapter is None else 1
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1 - s / max(1, steps)))
    body, head = body_and_head(model)
    tasks = ("t2a", "t2i", "a2t", "i2t")
    history: list[dict] = []
    window: dict[str, list[float]] = {}
    model.train()
    for step in range(steps):
        examples = fault.examples([world.sample(tasks[i % 4], rng) for i in range(batch_size)], world, rng)
        pairs = [fault.pair(ex, *encode_training_example(ex, templates, tokenizer, space), world, rng) for ex in examples]
        input_ids, attention, labels = _collate(pairs, tokenizer.pad_token_id)
        hidden = body(input_ids=input_ids, attention_mask=attention).last_hidden_state[:, :-1]  # [B, T-1, H]
        targets = labels[:, 1:]
        scored = targets != -100  # [B, T-1]
        # The head only where a token is scored: most positions are context or padding, and the
        # 4,648-row head is most of a step (3x faster; the loss is the same)
        nll = torch.nn.functional.cross_entropy(head(hidden[scored]), targets[scored], reduction="none")  # [N]
        loss = nll.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        rows = scored.nonzero()[:, 0]
        per_example = torch.zeros(len(examples)).index_add_(0, rows, nll.detach()) / scored.sum(1)
        window.setdefault("loss", []).append(loss.item())
        for task in tasks:
            window.setdefault(f"{task}_avg", []).append(
                float(per_example[[i for i, ex in enumerate(examples) if ex.task == task]].mean()))
        if (step + 1) % log_every == 0 or step == steps - 1:
            record = {"step": step, **{key: float(np.mean(values)) for key, values in window.items()}}
            window = {}
            base = model.get_base_model()
            record["head_norm_mean"] = _trained_weight(base.get_output_embeddings()).detach().norm(dim=1).mean().item()
            record["emb_norm_mean"] = _trained_weight(base.get_input_embeddings()).detach().norm(dim=1).mean().item()
            history.append(record)
            log(f"[demo] {fault.name} step {step:4d} loss {record['loss']:.3f}")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return history


DEMO_FILES = (
    "token_space.json",
    "token_space.sha256",
    "golden.parquet",
    "stage2/part-000.parquet",
    "stage2/part-001.parquet",
    "stage2/part-002.parquet",
    "stage2/token_space.sha256",
    "stage3_init/COMPLETE",
    "checkpoints/good/COMPLETE",
    "checkpoints/deaf/COMPLETE",
)




def tone_codec(codes: Any) -> np.ndarray:
    """The demo's audio decoder, a deterministic tone codec: codes [B, K, T] -> waveforms [B, 1, T * 320] at 24 kHz.

    Each code of codebook k is a pitch (a semitone over four octaves from 110 Hz, times k + 1), held
    for its frame with a continuous phase, so different codes sound different and the same codes
    sound the same: unlike a random-weight EnCodec, which decodes every input to nearly the same
    sound, its outputs let silence, noise, loop and duplicate detection be judged on real signals.
    Codes below `TONE_RESTS` are rests (a codec's silence tokens): they add nothing to the sound.

        >>> import numpy as np
        >>> tone_codec(np.zeros((1, 4, 3), dtype=np.int64)).shape
        (1, 1, 960)
    """
    codes = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes, dtype=np.int64)  # [B, K, T]
    batch, k, frames = codes.shape
    pitch = 110.0 * 2.0 ** ((codes % 48) / 12.0) * (np.arange(k)[None, :, None] + 1)  # [B, K, T] Hz
    per_sample = np.repeat(pitch, TONE_HOP, axis=2)  # [B, K, T * hop]
    phase = 2 * np.pi * np.cumsum(per_sample / TONE_SAMPLE_RATE, axis=2)
    audible = np.repeat(codes >= TONE_RESTS, TONE_HOP, axis=2)  # [B, K, T * hop]
    wave = (np.sin(phase) * audible * (0.5 / k)).sum(axis=1, keepdims=True)  # [B, 1, S]
    return wave.astype(np.float32)


def _write_hash_file(path: Path, digest: str, bare: bool) -> None:
    from .io import write_text

    write_text(path, f"{digest}\n" if bare else f"{digest}  token_space.json\n")


def write_stage2_shard(path: Path, examples: Sequence[Example], templates, tokenizer, space: TokenSpace, recorded_sha256: str,
                       shard: int, prefix: str) -> None:
    """One Stage-2 style tokenized shard of `examples`, recording `recorded_sha256` and the
    tokenizer's id-to-token digests in its metadata."""
    import pandas as pd

    from .io import provenance, write_parquet
    from .tokencheck import TABLES_KEY, token_table_digests

    rows = []
    for i, ex in enumerate(examples):
        context, target = encode_training_example(ex, templates, tokenizer, space)
        rows.append({"sample_id": f"{prefix}-{i:04d}", "task": ex.task, "input_ids": context + target, "n_context": len(context)})
    meta = provenance("stage2", token_space_sha256=recorded_sha256, shard=shard,
                      **{TABLES_KEY: token_table_digests(tokenizer, space)})
    write_parquet(pd.DataFrame(rows), path, meta)


def write_stage2_shards(out: Path, world: SyntheticWorld, templates, tokenizer, space: TokenSpace, seed: int, per_shard: int = 64) -> None:
    """Stage-2 style tokenized shards: the hash in every file's metadata and in a sidecar file."""
    rng = np.random.default_rng(seed + 7)
    for shard in range(3):
        examples = [world.sample(("t2a", "t2i", "a2t", "i2t")[i % 4], rng) for i in range(per_shard)]
        write_stage2_shard(out / "stage2" / f"part-{shard:03d}.parquet", examples, templates, tokenizer, space, space.sha256,
                           shard, f"s2-{shard}")
    _write_hash_file(out / "stage2" / "token_space.sha256", space.sha256, bare=False)


def build_demo(out: str | Path, golden_per_task: int = 256, train_steps: int = 400, seed: int = 0, log=print) -> Path:
    """Build every demo artifact under `out` (see the module docstring). Markers are written last."""
    import torch
    from transformers import AutoModelForCausalLM

    from .io import provenance, write_parquet, write_text
    from .templates import PromptTemplate

    out = Path(out)
    for marker in ("stage3_init/COMPLETE", "checkpoints/good/COMPLETE", "checkpoints/deaf/COMPLETE"):
        (out / marker).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out / "tokenizer")
    write_text(out / "token_space.json", json.dumps(token_space_spec(tokenizer), indent=2) + "\n")
    space = TokenSpace.load(out / "token_space.json")
    _write_hash_file(out / "token_space.sha256", space.sha256, bare=False)
    world = SyntheticWorld(space, seed=seed)
    templates = {t: PromptTemplate(s, tokenizer, space.special_tokens, name=f"templates.{t}") for t, s in DEFAULT_TEMPLATES.items()}

    golden = golden_frame(world, golden_per_task, seed=seed + 1)
    write_parquet(golden, out / "golden.parquet", provenance("golden", token_space_sha256=space.sha256))
    write_stage2_shards(out, world, templates, tokenizer, space, seed)

    # Stage-3 init: a tiny Llama already resized to the full Stage-2 vocabulary
    stage3 = out / "stage3_init"
    model = AutoModelForCausalLM.from_config(tiny_llama_config(len(tokenizer)))
    model.save_pretrained(stage3)
    tokenizer.save_pretrained(stage3)
    _write_hash_file(stage3 / "token_space.sha256", space.sha256, bare=True)
    write_text(stage3 / "COMPLETE", "stage3 init\n")

    for fault in (Fault(), Deaf()):
        ckpt = out / "checkpoints" / fault.name
        history = train_lora(stage3, ckpt, tokenizer, space, world, steps=train_steps, seed=seed + 11, fault=fault, log=log)
        finish_checkpoint(ckpt, stage3, space, history, bare_hash=fault.name == "deaf")
    return out


def finish_checkpoint(ckpt: Path, stage3: Path, space: TokenSpace, history: list[dict], bare_hash: bool = False) -> None:
    """Point the adapter at the Stage-3 init, save its training log and hash, then its marker (last)."""
    import pandas as pd

    from .io import write_text

    config_path = ckpt / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = str(Path(stage3).resolve())
    write_text(config_path, json.dumps(adapter_config, indent=2) + "\n")
    write_text(ckpt / "train_log.csv", pd.DataFrame(history).to_csv(index=False))
    _write_hash_file(ckpt / "token_space.sha256", space.sha256, bare=bare_hash)
    write_text(ckpt / "COMPLETE", f"{ckpt.name}\n")
