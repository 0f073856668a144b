"""Headless Chromium for the page tests: a copy of the page with a probe script that
writes what the browser saw into data- attributes, read back from the rendered DOM."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = "chromium is not installed (.ci/run installs it)"


def seen_by_browser(page: Path, probe_script: str, folder: Path, width: int,
                    height: int = 3000, screenshot: str = "") -> dict[str, str]:
    """Render a copy of ``page`` with ``probe_script`` at ``width`` x ``height``; the
    numeric data- attributes the script set on <body>. ``screenshot``: also save one
    under that name in ``folder``, as a reader would see the page."""
    assert BROWSER is not None, MISSING
    probe = folder / "index.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>",
                                                              probe_script + "</body>"),
                     encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--virtual-time-budget=10000",
             f"--window-size={width},{height}"]
    dom = subprocess.run([BROWSER, *flags, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    if screenshot:
        subprocess.run([BROWSER, *flags, f"--screenshot={folder / screenshot}",
                        probe.as_uri()], capture_output=True, timeout=120)
    return dict(re.findall(r'data-([a-z]+)="([\d.]+)"', dom))
