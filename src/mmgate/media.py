"""Which generated outputs a report shows: problems first, then a seeded random sample.

A reader opens the media to see *why* a gate failed, so the outputs with a problem come first
(decode failures with their reason, identical outputs beside the one they copy, silent, noise-like
and looping clips, outputs shorter than expected), and then a random sample, seeded so that two
renders of one checkpoint show the same outputs. Each item carries its prompt, expected and
generated lengths and its fingerprint flags.

    >>> import pandas as pd
    >>> decode = pd.DataFrame({"sample_id": ["a", "b", "c"], "ok": [True, False, True],
    ...                        "reason": [None, "too short: 3 < 4 tokens", None], "file_path": ["a.wav", None, "c.wav"]})
    >>> [(item["sample_id"], item["flags"]) for item in select_media("t2a", decode, n_random=1)]
    [('b', ['decode failed: too short: 3 < 4 tokens']), ('a', [])]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# problem flags in the order a reader should see them
SEVERITY = ("decode failed", "identical to", "silent", "noise-like", "loops", "near-duplicate", "stopped at")


def _rank(flags: list[str]) -> int:
    return min((i for i, prefix in enumerate(SEVERITY) for f in flags if f.startswith(prefix)), default=len(SEVERITY))


def _by_id(frame: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    if frame is None or len(frame) == 0:
        return {}
    return {str(row["sample_id"]): row for row in frame.to_dict("records")}


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and np.isnan(value))


def sample_flags(decoded: dict[str, Any], printed: dict[str, Any], generated: dict[str, Any], kind: str,
                 loop_frames: int) -> list[str]:
    """Every problem of one output, worst first, each a short phrase with its number."""
    flags = []
    if not decoded.get("ok", True):
        flags.append(f"decode failed: {decoded.get('reason') or 'no reason recorded'}")
    if _present(printed.get("duplicate_of")):
        flags.append(f"identical to {printed['duplicate_of']}")
    if printed.get("silent") is True:
        flags.append("silent")
    if printed.get("noise") is True:
        flags.append("noise-like (flat spectrum)")
    loop = printed.get("longest_loop_frames")
    if kind == "audio" and _present(loop) and loop >= loop_frames:  # P1.3 judges loops in audio only
        flags.append(f"loops for {int(loop)} frames")
    if printed.get("near_duplicate") is True and not _present(printed.get("duplicate_of")):
        flags.append("near-duplicate of another output")
    n, expected = generated.get("n_generated"), generated.get("expected_len")
    if _present(n) and _present(expected) and n < expected:
        flags.append(f"stopped at {int(n)} of {int(expected)} tokens")
    return sorted(flags, key=lambda f: _rank([f]))


def select_media(task: str, decode: pd.DataFrame, fingerprint: pd.DataFrame | None = None,
                 generate: pd.DataFrame | None = None, prompts: pd.DataFrame | None = None, kind: str = "audio",
                 loop_frames: int = 8, max_problems: int = 12, n_random: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Up to `max_problems` outputs with a problem (worst first), then `n_random` others at random.

    `decode`: the task's decode table (sample_id, ok, reason, file_path); `fingerprint`, `generate`
    (both modes; the constrained run is the decoded one) and `prompts` (golden sample_id, prompt,
    caption) add what each item says about itself.
    """
    generate = generate if generate is not None else pd.DataFrame()
    modes = generate["mode"] if "mode" in generate else pd.Series(dtype=str)
    constrained = _by_id(generate[modes == "constrained"] if len(generate) else None)
    free = _by_id(generate[modes == "free"] if len(generate) else None)
    printed, asked = _by_id(fingerprint), _by_id(prompts)
    decoded = _by_id(decode)
    items = []
    for sample_id, row in decoded.items():
        flags = sample_flags(row, printed.get(sample_id, {}), constrained.get(sample_id, {}), kind, loop_frames)
        duplicate = printed.get(sample_id, {}).get("duplicate_of")
        items.append({
            "sample_id": sample_id, "task": task, "kind": kind, "flags": flags,
            "prompt": (asked.get(sample_id, {}).get("prompt") or asked.get(sample_id, {}).get("caption") or ""),
            "file_path": row.get("file_path") if row.get("ok", True) else None,
            "reason": row.get("reason"),
            "expected_len": constrained.get(sample_id, {}).get("expected_len"),
            "n_generated": constrained.get(sample_id, {}).get("n_generated"),
            "free": free.get(sample_id),
            "pair": decoded.get(str(duplicate)) if _present(duplicate) else None,
            "duration": row.get("duration"), "width": row.get("width"), "height": row.get("height"),
        })
    problems = sorted((i for i in items if i["flags"]), key=lambda i: (_rank(i["flags"]), i["sample_id"]))
    for item in problems:
        item["problems_in_task"] = len(problems)
    problems = problems[:max_problems]
    chosen = {i["sample_id"] for i in problems}
    rest = sorted((i for i in items if i["sample_id"] not in chosen), key=lambda i: i["sample_id"])
    picks = np.random.default_rng(seed).permutation(len(rest))[:n_random] if rest else []
    return problems + [rest[i] for i in sorted(picks)]


def length_line(item: dict[str, Any]) -> str:
    """"expected 64 tokens, generated 64; free run ended at 40" for a media caption."""
    parts = []
    if _present(item.get("expected_len")):
        parts.append(f"expected {int(item['expected_len'])} tokens, constrained run wrote {int(item['n_generated'])}")
    free = item.get("free")
    if free:
        ended = free.get("emitted_end") is True or free.get("emitted_end") == 1
        parts.append(f"free run ended at token {int(free['end_position'])}" if ended and _present(free.get("end_position"))
                     else "free run never ended")
    return "; ".join(parts)
