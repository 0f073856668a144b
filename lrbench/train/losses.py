"""What a trial minimises and what it is scored by: one definition for both engines.

- ``cross_entropy`` (classification, the default): integer labels ``[B]``, logits
  ``[B, C]``; scored by accuracy.
- ``mse`` (regression): float targets ``[B, D]``, outputs ``[B, D]``; an example's loss is
  its squared error averaged over the D outputs, and the score is the negative mean
  squared error (scikit-learn's ``neg_mean_squared_error``): higher is better for every
  workload, so the sampler, the pruner, the ranking and the verdict need no second
  direction. The page and the terminal name the score ("−MSE").

The sequential engine's tensors are ``[B, ...]``; the batched engine's ``[K, B, ...]``
(one slice per trial, the targets shared). Sums, not means: callers divide once by the
split's size, so both engines average alike.

torch is imported where a loss is computed, not with the module: the sweep file's checks
read ``LOSSES`` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

LOSSES = ("cross_entropy", "mse")
DEFAULT_LOSS = "cross_entropy"


def per_example(loss: str, out: Tensor, y: Tensor) -> Tensor:
    """Each example's loss: ``out [..., B, C or D]``, ``y [B] or [B, D]`` -> ``[..., B]``."""
    import torch.nn.functional as F

    if loss == "mse":
        return (out - y).square().mean(-1)
    *lead, b, classes = out.shape
    per = F.cross_entropy(out.reshape(-1, classes), y.repeat(out.numel() // (b * classes)),
                          reduction="none")
    return per.view(*lead, b)


def score_sum(loss: str, out: Tensor, y: Tensor, losses: Tensor) -> Tensor:
    """The split's score, summed over its examples (``losses`` from ``per_example``):
    correct predictions, or minus the squared errors. ``[...]``, float."""
    import torch

    if loss == "mse":
        return -losses.sum(-1)
    return (out.argmax(-1) == y).sum(-1).to(torch.float32)


def mean_loss(loss: str, out: Tensor, y: Tensor) -> Tensor:
    """The minibatch's training loss, as torch computes it for one model."""
    import torch.nn.functional as F

    return F.mse_loss(out, y) if loss == "mse" else F.cross_entropy(out, y)
