"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images, no download) and a
small CNN for them: an lrbench workload outside the MNIST family.

    [data]  dataset = "digits:load"
    [train] model   = "digits:cnn"

The loader keeps scikit-learn's order and takes the last 397 images as the test set
(about a fifth; lrbench cuts the validation split from the other 1,400).
"""

from __future__ import annotations

import torch
from torch import nn

TEST_IMAGES = 397


def load() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are 0-16: scaled to [0, 1], one channel of 8x8.
    x = torch.tensor(digits.images, dtype=torch.float32).div(16).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    cut = len(x) - TEST_IMAGES
    return {"train": (x[:cut], y[:cut]), "test": (x[cut:], y[cut:])}


def cnn() -> nn.Module:
    """Two 3x3 convolutions and a pooling step, ~20 k parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32x4x4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )
