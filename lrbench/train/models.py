"""The models lrbench trains: the tutorial's FNN, a small CNN, logistic regression.

Every model takes a batch of flattened 28x28 images, ``[batch, 784]`` floats in
[0, 1], and returns logits ``[batch, num_classes]``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def fnn(num_classes: int = 10) -> nn.Module:
    """The Deep Learning Wizard tutorial's net: 784-100-10 with one ReLU."""
    return nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, num_classes))


def logreg(num_classes: int = 10) -> nn.Module:
    """Multinomial logistic regression: a lower bound any schedule should beat."""
    return nn.Linear(784, num_classes)


def cnn(num_classes: int = 10) -> nn.Module:
    """A small two-conv CNN (~0.2 M parameters), ~99% on MNIST in a few epochs."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # 16x14x14
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 32x7x7
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


MODELS: dict[str, Callable[[int], nn.Module]] = {"fnn": fnn, "cnn": cnn, "logreg": logreg}
