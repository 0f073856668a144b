"""The sequential engine: one trial, one model, one readable training loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from lrbench.train import losses
from lrbench.train.data import DeviceData, model_input
from lrbench.train.losses import DEFAULT_LOSS
from lrbench.train.lr_schedule import LRSchedule
from lrbench.train.optimizers import is_schedule_free
from lrbench.train.schedule_free import make_schedule_free
from lrbench.train.schedules import ScheduleContext
from lrbench.train.trial import OptimizerConfig, TrialResult, TrialSpec
from lrbench.train.workload import build_model

# A model whose validation accuracy sits within 20% of chance after its first epoch
# has collapsed (MNIST models are above 80% after one epoch at any sane LR). Applied on
# the built-in data sets only (DeviceData.chance).
CHANCE_MARGIN = 1.2
EVAL_CHUNK = 2000  # images per forward pass in evaluation: bounds the CNN's activations

EpochHook = Callable[[int, float], bool]  # (epoch index, val accuracy) -> prune now?


def prepare_optimizers() -> None:
    """Import now what a process's first torch optimizer would import: making one imports
    ``torch._dynamo`` (torch's ``_disable_dynamo``, ~1.2 s of CPU and ~900 modules). Made
    inside a trial, that import counted in the trial's time (the first trial of every
    sequential slot ran ~1.2 s slower on paper) and its memory (a worker whose memory ran
    out mid-trial failed the import itself, with an ImportError)."""
    import torch._dynamo  # noqa: F401


def make_optimizer(params: Iterable[torch.nn.Parameter],
                   cfg: OptimizerConfig) -> torch.optim.Optimizer:
    # fused=True: one kernel per step instead of one per tensor (measured: README).
    if is_schedule_free(cfg.name):
        return make_schedule_free(params, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, fused=True)
    optimizer = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             loss: str = DEFAULT_LOSS) -> tuple[float, float]:
    """Mean loss and score over a whole split: cross-entropy and accuracy, or the mean
    squared error and its negative (lrbench.train.losses)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    score = torch.zeros((), device=x.device, dtype=torch.float64 if loss == "mse" else torch.long)
    for xb, yb in zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK)):
        out = model(model_input(xb))
        if loss == "mse":
            errors = losses.per_example(loss, out, yb).sum()
            loss_sum += errors
            score -= errors
        else:
            loss_sum += F.cross_entropy(out, yb, reduction="sum")
            score += (out.argmax(1) == yb).sum()
    n = len(y)
    return loss_sum.item() / n, score.item() / n


def divergence(epoch: int, train_loss: float, val_accuracy: float,
               chance: float | None) -> str:
    """Why a trial has diverged after (0-based) ``epoch``, or "" if it has not. Without
    a ``chance`` level only a non-finite loss counts."""
    if not math.isfinite(train_loss):
        return f"train loss is {train_loss} in epoch {epoch + 1}"
    if chance is not None and epoch >= 1 and val_accuracy <= CHANCE_MARGIN * chance:
        return (f"validation accuracy collapsed to {val_accuracy:.3f} "
                f"(chance is {chance:.3f}) in epoch {epoch + 1}")
    return ""


def train_trial(spec: TrialSpec, data: DeviceData,
                on_epoch: EpochHook | None = None) -> TrialResult:
    """Train one model with one schedule; validate every epoch; test once at the end.

    ``on_epoch`` sees each epoch's validation accuracy and returns True to prune the
    trial (Optuna's pruner lives behind it; the engine knows nothing of Optuna).
    """
    started = time.perf_counter()
    device = data.device
    torch.manual_seed(spec.seed)  # the model's initial weights
    model = build_model(spec.model, data.num_classes).to(device)
    optimizer = make_optimizer(model.parameters(), spec.optimizer)
    n_train = len(data.train_y)
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    schedule = LRSchedule(optimizer, spec.schedule,
                          ScheduleContext(spec.epochs, steps_per_epoch, spec.plateau_metric))
    # Batch order has its own CPU generator, so it is the same on every device.
    data_seed = spec.data_seed if spec.data_seed is not None else spec.seed
    order = torch.Generator().manual_seed(data_seed)
    for _ in range(spec.data_offset):  # a batched stack's late joiner: skip to its epoch 0
        torch.randperm(n_train, generator=order)
    chance = data.chance
    # Schedule-free trains at y and must be evaluated at x, its average: train() and
    # eval() switch the weights (the package's API); the other optimizers have one set.
    averaged = is_schedule_free(spec.optimizer.name)

    result = TrialResult("complete", math.nan, math.nan, math.nan, 0.0, str(device),
                         data_seed=data_seed, data_offset=spec.data_offset)
    for epoch in range(spec.epochs):
        lr = schedule.lr
        model.train()
        if averaged:
            optimizer.train()  # type: ignore[attr-defined]
        loss_sum = torch.zeros((), device=device)
        for batch in torch.randperm(n_train, generator=order).to(device).split(spec.batch_size):
            # index_select: faster than fancy indexing for these gathers (measured: README)
            out = model(model_input(data.train_x.index_select(0, batch)))
            loss = losses.mean_loss(data.loss, out, data.train_y.index_select(0, batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.after_batch()
            loss_sum += loss.detach() * len(batch)  # no .item(): one sync per epoch, not per batch
        train_loss = loss_sum.item() / n_train
        if averaged:  # validation now, the test after the last epoch: both at x
            optimizer.eval()  # type: ignore[attr-defined]
        val_loss, val_accuracy = evaluate(model, data.val_x, data.val_y, data.loss)

        for key, value in zip(result.curves, (epoch + 1, lr, train_loss, val_loss, val_accuracy,
                                              time.perf_counter() - started)):
            result.curves[key].append(value)
        result.val_accuracy = val_accuracy

        reason = divergence(epoch, train_loss, val_accuracy, chance)
        if reason:
            result.status, result.reason = "diverged", reason
            break
        schedule.after_epoch(val_accuracy, val_loss)
        if on_epoch is not None and on_epoch(epoch, val_accuracy) and epoch + 1 < spec.epochs:
            result.status, result.reason = "pruned", f"pruned after epoch {epoch + 1}"
            break

    result.test_loss, result.test_accuracy = evaluate(model, data.test_x, data.test_y, data.loss)
    result.train_seconds = time.perf_counter() - started
    return result
