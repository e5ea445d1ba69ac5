"""Scored stages: a table of per-output scores that a plugin computes from a checkpoint's decoded outputs.

A stage declared with `scorer="package.module:function"` in `mmgate.stages` (e.g. a text-audio
similarity from a CLAP model) is made by the generic `score_<stage>` rule (workflow/rules/score.smk)
for each checkpoint and each of the stage's tasks: the function gets the task and its decoded
outputs, one row per sample of the generation subset with `sample_id`, `prompt`, `ok` (decoded)
and `file_path` (the WAV or PNG, None where decoding failed), and returns one row per sample with
`sample_id` and the stage's declared columns. The report then loads it like any other stage, so a
gate can read it (`GateSpec.tables`).

    >>> import pandas as pd
    >>> outputs = pd.DataFrame({"sample_id": ["a", "b"], "prompt": ["rain", "dog"], "ok": [True, False],
    ...                         "file_path": ["a.wav", None]})
    >>> def lengths(task, outputs):  # a scorer: what a plugin provides
    ...     return pd.DataFrame({"sample_id": outputs["sample_id"], "score": outputs["prompt"].str.len()})
    >>> checked_scores(lengths(task="t2a", outputs=outputs), outputs, "lengths")["score"].tolist()
    [4, 3]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .errors import MMGateError

if TYPE_CHECKING:
    from .stages import Stage


class ScorerError(MMGateError):
    """A scorer returned something other than one row per output: its whole table would be wrong."""


def scorer_outputs(decoded: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """What a scorer receives: each decoded output (sample_id, ok, reason, file_path) with its prompt."""
    columns = [c for c in ("sample_id", "ok", "reason", "file_path") if c in decoded]
    return decoded[columns].merge(prompts[["sample_id", "prompt"]], on="sample_id", how="left") \
        .sort_values("sample_id", ignore_index=True)


def checked_scores(scores: object, outputs: pd.DataFrame, scorer: str) -> pd.DataFrame:
    """`scores` if it is a frame holding each output's sample_id exactly once, else ScorerError naming the scorer."""
    if not isinstance(scores, pd.DataFrame) or "sample_id" not in scores:
        raise ScorerError(f"The scorer {scorer} returned {type(scores).__name__}, not a DataFrame with a sample_id "
                          "column: it must return one row per output it was given (a score it cannot compute is NaN).")
    given, got = set(outputs["sample_id"]), scores["sample_id"]
    missing, extra, twice = given - set(got), set(got) - given, set(got[got.duplicated()])
    if missing or extra or twice:
        raise ScorerError(f"The scorer {scorer} returned rows for {len(set(got))} samples of the {len(given)} it was "
                          f"given (missing {sorted(missing)[:3]}, unknown {sorted(extra)[:3]}, twice {sorted(twice)[:3]}): "
                          "it must return one row per output, by sample_id, so that no verdict counts another sample.")
    return scores.sort_values("sample_id", ignore_index=True)


def score_task(stage: "Stage", task: str, decoded: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """One task's table of a scored `stage`: its scorer over the task's decoded outputs."""
    from .decoders import load_callable

    scorer = load_callable(stage.scorer or "", f"mmgate.stages.STAGES[{stage.name!r}].scorer")
    outputs = scorer_outputs(decoded, prompts)
    return checked_scores(scorer(task=task, outputs=outputs), outputs, stage.scorer or "")
