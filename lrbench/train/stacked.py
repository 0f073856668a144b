"""K models of one architecture held as one set of ``[K, ...]`` tensors.

Trial k's weights are slice k of every tensor, initialised exactly as the sequential
engine initialises that trial (``torch.manual_seed(seed)``, then the model's constructor).
The minibatch is shared by all K trials, so the FNN's and logreg's first layer is ONE
GEMM ``x [B, 784] @ W1cat.T`` with ``W1cat = W1 [K, H, 784]`` viewed as ``[K*H, 784]``;
any other model runs through ``torch.func.vmap`` over the trial axis.

The models have no dropout or batch norm, so training and evaluation use one forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, vmap

from lrbench.train.models import MODELS

Forward = Callable[[list[Tensor], Tensor], Tensor]  # (stacked params, x [B, 784]) -> [K, B, C]


def _fnn_logits(params: list[Tensor], x: Tensor) -> Tensor:
    w1, b1, w2, b2 = params  # [K, H, 784], [K, H], [K, C, H], [K, C]
    k, hidden = b1.shape
    # One GEMM for every trial's first layer: [B, 784] @ [784, K*H] -> [B, K*H].
    h = torch.addmm(b1.reshape(-1), x, w1.reshape(k * hidden, -1).t()).relu()
    h = h.view(len(x), k, hidden).transpose(0, 1)  # [K, B, H]
    return torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2))  # [K, B, C]


def _logreg_logits(params: list[Tensor], x: Tensor) -> Tensor:
    w, b = params  # [K, C, 784], [K, C]
    k, classes = b.shape
    out = torch.addmm(b.reshape(-1), x, w.reshape(k * classes, -1).t())  # [B, K*C]
    return out.view(len(x), k, classes).transpose(0, 1)


def _vmapped(name: str, num_classes: int) -> Forward:
    """Any model of MODELS, mapped over the trial axis (correct first; not hand-tuned)."""
    with torch.device("meta"):  # a skeleton: functional_call supplies every weight
        skeleton = MODELS[name](num_classes)
    names = [n for n, _ in skeleton.named_parameters()]

    def one_trial(params: tuple[Tensor, ...], x: Tensor) -> Tensor:
        return functional_call(skeleton, dict(zip(names, params)), (x,))

    mapped = vmap(one_trial, in_dims=(0, None))  # x is shared: not mapped
    return lambda params, x: mapped(tuple(params), x)


# Hand-written forwards: the models a sweep trains most (the tutorial's FNN first).
FORWARDS: dict[str, Forward] = {
    "fnn": _fnn_logits,
    "logreg": _logreg_logits,
}


class StackedModel:
    """The weights of K trials' models; ``logits(x)`` runs all of them on one minibatch."""

    def __init__(self, name: str, num_classes: int, params: list[Tensor],
                 forward: Forward) -> None:
        self.name, self.num_classes = name, num_classes  # the MODELS entry and its output
        self.params = params  # [K, ...] each, in model.parameters() order
        self.forward = forward

    @classmethod
    def from_seeds(cls, name: str, seeds: Sequence[int], num_classes: int,
                   device: torch.device) -> StackedModel:
        """Trial k's weights exactly as the sequential engine draws them for seed k."""
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
        stacked: list[Tensor] = []
        for k, seed in enumerate(seeds):
            torch.manual_seed(seed)
            weights = list(MODELS[name](num_classes).parameters())
            if not stacked:  # allocate on the device once; copy each trial in
                stacked = [torch.empty(len(seeds), *w.shape, device=device) for w in weights]
            for target, w in zip(stacked, weights):
                target[k].copy_(w.detach())
        forward = FORWARDS.get(name) or _vmapped(name, num_classes)
        return cls(name, num_classes, [p.requires_grad_() for p in stacked], forward)

    @property
    def trials(self) -> int:
        return len(self.params[0])

    def logits(self, x: Tensor) -> Tensor:
        """``x [B, 784]`` floats -> ``[K, B, num_classes]``."""
        return self.forward(self.params, x)

    def select(self, keep: Tensor) -> None:
        """Keep only the trials at positions ``keep`` (dead trials stop costing compute)."""
        self.params = [p.detach().index_select(0, keep).requires_grad_() for p in self.params]

    def extend(self, other: StackedModel) -> None:
        """Append ``other``'s trials after this model's (a stack's newcomers)."""
        self.params = [torch.cat([p.detach(), q.detach()]).requires_grad_()
                       for p, q in zip(self.params, other.params)]

    def subset(self, positions: Tensor) -> StackedModel:
        """A detached copy of some trials, e.g. to test those leaving the stack."""
        params = [p.detach().index_select(0, positions) for p in self.params]
        return StackedModel(self.name, self.num_classes, params, self.forward)


def per_trial_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """``logits [K, B, C]``, labels ``[B]`` -> each image's loss per trial, ``[K, B]``."""
    k, b, classes = logits.shape
    return F.cross_entropy(logits.reshape(k * b, classes), y.repeat(k),
                           reduction="none").view(k, b)


# --- sizes, for fitting K to a device's memory ---


# Sizes come from a real model on the CPU, not one on the "meta" device: the first meta
# forward imports torch's decompositions, seconds per process (benchmarks/README.md),
# and these models are small. fork_rng: building one must not move the global seed.


@cache
def parameter_count(name: str, num_classes: int = 10) -> int:
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in MODELS[name](num_classes).parameters())


@cache
def activation_floats(name: str, num_classes: int = 10) -> int:
    """Floats one image produces in one model's forward: every leaf module's output."""
    with torch.random.fork_rng(devices=[]):
        model = MODELS[name](num_classes)
    total = 0

    def count(module: torch.nn.Module, inputs: object, output: Tensor) -> None:
        nonlocal total
        total += output[0].numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    with torch.no_grad():
        model(torch.zeros(1, 784))
    for hook in hooks:
        hook.remove()
    return total
