"""Progress of a long job, as a few lines in its log: done / total, rate and ETA, at most every `interval` s.

A generate, ablate or decode job (one shard, or a block of shards sharing one model load) can run for
hours on a cluster, where nobody sees a terminal: its only window is the rule's log file. `Progress`
counts what the job has done across all of its shards and writes a line to a `logging.Logger` after the
first batch, then one per `interval` seconds while it works (a decoding loop beats at every step, so a
batch that takes minutes still shows its step), and a final line when the job ends (or stops on an
error). A job longer than `max_lines * interval` (a day) logs only once `total / max_lines` more is
done and beats stop after `max_lines` lines, so no job writes more than `2 * max_lines + 2` lines,
whatever its length.

Updating costs a clock read and a comparison: callers count what they already have on the host (the
generated ids they copied back, the size of a batch), so progress never synchronizes the GPU.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

INTERVAL = 30.0  # seconds between two lines of a job's log (the first after its first batch, and a final one)
MAX_LINES = 2880  # a day of lines at INTERVAL: a longer job logs only every total / MAX_LINES done


def duration(seconds: float) -> str:
    """`seconds` as `45s`, `3m05s` or `2h07m`.

        >>> duration(4.2), duration(185), duration(7625)
        ('4s', '3m05s', '2h07m')
    """
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _rate(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


class Progress:
    r"""
    Progress of one job (all of its shards), logged as `done/total`, rate and ETA at most every `interval` seconds.

    A line is written at the first `update` (after the first batch), then at an `update` when at least
    `interval` seconds have passed since the last line and at least `total / max_lines` more is done, and
    always at `close` (or when a `with` block ends, saying where an error stopped it). The rate counts only
    the work done since `start` (call it after loading a model); `skip` counts work that needed none (a
    shard restored from an earlier attempt, a sample that cannot be decoded) as done without changing
    the rate. ETA = what is left / that rate.

    Args:
        total (`int`):
            How many `unit`s the job has to do, over all of its shards.
        unit (`str`):
            What is counted, plural: `"samples"`, `"sequences"`.
        log (`logging.Logger`):
            Where the lines go: a job script's logger writes to the rule's log file.
        label (`str`, *optional*, defaults to `"progress"`):
            The start of each line, e.g. the stage and how many shards the job runs.
        interval (`float`, *optional*, defaults to `30.0`):
            The fewest seconds between two lines (0: a line at every `update`, up to `max_lines`).
        clock (`Callable[[], float]`, *optional*, defaults to `time.monotonic`):
            Seconds from any origin (tests pass a fake one).
        max_lines (`int`, *optional*, defaults to `2880`):
            Roughly the most lines of a job, however long it runs.

    Examples:

    ```python
    >>> import logging, sys
    >>> from mmgate.progress import Progress

    >>> log = logging.getLogger("example.generate")
    >>> log.addHandler(logging.StreamHandler(sys.stdout)); log.setLevel(logging.INFO); log.propagate = False
    >>> now = [0.0]  # a fake clock; a job leaves `clock` at time.monotonic
    >>> progress = Progress(512, "samples", log, label="generate (4 shards)", clock=lambda: now[0])
    >>> progress.at = "t2a/constrained 000"  # what it works on, shown in each line
    >>> for batch in range(16):  # batches of 32 samples, each 10 s and 4,000 new tokens
    ...     now[0] += 10.0
    ...     progress.update(32, tokens=4000)
    generate (4 shards): 32/512 samples (6 %), 400 tokens/s, 3.2 samples/s, ETA 2m30s, at t2a/constrained 000
    generate (4 shards): 128/512 samples (25 %), 400 tokens/s, 3.2 samples/s, ETA 2m00s, at t2a/constrained 000
    generate (4 shards): 224/512 samples (44 %), 400 tokens/s, 3.2 samples/s, ETA 1m30s, at t2a/constrained 000
    generate (4 shards): 320/512 samples (62 %), 400 tokens/s, 3.2 samples/s, ETA 1m00s, at t2a/constrained 000
    generate (4 shards): 416/512 samples (81 %), 400 tokens/s, 3.2 samples/s, ETA 30s, at t2a/constrained 000
    generate (4 shards): 512/512 samples (100 %), 400 tokens/s, 3.2 samples/s, ETA 0s, at t2a/constrained 000
    >>> progress.close()
    generate (4 shards): done, 512/512 samples in 2m40s, 400 tokens/s, 3.2 samples/s

    ```
    """

    def __init__(self, total: int, unit: str, log: logging.Logger, label: str = "progress", interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic, max_lines: int = MAX_LINES):
        self.total = int(total)
        self.unit = unit
        self.log = log
        self.label = label
        self.interval = float(interval)
        self.clock = clock
        self.min_step = self.total / max_lines if max_lines > 0 else 0.0
        self.max_lines = max_lines if max_lines > 0 else float("inf")
        self.at: str | None = None  # what the job works on now (a shard's label)
        self.done = 0  # worked and skipped
        self.worked = 0
        self.skipped = 0
        self.tokens = 0
        self.counts_tokens = False
        self.lines = 0
        self.closed = False
        self.start()
        self._last_line: float | None = None
        self._done_at_line = 0

    def start(self) -> None:
        """(Re)start the clock of the rate: before the first `update`, e.g. once the model is loaded."""
        self._began = self.clock()

    def update(self, n: int, tokens: int | None = None) -> None:
        """`n` more done by work (and `tokens` generated with them); logs when a line is due."""
        self.done += n
        self.worked += n
        if tokens is not None:
            self.tokens += int(tokens)
            self.counts_tokens = True
        now = self.clock()
        if self._last_line is None or (now - self._last_line >= self.interval
                                       and self.done - self._done_at_line >= self.min_step):
            self._line(now)

    def beat(self, detail: str) -> None:
        """Inside a long unit of work (a decoding step of a batch): a line saying `detail` when `interval`
        seconds have passed since the last line (or the start) without one, so a slow batch shows it moves."""
        now = self.clock()
        since = self._began if self._last_line is None else self._last_line
        if now - since >= self.interval and self.lines < self.max_lines:
            self._line(now, detail)

    def skip(self, n: int) -> None:
        """`n` more done without work (restored, or nothing to compute): counted, but not in the rate."""
        self.done += n
        self.skipped += n

    def _rates(self, now: float) -> list[str]:
        elapsed = now - self._began
        if elapsed <= 0 or not self.worked:
            return []
        rates = [f"{_rate(self.tokens / elapsed)} tokens/s"] if self.counts_tokens else []
        return rates + [f"{_rate(self.worked / elapsed)} {self.unit}/s"]

    def _line(self, now: float, detail: str | None = None) -> None:
        parts = [f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total if self.total else 100:.0f} %)"]
        rates = self._rates(now)
        parts += rates
        if rates:
            left = max(0, self.total - self.done)
            parts.append(f"ETA {duration(left * (now - self._began) / self.worked)}")
        if self.at:
            parts.append(f"at {self.at}")
        if detail:
            parts.append(detail)
        self.log.info("%s: %s", self.label, ", ".join(parts))
        self.lines += 1
        self._last_line = now
        self._done_at_line = self.done

    def close(self, error: BaseException | None = None) -> None:
        """The final line (once): what was done, in how long, at what rate; with `error`, where it stopped."""
        if self.closed:
            return
        self.closed = True
        now = self.clock()
        counted = f"{self.done:,}/{self.total:,} {self.unit}"
        restored = f" ({self.skipped:,} without work)" if self.skipped else ""
        if error is not None:
            head = f"stopped by {type(error).__name__} at {counted}{restored}" + (f", in {self.at}" if self.at else "")
        else:
            head = f"done, {counted}{restored}"
        if self.worked:
            parts = [f"{head} in {duration(now - self._began)}", *self._rates(now)]
        else:
            parts = [head, "nothing computed"] if error is None else [head]
        self.log.info("%s: %s", self.label, ", ".join(parts))
        self.lines += 1

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: object) -> None:
        self.close(error)

