"""Teacher-forced ablation: does the model use the prompt (P0.4) and the modality it reads (P1.2)?

Each example is scored, as mean cross-entropy over its target span only, under its correct
conditioning input and under broken ones:

- write tasks (T2A, T2I; target = modality tokens + end token): ``shuffled`` (another example's
  prompt, a derangement that never keeps an example's own prompt or an identical text) and
  ``empty`` (a neutral prompt, keeping at least one token before the target);
- read tasks (A2T, I2T; target = caption + eos): ``shuffled`` (another example's modality tokens),
  ``zero`` (code 0 of each token's own codebook) and ``noise`` (uniform codes, each in its slot).

Logits are computed only at the positions that predict a target token, and the softmax runs in
float32 over chunks of those positions, so memory does not grow with vocab x sequence length.
They are the model's own logits: the family's processing after the head applies
(`mmgate.heads`), and a model whose head path failed its check against `forward` is scored with
the whole forward instead.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from .errors import MMGateError
from .heads import head_path
from .settings import FromConfig
from .tasks import CONDITION_TABLE, CORRECT, EMPTY, NOISE, READ_TASKS, SHUFFLED, TASK_CONDITIONS, WRITE_TASKS, ZERO
from .templates import PromptTemplate
from .tokenspace import TokenSpace

if TYPE_CHECKING:
    from .progress import Progress
    from .shardjob import ShardJob

CONDITIONS = TASK_CONDITIONS  # per task, the names of the conditions it is scored under (mmgate.tasks)
DISTINCT = frozenset(c.name for c in CONDITION_TABLE if c.distinct)  # inputs that may never equal the correct one


class AblationIntegrityError(MMGateError):
    """An ablated input equals the correct one, or targets differ between conditions."""


def ids_hash(ids: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def derangement(keys: Sequence[Any], seed: int) -> np.ndarray:
    """A permutation `perm` with `keys[perm[i]] != keys[i]` for every i (so never `perm[i] == i`).

    Identical keys are grouped and every index is sent `m` places further along a random order of
    the groups, `m` being the largest group's size: no index lands in its own group. Impossible
    when one key holds more than half of the examples.
    """
    n = len(keys)
    if n < 2:
        raise AblationIntegrityError(f"cannot shuffle {n} example(s): the shuffled condition needs at least 2 distinct inputs")
    rng = np.random.default_rng(seed)
    groups: dict[Any, list[int]] = {}
    for index in rng.permutation(n):
        groups.setdefault(keys[index], []).append(int(index))
    largest = max(map(len, groups.values()))
    if largest > n / 2:
        raise AblationIntegrityError(
            f"cannot shuffle: one input is shared by {largest} of {n} examples, so some example would keep an "
            "identical input. Make the golden set's prompts (or modality inputs) more varied."
        )
    order = [i for key in rng.permutation(len(groups)) for i in list(groups.values())[key]]
    perm = np.empty(n, dtype=np.int64)
    for k, index in enumerate(order):
        perm[index] = order[(k + largest) % n]
    return perm


@dataclass(frozen=True)
class Scored:
    context: list[int]
    target: list[int]


def build_conditions(rows: pd.DataFrame, task: str, template: PromptTemplate, tokenizer: Any, space: TokenSpace,
                     seed: int = 0, neutral_prompt: str = "") -> dict[str, list[Scored]]:
    """Inputs of every condition for the task's rows, in row order. `rows` must be the task's whole
    golden set (the shuffle draws partners from all of it); shard afterwards."""
    modality = space.modality_for_task(task)
    rows = rows.reset_index(drop=True)
    out: dict[str, list[Scored]] = {c: [] for c in CONDITIONS[task]}
    if task in WRITE_TASKS:
        prompts = rows["prompt"].tolist()
        perm = derangement(prompts, seed)
        for i, row in enumerate(rows.itertuples()):
            target = [int(t) for t in row.modality_tokens] + [modality.end_id]
            out[CORRECT].append(Scored(template.encode(prompt=row.prompt), target))
            out[SHUFFLED].append(Scored(template.encode(prompt=prompts[perm[i]]), target))
            out[EMPTY].append(Scored(template.encode(prompt=neutral_prompt), target))
    elif task in READ_TASKS:
        tokens = [np.asarray(t, dtype=np.int64) for t in rows["modality_tokens"]]
        perm = derangement([t.tobytes() for t in tokens], seed)
        rng = np.random.default_rng(seed + 1)
        for i, row in enumerate(rows.itertuples()):
            target = [int(t) for t in tokenizer.encode(" " + row.caption, add_special_tokens=False)]
            target.append(int(tokenizer.eos_token_id))
            slots = modality.slot_of_id(tokens[i])
            zero = modality.range_starts[slots]
            noise = zero + rng.integers(modality.codebook_size, size=slots.size)
            for condition, ids in ((CORRECT, tokens[i]), (SHUFFLED, tokens[perm[i]]), (ZERO, zero), (NOISE, noise)):
                out[condition].append(Scored(template.encode(modality_ids=ids), target))
    else:
        raise ValueError(f"unknown task {task!r}")
    unbuilt = [condition for condition, scored in out.items() if len(scored) != len(rows)]
    if unbuilt:
        raise MMGateError(f"mmgate.tasks declares condition(s) {unbuilt} for {task}, but ablation.build_conditions builds "
                          "no input for them: add how each is built there.")
    for scored in out.values():
        for item in scored:
            if not item.context:
                raise AblationIntegrityError(
                    f"templates.{task} renders to no token before the target for some condition; the model needs "
                    "at least one context token (add {bos} or text before the target)."
                )
    return out


def check_integrity(frame: pd.DataFrame) -> None:
    """Fail when an ablated input equals the correct one or targets differ between conditions."""
    correct = frame[frame["condition"] == CORRECT].set_index("sample_id")
    problems = []
    for condition, part in frame[frame["condition"] != CORRECT].groupby("condition"):
        part = part.set_index("sample_id")
        same_input = part.index[part["input_hash"] == correct.loc[part.index, "input_hash"]]
        if len(same_input) and condition in DISTINCT:
            problems.append(f"{condition}: {len(same_input)} example(s) get exactly the correct input, e.g. {list(same_input[:3])}")
        other_target = part.index[part["target_hash"] != correct.loc[part.index, "target_hash"]]
        if len(other_target):
            problems.append(f"{condition}: {len(other_target)} example(s) have a different target, e.g. {list(other_target[:3])}")
    if problems:
        raise AblationIntegrityError(
            "Ablation integrity check failed, so its losses would not measure what they claim (the checklist's first "
            "suspect when ablation looks weak: caching or a format bug feeding the correct input):\n  - "
            + "\n  - ".join(problems)
        )


def target_losses(model: Any, items: Sequence[Scored], pad_id: int, chunk_tokens: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Mean NLL over each item's target span (and its token count), in one padded forward pass.

    Right padding keeps every real token at the position it has when scored alone. Only the
    hidden states that predict a target token go through the output head, `chunk_tokens` rows at
    a time, with the log-softmax in float32.
    """
    import torch

    path = head_path(model)
    path.require_usable()
    decoder, head = path.body, path.head
    # with a device_map the body starts on one GPU and the head may sit on another
    input_device = model.get_input_embeddings().weight.device
    device = head.weight.device if hasattr(head, "weight") else input_device
    length = max(len(it.context) + len(it.target) for it in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    rows, cols, targets = [], [], []
    for b, it in enumerate(items):
        seq = it.context + it.target
        input_ids[b, : len(seq)] = torch.tensor(seq)
        attention[b, : len(seq)] = 1
        start = len(it.context)
        rows += [b] * len(it.target)
        cols += range(start - 1, start - 1 + len(it.target))  # position p predicts token p + 1
        targets += it.target
    with torch.inference_mode():
        inputs = {"input_ids": input_ids.to(input_device), "attention_mask": attention.to(input_device)}
        # the head path where it gives the model's own logits (checked at load), else the whole forward
        hidden = (decoder if path.exact else model)(**inputs)
        hidden = hidden.last_hidden_state if path.exact else hidden.logits
        picked = hidden[torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device)].to(device)  # [N, H | V]
        target_ids = torch.tensor(targets, device=device)
        nll = torch.empty(len(targets), dtype=torch.float32, device=device)
        for start in range(0, len(targets), chunk_tokens):
            chunk = picked[start : start + chunk_tokens]
            logits = (path.logits(chunk) if path.exact else chunk).float()  # [chunk, V]
            nll[start : start + chunk_tokens] = torch.nn.functional.cross_entropy(
                logits, target_ids[start : start + chunk_tokens], reduction="none")
        owner = torch.tensor(rows, device=device)
        total = torch.zeros(len(items), dtype=torch.float32, device=device).index_add_(0, owner, nll)
        counts = torch.bincount(owner, minlength=len(items)).float()
    return (total / counts).cpu().numpy(), counts.cpu().numpy().astype(np.int64)


