"""The verdict's error rate under equal families, and its power, by simulation.

    python benchmarks/verdict_calibration.py [--simulations 4000]

Synthetic confirm scores (lrbench/report/calibration.py: seed spread 0.3 points, tuning
spread 0.3 points between repeats' picks, a shared batch-order effect 0.1), through the
same code as the report (selection.by_unit, selection.block_test). For each setting of
families x seeds x repeats it prints how often any family is declared below the best
with all families equal (the target: <= 5%), and how often a family planted 1 or 2
points lower is found. With one repeat there is no tuning spread to measure: its null is
"equal configurations", and the last column shows what happens when one tuning's luck is
mistaken for a family's (the reason for repeats).
"""

from __future__ import annotations

import argparse
import math

from lrbench.report import calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=4000)
    args = parser.parse_args()
    n = args.simulations
    se = math.sqrt(0.05 * 0.95 / n)
    print(f"{n} simulations per cell; Monte Carlo standard error at 5%: {100 * se:.2f} points")
    print("| families | seeds | repeats | any 'below', all equal | power, 1 point | "
          "power, 2 points | one tuning's luck as a family's |")
    print("|---|---|---|---|---|---|---|")
    for setting in calibration.SETTINGS:
        null, _ = calibration.rates(setting, n, seed=1)
        one = calibration.rates(setting, n // 2, planted=1.0, seed=2)[1]
        two = calibration.rates(setting, n // 2, planted=2.0, seed=3)[1]
        luck = (f"{100 * calibration.rates(setting, n // 2, seed=4, tuning_sd=0.3)[0]:.1f}%"
                if setting.repeats == 1 else "–")
        print(f"| {setting.families} | {setting.seeds} | {setting.repeats} | "
              f"{100 * null:.1f}% | {100 * one:.0f}% | {100 * two:.0f}% | {luck} |")


if __name__ == "__main__":
    main()
