"""K models of one architecture held as one set of ``[K, ...]`` tensors.

Trial k's weights are slice k of every tensor, initialised exactly as the sequential
engine initialises that trial (``torch.manual_seed(seed)``, then the model's constructor).
The minibatch is shared by all K trials, so the FNN's and logreg's first layer is ONE
GEMM ``x [B, 784] @ W1cat.T`` with ``W1cat = W1 [K, H, 784]`` viewed as ``[K*H, 784]``;
any other model, a user's included, runs through PyTorch's model-ensembling recipe:
``torch.func.functional_call`` under ``vmap`` over the trial axis, with its parameters and
buffers stacked.

Training and evaluation use one forward, so a model whose layers behave differently in
the two modes (dropout, batch norm), or that vmap cannot run, is not stacked:
``unstackable`` says why, and the sweep trains it on the sequential engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lrbench.train.workload import build_model

# (stacked params, stacked buffers, x [B, ...]) -> logits [K, B, C]
Forward = Callable[[list[Tensor], list[Tensor], Tensor], Tensor]


def _fnn_logits(params: list[Tensor], buffers: list[Tensor], x: Tensor) -> Tensor:
    w1, b1, w2, b2 = params  # [K, H, 784], [K, H], [K, C, H], [K, C]
    k, hidden = b1.shape
    # One GEMM for every trial's first layer: [B, 784] @ [784, K*H] -> [B, K*H].
    h = torch.addmm(b1.reshape(-1), x, w1.reshape(k * hidden, -1).t()).relu()
    h = h.view(len(x), k, hidden).transpose(0, 1)  # [K, B, H]
    return torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2))  # [K, B, C]


def _logreg_logits(params: list[Tensor], buffers: list[Tensor], x: Tensor) -> Tensor:
    w, b = params  # [K, C, 784], [K, C]
    k, classes = b.shape
    out = torch.addmm(b.reshape(-1), x, w.reshape(k * classes, -1).t())  # [B, K*C]
    return out.view(len(x), k, classes).transpose(0, 1)


def _vmapped(skeleton: nn.Module) -> Forward:
    """Any model, mapped over the trial axis: ``functional_call`` supplies each trial's
    parameters and buffers to ``skeleton`` (one real instance, whose own tensors are
    never read)."""
    param_names = [n for n, _ in skeleton.named_parameters()]
    buffer_names = [n for n, _ in skeleton.named_buffers()]

    def one_trial(params: tuple[Tensor, ...], buffers: tuple[Tensor, ...], x: Tensor) -> Tensor:
        tensors = {**dict(zip(param_names, params)), **dict(zip(buffer_names, buffers))}
        return functional_call(skeleton, tensors, (x,))

    mapped = vmap(one_trial, in_dims=(0, 0, None))  # x is shared: not mapped
    return lambda params, buffers, x: mapped(tuple(params), tuple(buffers), x)


# Hand-written forwards: the models a sweep trains most (the tutorial's FNN first).
FORWARDS: dict[str, Forward] = {
    "fnn": _fnn_logits,
    "logreg": _logreg_logits,
}


class StackedModel:
    """The weights of K trials' models; ``logits(x)`` runs all of them on one minibatch."""

    def __init__(self, name: str, num_classes: int, params: list[Tensor],
                 forward: Forward, buffers: list[Tensor] | None = None) -> None:
        self.name, self.num_classes = name, num_classes  # the model's name and its output
        self.params = params  # [K, ...] each, in model.parameters() order
        self.buffers = buffers or []  # [K, ...] each, in model.buffers() order (not trained)
        self.forward = forward

    @classmethod
    def from_seeds(cls, name: str, seeds: Sequence[int], num_classes: int,
                   device: torch.device, forward: Forward | None = None) -> StackedModel:
        """Trial k's weights exactly as the sequential engine draws them for seed k.
        ``forward``: a stack's own, for newcomers joining it (else one is made)."""
        stacked: list[Tensor] = []
        buffers: list[Tensor] = []
        skeleton = None
        for k, seed in enumerate(seeds):
            torch.manual_seed(seed)
            model = build_model(name, num_classes)
            weights, states = list(model.parameters()), list(model.buffers())
            if skeleton is None:  # allocate on the device once; copy each trial in
                skeleton = model
                stacked = [torch.empty(len(seeds), *w.shape, device=device) for w in weights]
                buffers = [torch.empty(len(seeds), *b.shape, dtype=b.dtype, device=device)
                           for b in states]
            for target, w in zip([*stacked, *buffers], [*weights, *states]):
                target[k].copy_(w.detach())
        assert skeleton is not None, "from_seeds needs at least one seed"
        forward = forward or FORWARDS.get(name) or _vmapped(skeleton.to(device))
        return cls(name, num_classes, [p.requires_grad_() for p in stacked], forward, buffers)

    @property
    def trials(self) -> int:
        return len(self.params[0])

    def logits(self, x: Tensor) -> Tensor:
        """``x [B, ...]`` model inputs -> ``[K, B, num_classes]``."""
        return self.forward(self.params, self.buffers, x)

    def select(self, keep: Tensor) -> None:
        """Keep only the trials at positions ``keep`` (dead trials stop costing compute)."""
        self.params = [p.detach().index_select(0, keep).requires_grad_() for p in self.params]
        self.buffers = [b.index_select(0, keep) for b in self.buffers]

    def extend(self, other: StackedModel) -> None:
        """Append ``other``'s trials after this model's (a stack's newcomers)."""
        self.params = [torch.cat([p.detach(), q.detach()]).requires_grad_()
                       for p, q in zip(self.params, other.params)]
        self.buffers = [torch.cat([b, c]) for b, c in zip(self.buffers, other.buffers)]

    def subset(self, positions: Tensor) -> StackedModel:
        """A detached copy of some trials, e.g. to test those leaving the stack."""
        params = [p.detach().index_select(0, positions) for p in self.params]
        buffers = [b.index_select(0, positions) for b in self.buffers]
        return StackedModel(self.name, self.num_classes, params, self.forward, buffers)


