"""The catalogue: one declaration per stage of what it writes, where, keyed how, with which columns.

Every table mmgate writes is a `Stage`: a folder of its own under `results/` (one dataset with one
schema, so `pd.read_parquet("results/<folder>")` and DuckDB's
`read_parquet('results/<folder>/**/*.parquet', hive_partitioning = true)` give exactly its rows),
a file pattern below it whose `key=value` folders are the partition keys, the sample set its rows
cover, its columns and types, and, for decode, the folder of media outside every dataset. The
rules (`workflow/rules/common.smk`), the block jobs (`blocks.Unit`), the report's inputs and tables
(`mmgate.tables`), `mmgate diff` and `export`, `inspect`/`check` (`PAGES`) and the stale sweep
(`mmgate.stale`) all derive paths from here; no path is written twice. A stage with a `scorer` is
made by the generic `score_<stage>` rule (`mmgate.scoring`).

`TABLES` names what the report loads (`tables.load_tables` makes exactly these, keyed by
`Stage.table`) and the gate registry may read only those: `gates.check_registry` refuses a
`GateSpec` naming any other at import, so a gate can never SKIP for want of a table nothing loads.

    >>> STAGES["generate"].path(ckpt="good", task="t2a", mode="free", shard="000")
    'results/generate/ckpt=good/task=t2a/mode=free/part-000.parquet'
    >>> STAGES["generate"].keys
    ('ckpt', 'task', 'mode', 'shard')
    >>> STAGES["decode"].parse("work/results/decode/ckpt=good/task=t2i/part-003.parquet")
    {'ckpt': 'good', 'task': 't2i', 'shard': '003'}
    >>> STAGES["decode"].media_path(ckpt="good", task="t2i", shard="003")
    'results/media/ckpt=good/task=t2i/part-003'
    >>> sorted(name for name, table in TABLES.items() if not table.required)
    ['training']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping

import pyarrow as pa

from .tasks import TASKS, WRITE_TASKS

RESULTS = "results"

_STR, _INT, _FLOAT, _BOOL = pa.large_string(), pa.int64(), pa.float64(), pa.bool_()
_IDS = pa.list_(pa.int64())
_KEY = re.compile(r"\{(\w+)\}")


def pattern_regex(pattern: str) -> str:
    """A regex of a path pattern, each `{key}` a named group of one path component.

        >>> re.fullmatch(pattern_regex("task={task}/part-{shard}.parquet"), "task=t2a/part-001.parquet")["shard"]
        '001'
    """
    return "".join(f"(?P<{p[1:-1]}>[^/]+)" if _KEY.fullmatch(p) else re.escape(p) for p in re.split(r"(\{\w+\})", pattern))


@dataclass(frozen=True)
class Stage:
    """One table: `results/<folder>/<file>`, its keys the `{key}`s of `file` (hive folders or the shard)."""

    name: str  # the stage, as `STAGES` keys it
    folder: str  # below results/: this table's dataset and nothing else
    file: str  # below the folder; {ckpt} {task} {mode} {shard}
    rule: str  # the rule (or block rules) that writes it, for error messages
    rows: str  # what one row is, and which samples a file holds
    columns: Mapping[str, pa.DataType] = field(default_factory=dict)  # the schema, in order
    table: str | None = None  # the report's table (GateSpec.tables) it loads as; None: the report does not read it
    tasks: tuple[str, ...] = ()  # the tasks it has files for (with golden rows)
    samples: str | None = None  # "golden": every row of its task; "generation": the generation subset
    media: str | None = None  # decode: a shard's folder of WAV/PNG files below results/, outside every dataset
    scorer: str | None = None  # "package.module:function" scoring decoded outputs (mmgate.scoring), run by score_<name>
    gpu: int = 0  # GPUs the job making a scored stage needs

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(_KEY.findall(self.file))

    @property
    def pattern(self) -> str:
        """The path with `{key}` placeholders, relative to the working directory."""
        return f"{RESULTS}/{self.folder}/{self.file}"

    def path(self, **values: str) -> str:
        """The file of these key values; a value may itself be a placeholder (`"{{ckpt}}"` for `expand`)."""
        return self.pattern.format(**values)

    def wildcards(self, **fixed: str) -> str:
        """The pattern with its keys as Snakemake wildcards, but those `fixed` (`mode="constrained"`)."""
        return self.path(**{key: fixed.get(key, "{" + key + "}") for key in self.keys})

    def media_path(self, **values: str) -> str:
        if self.media is None:
            raise ValueError(f"stage {self.name} has no media")
        return f"{RESULTS}/{self.media}".format(**values)

    def media_of(self, path: str | Path) -> Path:
        """The media folder of one of this stage's files, below the same `results/` folder."""
        return self.results_of(path) / self.media_path(**self.parse(path)).removeprefix(f"{RESULTS}/")

    def parse(self, path: str | Path) -> dict[str, str] | None:
        """The key values of one of this stage's files (anywhere below a `results/` folder), else None."""
        found = self._regex.search(Path(path).as_posix())
        return found.groupdict() if found else None

    def results_of(self, path: str | Path) -> Path:
        """The `results/` folder one of this stage's files lies in (media paths are relative to it)."""
        return Path(path).parents[self.file.count("/") + 1]

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(rf"(?:^|/){pattern_regex(self.pattern)}$")

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns.items()))


