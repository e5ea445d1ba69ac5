"""The stage tables a checkpoint's report loads: one name per table, the stage that makes it, and
whether every task of the golden set must have it.

`report.load_tables` makes exactly these tables and the gate registry may read only these:
`gates.check_registry` refuses a `GateSpec` naming any other (at import for mmgate's own gates), so
a gate can never SKIP for want of a table nothing loads. A required table missing for a task the
golden set holds fails the report (`gates.MissingTable`) instead of skipping the gate.

    >>> sorted(name for name, table in TABLES.items() if not table.required)
    ['training']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageTable:
    name: str  # the key of report.load_tables' tables, and of GateSpec.tables
    made_by: str  # the stage (rule) that writes it, and where, for an error message
    required: bool = True  # False: an optional input that a gate SKIPs without (the training log)


# Where each per-task summary table lives: a folder of its own per table, so that reading a folder
# (pandas, pyarrow, DuckDB) gives one table with one schema. Rules, report inputs and `mmgate diff`
# all take the path from here.
SUMMARY_PATHS: dict[str, str] = {
    "fingerprint": "results/fingerprint/ckpt={ckpt}/task={task}/fingerprints.parquet",
    "collapse": "results/collapse/ckpt={ckpt}/task={task}/collapse.parquet",
    "ablate": "results/ablation_summary/ckpt={ckpt}/task={task}/summary.parquet",
}


def summary_path(table: str, ckpt: str, task: str) -> str:
    """The file of a per-task summary table.

        >>> summary_path("collapse", "good", "t2a")
        'results/collapse/ckpt=good/task=t2a/collapse.parquet'
    """
    return SUMMARY_PATHS[table].format(ckpt=ckpt, task=task)


TABLES: dict[str, StageTable] = {t.name: t for t in (
    StageTable("check", "the token_space rule: results/token_space/ckpt=<c>/check.parquet"),
    StageTable("generate", "the generate rule: results/generate/ckpt=<c>/task=<t>/mode=<m>/part-NNN.parquet"),
    StageTable("decode", "the decode rule: results/decode/ckpt=<c>/task=<t>/part-NNN.parquet"),
    StageTable("fingerprint", "the fingerprint rule: results/fingerprint/ckpt=<c>/task=<t>/fingerprints.parquet"),
    StageTable("collapse", "the fingerprint rule: results/collapse/ckpt=<c>/task=<t>/collapse.parquet"),
    StageTable("ablate_rows", "the ablate rule: results/ablate/ckpt=<c>/task=<t>/part-NNN.parquet"),
    StageTable("ablate", "the ablation_summary rule: results/ablation_summary/ckpt=<c>/task=<t>/summary.parquet"),
    StageTable("training", "report.training_log (optional: TD SKIPs without it)", required=False),
)}
