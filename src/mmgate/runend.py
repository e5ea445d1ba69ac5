"""How a Snakemake run ends, where Snakemake itself says nothing about the verdicts.

- `snakemake --report report.zip`: a results page, `results/report/verdicts.html`, with every
  checkpoint's verdict row (each gate and the overall line) and a link to its report page.
- A run with nothing to do: Snakemake calls no `onsuccess` then (nor `onstart`), so the verdict table
  that ends every other run would be missing; `when_nothing_to_do` prints it there too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

REPORT_ID_LENGTH = 16  # snakemake.report.FILE_HASH_PREFIX_LEN


def report_id(path: str) -> str:
    """The folder of an output marked with report() in `snakemake --report x.zip`:
    data/raw/<id>/<file name>, <id> the first 16 hex digits of the sha256 of the output's path as
    its rule names it (snakemake.common.get_report_id). tests/test_run_end.py follows every link of a
    real report.zip, so a Snakemake that changes the scheme fails there."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:REPORT_ID_LENGTH]


def verdict_rows(paths: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The gate ids (in checklist order) and one row per `gates.json` (by step, then name): its
    checkpoint, step, gate verdicts, overall verdict and line, and where its report page is, beside
    the table in results/report/ (`href`) and inside `snakemake --report x.zip` (`in_report`)."""
    from .cli import _step_order
    from .gates import GATE_IDS, overall_line
    from .stages import PAGES

    rows = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        page = PAGES["report_html"].format(ckpt=report["checkpoint"])  # the report rule's output, as it names it
        rows.append({
            "checkpoint": report["checkpoint"], "step": report.get("step"), "overall": report.get("overall"),
            "line": overall_line(report), "gates": {g["gate"]: g["verdict"] for g in report.get("gates", [])},
            "href": os.path.relpath(page, Path(PAGES["verdicts_html"]).parent),
            "in_report": f"../{report_id(page)}/{Path(page).name}",
            "_order": _step_order(report),
        })
    rows.sort(key=lambda row: row.pop("_order"))
    seen = {gate for row in rows for gate in row["gates"]}
    gate_ids = [g for g in GATE_IDS if g in seen] + sorted(seen - set(GATE_IDS))
    return gate_ids, rows


def render_verdicts(paths: Sequence[str]) -> str:
    """The results page of `snakemake --report`: verdicts.html (self-contained, as every report)."""
    from .render import render

    gate_ids, rows = verdict_rows(paths)
    return render("verdicts.html.j2", gate_ids=gate_ids, rows=rows)


_FILTER_ATTRIBUTE = "_mmgate_nothing_to_do"


def when_nothing_to_do(workflow: Any, callback: Callable[[], None]) -> None:
    """Call `callback` at the end of a real run (not a dry run, not a job's own Snakemake, not with
    --no-hooks) that had nothing to do, when Snakemake calls neither onstart nor onsuccess.

    Snakemake (9.x, Workflow.execute) logs "Nothing to be done" and returns before its hooks; a
    filter on its logger notices that message, and the callback runs when the process exits, after
    Snakemake's own last line. No job is added: a dry run of a finished workflow still plans nothing.
    """
    import atexit
    import logging
    import os

    from snakemake.common import NOTHING_TO_BE_DONE_MSG
    from snakemake.logging import logger

    workdirs: list[str] = []

    def end() -> None:
        here = os.getcwd()
        os.chdir(workdirs[0])  # Snakemake has gone back from --directory by now; the hooks run in it
        try:
            callback()
        finally:
            os.chdir(here)

    class NothingToDo(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if (record.getMessage() == NOTHING_TO_BE_DONE_MSG and not workdirs and not workflow.dryrun
                    and not workflow.remote_exec and not workflow.subprocess_exec
                    and not getattr(workflow.execution_settings, "no_hooks", False)):
                workdirs.append(os.getcwd())
                atexit.register(end)
            return True

    for old in [f for f in logger.filters if getattr(f, _FILTER_ATTRIBUTE, False)]:
        logger.removeFilter(old)  # the Snakefile parsed again in this process: the newest workflow only
    nothing_to_do = NothingToDo()
    setattr(nothing_to_do, _FILTER_ATTRIBUTE, True)
    logger.addFilter(nothing_to_do)