def score_conditions(model: Any, conditions: dict[str, list[Scored]], sample_ids: Sequence[str], pad_id: int,
                     batch_size: int = 16, chunk_tokens: int = 1024, progress: "Progress | None" = None) -> pd.DataFrame:
    """Long-form table: one row per (sample, condition) with its loss and input/target hashes; `progress`
    counts the scored sequences (a sample under one condition) of each batch."""
    records = []
    for condition, items in conditions.items():
        order = np.argsort([len(it.context) + len(it.target) for it in items], kind="stable")  # little padding
        for start in range(0, len(items), batch_size):
            chunk = [items[i] for i in order[start : start + batch_size]]
            losses, counts = target_losses(model, chunk, pad_id, chunk_tokens)
            if progress is not None:
                progress.update(len(chunk))
            for i, it, loss, count in zip(order[start : start + batch_size], chunk, losses, counts):
                records.append({
                    "sample_id": sample_ids[i], "condition": condition, "loss": float(loss),
                    "n_target_tokens": int(count), "input_hash": ids_hash(it.context + it.target),
                    "target_hash": ids_hash(it.target), "n_context_tokens": len(it.context),
                    "reason": None if math.isfinite(loss) else "non-finite loss",
                })
    frame = pd.DataFrame(records).sort_values(["sample_id", "condition"], kind="stable").reset_index(drop=True)
    check_integrity(frame)
    return frame


