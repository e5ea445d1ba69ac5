"""The machine line every benchmark prints first: timings mean little without it."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(extra: str = "") -> str:
    return f"machine: {cpu_model()}, {os.cpu_count()} cores" + (f"; {extra}" if extra else "")
