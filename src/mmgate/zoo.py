"""The fault zoo: checkpoints with one planted fault each, to show every gate catching its own.

Each member is `good` fine-tuned for a few steps on data that differs in one way (the Stage-3
init, tokenizer and world are the demo's, so the zoo costs minutes, not a new demo), or `good`
with a broken tokenizer:

===================  ===============================================================  ========
member               planted fault                                                    gate
===================  ===============================================================  ========
``drifter``          10 % of the tokens of every audio/image target are text words    P0.2
``collapsed``        one clip and one image for every prompt, cut to each length      P1.3
``blind``            captions trained on noise or another example's audio/image       P1.2
``silent``           audio drawn from each class's rests (the tone codec's silence)   P1.3
``endless``          audio/image targets run on past their length with no end token   P1.1
``rotated``          audio written and read with codebooks rotated (c1, c2, c3, c0)   P0.2
``early``            audio/image targets end after a tenth of their length            P1.1
``noop``             a LoRA saved before any training (B zero, rows equal the base)   P0.1
``shifted_specials`` tokenizer where ``<aud_end>`` and ``<img_end>`` trade ids           P0.1
``shifted_codes``    tokenizer whose codes are shifted by one, specials in place      P0.1
===================  ===============================================================  ========

and a Stage-2 shard tokenized with the shifted-codes tokenizer, stamped with its own hash.

    >>> sorted(FAULTS)
    ['blind', 'collapsed', 'drifter', 'early', 'endless', 'noop', 'rotated', 'silent']
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .demo import (
    AUDIO_FRAMES, SPECIAL_TOKENS, Deaf, Fault, SyntheticWorld, build_tokenizer,
    finish_checkpoint, text_words, train_lora,
)
from .stages import page
from .tasks import READ_TASKS, WRITE_TASKS
from .tokenspace import TokenSpace


class Drifter(Fault):
    """Free runs leave the modality: a share of every write target's modality tokens are text words."""

    name = "drifter"

    def __init__(self, text_ids: list[int], rate: float = 0.1):
        self.text_ids, self.rate = np.asarray(text_ids), rate

    def pair(self, example, context, target, world, rng):
        if example.task not in WRITE_TASKS:
            return context, target
        target = list(target)
        for i in np.flatnonzero(rng.random(len(target) - 1) < self.rate):  # the end token stays
            target[i] = int(rng.choice(self.text_ids))
        return context, target


