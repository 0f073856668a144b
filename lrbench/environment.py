"""The environment variables that set lrbench's waits, read in one place.

Each defaults to what users get; tests set shorter ones (README: Development). A value
that is not a positive number of seconds ends the command with exit 2, naming the
variable and the value: it is read when its module is imported, before any command runs.
"""

from __future__ import annotations

import math
import os
import sys


def seconds(name: str, default: float) -> float:
    """``$name`` as a number of seconds, or ``default`` where it is unset or empty."""
    text = os.environ.get(name, "")
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        print(f"lrbench: error: {name}={text!r}: not a positive number of seconds "
              f"(unset it for the default, {default:g})", file=sys.stderr)
        raise SystemExit(2)
    return value
