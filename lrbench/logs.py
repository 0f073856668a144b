"""How lrbench's warnings reach the terminal: one line each, ``lrbench: ...`` on stderr.

The parent and every worker process call ``show_warnings`` once, so a journal repair
made in a worker is named on the terminal like one made in the parent.
"""

from __future__ import annotations

import logging
import sys


def show_warnings() -> None:
    logger = logging.getLogger("lrbench")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lrbench: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
