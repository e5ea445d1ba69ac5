"""Throughput of constrained decoding: none vs ModalityConstraint (with and without removed-mass tracking) vs prefix_allowed_tokens_fn.

Every variant generates the same number of steps (the constrained ones hold the end token until
the budget; a row of the unconstrained run that samples it early is padded while the others go
on, so the batch still runs every step), on the demo's tiny Llama with the demo vocabulary (4,648 ids) and with a Qwen-sized one
(151,646 text ids + the demo's modality ids). Prints tokens/s and ratios side by side.

    python benchmarks/constrained_decoding.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from mmgate import demo
from mmgate.constrain import ModalityConstraint
from mmgate.tokenspace import TokenSpace

QWEN_TEXT_VOCAB = 151_646


def token_space(text_vocab: int | None) -> TokenSpace:
    spec = demo.token_space_spec(demo.build_tokenizer())
    if text_vocab:  # shift every non-text id up so that the text part has `text_vocab` ids
        shift = text_vocab - min(spec["special_tokens"].values())
        spec["special_tokens"] = {k: v + shift for k, v in spec["special_tokens"].items()}
        spec["ranges"] = {k: [a + shift, b + shift] for k, (a, b) in spec["ranges"].items()}
        spec["vocab_size"] += shift
    return TokenSpace.from_dict(spec)


def prefix_fn_for(modality, span_start: int, frames: int):
    """What a user would write with prefix_allowed_tokens_fn for the same rule (Python per row and step)."""
    k = modality.n_codebooks
    ranges = [list(range(r.start, r.end)) for r in modality.ranges]

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        position = input_ids.shape[-1] - span_start
        ids = ranges[position % k]
        if position >= frames * k and position % k == 0:
            ids = ids + [modality.end_id]
        return ids

    return allowed


def run(model, prompt, variant, modality, new_tokens, frames) -> float:
    kwargs = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=new_tokens,
                  min_new_tokens=0, pad_token_id=0, eos_token_id=modality.end_id)
    width = prompt.shape[1]
    budget = torch.full((prompt.shape[0],), new_tokens, device=prompt.device)
    if variant in ("constraint", "constraint+mass"):
        kwargs["logits_processor"] = [ModalityConstraint(modality, width, min_length=budget, device=prompt.device,
                                                         track_removed_mass=variant == "constraint+mass")]
    elif variant == "prefix_fn":
        kwargs["prefix_allowed_tokens_fn"] = prefix_fn_for(modality, width, new_tokens // modality.n_codebooks)
    if prompt.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    if prompt.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert out.shape[1] - width == new_tokens, f"{variant} stopped early"
    return prompt.shape[0] * new_tokens / seconds


def bench(name, text_vocab, device, batch, frames, repeats):
    space = token_space(text_vocab)
    audio = space.modality("audio")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(demo.tiny_llama_config(space.vocab_size)).to(device).eval()
    prompt = torch.randint(4, 30, (batch, 8), device=device)
    prompt[:, -1] = audio.start_id
    new_tokens = frames * audio.n_codebooks
    variants = ("none", "constraint", "constraint+mass", "prefix_fn")
    for variant in variants:  # warm-up
        run(model, prompt, variant, audio, 8, 2)
    speeds = {v: [] for v in variants}
    for _ in range(repeats):  # interleaved so that machine noise hits every variant alike
        for variant in variants:
            speeds[variant].append(run(model, prompt, variant, audio, new_tokens, frames))
    median = {v: statistics.median(s) for v, s in speeds.items()}
    # The processor's own cost, timed directly over the same steps (less noisy than end-to-end rates)
    width = prompt.shape[1]
    scores = torch.randn(batch, space.vocab_size, device=device)
    ids = [torch.zeros(batch, width + step, dtype=torch.long, device=device) for step in range(new_tokens)]
    per_step = {}
    for tracked in (False, True):
        timings = []
        for _ in range(repeats):
            processor = ModalityConstraint(audio, width, min_length=torch.full((batch,), new_tokens, device=device),
                                           device=device, track_removed_mass=tracked)
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for step_ids in ids:
                processor(step_ids, scores)
            if device != "cpu":
                torch.cuda.synchronize()
            timings.append((time.perf_counter() - start) / new_tokens)
        per_step[tracked] = statistics.median(timings)
    step_time = batch / median["none"]
    print(f"{name:<22} vocab {space.vocab_size:>7}  batch {batch}  {new_tokens} new tokens  ({device})")
    for variant in variants:
        print(f"  {variant:<11} {median[variant]:>10.0f} tok/s   x{median[variant] / median['none']:.3f} of unconstrained"
              f"   spread {min(speeds[variant]):.0f}-{max(speeds[variant]):.0f}")
    print(f"  ModalityConstraint / prefix_allowed_tokens_fn: x{median['constraint'] / median['prefix_fn']:.1f}")
    for tracked, label in ((False, "ModalityConstraint alone"), (True, "with removed-mass tracking")):
        print(f"  {label:<27} {per_step[tracked] * 1e6:>6.0f} us/step = {100 * per_step[tracked] / step_time:.1f} % of an "
              f"unconstrained step ({step_time * 1e3:.2f} ms)")
    return median


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    bench("demo vocabulary", None, args.device, args.batch, args.frames, args.repeats)
    bench("Qwen-sized vocabulary", QWEN_TEXT_VOCAB, args.device, args.batch, args.frames, args.repeats)


if __name__ == "__main__":
    main()
