"""One shard of one task of one checkpoint, as the generate, ablate and decode jobs see it.

The three jobs used to unpack the Snakemake job each in its own way (and drifted: the pad id fell
back to the end token in one, to 0 in the other). Building a `ShardJob` once from the job gives
them the same golden rows, template, model settings and provenance.

Example (outside Snakemake, e.g. in a notebook):

    >>> from mmgate.shardjob import ShardJob
    >>> job = ShardJob.from_files("resources/demo/token_space.json", "resources/demo/golden.parquet",
    ...                           checkpoint="good", task="t2a", shard=0, samples_per_shard=64)  # doctest: +SKIP
    >>> job.rows["sample_id"].iloc[0]  # doctest: +SKIP
    't2a-0000'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from .golden import load_golden, task_shard
from .tokenspace import Modality, TokenSpace


@dataclass(frozen=True)
class ShardJob:
    space: TokenSpace
    golden: pd.DataFrame  # the whole validated golden set: the ablation shuffle draws from all of a task
    checkpoint: str
    task: str
    shard: int
    samples_per_shard: int
    ckpt_dir: str | None = None
    template_text: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    samples_per_task: int | None = None  # generate/decode jobs: the task's generation subset

    @classmethod
    def from_files(cls, token_space: str | Path, golden: str | Path, task_modalities: dict[str, str] | None = None,
                   **fields: Any) -> "ShardJob":
        space = TokenSpace.load(token_space, task_modalities)
        return cls(space=space, golden=load_golden(golden, space), **fields)

    @classmethod
    def from_snakemake(cls, smk: Any, task: str | None = None, shard: int | None = None) -> "ShardJob":
        """From a generate, ablate or decode job (a block job names the `task` and `shard` its
        wildcards do not): refuses to run when its checkpoint failed P0.1."""
        from .tokencheck import require_p01

        check = getattr(smk.input, "check", [])  # present only when P0.1 failed
        for path in [check] if isinstance(check, str) else check:
            require_p01(path)
        wildcards = smk.wildcards
        params = smk.params
        return cls.from_files(
            smk.input.token_space, smk.input.golden, getattr(params, "task_modalities", None),
            checkpoint=wildcards.ckpt,
            task=task or getattr(wildcards, "write_task", None) or wildcards.task,
            shard=int(wildcards.shard) if shard is None else shard,
            samples_per_shard=int(params.samples_per_shard),
            ckpt_dir=getattr(params, "ckpt_dir", None),
            template_text=getattr(params, "template", None),
            model_config=dict(getattr(params, "model", None) or {}),
            samples_per_task=getattr(params, "samples_per_task", None),
        )

    @property
    def modality(self) -> Modality:
        return self.space.modality_for_task(self.task)

    @cached_property
    def task_rows(self) -> pd.DataFrame:
        """Every golden row of the task, in sample_id order."""
        rows = self.golden[self.golden["task"] == self.task]
        return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)

    @cached_property
    def rows(self) -> pd.DataFrame:
        """The golden rows of this shard (of the task's generation subset for generate and decode jobs)."""
        return task_shard(self.golden, self.task, self.shard, self.samples_per_shard,
                          self.samples_per_task).reset_index(drop=True)

    def load(self, loaded: tuple[Any, Any, str] | None = None) -> tuple[Any, Any, Any, str]:
        """(model, tokenizer, the task's PromptTemplate, device), loaded exactly as trained; `loaded`
        is the (model, tokenizer, device) of `load_model()` that a block of shards shares."""
        from .loading import load_for_task

        if self.ckpt_dir is None or self.template_text is None:
            raise ValueError("this ShardJob has no checkpoint directory or template to load a model from")
        return load_for_task(self.ckpt_dir, self.model_config, self.space.special_tokens, self.task, self.template_text,
                             loaded, self.head_probe)

    def load_model(self) -> tuple[Any, Any, str]:
        """(model, tokenizer, device): the checkpoint alone, for several shards (tasks) to share."""
        from .loading import load_configured

        if self.ckpt_dir is None:
            raise ValueError("this ShardJob has no checkpoint directory to load a model from")
        return load_configured(self.ckpt_dir, self.model_config, self.head_probe)

    def head_probe(self, tokenizer: Any, per_task: int = 1, max_modality_tokens: int = 96) -> list[list[int]]:
        """Real sequences of the golden set, text then modality span, on which the head path is checked
        against the model's forward at load (mmgate.heads.check_head): one example of each task."""
        sequences = []
        for _, rows in self.golden.sort_values("sample_id", kind="stable").groupby("task", sort=True):
            for row in rows.head(per_task).itertuples():
                modality = self.space.modality_for_task(row.task)
                text = getattr(row, "prompt", None) if isinstance(getattr(row, "prompt", None), str) else row.caption
                span = [int(t) for t in row.modality_tokens[:max_modality_tokens]]
                sequences.append(list(tokenizer.encode(text)) + [modality.start_id, *span, modality.end_id])
        return sequences

    def for_shard(self, task: str, shard: int, template_text: str | None = None,
                  samples_per_task: int | None = None) -> "ShardJob":
        """The same checkpoint, golden set and settings, for another shard (of another task)."""
        return replace(self, task=task, shard=shard, template_text=template_text, samples_per_task=samples_per_task)

    def model_meta(self, device: Any, model: Any = None) -> dict[str, Any]:
        """What a model-running job records about where its numbers came from: with the `model`, its
        class and how its logits were computed (mmgate.heads)."""
        from .heads import head_path

        meta = {"checkpoint_dir": str(self.ckpt_dir), "base": self.model_config.get("base"),
                "dtype": self.model_config.get("dtype"), "device": str(device), "template": self.template_text}
        if model is not None:
            meta["model"] = head_path(model).describe()
        return meta

    def provenance(self, step: str, **extra: Any) -> dict[str, Any]:
        from .io import provenance

        return provenance(step, self.space.sha256, checkpoint=self.checkpoint, task=self.task, shard=self.shard, **extra)
