"""Throughput of T2A generation: HF generate unconstrained, HF generate + ModalityConstraint (with the
removed-mass tracking generate_rows uses), and the restricted-head decoder (mmgate.restricted, its
removed mass measured every 16th step and at the span's first step, with the steps where the
constraint overrode the model's top choice flagged), side by side in one run, with ratios; and
the same decoder without the first-step measurement and the flags, to time what they cost; and the
decoder with the per-step progress beat of a job's log (mmgate.constrain.StepBeat), to time that.

Models: (a) the demo checkpoint (resources/demo: a LoRA on a tiny Llama, 4,648 ids, 4 x 1024 audio
codes), (b) a model shaped like Qwen2-0.5B (hidden 896, 24 layers, 14 heads, 2 KV heads, random
weights) over 151,646 text ids + 4 x 2,048 audio codes. Every variant generates the same number of
steps (the constraint holds the end token to the budget). A per-step split of (b) follows: the
full head, softmax + sampling over the whole vocabulary, and the same over one codebook slot.

    python benchmarks/generation.py [--device cuda --dtype bfloat16] [--batch 16] [--steps 32] [--repeats 2] [--only qwen]
                                    [--static-cache]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _machine import machine_line
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

from mmgate.constrain import ModalityConstraint, StepBeat
from mmgate.loading import body_and_head, load_model
from mmgate.progress import Progress
from mmgate.restricted import RestrictedDecoder, RowHead
from mmgate.tokenspace import TokenSpace

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
QWEN_TEXT_VOCAB = 151_646
VARIANTS = ("hf_free", "hf_constrained", "restricted")
# `restricted` measures the span's first step too and flags overridden top choices (P0.2 since they
# hid a codebook-order mismatch); `restricted_before` is the decoder without either, to time them
WHAT_P02_SEES = ("restricted_before",)
# `restricted_progress`: the decoder with the progress beat every generate job runs (StepBeat)
PROGRESS = ("restricted_progress",)


def qwen_like_space(codebooks: int = 4, codes: int = 2048) -> TokenSpace:
    """151,646 text ids, then <aud_start>, <aud_end>, then `codebooks` x `codes` audio ids."""
    first = QWEN_TEXT_VOCAB + 2
    names = [f"AUDIO_CB{k}" for k in range(codebooks)]
    return TokenSpace.from_dict({
        "vocab_size": first + codebooks * codes,
        "special_tokens": {"<aud_start>": QWEN_TEXT_VOCAB, "<aud_end>": QWEN_TEXT_VOCAB + 1},
        "ranges": {name: [first + k * codes, first + (k + 1) * codes] for k, name in enumerate(names)},
        "modalities": {"audio": {"ranges": names, "start_token": "<aud_start>", "end_token": "<aud_end>"}},
    })


def qwen_05b_shaped(vocab_size: int) -> torch.nn.Module:
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_run(model, variant: str, audio, prompt: torch.Tensor, steps: int, device: str) -> float:
    """Tokens/s of one generation of `steps` new tokens per row."""
    batch, width = prompt.shape
    mask = torch.ones_like(prompt)
    static = variant.endswith("_static")  # generation.static_cache: static KV cache (+ torch.compile on a GPU)
    variant = variant.removesuffix("_static")
    config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                              max_new_tokens=steps, min_new_tokens=0, num_beams=1, eos_token_id=audio.end_id,
                              pad_token_id=0, cache_implementation="static" if static else None)
    hold = torch.full((batch,), steps, device=device)
    before = variant == "restricted_before"
    constraint = ModalityConstraint(audio, width, min_length=hold, device=device, track_removed_mass=True,
                                    track_overridden=not before)
    sync(device)
    start = time.perf_counter()
    stopping = None
    if variant == "restricted_progress":  # as a job: a line at most every 30 s to a logger (here: one that drops it)
        import logging

        from transformers import StoppingCriteriaList

        quiet = logging.getLogger("benchmark.progress")
        quiet.disabled = True
        stopping = StoppingCriteriaList([StepBeat(Progress(batch, "samples", quiet), width, steps)])
    with torch.inference_mode():
        if variant in ("restricted", "restricted_before", "restricted_progress"):
            out = RestrictedDecoder.for_model(model, config, constraint, measure_first=not before).generate(
                prompt, mask, stopping).sequences
        else:
            processors = [constraint] if variant == "hf_constrained" else []
            out = model.generate(prompt, attention_mask=mask, generation_config=config, logits_processor=processors)
    sync(device)
    seconds = time.perf_counter() - start
    assert variant == "hf_free" or out.shape[1] - width == steps, f"{variant} stopped early"
    return batch * steps / seconds


def bench(name: str, model, audio, device: str, batch: int, steps: int, repeats: int,
          variants: tuple[str, ...] = VARIANTS) -> dict[str, float]:
    torch.manual_seed(0)
    prompt = torch.randint(4, 30, (batch, 8), device=device)
    prompt[:, -1] = audio.start_id
    for variant in variants:  # warm-up (and, for a static cache on a GPU, the compile)
        timed_run(model, variant, audio, prompt, 4, device)
    speeds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):  # interleaved so that machine noise hits every variant alike
        for variant in variants:
            speeds[variant].append(timed_run(model, variant, audio, prompt, steps, device))
    median = {v: statistics.median(s) for v, s in speeds.items()}
    vocab = model.get_output_embeddings().weight.shape[0] if not hasattr(model, "get_base_model") else \
        model.get_base_model().get_output_embeddings().weight.shape[0]
    print(f"\n{name}: vocab {vocab:,}, {audio.n_codebooks} x {audio.codebook_size} codes, batch {batch}, {steps} new "
          f"tokens, median of {repeats}")
    print(f"  {'variant':<21} {'tok/s':>9} {'x hf_free':>10} {'x hf_constrained':>17}   spread")
    for variant in variants:
        print(f"  {variant:<21} {median[variant]:>9.1f} {median[variant] / median['hf_free']:>10.2f} "
              f"{median[variant] / median['hf_constrained']:>17.2f}   {min(speeds[variant]):.1f}-{max(speeds[variant]):.1f}")
    if "restricted_before" in median:
        paired = [b / a for a, b in zip(speeds["restricted"], speeds["restricted_before"])]  # same repeat, back to back
        print(f"  first-step measurement and override flags: {100 * (statistics.median(paired) - 1):+.1f} % of "
              f"restricted generation time (median of {len(paired)} paired runs; spread "
              f"{100 * (min(paired) - 1):+.1f} to {100 * (max(paired) - 1):+.1f} %)")
    if "restricted_progress" in median:
        paired = [b / a for a, b in zip(speeds["restricted_progress"], speeds["restricted"])]
        print(f"  progress beat (a job's log): {100 * (statistics.median(paired) - 1):+.1f} % of restricted generation "
              f"time (median of {len(paired)} paired runs; spread {100 * (min(paired) - 1):+.1f} to "
              f"{100 * (max(paired) - 1):+.1f} %)")
    return median


def per_step_split(model, audio, device: str, batch: int, repeats: int = 5) -> None:
    """Milliseconds of the parts of one decode step that the restricted head changes, timed directly."""
    _, head = body_and_head(model)
    rows = RowHead.of(head)
    hidden = torch.randn(batch, rows.weight.shape[1], device=device, dtype=rows.weight.dtype)
    slot = audio.ranges[0]

    def ms(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    full = rows.logits(hidden).float()
    part = rows.logits(hidden, slot.start, slot.end).float()
    parts = {
        "full head": ms(lambda: rows.logits(hidden)),
        "full softmax + sample": ms(lambda: torch.multinomial(torch.softmax(full, -1), 1)),
        "full removed mass": ms(lambda: torch.logsumexp(torch.log_softmax(full, -1)[:, slot.start:slot.end], -1)),
        "slot head": ms(lambda: rows.logits(hidden, slot.start, slot.end)),
        "slot softmax + sample": ms(lambda: torch.multinomial(torch.softmax(part, -1), 1)),
    }
    print(f"  per-step split at batch {batch} (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--only", choices=["demo", "qwen"], help="run one of the two models")
    parser.add_argument("--steps", type=int, default=32, help="new tokens per row on the 0.5B-shaped model")
    parser.add_argument("--demo-steps", type=int, default=128, help="new tokens per row on the demo model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--static-cache", action="store_true",
                        help="also time generate with a static KV cache (generation.static_cache; compiled on a GPU)")
    args = parser.parse_args()
    variants = VARIANTS + WHAT_P02_SEES + PROGRESS + (("hf_free_static", "hf_constrained_static") if args.static_cache else ())
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(machine_line(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, {args.dtype}"
                       + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else "")))
    if args.only != "qwen":
        space = TokenSpace.load(DEMO / "token_space.json")
        model, _ = load_model(DEMO / "checkpoints" / "good", base=str(DEMO / "stage3_init"), dtype=args.dtype,
                              device=args.device)
        bench("demo checkpoint (LoRA on a tiny Llama)", model, space.modality("audio"), args.device, args.batch,
              args.demo_steps, args.repeats, variants)
    if args.only == "demo":
        return
    space = qwen_like_space()
    model = qwen_05b_shaped(space.vocab_size).to(device=args.device, dtype=dtype).eval()
    audio = space.modality("audio")
    bench("Qwen2-0.5B-shaped (random weights)", model, audio, args.device, args.batch, args.steps, args.repeats, variants)
    per_step_split(model, audio, args.device, args.batch)


if __name__ == "__main__":
    main()
