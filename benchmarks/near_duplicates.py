"""Near-duplicate search across prompts (P1.3): the pairwise loops it replaced vs the vectorised search.

Times `fingerprint.collapse` (token agreement over the common prefix, image hash distances,
waveform correlation over the shared duration, then the groups) on demo-like outputs: T2A with 6-32
audio frames of 4 codebooks and their waveforms at 8 kHz, T2I with 16-64 image tokens and 64-bit
perceptual hashes, a tenth of them copies or truncated copies of others. The old loops are the
ones `src/mmgate/fingerprint.py` had at commit 2a6c947 (read with `git show`: run it in the git
checkout). At large N they take minutes, so they run on a subsample and their time is
extrapolated as N^2 (each is a loop over pairs or rows of pairs), which the output says. Checks that both give the same columns where both ran in full.

    python benchmarks/near_duplicates.py [--sizes 256 4096] [--old-max 512] [--before 2a6c947]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd

import mmgate.fingerprint as fp
from _machine import machine_line


REPO = Path(__file__).resolve().parents[1]
BEFORE = "2a6c947"  # the last commit with the pairwise loops


def old_module(rev: str):
    """src/mmgate/fingerprint.py as it was at `rev` (read with `git show`), imported inside the mmgate package."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:src/mmgate/fingerprint.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("mmgate._fingerprint_before")
    module.__package__ = "mmgate"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:src/mmgate/fingerprint.py", "exec"), module.__dict__)
    return module


NAMES = ("prefix_agreement", "hash_distances", "waveform_correlation")
NEW = {name: getattr(fp, name) for name in NAMES}


def outputs(kind: str, n: int, seed: int = 0):
    """(frame, tokens, waveforms) like one checkpoint's decoded T2A or T2I outputs."""
    rng = np.random.default_rng(seed)
    if kind == "t2a":
        frames = rng.integers(6, 33, n)
        tokens = [rng.integers(0, 1024, 4 * f) for f in frames]
        waves = [rng.standard_normal(f * 320 // 3).astype(np.float32) for f in frames]  # 24 kHz hop 320 -> 8 kHz
    else:
        tokens = [rng.integers(0, 512, rng.choice([16, 36, 64])) for _ in range(n)]
        waves = None
    for _ in range(n // 10):  # copies and truncated copies: near-duplicates and ties
        i, j = rng.integers(0, n, 2)
        cut = int(rng.integers(len(tokens[j]) // 2, len(tokens[j]) + 1)) // 4 * 4
        tokens[i] = tokens[j][:cut].copy()
        if waves is not None:
            waves[i] = waves[j][: max(256, cut // 4 * 320 // 3)].copy()
    frame = pd.DataFrame({"sample_id": [f"{kind}-{i:05d}" for i in range(n)], "silent": False, "noise": False,
                          "longest_loop_frames": 0})
    if kind == "t2i":
        base = rng.integers(0, 2**63, max(1, n // 4))
        frame["phash"] = [f"{int(base[rng.integers(0, base.size)]) ^ (1 << int(rng.integers(0, 64))):016x}" for _ in range(n)]
    return frame, tokens, waves


def timed_collapse(impl, frame, tokens, waves):
    for name, function in impl.items():
        setattr(fp, name, function)
    try:
        start = time.perf_counter()
        result = fp.collapse(frame, tokens, fp.FingerprintSettings(), waves)
        return time.perf_counter() - start, result
    finally:
        for name, function in NEW.items():
            setattr(fp, name, function)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--old-max", type=int, default=512, help="largest N the old loops run on in full")
    parser.add_argument("--before", default=BEFORE, help="git revision whose loops are timed as the old ones")
    args = parser.parse_args()
    old = old_module(args.before)
    before = {name: getattr(old, name) for name in NAMES}
    print(machine_line(f"numpy {np.__version__}"))
    for kind in ("t2a", "t2i"):  # imports (scipy.sparse, imagehash) are not part of the search
        timed_collapse(NEW, *outputs(kind, 8))
        timed_collapse(before, *outputs(kind, 8))
    print(f"{'task':5} {'N':>6} {'old loop s':>12} {'vectorised s':>13} {'speedup':>8}  same columns")
    for kind in ("t2a", "t2i"):
        for n in args.sizes:
            frame, tokens, waves = outputs(kind, n)
            new_s, (new_frame, new_summary) = timed_collapse(NEW, frame, tokens, waves)
            if n <= args.old_max:
                old_s, (old_frame, old_summary) = timed_collapse(before, frame, tokens, waves)
                same = "yes" if new_frame[["duplicate_of", "near_duplicate"]].equals(
                    old_frame[["duplicate_of", "near_duplicate"]]) and new_summary == old_summary else "NO"
                old_text = f"{old_s:12.3f}"
            else:
                m = args.old_max
                sub_s, _ = timed_collapse(before, frame.iloc[:m].reset_index(drop=True), tokens[:m],
                                          None if waves is None else waves[:m])
                old_s = sub_s * (n / m) ** 2
                same = f"n/a (old timed at N={m}, x{(n / m) ** 2:.0f} for N^2)"
                old_text = f"~{old_s:11.1f}"
            print(f"{kind:5} {n:6d} {old_text} {new_s:13.3f} {old_s / new_s:7.1f}x  {same}")


if __name__ == "__main__":
    main()