_CHECK = {"kind": _STR, "name": _STR, "path": _STR, "source": _STR, "hash": _STR, "expected": _STR, "found": _STR,
          "match": _BOOL, "detail": _STR, "fix": _STR}
_FINGERPRINT_COMMON = {"sample_id": _STR, "decoded": _BOOL, "reason": _STR, "n_tokens": _INT,
                       "unique_token_ratio": _FLOAT, "distinct_2": _FLOAT, "longest_loop_frames": _INT,
                       "codebook_usage": _FLOAT}
_FINGERPRINT_AUDIO = {"rms": _FLOAT, "peak": _FLOAT, "clipping_share": _FLOAT, "zero_crossing_rate": _FLOAT,
                      "mel_variance": _FLOAT, "spectral_flatness": _FLOAT, "silent": _BOOL, "noise": _BOOL}
_FINGERPRINT_IMAGE = {"phash": _STR, "dhash": _STR, "mean_r": _FLOAT, "var_r": _FLOAT, "mean_g": _FLOAT,
                      "var_g": _FLOAT, "mean_b": _FLOAT, "var_b": _FLOAT}

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("stage2", "stage2", "hashes.parquet", "token_space_stage2",
          "one row per stage-2 shard's recorded token-space hash", _CHECK),
    Stage("check", "token_space", "ckpt={ckpt}/check.parquet", "token_space",
          "one row per checked item of the checkpoint (tokenizer, embedding rows, recorded hashes)", _CHECK,
          table="check"),
    Stage("generate", "generate", "ckpt={ckpt}/task={task}/mode={mode}/part-{shard}.parquet", "generate_block_NNN",
          "one row per sample of the task's generation subset", {
              "sample_id": _STR, "prompt_hash": _STR, "generated_ids": _IDS, "expected_len": _INT, "budget": _INT,
              "n_generated": _INT, "emitted_end": _BOOL, "end_position": _INT, "ragged_tail": _INT,
              "out_of_range": _INT, "out_of_range_pct": _FLOAT, "wrong_slot": _INT, "first_violation": _INT,
              "slot_counts": _IDS, "other_layout_slots": _INT, "layout": _STR, "removed_mass_mean": _FLOAT,
              "removed_mass_max": _FLOAT, "removed_mass_first": _FLOAT, "removed_mass_peak": _FLOAT,
              "overridden_share": _FLOAT, "seed": _INT, "batch_index": _INT, "generation_seconds": _FLOAT,
              "tokens_per_second": _FLOAT},
          table="generate", tasks=WRITE_TASKS, samples="generation"),
    Stage("decode", "decode", "ckpt={ckpt}/task={task}/part-{shard}.parquet", "decode_block_NNN",
          "one row per constrained generation of the task's generation subset", {
              "sample_id": _STR, "ok": _BOOL, "reason": _STR, "sample_rate": _INT, "channels": _INT,
              "samples": _INT, "duration": _FLOAT, "width": _INT, "height": _INT, "file": _STR,
              "decode_seconds": _FLOAT},
          table="decode", tasks=WRITE_TASKS, samples="generation", media="media/ckpt={ckpt}/task={task}/part-{shard}"),
    Stage("fingerprint", "fingerprint", "ckpt={ckpt}/task={task}/fingerprints.parquet", "fingerprint",
          "one row per decoded output of the task's generation subset",
          {**_FINGERPRINT_COMMON, **_FINGERPRINT_AUDIO, **_FINGERPRINT_IMAGE, "duplicate_of": _STR,
           "near_duplicate": _BOOL},
          table="fingerprint", tasks=WRITE_TASKS, samples="generation"),
    Stage("collapse", "collapse", "ckpt={ckpt}/task={task}/collapse.parquet", "fingerprint",
          "one row per task: collapse across prompts", {
              "n": _INT, "unique_outputs": _INT, "identical_groups": _INT, "unique_ratio": _FLOAT,
              "unique_code_ratio": _FLOAT, "near_duplicate_pairs": _INT, "near_duplicate_share": _FLOAT,
              "silent_share": _FLOAT, "noise_share": _FLOAT, "loop_share": _FLOAT, "collapsed": _BOOL},
          table="collapse", tasks=WRITE_TASKS, samples="generation"),
    Stage("ablate", "ablate", "ckpt={ckpt}/task={task}/part-{shard}.parquet", "ablate_block_NNN",
          "one row per golden sample of the task and ablation condition", {
              "sample_id": _STR, "condition": _STR, "loss": _FLOAT, "n_target_tokens": _INT, "input_hash": _STR,
              "target_hash": _STR, "n_context_tokens": _INT, "reason": _STR},
          table="ablate_rows", tasks=TASKS, samples="golden"),
    Stage("ablation_summary", "ablation_summary", "ckpt={ckpt}/task={task}/summary.parquet", "ablation_summary",
          "one row per ablation condition of the task: win rate and loss delta with intervals", {
              "condition": _STR, "n": _INT, "mean_loss_correct": _FLOAT, "mean_loss": _FLOAT, "delta": _FLOAT,
              "delta_ci_low": _FLOAT, "delta_ci_high": _FLOAT, "win_rate": _FLOAT, "win_rate_ci_low": _FLOAT,
              "win_rate_ci_high": _FLOAT, "ties": _INT, "sign_test_p": _FLOAT, "warning": _STR},
          table="ablate", tasks=TASKS, samples="golden"),
    Stage("gates", "gates", "ckpt={ckpt}/gates.parquet", "report",
          "one row per gate of the checkpoint: its verdict, reasons and evidence", {
              "gate": _STR, "tier": _STR, "question": _STR, "verdict": _STR, "reasons": _STR, "notes": _STR,
              "fix": _STR, "values": _STR, "thresholds": _STR, "evidence": _STR, "underpowered": _BOOL}),
    Stage("trend", "trend", "trend.parquet", "trend",
          "one row per checkpoint, gate, task and metric", {
              "checkpoint": _STR, "step": _INT, "run": _STR, "gate": _STR, "task": _STR, "metric": _STR,
              "value": _FLOAT, "ci_low": _FLOAT, "ci_high": _FLOAT, "limit": _FLOAT, "judged": _BOOL,
              "verdict": _STR, "note": _STR}),
    # a new stage goes above this line (README: Adding a gate)
)}

