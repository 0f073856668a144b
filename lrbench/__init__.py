"""lrbench: sweep and benchmark learning-rate schedules with Optuna."""

__version__ = "0.1.0"
