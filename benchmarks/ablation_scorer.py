"""The ablation scorer against a bare forward pass (speed) and a naive full-logits loss (memory).

Speed: examples/s over the same right-padded batches, on the demo's tiny Llama (4,648 ids) with
golden-set-like examples. Memory: peak resident memory of one process per variant, scoring 2
examples with 2,000-token targets at a Qwen-sized vocabulary (156,259 ids), minus the same
process before scoring (model and inputs loaded). Prints both side by side.

    python benchmarks/ablation_scorer.py [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM

from mmgate import demo
from mmgate.ablation import Scored, target_losses

QWEN_VOCAB = 156_259


def model_for(vocab: int, device: str):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(demo.tiny_llama_config(vocab)).to(device).eval()


def items_for(vocab: int, n: int, context: int, target: int, seed: int = 0) -> list[Scored]:
    g = torch.Generator().manual_seed(seed)
    return [Scored(torch.randint(1, vocab, (context,), generator=g).tolist(),
                   torch.randint(1, vocab, (int(target * (0.5 + 0.5 * i / max(1, n - 1))),), generator=g).tolist())
            for i in range(n)]


def padded(items: list[Scored], device: str):
    length = max(len(it.context) + len(it.target) for it in items)
    ids = torch.zeros(len(items), length, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    attention = torch.zeros_like(ids)
    for b, it in enumerate(items):
        seq = it.context + it.target
        ids[b, : len(seq)] = torch.tensor(seq)
        labels[b, len(it.context) : len(seq)] = torch.tensor(it.target)
        attention[b, : len(seq)] = 1
    return ids.to(device), attention.to(device), labels.to(device)


def naive_losses(model, items, device):
    """Full logits [B, L, V] in float32, then a masked cross-entropy: what one writes first."""
    ids, attention, labels = padded(items, device)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=attention).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100)
        mask = labels[:, 1:] != -100
        return ((nll * mask).sum(1) / mask.sum(1)).cpu()


def bare_forward(model, items, device):
    ids, attention, _ = padded(items, device)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=attention)


def memory_child(variant: str, device: str) -> None:
    model = model_for(QWEN_VOCAB, device)
    items = items_for(QWEN_VOCAB, 2, 16, 2000)
    padded(items, device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
        before_gpu = torch.cuda.max_memory_allocated()
    if variant == "scorer":
        target_losses(model, items, pad_id=0)
    else:
        naive_losses(model, items, device)
    peak = {"rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}
    if device != "cpu":
        peak["gpu_mb"] = (torch.cuda.max_memory_allocated() - before_gpu) / 2**20
    print(json.dumps(peak))


def speed(device: str, repeats: int) -> None:
    vocab = demo.token_space_spec(demo.build_tokenizer())["vocab_size"]
    model = model_for(vocab, device)
    items = items_for(vocab, 256, 12, 130)
    batches = [items[i : i + 16] for i in range(0, len(items), 16)]
    runs = {"bare forward": lambda b: bare_forward(model, b, device),
            "scorer": lambda b: target_losses(model, b, pad_id=0),
            "naive full-logits loss": lambda b: naive_losses(model, b, device)}
    rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            for batch in batches:
                fn(batch)
            if device != "cpu":
                torch.cuda.synchronize()
            rates[name].append(len(items) / (time.perf_counter() - start))
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"speed: {len(items)} examples (~140 tokens each), batches of 16, vocab {vocab}, {device}")
    for name in runs:
        print(f"  {name:<24} {median[name]:>8.0f} examples/s   x{median[name] / median['bare forward']:.2f} of a bare forward")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-child", choices=["scorer", "naive"])
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    if args.memory_child:
        return memory_child(args.memory_child, args.device)
    speed(args.device, args.repeats)
    peaks = {}
    for variant in ("scorer", "naive"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", variant, "--device", args.device],
                             capture_output=True, text=True, check=True).stdout
        peaks[variant] = json.loads(out.strip().splitlines()[-1])
    print(f"memory: 2 examples with 2,000-token targets, vocab {QWEN_VOCAB}, peak above the loaded model")
    for key in peaks["scorer"]:
        print(f"  {key}: scorer {peaks['scorer'][key]:.0f} MB, naive {peaks['naive'][key]:.0f} MB, "
              f"x{peaks['naive'][key] / max(peaks['scorer'][key], 1):.1f} less")


if __name__ == "__main__":
    main()
