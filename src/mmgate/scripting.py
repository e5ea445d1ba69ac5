"""Glue for `workflow/scripts/`: log to the rule's log file and stderr, and turn an mmgate error
into one readable paragraph and exit status 1 instead of a traceback."""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from .errors import MMGateError


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def pin_library(src: str | Path) -> None:
    """Make the jobs of this workflow import mmgate from `src` (the checkout the Snakefile was parsed
    from), whatever mmgate is installed where they run: workflow/scripts/_srcpath.py reads it."""
    os.environ["MMGATE_SRC"] = str(src)


def run(smk: Any, main: Callable[[Any, logging.Logger], None]) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if getattr(smk, "log", None):
        handlers.append(logging.FileHandler(str(smk.log[0]), mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    log = logging.getLogger(f"mmgate.{getattr(smk, 'rule', 'script')}")
    # SIGTERM (scancel, a preempted node) as an exception: atomic writes then remove their temporary file
    signal.signal(signal.SIGTERM, _terminated)
    try:
        main(smk, log)
    except MMGateError as err:
        log.error("%s", err)
        sys.exit(1)
    except Exception:
        log.error("unexpected error in rule %s:\n%s", getattr(smk, "rule", "?"), traceback.format_exc())
        raise