# Layers that compute differently in training and in evaluation: one stacked forward
# serves both, so a model holding one trains on the sequential engine.
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase,
                  nn.MultiheadAttention)


def unstackable(name: str, example: Tensor, num_classes: int) -> str:
    """Why the batched engine cannot train ``name`` exactly as the sequential one does,
    or "" if it can: a layer that behaves differently in training and evaluation, or a
    forward vmap cannot run (checked on two trials and ``example`` inputs, forward and
    backward)."""
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, num_classes)
        layers = sorted({type(m).__name__ for m in model.modules()
                         if isinstance(m, MODE_DEPENDENT) and _acts_in_modes(m)})
        if layers:
            return (f"it has {', '.join(layers)}, which computes differently in training and "
                    f"evaluation; the batched engine runs one forward for both")
        if name in FORWARDS:
            return ""
        try:
            stack = StackedModel.from_seeds(name, [0, 1], num_classes, example.device)
            logits = stack.logits(example)
            torch.autograd.grad(logits.float().sum(), stack.params)
        except Exception as err:  # noqa: BLE001 - whatever vmap refuses, said in one line
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            return f"torch.func.vmap cannot run its forward ({type(err).__name__}: {first})"
    return ""


def _acts_in_modes(module: nn.Module) -> bool:
    """Dropout with p > 0, batch norm tracking running statistics, attention with dropout."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    if isinstance(module, nn.MultiheadAttention):
        return module.dropout > 0
    return True


# --- sizes, for fitting K to a device's memory ---


# Sizes come from a real model on the CPU, not one on the "meta" device: the first meta
# forward imports torch's decompositions, seconds per process (benchmarks/README.md),
# and these models are small. fork_rng: building one must not move the global seed.


@cache
def parameter_count(name: str, num_classes: int = 10) -> int:
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in build_model(name, num_classes).parameters())


@cache
def activation_floats(name: str, num_classes: int = 10, example_shape: tuple[int, ...] = (784,),
                      example_dtype: torch.dtype = torch.float32) -> int:
    """Floats one input produces in one model's forward: every leaf module's output."""
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, num_classes)
    total = 0

    def count(module: torch.nn.Module, inputs: object, output: Tensor) -> None:
        nonlocal total
        if isinstance(output, Tensor):  # (a leaf returning a tuple is not counted)
            total += output[0].numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    with torch.no_grad():
        model(torch.zeros(1, *example_shape, dtype=example_dtype))
    for hook in hooks:
        hook.remove()
    return total
