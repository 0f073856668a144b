"""SGD and Adam/AdamW on stacked ``[K, ...]`` weights, with one LR per trial.

The updates follow torch.optim.SGD / Adam / AdamW (single-tensor path, dampening 0,
amsgrad off) line for line, with the scalar ``lr`` replaced by a ``[K]`` vector broadcast
over each tensor's trailing axes. Trials may join a stack late (``extend``): their state
starts as torch's does. SGD's momentum buffer starts at zero, so its first update is
0 * m + g = g exactly, as torch's clone of the first gradient; Adam keeps a step count
per trial, and with it a bias correction per trial. No op reads a value back to the
host: a step launches kernels and returns.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from lrbench.train.optimizers import is_schedule_free
from lrbench.train.schedule_free import StackedScheduleFree
from lrbench.train.trial import OptimizerConfig

ADAM_BETAS = (0.9, 0.999)  # torch's defaults, which the sequential engine uses
ADAM_EPS = 1e-8
# The kernel behind torch.optim.SGD(fused=True) on CPU; private, so optional: without it
# the eager update below is the same rule.
_FUSED_CPU_SGD = getattr(torch, "_fused_sgd_", None)
# That kernel runs once per trial, and each call costs about as much as a pass over 25k
# weights: it pays only for trials at least this large (the FNN's 79,510 weights, not the
# logistic regression's 7,850; benchmarks/README.md has the timings).
FUSED_CPU_MIN_WEIGHTS = 32_768


def _per_trial(lr: Tensor, like: Tensor) -> Tensor:
    """``[K]`` -> ``[K, 1, ..., 1]``, broadcastable against ``like [K, ...]``."""
    return lr.view(-1, *[1] * (like.dim() - 1))


def _sgd_momentum_update(p: Tensor, g: Tensor, buf: Tensor, lr_k: Tensor, momentum: float,
                         weight_decay: float, nesterov: bool) -> None:
    """The same SGD rule as StackedSGD.step, as one function torch.compile can fuse.

    Eagerly this is ~9 passes over K models' weights per step (each op reads and writes
    them); fused it is one kernel reading p, g and buf and writing p and buf. At K=4096
    FNNs (1.3 GB of weights) the update, not the matmuls, bounds a GPU step.
    """
    if weight_decay:
        g = g + weight_decay * p
    buf.mul_(momentum).add_(g)
    p.sub_(lr_k * (g + momentum * buf if nesterov else buf))


class StackedSGD:
    """torch.optim.SGD: momentum buffer = first gradient, then m*buf + g; nesterov g + m*buf.

    ``fused``: run the momentum update through torch.compile (GPU; needs Triton).
    """

    def __init__(self, cfg: OptimizerConfig, fused: bool = False) -> None:
        self.momentum, self.nesterov = cfg.momentum, cfg.nesterov
        self.weight_decay = cfg.weight_decay
        self.buffers: list[Tensor | None] = []
        self.fused_update = (torch.compile(_sgd_momentum_update, dynamic=True)
                             if fused and cfg.momentum else None)
        self.compiled_steps = 0

    def _fused_step(self, params: list[Tensor], grads: tuple[Tensor, ...], lr: Tensor) -> None:
        k = len(lr)
        for p, g, buf in zip(params, grads, self.buffers):
            assert buf is not None
            # All as [K, n]: one compiled graph serves every tensor and every K.
            self.fused_update(p.view(k, -1), g.reshape(k, -1), buf.view(k, -1), lr.view(k, 1),
                              self.momentum, self.weight_decay, self.nesterov)
        self.compiled_steps += 1

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: tuple[Tensor, ...], lr: Tensor) -> None:
        if not self.buffers:
            self.buffers = [None] * len(params)
        if self.fused_update is not None and self.buffers[0] is not None:
            try:
                self._fused_step(params, grads, lr)
                return
            except Exception as err:  # no Triton, no compiler: the eager rule is the same rule
                if self.compiled_steps:  # it worked before: a real error, not a missing tool
                    raise
                warnings.warn(f"fused SGD update unavailable ({type(err).__name__}: {err}); "
                              f"using the eager update", RuntimeWarning, stacklevel=2)
                self.fused_update = None
        if _FUSED_CPU_SGD is not None and self.momentum and self.buffers[0] is not None \
                and params[0].device.type == "cpu" \
                and sum(math.prod(p.shape[1:]) for p in params) >= FUSED_CPU_MIN_WEIGHTS:
            self._fused_cpu_step(params, grads, lr)
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            if self.momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.clone(memory_format=torch.contiguous_format)
                else:  # buf = m * buf + g, in one pass over the weights instead of two
                    torch.add(g, buf, alpha=self.momentum, out=buf)
                if self.nesterov:  # p -= lr * (g + m * buf), without a weight-sized temporary
                    p.addcmul_(g, _per_trial(lr, p), value=-1)
                    p.addcmul_(buf, _per_trial(lr, p), value=-self.momentum)
                    continue
                g = buf
            p.addcmul_(g, _per_trial(lr, p), value=-1)

    def _fused_cpu_step(self, params: list[Tensor], grads: tuple[Tensor, ...],
                        lr: Tensor) -> None:
        """torch's fused CPU SGD kernel, once per trial on its slices: one pass over p, g
        and buf instead of three (bench_batched: ~7% faster CPU steps at K=8). It is the
        kernel of ``torch.optim.SGD(fused=True)``, which matches the default SGD bit for bit."""
        buffers = [b for b in self.buffers if b is not None]
        # The kernel reads its tensors as dense: a transposed gradient (the FNN's second
        # layer, from baddbmm) must be made contiguous first, or it is read in the wrong order.
        grads = tuple(g.contiguous() for g in grads)
        for k, lr_k in enumerate(lr.tolist()):  # a CPU tensor: no device sync
            _FUSED_CPU_SGD([p[k] for p in params], [g[k] for g in grads],
                           [b[k] for b in buffers], weight_decay=self.weight_decay,
                           momentum=self.momentum, lr=lr_k, dampening=0.0,
                           nesterov=self.nesterov, maximize=False, is_first_step=False)

    def select(self, keep: Tensor) -> None:
        self.buffers = [b if b is None else b.index_select(0, keep) for b in self.buffers]

    def extend(self, configs: Sequence[OptimizerConfig], params: Sequence[Tensor]) -> None:
        """New trials after the others, with no momentum yet (a zero buffer)."""
        count = len(configs)
        self.buffers = [b if b is None else torch.cat([b, b.new_zeros(count, *b.shape[1:])])
                        for b in self.buffers]

    def eval(self, params: Sequence[Tensor]) -> None:
        """Nothing to do: SGD evaluates the weights it trains (schedule-free does not)."""

    def train(self, params: Sequence[Tensor]) -> None:
        """Nothing to do (see eval)."""


class StackedAdam:
    """torch.optim.Adam, or AdamW (``decoupled``): bias-corrected moments, eps outside the
    square root; Adam adds weight decay to the gradient, AdamW shrinks the weights."""

    def __init__(self, cfg: OptimizerConfig, decoupled: bool) -> None:
        self.weight_decay, self.decoupled = cfg.weight_decay, decoupled
        self.steps: list[int] = []  # per trial
        self.exp_avg: list[Tensor] = []
        self.exp_avg_sq: list[Tensor] = []

    def _bias_corrections(self, like: Tensor) -> tuple[Tensor | float, Tensor | float]:
        """1 - beta1^t and sqrt(1 - beta2^t), per trial; plain numbers when all agree."""
        beta1, beta2 = ADAM_BETAS
        if len(set(self.steps)) == 1:
            t = self.steps[0]
            return 1 - beta1 ** t, math.sqrt(1 - beta2 ** t)
        first = torch.tensor([1 - beta1 ** t for t in self.steps], dtype=torch.float64)
        second = torch.tensor([math.sqrt(1 - beta2 ** t) for t in self.steps],
                              dtype=torch.float64)
        return (first.to(like.device, like.dtype), second.to(like.device, like.dtype))

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: tuple[Tensor, ...], lr: Tensor) -> None:
        beta1, beta2 = ADAM_BETAS
        if not self.exp_avg:
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        if len(self.steps) != len(lr):  # built before the first step
            self.steps = [0] * len(lr)
        self.steps = [t + 1 for t in self.steps]
        corrections = self._bias_corrections(lr)
        for p, g, m, v in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            lr_k = _per_trial(lr, p)
            bias_correction1, bias_correction2_sqrt = (
                _per_trial(c, p) if isinstance(c, Tensor) else c for c in corrections)
            if self.weight_decay and self.decoupled:
                p.mul_(1 - lr_k * self.weight_decay)
            elif self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = v.sqrt().div_(bias_correction2_sqrt).add_(ADAM_EPS)
            # p -= (lr / bias_correction1) * m / denom; the step size folded into denom in
            # place: one weight-sized temporary per tensor, not three (CPU: fewer page faults)
            p.addcdiv_(m, denom.div_(lr_k / bias_correction1), value=-1)

    def select(self, keep: Tensor) -> None:
        self.exp_avg = [m.index_select(0, keep) for m in self.exp_avg]
        self.exp_avg_sq = [v.index_select(0, keep) for v in self.exp_avg_sq]
        if self.steps:
            self.steps = [self.steps[k] for k in keep.tolist()]

    def extend(self, configs: Sequence[OptimizerConfig], params: Sequence[Tensor]) -> None:
        """New trials after the others: zero moments, no steps yet."""
        count = len(configs)
        if self.exp_avg:
            self.exp_avg = [torch.cat([m, m.new_zeros(count, *m.shape[1:])])
                            for m in self.exp_avg]
            self.exp_avg_sq = [torch.cat([v, v.new_zeros(count, *v.shape[1:])])
                               for v in self.exp_avg_sq]
            self.steps = self.steps + [0] * count

    def eval(self, params: Sequence[Tensor]) -> None:
        """Nothing to do: Adam evaluates the weights it trains (schedule-free does not)."""

    def train(self, params: Sequence[Tensor]) -> None:
        """Nothing to do (see eval)."""


StackedOptimizer = StackedSGD | StackedAdam | StackedScheduleFree


def stacked_optimizer(cfg: OptimizerConfig, fused: bool = False) -> StackedOptimizer:
    """The stacked twin of ``sequential.make_optimizer(cfg)``; the LR comes with each step.

    ``fused`` compiles SGD's momentum update into one kernel (Adam and schedule-free
    stay eager).
    """
    if is_schedule_free(cfg.name):
        return StackedScheduleFree(cfg)
    if cfg.name == "sgd":
        return StackedSGD(cfg, fused)
    if cfg.name in ("adam", "adamw"):
        return StackedAdam(cfg, decoupled=cfg.name == "adamw")
    raise ValueError(f"unknown optimizer {cfg.name!r}; expected sgd, adam, adamw, "
                     f"sgd_schedulefree or adamw_schedulefree")
