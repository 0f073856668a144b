"""The machine a benchmark ran on, stated with its figures (airbench style)."""

from __future__ import annotations

import platform
import resource
import sys
from pathlib import Path

from lrbench.devices import cpu_cores

__all__ = ["cpu_cores", "cpu_model", "peak_rss_mb"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20