# The pages people open: not datasets, so in a folder that holds no parquet.
PAGES = {
    "gates_json": f"{RESULTS}/report/ckpt={{ckpt}}/gates.json",
    "report_html": f"{RESULTS}/report/ckpt={{ckpt}}/report.html",
    "trend_html": f"{RESULTS}/report/trend.html",
    "verdicts_html": f"{RESULTS}/report/verdicts.html",
}



def page(name: str, results: str | Path = RESULTS, **keys: str) -> Path:
    """A page below a `results` folder (anywhere): `page("gates_json", "runs/x/results", ckpt="*")` is a glob.

        >>> page("gates_json", "elsewhere/results", ckpt="good").as_posix()
        'elsewhere/results/report/ckpt=good/gates.json'
    """
    return Path(results) / PAGES[name].removeprefix(f"{RESULTS}/").format(**keys)


SHARDED = tuple(name for name, stage in STAGES.items() if "shard" in stage.keys)  # written by block jobs


@dataclass(frozen=True)
class StageTable:
    name: str  # the key of tables.load_tables' tables, and of GateSpec.tables
    made_by: str  # the stage (rule) that writes it, and where, for an error message
    required: bool = True  # False: an optional input that a gate SKIPs without (the training log)


TABLES: dict[str, StageTable] = {
    **{s.table: StageTable(s.table, f"the {s.rule} rule: {s.pattern}") for s in STAGES.values() if s.table},
    "training": StageTable("training", "report.training_log (optional: TD SKIPs without it)", required=False),
}


def stage_of_table(table: str) -> Stage:
    """The stage a report table comes from."""
    return next(s for s in STAGES.values() if s.table == table)


def conform(frame, stage: Stage) -> pa.Table:
    """`frame` as a table of `stage`'s schema: every declared column in order (absent ones null), each
    of its declared type. A column the schema does not declare is an error: one schema per stage."""
    extra = [c for c in frame.columns if c not in stage.columns]
    if extra:
        raise ValueError(f"stage {stage.name}: column(s) {extra} are not in its schema (mmgate.stages.STAGES"
                         f"[{stage.name!r}].columns): declare them there, so every file of {stage.folder}/ has them")
    full = frame.reindex(columns=list(stage.columns))  # an absent column is all null, of its declared type
    return pa.Table.from_pandas(full, schema=stage.schema, preserve_index=False)