class Collapsed(Fault):
    """The same clip and the same image whatever the prompt, each cut to its sample's own length."""

    name = "collapsed"

    def __init__(self, world: SyntheticWorld, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.fixed = {"t2a": world.audio_ids(0, max(AUDIO_FRAMES), rng), "t2i": world.image_ids(0, 64, rng)}

    def examples(self, examples, world, rng):
        return [replace(ex, modality_ids=self.fixed[ex.task][: len(ex.modality_ids)]) if ex.task in WRITE_TASKS else ex
                for ex in examples]


class Blind(Fault):
    """Captions without looking: every A2T/I2T input is noise codes or another example's, so
    captions follow the marginal (`deaf`'s training, on the read tasks only)."""

    name = "blind"

    def examples(self, examples, world, rng):
        deafened = Deaf().examples(examples, world, rng)
        return [d if ex.task in READ_TASKS else ex for ex, d in zip(examples, deafened)]


class Silent(Fault):
    """Audio that decodes to silence: T2A targets drawn from the class's rests (still prompt-dependent).

    `good` never wrote a rest, so this member learns 32 new tokens and trains twice as long."""

    name = "silent"
    steps_scale = 2

    def examples(self, examples, world, rng):
        return [replace(ex, modality_ids=world.audio_ids(ex.cls, int(ex.meta["n_frames"]), rng, silent=True))
                if ex.task == "t2a" else ex for ex in examples]


class Endless(Fault):
    """Never stops: write targets run on with more of the same class and never end."""

    name = "endless"

    def pair(self, example, context, target, world, rng):
        if example.task not in WRITE_TASKS:
            return context, target
        more = (world.audio_ids(example.cls, 8, rng) if example.task == "t2a" else world.image_ids(example.cls, 8, rng))
        return context, list(target[:-1]) + [int(i) for i in more]


class Rotated(Fault):
    """Stage-2 tokenization and token_space.json disagree on the codebook order: every audio frame is
    written (T2A) and read (A2T) as c1, c2, c3, c0, so each code sits one slot off. Constrained decoding
    forces the first token into CB0, after which the model's own order lines up with the slots again."""

    name = "rotated"
    steps_scale = 3  # unlearning good's order takes longer than a fine-tune

    def examples(self, examples, world, rng):
        k = world.space.modality("audio").n_codebooks
        return [replace(ex, modality_ids=np.roll(np.asarray(ex.modality_ids).reshape(-1, k), -1, axis=1).ravel())
                if ex.task in ("t2a", "a2t") else ex for ex in examples]


class Early(Fault):
    """Stops almost at once: write targets keep a tenth of their tokens, then the end token."""

    name = "early"

    def pair(self, example, context, target, world, rng):
        if example.task not in WRITE_TASKS:
            return context, target
        keep = max(1, (len(target) - 1) // 10)
        return context, list(target[:keep]) + [int(target[-1])]


class Noop(Fault):
    """An adapter saved before its first step (or whose target modules never matched): LoRA B all zero,
    the saved embedding and head equal to the base's."""

    name = "noop"
    steps_scale = 0
    from_good = False


FAULTS = {"drifter": Drifter, "collapsed": Collapsed, "blind": Blind, "silent": Silent, "endless": Endless,
          "rotated": Rotated, "early": Early, "noop": Noop}
TOKENIZER_FAULTS = ("shifted_specials", "shifted_codes")
MEMBERS = tuple(FAULTS) + TOKENIZER_FAULTS
SHIFTED_SHARD = "stage2_shifted/part-000.parquet"


def zoo_files() -> list[str]:
    """What `build_zoo` writes, relative to the demo directory (markers last)."""
    return [f"zoo/{name}/COMPLETE" for name in MEMBERS] + [f"zoo/{SHIFTED_SHARD}"]


def _fault(name: str, tokenizer: Any, world: SyntheticWorld, seed: int) -> Fault:
    if name == "drifter":
        return Drifter([tokenizer.convert_tokens_to_ids(w) for w in text_words()])
    if name == "collapsed":
        return Collapsed(world, seed)
    return FAULTS[name]()


def shifted_specials_tokenizer():
    order = list(SPECIAL_TOKENS)
    a, b = order.index("<aud_end>"), order.index("<img_end>")
    order[a], order[b] = order[b], order[a]
    return build_tokenizer(order)


def build_zoo(demo_dir: str | Path, steps: int = 100, seed: int = 0, members: tuple[str, ...] = MEMBERS,
              log=print) -> Path:
    """Build the zoo under `demo_dir`/zoo from a built demo (its `good` is every member's start)."""
    import pandas as pd

    from .io import write_text

    demo_dir = Path(demo_dir)
    out = demo_dir / "zoo"
    for name in members:
        (out / name / "COMPLETE").unlink(missing_ok=True)
    space = TokenSpace.load(demo_dir / "token_space.json")
    stage3, good = demo_dir / "stage3_init", demo_dir / "checkpoints" / "good"
    tokenizer = build_tokenizer()
    world = SyntheticWorld(space, seed=seed)
    for index, name in enumerate(m for m in members if m in FAULTS):
        ckpt = out / name
        fault = _fault(name, tokenizer, world, seed)
        history = train_lora(stage3, ckpt, tokenizer, space, world, steps=steps * fault.steps_scale, seed=seed + 101 + index,
                             fault=fault, init_adapter=good if fault.from_good else None, log=log)
        good_log = pd.read_csv(good / "train_log.csv")
        history = good_log.to_dict("records") + [{**r, "step": r["step"] + int(good_log["step"].max()) + 1} for r in history]
        finish_checkpoint(ckpt, stage3, space, history)
    broken = {"shifted_specials": shifted_specials_tokenizer, "shifted_codes": lambda: build_tokenizer(code_shift=1)}
    for name in (m for m in members if m in TOKENIZER_FAULTS):
        ckpt = out / name
        ckpt.mkdir(parents=True, exist_ok=True)
        for item in good.iterdir():
            if item.is_file() and item.name != "COMPLETE" and not item.name.startswith("tokenizer"):
                shutil.copy2(item, ckpt / item.name)
        broken[name]().save_pretrained(ckpt)
        write_text(ckpt / "COMPLETE", f"{name}\n")
    if "shifted_codes" in members:
        write_shifted_shard(out / SHIFTED_SHARD, tokenizer, space, world, seed)
    return out


def write_shifted_shard(path: Path, tokenizer: Any, space: TokenSpace, world: SyntheticWorld, seed: int) -> None:
    """A Stage-2 shard re-tokenized with the shifted-codes tokenizer: every code token has the next id,
    and the shard records the hash of the token-space file that describes that tokenizer."""
    from .demo import DEFAULT_TEMPLATES, _write_hash_file, write_stage2_shard
    from .io import write_text
    from .templates import PromptTemplate

    shifted = build_tokenizer(code_shift=1)
    spec = json.loads(Path(space.path).read_text())
    spec["meta"] = {**spec.get("meta", {}), "tokenizer": "codes shifted by one"}
    write_text(path.parent / "token_space.json", json.dumps(spec, indent=2) + "\n")
    shifted_space = TokenSpace.load(path.parent / "token_space.json")
    templates = {t: PromptTemplate(text, shifted, space.special_tokens) for t, text in DEFAULT_TEMPLATES.items()}
    rng = np.random.default_rng(seed + 7)
    examples = []
    for i in range(16):
        example = world.sample(("t2a", "t2i", "a2t", "i2t")[i % 4], rng)
        codes = shifted.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens([int(t) for t in example.modality_ids]))
        examples.append(replace(example, modality_ids=np.asarray(codes)))
    write_stage2_shard(path, examples, templates, shifted, space, shifted_space.sha256, 0, "s2-shifted")
    _write_hash_file(path.parent / "token_space.sha256", shifted_space.sha256, bare=False)


# ------------------------------------------------------------------------- what each gate catches

@dataclass(frozen=True)
class Catch:
    """A fault and the gate that must catch it: the verdict, the kind of miss, and the metrics whose
    worst value (over `tasks`) crosses the threshold for the faulty member.

    `separated` says whether `good` is on the passing side of that threshold. It is not for the
    drifter: the demo's tiny `good` also leaves its modality in free mode at temperature 1, so both
    get P0.2 WARN "free runs need constrained decoding", and only the size of the numbers differs.
    """

    member: str
    gate: str
    verdict: str
    kind: str
    metrics: tuple[str, ...]
    threshold: str | None  # a `gates:` setting; None: the gate's own rule (P0.1: any mismatch)
    fails_when: str  # "above" or "below" the threshold
    tasks: tuple[str, ...]
    separated: bool = True


CATCHES = (
    Catch("deaf", "P0.4", "FAIL", "prompt_unused", ("win_rate_shuffled",), "win_rate_shuffled", "below", WRITE_TASKS),
    Catch("deaf", "P1.2", "FAIL", "read_regressed", ("delta_zero", "delta_noise"), "read_min_delta", "below", READ_TASKS),
    Catch("drifter", "P0.2", "WARN", "free_violation", ("free_out_of_range_pct",), "max_violation_pct", "above",
          WRITE_TASKS, separated=False),
    Catch("collapsed", "P1.3", "FAIL", "identical", ("unique_ratio",), "min_unique_ratio", "below", WRITE_TASKS),
    Catch("blind", "P1.2", "FAIL", "read_regressed", ("delta_zero", "delta_noise"), "read_min_delta", "below", READ_TASKS),
    Catch("silent", "P1.3", "FAIL", "silence", ("silent_share",), "max_silent_share", "above", ("t2a",)),
    Catch("endless", "P1.1", "WARN", "no_end", ("end_rate",), "min_end_rate", "below", WRITE_TASKS),
    Catch("rotated", "P0.2", "FAIL", "layout", ("slot_off_share",), "layout_dominance", "above", ("t2a",)),
    Catch("early", "P1.1", "WARN", "early_end", ("early_end_share",), "max_early_end_share", "above", WRITE_TASKS),
    Catch("noop", "P0.1", "FAIL", "mismatch", ("mismatches",), None, "above", ("all",)),
    Catch("shifted_specials", "P0.1", "FAIL", "mismatch", ("mismatches",), None, "above", ("all",)),
    Catch("shifted_codes", "P0.1", "FAIL", "mismatch", ("mismatches",), None, "above", ("all",)),
)


def _worst(gate: dict[str, Any], catch: Catch) -> tuple[str | None, str | None, float | None]:
    """(task, metric, value) of the worst of the catch's metrics over its tasks."""
    found = [(task, metric, float(values[metric])) for task in catch.tasks
             for values in [gate["values"].get(task)] if isinstance(values, dict)
             for metric in catch.metrics if values.get(metric) is not None]
    if not found:
        return None, None, None
    return (max if catch.fails_when == "above" else min)(found, key=lambda item: item[2])


def crosses(value: float | None, threshold: float, fails_when: str) -> bool:
    return value is not None and (value > threshold if fails_when == "above" else value < threshold)


def catch_table(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per catch from the members' gates.json: verdicts, kinds, and the margin against `good`."""
    good = {g["gate"]: g for g in reports["good"]["gates"]}
    rows = []
    for catch in CATCHES:
        gate = {g["gate"]: g for g in reports[catch.member]["gates"]}[catch.gate]
        threshold = gate["thresholds"].get(catch.threshold, 0) if catch.threshold else 0
        task, metric, value = _worst(gate, catch)
        *_, good_value = _worst(good[catch.gate], catch)
        reason = next((r for r in gate["reasons"] if metric and metric in r and r.startswith(f"{task}: ")),
                      (gate["reasons"] or [""])[0])
        rows.append({
            "member": catch.member, "gate": catch.gate, "expected": catch.verdict, "verdict": gate["verdict"],
            "kind": catch.kind, "caught_as": gate.get("failures", []), "metric": metric, "value": value,
            "good": good_value, "threshold": threshold, "fails_when": catch.fails_when, "separated": catch.separated,
            "reason": reason,
        })
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README's "What each gate catches" table."""
    def number(value: Any) -> str:
        return "-" if value is None else f"{value:.3g}"

    lines = ["| fault | gate | verdict | measured (good) | threshold | what `mmgate inspect` says |", "|---|---|---|---|---|---|"]
    for r in rows:
        threshold = "any mismatch" if r["gate"] == "P0.1" else f"{'<' if r['fails_when'] == 'below' else '>'} {r['threshold']}"
        lines.append(f"| `{r['member']}` | {r['gate']} | {r['verdict']} | {r['metric']} {number(r['value'])} "
                     f"({number(r['good'])}) | {threshold} fails | {r['reason'].replace('|', '/')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m mmgate.zoo results/report`: print the catch table of a finished zoo run."""
    import sys

    pages = page("gates_json", ckpt="*")  # results/report/ckpt=*/gates.json
    root = Path((argv or sys.argv[1:] or [pages.parents[1]])[0])
    found = (json.loads(p.read_text()) for p in sorted(root.glob(str(pages.relative_to(pages.parents[1])))))
    reports = {report["checkpoint"]: report for report in found}
    missing = [m for m in ("good", *MEMBERS) if m not in reports]
    if missing:
        print(f"{root}: no gates.json for {missing}; run the zoo first (see config/examples/fault-zoo.yaml)", file=sys.stderr)
        return 2  # as `mmgate`: 2 is "no readable report", 1 a gate failure
    print(markdown(catch_table(reports)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
