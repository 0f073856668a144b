"""Every seed lrbench uses, derived by one rule that does not depend on timing.

A trial's seed comes from the base seed and its configuration, not from its trial
number (which depends on which slot asked first): the same configuration trains the
same curves with one worker or eight. A sampler's seed comes from the base seed, the
sweep run (each ``lrbench sweep`` on a study is the study's next run), the slot and the
slot's restarts, so a resumed or joined sweep never replays an earlier run's proposals.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SEED_MAX = 2**32 - 1  # numpy's RandomState (Optuna's samplers) takes seeds below 2**32


def derive(*parts: Any) -> int:
    """A seed in [0, 2**31) from JSON-able parts; the same parts give the same seed."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


def trial_seed(base: int, configuration: dict[str, Any]) -> int:
    """The init seed of a trial that trains ``configuration`` (its params and fixed values)."""
    return derive(base, "trial", configuration)


def sampler_seed(base: int, run: int, slot: int, start: int = 0) -> int:
    """The sampler seed of a slot's ``start``-th process in a run: a restarted slot seeded
    as before would propose its first trials again (a random sampler, exactly)."""
    return derive(base, "sampler", run, slot, start)
