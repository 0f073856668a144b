"""The machine a benchmark ran on, stated with its figures (airbench style)."""

from __future__ import annotations

import json
import platform
import resource
import sys
from pathlib import Path
from typing import Any

from lrbench.sweep.devices import cpu_cores

__all__ = ["cpu_cores", "cpu_model", "peak_rss_mb", "write_json"]


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


def write_json(path: Path, figures: dict[str, Any]) -> None:
    """The figures as JSON, for notes and READMEs to quote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {path}")
