"""One axis of a search space, and how Optuna samples it.

A sweep file writes an axis as ``{ low = 0.05, high = 0.99, log = true }`` (a range),
``["triangular", "triangular2"]`` (a choice) or a bare value (fixed). The same axis
objects describe the registry's defaults, so the two are checked and sampled alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine imports this module; keep Optuna out of training processes
    import optuna


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    log: bool = False  # sample on a log scale: for ratios, where 0.01..0.1 matters like 0.1..1

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, but got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, but got low={self.low}")


@dataclass(frozen=True)
class FloatRange(_Range):
    def contains(self, value: Any) -> bool:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return is_number and self.low <= value <= self.high


@dataclass(frozen=True)
class IntRange(_Range):
    low: int
    high: int

    def contains(self, value: Any) -> bool:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        return is_int and self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    """A categorical axis; one choice is how a sweep file fixes a parameter."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("a choice needs at least one value, but got none")

    def contains(self, value: Any) -> bool:
        return value in self.choices


Axis = FloatRange | IntRange | Choice


def suggest(trial: optuna.Trial, name: str, axis: Axis) -> Any:
    """Sample ``axis`` as ``name``; a fixed value goes through Optuna too, so it is recorded."""
    if isinstance(axis, FloatRange):
        return trial.suggest_float(name, axis.low, axis.high, log=axis.log)
    if isinstance(axis, IntRange):
        return trial.suggest_int(name, axis.low, axis.high, log=axis.log)
    return trial.suggest_categorical(name, list(axis.choices))


def grid_values(axis: Axis) -> list[Any]:
    """The values a grid search walks through, or ValueError for a continuous axis."""
    if isinstance(axis, Choice):
        return list(axis.choices)
    if isinstance(axis, IntRange) and not axis.log:
        return list(range(axis.low, axis.high + 1))
    raise ValueError(f"a grid needs listed values or a linear integer range, but got {axis}")


def describe(axis: Axis) -> str:
    """Short human form for tables and messages: ``0.05..0.99 (log)``, ``{a, b}``, ``2``."""
    if isinstance(axis, Choice):
        if len(axis.choices) == 1:
            return repr(axis.choices[0])
        return "{" + ", ".join(repr(c) for c in axis.choices) + "}"
    return f"{axis.low}..{axis.high}" + (" (log)" if axis.log else "")