def _bootstrap_mean(values: np.ndarray, rng: np.random.Generator, reps: int) -> tuple[float, float]:
    """95 % percentile interval of the mean over examples resampled with replacement."""
    if not len(values):
        return math.nan, math.nan
    means = values[rng.integers(len(values), size=(reps, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarize(frame: pd.DataFrame, task: str, min_n: int = 256, bootstrap_reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per ablated condition: mean losses, delta, win rate (correct lower), 95 % bootstrap CIs, sign test."""
    from scipy.stats import binomtest

    from .gates import wilson_interval

    rng = np.random.default_rng(seed)
    wide = frame.pivot(index="sample_id", columns="condition", values="loss")
    wide = wide[np.isfinite(wide).all(axis=1)]  # a NaN row (reason set) is left out of every statistic
    out = []
    for condition in [c for c in CONDITIONS[task] if c != CORRECT and c in wide]:
        correct, ablated = wide[CORRECT].to_numpy(), wide[condition].to_numpy()
        delta = ablated - correct
        wins, losses = int((delta > 0).sum()), int((delta < 0).sum())
        n = len(delta)
        delta_ci = _bootstrap_mean(delta, rng, bootstrap_reps)
        win_ci = wilson_interval(wins, n)  # a bootstrap of a proportion collapses to [1, 1] at 100 % wins
        out.append({
            "condition": condition, "n": n,
            "mean_loss_correct": float(correct.mean()) if n else math.nan,
            "mean_loss": float(ablated.mean()) if n else math.nan,
            "delta": float(delta.mean()) if n else math.nan,
            "delta_ci_low": delta_ci[0], "delta_ci_high": delta_ci[1],
            "win_rate": wins / n if n else math.nan,
            "win_rate_ci_low": win_ci[0] if n else math.nan, "win_rate_ci_high": win_ci[1] if n else math.nan,
            "ties": n - wins - losses,
            "sign_test_p": float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else math.nan,
            "warning": f"N = {n} < {min_n}: win rates and deltas are noisy" if n < min_n else None,
        })
    return pd.DataFrame(out)


@dataclass(frozen=True)
class AblationSettings(FromConfig):
    section = "ablation"
    batch_size: int = 16
    chunk_tokens: int = 1024
    seed: int = 0
    neutral_prompt: str = ""
    bootstrap_reps: int = 2000


def ablate_shard(job: "ShardJob", settings: AblationSettings, loaded: tuple[Any, Any, str] | None = None,
                 progress: "Progress | None" = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score every condition for the job's shard with `loaded` (model, tokenizer, device), else load
    the checkpoint; returns (long-form rows, parquet metadata). `progress` counts scored sequences
    (`sequences(job)` of them).

    The conditions are built over the task's whole golden set (the shuffle draws partners from all
    of it, so a sample's shuffled prompt does not depend on how the set is sharded), then cut to the shard.
    """
    from dataclasses import asdict

    from .loading import pad_id

    model, tokenizer, template, device = job.load(loaded)
    rows = job.task_rows
    everything = build_conditions(rows, job.task, template, tokenizer, job.space, settings.seed, settings.neutral_prompt)
    wanted = set(job.rows["sample_id"])
    keep = [i for i, sid in enumerate(rows["sample_id"]) if sid in wanted]
    conditions = {c: [items[i] for i in keep] for c, items in everything.items()}
    frame = score_conditions(model, conditions, rows["sample_id"].iloc[keep].tolist(), pad_id(tokenizer, job.modality.end_id),
                             settings.batch_size, settings.chunk_tokens, progress)
    return frame, job.provenance("ablate", **job.model_meta(device, model), settings=asdict(settings))


def sequences(job: "ShardJob") -> int:
    """How many sequences `ablate_shard` scores for the job: each of its samples under every condition."""
    return len(job.rows) * len(CONDITIONS[job.task])
