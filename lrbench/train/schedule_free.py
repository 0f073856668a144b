"""Schedule-free SGD and AdamW: no LR schedule, evaluation at an average of the iterates.

Defazio et al. 2024, "The Road Less Scheduled" (arXiv:2405.15682), as implemented by
facebookresearch/schedule_free (the ``schedulefree`` package, v1.4), whose rules these are.
Three sequences per weight: z takes plain gradient steps (SGD's, or AdamW's normalised
ones), x is their weighted average (the weights that are evaluated), and the gradient
is taken at y, between the two:

    y = (1 - beta) z + beta x            (what the model holds while training)
    z <- z - lr g(y)
    x <- (1 - c) x + c z,  c = w_k / sum_i w_i,  w_k = lr_max(k)^2   (r = 0, power 2)

Only y and z are stored. A step updates y in place as the package does,
y <- lerp(y, z, c) + lr (beta (1 - c) - 1) g, and the evaluated x is recovered from
them (``eval``: x = lerp(y, z, 1 - 1/beta)); ``train`` maps x back to y.

The sequential engine uses the package itself (``make_schedule_free``). The batched
engine runs ``StackedScheduleFree``: the same rule on ``[K, ...]`` weights, with each
trial's LR, beta, step count, LR maximum and weight sum of its own; it is tested
against the package (tests/train/test_schedule_free.py).

Which trials train schedule-free is decided in ``lrbench.train.optimizers``. Either way
the LR schedule still applies on top (warm-up included), as the package allows: its LR
is read from the optimizer at every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lrbench.train.trial import OptimizerConfig

ADAM_BETA2 = 0.999  # the package's default second-moment decay
ADAM_EPS = 1e-8
WEIGHT_LR_POWER = 2.0  # the package's default: the average weighs step k by lr_max(k)^2


def make_schedule_free(params: Iterable[torch.nn.Parameter],
                       cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The package's optimizer for ``cfg`` (an ``*_schedulefree`` name). No warm-up of
    its own: lrbench's schedule sets the LR of every step, warm-up included."""
    import schedulefree  # only schedule-free trials need the package

    if cfg.name == "sgd_schedulefree":
        return schedulefree.SGDScheduleFree(params, lr=cfg.lr, momentum=cfg.momentum,
                                            weight_decay=cfg.weight_decay)
    if cfg.name == "adamw_schedulefree":
        return schedulefree.AdamWScheduleFree(params, lr=cfg.lr,
                                              betas=(cfg.momentum, ADAM_BETA2), eps=ADAM_EPS,
                                              weight_decay=cfg.weight_decay)
    raise ValueError(f"not a schedule-free optimizer: {cfg.name!r}")


def _per_trial(values: Tensor, like: Tensor) -> Tensor:
    """``[K]`` -> ``[K, 1, ..., 1]`` in ``like``'s dtype, broadcastable against it."""
    return values.to(like.dtype).view(-1, *[1] * (like.dim() - 1))


class StackedScheduleFree:
    """SGDScheduleFree or AdamWScheduleFree (``adam``) on stacked weights.

    Per trial: beta, the step count k, the largest LR so far and the sum of the average's
    weights (float64 ``[K]`` tensors on the weights' device, as the package keeps Python
    floats: no host sync per step). The model's weights hold y while training and x
    after ``eval``; all trials switch together.
    """

    def __init__(self, cfg: OptimizerConfig) -> None:
        self.adam = cfg.name == "adamw_schedulefree"
        self.weight_decay = cfg.weight_decay
        self.z: list[Tensor] = []
        self.exp_avg_sq: list[Tensor] = []  # AdamW only
        self.beta = self.lr_max = self.weight_sum = torch.zeros(0, dtype=torch.float64)
        self.steps: list[int] = []
        self.training = True

    def extend(self, configs: Sequence[OptimizerConfig], params: Sequence[Tensor]) -> None:
        """New trials after the others; ``params`` are their initial weights, where z
        starts (the package clones the weights at the first step; nothing moves them
        before it). In either mode their x = y = z."""
        device = params[0].device
        if not self.z:
            self.beta = self.beta.to(device)
            self.lr_max, self.weight_sum = self.beta.clone(), self.beta.clone()
        new = len(configs)
        self.z = [torch.cat([z, p.detach().clone()]) for z, p in
                  zip(self.z or [p[:0] for p in params], params)]
        if self.adam:
            self.exp_avg_sq = [torch.cat([v, torch.zeros_like(p)]) for v, p in
                               zip(self.exp_avg_sq or [p[:0] for p in params], params)]
        betas = torch.tensor([c.momentum for c in configs], dtype=torch.float64, device=device)
        self.beta = torch.cat([self.beta, betas])
        self.lr_max = torch.cat([self.lr_max, torch.full((new,), -1.0, dtype=torch.float64,
                                                         device=device)])
        self.weight_sum = torch.cat([self.weight_sum, self.weight_sum.new_zeros(new)])
        self.steps += [0] * new

    def select(self, keep: Tensor) -> None:
        self.z = [z.index_select(0, keep) for z in self.z]
        self.exp_avg_sq = [v.index_select(0, keep) for v in self.exp_avg_sq]
        self.beta, self.lr_max, self.weight_sum = (
            t.index_select(0, keep) for t in (self.beta, self.lr_max, self.weight_sum))
        self.steps = [self.steps[k] for k in keep.tolist()]

    @torch.no_grad()
    def eval(self, params: Sequence[Tensor]) -> None:
        """The weights become x, the average (what validation and test must see)."""
        if self.training:
            for p, z in zip(params, self.z):
                p.lerp_(z, _per_trial(1 - 1 / self.beta, p))
            self.training = False

    @torch.no_grad()
    def train(self, params: Sequence[Tensor]) -> None:
        """The weights become y again, where gradients are taken."""
        if not self.training:
            for p, z in zip(params, self.z):
                p.lerp_(z, _per_trial(1 - self.beta, p))
            self.training = True

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: tuple[Tensor, ...], lr: Tensor) -> None:
        if not self.training:
            raise RuntimeError("schedule-free step in eval mode: call train(params) first")
        lr64 = lr.to(torch.float64)
        self.lr_max = torch.maximum(self.lr_max, lr64)
        weight = self.lr_max ** WEIGHT_LR_POWER  # ((k+1)^r with r = 0)
        self.weight_sum = self.weight_sum + weight
        # The package's ZeroDivisionError case (every LR so far 0): no interpolation.
        ckp1 = torch.where(self.weight_sum > 0, weight / self.weight_sum, 0.0)
        y_step = lr64 * (self.beta * (1 - ckp1) - 1)
        self.steps = [k + 1 for k in self.steps]
        if self.adam:
            bias_correction2 = torch.tensor([1 - ADAM_BETA2 ** k for k in self.steps],
                                            dtype=torch.float64).to(lr.device)
        for i, (y, g, z) in enumerate(zip(params, grads, self.z)):
            if self.adam:
                v = self.exp_avg_sq[i]
                v.mul_(ADAM_BETA2).addcmul_(g, g, value=1 - ADAM_BETA2)
                g = g / (v / _per_trial(bias_correction2, v)).sqrt_().add_(ADAM_EPS)
            if self.weight_decay:  # at y, after AdamW's normalisation, as the package
                g = g.add(y, alpha=self.weight_decay)
            y.lerp_(z, _per_trial(ckp1, y))
            y.addcmul_(g, _per_trial(y_step, y))
            z.addcmul_(g, _per_trial(lr64, z), value=-1)
