"""Glue for `workflow/scripts/`: log to the rule's log file and stderr, and turn an mmgate error
into one readable paragraph and exit status 1 instead of a traceback.

An mmgate error is deterministic (bad input, a failed gate precondition): the profiles' `retries`
are for preempted or out-of-memory jobs, and a retry would only load the model again to fail the
same way. The first attempt leaves the error beside its log, stamped with the id of the Snakemake
run; a retry in the same run fails at once with that message. A new `snakemake` run tries again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from .errors import MMGateError

RUN_ID = "MMGATE_RUN_ID"


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def pin_library(src: str | Path) -> None:
    """Make the jobs of this workflow import mmgate from `src` (the checkout the Snakefile was parsed
    from), whatever mmgate is installed where they run: workflow/scripts/_srcpath.py reads it."""
    os.environ["MMGATE_SRC"] = str(src)


def start_run() -> str:
    """Called when the workflow is parsed: one id per `snakemake` invocation, inherited by its jobs
    (local jobs through the environment, SLURM jobs through `sbatch --export=ALL`)."""
    return os.environ.setdefault(RUN_ID, uuid.uuid4().hex)


def _error_record(smk: Any) -> Path | None:
    log = getattr(smk, "log", None)
    return Path(str(log[0]) + ".error.json") if log else None


def _earlier_error(record: Path | None) -> str | None:
    """The message of an mmgate error that an earlier attempt of this job hit in this same run."""
    run_id = os.environ.get(RUN_ID)
    if record is None or not run_id or not record.exists():
        return None
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return saved.get("message") if saved.get("run_id") == run_id else None


def run(smk: Any, main: Callable[[Any, logging.Logger], None]) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if getattr(smk, "log", None):
        handlers.append(logging.FileHandler(str(smk.log[0]), mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    log = logging.getLogger(f"mmgate.{getattr(smk, 'rule', 'script')}")
    # SIGTERM (scancel, a preempted node) as an exception: atomic writes then remove their temporary file
    signal.signal(signal.SIGTERM, _terminated)
    record = _error_record(smk)
    earlier = _earlier_error(record)
    if earlier is not None:
        log.error("Not retried: an earlier attempt of this job in this run stopped on this error, and a retry "
                  "would repeat it (retries are for preempted or out-of-memory jobs). Fix it and run snakemake "
                  "again.\n%s", earlier)
        sys.exit(1)
    try:
        main(smk, log)
    except MMGateError as err:
        log.error("%s", err)
        if record is not None and os.environ.get(RUN_ID):
            record.write_text(json.dumps({"run_id": os.environ[RUN_ID], "message": str(err)}))
        sys.exit(1)
    except Exception:
        log.error("unexpected error in rule %s:\n%s", getattr(smk, "rule", "?"), traceback.format_exc())
        raise
    if record is not None and record.exists():
        record.unlink()
