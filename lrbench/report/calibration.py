"""The verdict's error rate and power, by simulation: synthetic confirm scores, no training.

Scores are drawn as confirm runs are made: family f's pick in repeat r, re-trained on seed
s, scores  mu_f + batch_order_s + tuning_fr + noise_frs  (seed s's batch order is shared
by every family; each repeat picks its own configuration, hence tuning_fr). The scores go
through ``selection.by_unit`` and ``selection.block_test``, exactly as the report's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrbench.report import selection

# Spreads in accuracy points, of the order lrbench measured on the FNN (README: "How the
# verdict is calibrated"): one configuration's seed-to-seed spread, the spread between
# the configurations that repeated tunings pick, and a batch order's shared effect.
SEED_SD = 0.3
TUNING_SD = 0.3
BATCH_ORDER_SD = 0.1


@dataclass(frozen=True)
class Setting:
    families: int
    seeds: int
    repeats: int


def simulated_runs(setting: Setting, rng: np.random.Generator, planted: float = 0.0,
                   seed_sd: float = SEED_SD, tuning_sd: float = TUNING_SD,
                   order_sd: float = BATCH_ORDER_SD) -> dict[str, dict[tuple[int, int], float]]:
    """family -> (repeat, seed) -> score, in points; family "f0" lowered by ``planted``."""
    k, r, s = setting.families, setting.repeats, setting.seeds
    order = rng.normal(0.0, order_sd, s)
    tuning = rng.normal(0.0, tuning_sd, (k, r))
    noise = rng.normal(0.0, seed_sd, (k, r, s))
    scores = order[None, None, :] + tuning[:, :, None] + noise
    scores[0] -= planted
    return {f"f{i}": {(rep, seed): float(scores[i, rep, seed]) for rep in range(r)
                      for seed in range(s)} for i in range(k)}


def rates(setting: Setting, simulations: int, planted: float = 0.0, seed: int = 0,
          tuning_sd: float | None = None) -> tuple[float, float]:
    """(how often any family is declared below the best, how often "f0" is).

    ``tuning_sd``: by default TUNING_SD where there are repeats to measure it, and 0 for a
    single tuning, whose verdict compares the configurations it picked: one tuning cannot
    tell a family's luck in tuning from the family (README, "How the verdict is calibrated").
    """
    rng = np.random.default_rng(seed)
    if tuning_sd is None:
        tuning_sd = TUNING_SD if setting.repeats > 1 else 0.0
    anything = planted_found = 0
    for _ in range(simulations):
        runs = simulated_runs(setting, rng, planted, tuning_sd=tuning_sd)
        test = selection.block_test({f: selection.by_unit(r) for f, r in runs.items()},
                                    with_p=False)
        anything += bool(test.below)
        planted_found += "f0" in test.below
    return anything / simulations, planted_found / simulations


SETTINGS = tuple(Setting(k, s, r) for k in (3, 9, 15) for s in (3, 5) for r in (1, 3))
