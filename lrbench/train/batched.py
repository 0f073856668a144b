"""The batched engine: K trials trained at once as one stacked model.

Each trial is the sequential engine's trial (same initial weights, same optimizer rule,
its own real torch scheduler, same validation, divergence and pruning rules, same curves),
except that all K share ONE batch order, ``data_seed``: one gather per step feeds every
trial. A trial trained here equals ``train_trial`` on the same spec with that
``data_seed`` and the ``data_offset`` it joined at, to float rounding
(tests/train/test_batched.py).

Per epoch: every live trial's LRs for the epoch go to the device as one ``[steps, K]``
table, then the steps run with no host sync; one sync per epoch reads the metrics back.
A trial that finishes, diverges or is pruned is tested where it stopped and leaves the
stack; new trials may join it between epochs (``Stack``: a slot keeps its stack full).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lrbench.train import losses
from lrbench.train.data import DeviceData, model_input
from lrbench.train.losses import DEFAULT_LOSS
from lrbench.train.lr_schedule import LRSchedule, ShadowSGD
from lrbench.train.optimizers import is_schedule_free
from lrbench.train.schedules import ScheduleContext
from lrbench.train.sequential import EVAL_CHUNK, divergence
from lrbench.train.stacked import (
    StackedModel,
    activation_floats,
    parameter_count,
)
from lrbench.train.stacked_optim import StackedOptimizer, stacked_optimizer
from lrbench.train.trial import TrialResult, TrialSpec

# (index in specs, epoch index, val accuracy) -> prune now? The sequential hook, per trial.
BatchEpochHook = Callable[[int, int, float], bool]

# Floats of activations one evaluation pass may hold for all live trials together
# (2**26 floats = 256 MiB): the image chunk shrinks as K grows.
EVAL_FLOATS = 2**26
# Share of the free memory max_trials_for_memory plans to use: the allocator fragments.
MEMORY_HEADROOM = 0.8


# --- which trials can train together ---


def group_key(spec: TrialSpec) -> tuple[object, ...]:
    """Trials stack only when these agree: the tensors' shapes (model), the loop (batch
    size, batch order) and the optimizer's update rule (all but its LR). Epochs may differ:
    each member leaves after its own."""
    opt = spec.optimizer
    # Schedule-free keeps its beta (``momentum``) per trial, like the LR.
    momentum = None if is_schedule_free(opt.name) else opt.momentum
    return (spec.model, spec.batch_size, spec.data_seed,
            opt.name, momentum, opt.nesterov, opt.weight_decay)


def group_specs(specs: Sequence[TrialSpec], max_trials: int | None = None) -> list[list[TrialSpec]]:
    """Specs split into batches ``train_batch`` accepts, in first-seen order; each at most
    ``max_trials`` long (e.g. ``max_trials_for_memory``'s answer)."""
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, but got {max_trials=}")
    groups: dict[tuple[object, ...], list[TrialSpec]] = {}
    for spec in specs:
        groups.setdefault(group_key(spec), []).append(spec)
    size = max_trials or max(1, len(specs))
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def shared_data_seed(specs: Sequence[TrialSpec], data_seed: int | None) -> int:
    """The one batch order of a batch: ``data_seed``, else the specs' own, else the first seed."""
    if data_seed is None:
        data_seed = specs[0].data_seed if specs[0].data_seed is not None else specs[0].seed
    for spec in specs:
        if spec.data_seed is not None and spec.data_seed != data_seed:
            raise ValueError(f"trial {spec.number} asks for data_seed={spec.data_seed}, "
                             f"but the batch trains with data_seed={data_seed}")
    return data_seed


def _check_batch(specs: Sequence[TrialSpec]) -> None:
    if not specs:
        raise ValueError("train_batch needs at least one spec, but got none")
    first = group_key(specs[0])
    for spec in specs:
        if group_key(spec) != first:
            raise ValueError(f"trial {spec.number} cannot train with trial {specs[0].number}: "
                             f"group key {group_key(spec)} != {first} (use group_specs)")


# --- learning rates: each trial's real scheduler, stepped a whole epoch ahead ---


def _shadow_schedule(spec: TrialSpec, steps_per_epoch: int) -> LRSchedule:
    """The trial's LRSchedule on a one-parameter optimizer: the LR it sets is the trial's."""
    shadow = ShadowSGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.optimizer.lr)
    schedule = LRSchedule(shadow, spec.schedule,
                          ScheduleContext(spec.epochs, steps_per_epoch, spec.plateau_metric))
    # torch warns when a scheduler steps before its optimizer ever did.
    shadow.step()
    return schedule


def _lr_table(schedules: Sequence[LRSchedule], steps: int, device: torch.device) -> Tensor:
    """``[steps, K]``: every trial's LR for every step of the coming epoch.

    Stepping a schedule a whole epoch ahead is exact: no metric reaches it before
    after_epoch. Only per-batch families and warm-up epochs are stepped batch by batch
    (~4 us a step); the others hold one LR all epoch.
    """
    table = torch.tensor([s.lr for s in schedules], dtype=torch.float64).repeat(steps, 1)
    for k, schedule in enumerate(schedules):
        if schedule.constant_this_epoch():
            schedule.skip_batches(steps)
            continue
        lrs = []
        for _ in range(steps):
            lrs.append(schedule.lr)
            schedule.after_batch()
        table[:, k] = torch.tensor(lrs, dtype=torch.float64)
    return table.to(device, torch.float32)


# --- training and evaluation of the whole stack ---


@contextlib.contextmanager
def _precision(tf32: bool) -> Iterator[None]:
    """TF32 matmuls on request (restored on the way out); else the process's setting,
    fp32 by default, as the sequential engine runs."""
    if not tf32:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _train_step(model: StackedModel, optimizer: StackedOptimizer, x: Tensor, y: Tensor,
                lr: Tensor, bf16: bool, loss: str) -> Tensor:
    """One SGD/Adam step of every trial; returns each trial's mean loss, ``[K]``."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        logits = model.logits(x)
    trial_losses = losses.per_example(loss, logits.float(), y).mean(1)
    # Backward on the sum: trials share no weights, so each trial's gradient is that of its
    # own loss alone (a NaN in one trial stays in that trial's slices).
    grads = torch.autograd.grad(trial_losses.sum(), model.params)
    optimizer.step(model.params, grads, lr)
    return trial_losses.detach()


def eval_chunk(model: StackedModel, x: Tensor) -> int:
    """Inputs per evaluation pass over ``x``: EVAL_CHUNK, or fewer so that all the
    model's trials' activations stay within EVAL_FLOATS."""
    per_image = model.trials * activation_floats(model.name, model.num_classes,
                                                 *input_form(x))
    return max(1, min(EVAL_CHUNK, EVAL_FLOATS // per_image))


@torch.no_grad()
def evaluate_stack(model: StackedModel, x: Tensor, y: Tensor, bf16: bool = False,
                   loss: str = DEFAULT_LOSS) -> tuple[Tensor, Tensor]:
    """Each trial's summed loss and summed score over a split, ``[K]`` each: cross-entropy
    and correct images, or squared errors and their negative (lrbench.train.losses).

    Sums, not means: the caller divides on the host, as ``sequential.evaluate`` does.
    """
    loss_sum = torch.zeros(model.trials, device=x.device)
    score_sum = torch.zeros(model.trials, device=x.device)
    chunk = eval_chunk(model, x)
    for xb, yb in zip(x.split(chunk), y.split(chunk)):
        with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
            logits = model.logits(model_input(xb)).float()
        per_example = losses.per_example(loss, logits, yb)
        loss_sum += per_example.sum(1)
        score_sum += losses.score_sum(loss, logits, yb, per_example)
    return loss_sum, score_sum


def _train_epoch(model: StackedModel, optimizer: StackedOptimizer, data: DeviceData,
                 batches: Sequence[Tensor], table: Tensor, bf16: bool) -> Tensor:
    """One pass over the training images; each trial's summed loss, ``[K]`` (no host sync)."""
    loss_sum = torch.zeros(model.trials, device=table.device)
    for step, batch in enumerate(batches):
        # index_select: one gather per step feeds all K trials
        x = model_input(data.train_x.index_select(0, batch))
        y = data.train_y.index_select(0, batch)
        loss_sum += _train_step(model, optimizer, x, y, table[step], bf16,
                                data.loss) * len(batch)
    return loss_sum


def _close_epoch(result: TrialResult, schedule: LRSchedule, row: tuple[float, ...],
                 chance: float | None) -> bool:
    """One trial's end of epoch, in the sequential engine's order: record the curves' row,
    stop if diverged, step the schedule. True: it diverged (the pruner is asked next)."""
    epoch_number, _, train_loss, val_loss, val_accuracy, _ = row
    for key, value in zip(result.curves, row):
        result.curves[key].append(value)
    result.val_accuracy = val_accuracy
    reason = divergence(int(epoch_number) - 1, train_loss, val_accuracy, chance)
    if reason:
        result.status, result.reason = "diverged", reason
        return True
    schedule.after_epoch(val_accuracy, val_loss)
    return False


@dataclass
class EpochRow:
    """A member's epoch, as the stack's pruning decision sees it."""

    key: Hashable
    epoch: int  # the member's own 0-based epoch
    val_accuracy: float
    last: bool  # its final epoch: it completes whatever the decision
    curve: Sequence[float] = ()  # its validation accuracies so far, this epoch's last


# The stack's per-epoch decision: the keys of the members to prune now.
Decide = Callable[[list[EpochRow]], Collection[Hashable]]


@dataclass
class _Member:
    key: Hashable
    spec: TrialSpec
    schedule: LRSchedule
    result: TrialResult
    joined: float  # perf_counter when it joined: its curves' seconds count from there
    epoch: int = 0  # epochs trained so far


class Stack:
    """Trials of one ``group_key`` training as one stacked model; more may join between epochs.

    All members follow one batch order (``data_seed``): stack epoch e draws the e-th
    permutation. A member that joins at stack epoch e trains its own epoch 0 on
    permutation e, and records ``data_offset = e``: it equals ``train_trial`` on its
    spec with that ``data_seed`` and ``data_offset``. Members leave when they finish,
    diverge or are pruned; their places are free for the next ``join``.
    """

    def __init__(self, data: DeviceData, data_seed: int, *, tf32: bool = False,
                 bf16: bool = False, fused: bool = False) -> None:
        self.data, self.data_seed = data, data_seed
        self.tf32, self.bf16, self.fused = tf32, bf16, fused
        self.order = torch.Generator().manual_seed(data_seed)  # a CPU generator, as sequential's
        self.epoch = 0  # stack epochs run so far: the data offset of the next member
        self.members: list[_Member] = []  # in stack position order
        self.model: StackedModel | None = None
        self.optimizer: StackedOptimizer | None = None
        self.key: tuple[object, ...] | None = None

    def __len__(self) -> int:
        return len(self.members)

    def keys(self) -> list[Hashable]:
        return [m.key for m in self.members]

    def join(self, specs: Sequence[TrialSpec], keys: Sequence[Hashable] | None = None) -> None:
        """Add trials; they start at the next ``run_epoch``."""
        if not specs:
            return
        keys = list(keys) if keys is not None else [s.number for s in specs]
        if self.key is None:
            _check_batch(specs)
            self.key = group_key(specs[0])
        for spec in specs:
            if group_key(spec) != self.key:
                raise ValueError(f"trial {spec.number} cannot join this stack: group key "
                                 f"{group_key(spec)} != {self.key} (use group_specs)")
        shared_data_seed(specs, self.data_seed)
        first, device = specs[0], self.data.device
        steps = math.ceil(len(self.data.train_y) / first.batch_size)
        now = time.perf_counter()
        for key, spec in zip(keys, specs):
            result = TrialResult("complete", math.nan, math.nan, math.nan, 0.0, str(device),
                                 data_seed=self.data_seed, data_offset=self.epoch)
            self.members.append(_Member(key, spec, _shadow_schedule(spec, steps), result, now))
        newcomers = StackedModel.from_seeds(first.model, [s.seed for s in specs],
                                            self.data.num_classes, device,
                                            self.model.forward if self.model else None)
        if self.model is None:
            self.model, self.optimizer = newcomers, stacked_optimizer(first.optimizer,
                                                                      self.fused)
        else:
            assert self.optimizer is not None
            self.model.extend(newcomers)
        self.optimizer.extend([s.optimizer for s in specs], newcomers.params)

    def run_epoch(self, decide: Decide | None = None,
                  while_training: Callable[[], None] | None = None,
                  ) -> list[tuple[Hashable, TrialResult]]:
        """Train every member one epoch; the (key, result) of those that leave, tested.

        ``while_training`` runs once the epoch's kernels are queued and before its one
        host sync: on a GPU, host work there (the sampler's next asks) overlaps the
        device's training, in the same thread.
        """
        if not self.members:
            return []
        assert self.model is not None and self.optimizer is not None
        data, device, members = self.data, self.data.device, self.members
        n_train, n_val = len(data.train_y), len(data.val_y)
        batch_size = members[0].spec.batch_size
        steps = math.ceil(n_train / batch_size)
        with _precision(self.tf32):
            lrs = [m.schedule.lr for m in members]  # the curves' lr: the epoch's first
            table = _lr_table([m.schedule for m in members], steps, device)
            batches = torch.randperm(n_train, generator=self.order).to(device).split(batch_size)
            self.epoch += 1
            self.optimizer.train(self.model.params)
            loss_sum = _train_epoch(self.model, self.optimizer, data, batches, table, self.bf16)
            # Validation and the test of members leaving see the weights the optimizer
            # evaluates: schedule-free's average, the others' own.
            self.optimizer.eval(self.model.params)
            val_loss_sum, val_correct = evaluate_stack(self.model, data.val_x, data.val_y,
                                                       self.bf16, data.loss)
            if while_training is not None:
                while_training()
            sums = list(zip(loss_sum.tolist(), val_loss_sum.tolist(), val_correct.tolist()))
        now = time.perf_counter()

        chance = data.chance
        leaving: list[int] = []  # stack positions
        rows: list[EpochRow] = []
        for pos, (member, lr, (train, val, hits)) in enumerate(zip(members, lrs, sums)):
            member.epoch += 1
            row = (member.epoch, lr, train / n_train, val / n_val, hits / n_val,
                   now - member.joined)
            last = member.epoch == member.spec.epochs
            if _close_epoch(member.result, member.schedule, row, chance):
                leaving.append(pos)
                continue
            rows.append(EpochRow(member.key, member.epoch - 1, hits / n_val, last,
                                 member.result.curves["val_accuracy"]))
            if last:
                leaving.append(pos)
        prune = set(decide(rows)) if decide is not None and rows else set()
        for row in rows:
            if row.key in prune and not row.last:
                pos = next(p for p, m in enumerate(members) if m.key == row.key)
                result = members[pos].result
                result.status, result.reason = "pruned", f"pruned after epoch {row.epoch + 1}"
                leaving.append(pos)
        return self._leave(sorted(leaving))

    def _leave(self, positions: list[int]) -> list[tuple[Hashable, TrialResult]]:
        """Test the members at ``positions`` as they stand now, and drop them from the stack."""
        if not positions:
            return []
        assert self.model is not None and self.optimizer is not None
        data, device = self.data, self.data.device
        with _precision(self.tf32):
            leaving = self.model.subset(torch.tensor(positions, device=device))
            loss_sum, correct = evaluate_stack(leaving, data.test_x, data.test_y, self.bf16,
                                               data.loss)
            losses, hits_list = loss_sum.tolist(), correct.tolist()  # waits for the device
        n, now = len(data.test_y), time.perf_counter()
        out = []
        for pos, loss, hits in zip(positions, losses, hits_list):
            member = self.members[pos]
            member.result.test_loss, member.result.test_accuracy = loss / n, hits / n
            member.result.train_seconds = now - member.joined
            out.append((member.key, member.result))
        gone = set(positions)
        keep = [p for p in range(len(self.members)) if p not in gone]
        self.members = [self.members[p] for p in keep]
        if self.members:  # compaction: the trials that left drop out of every stacked tensor
            kept = torch.tensor(keep, device=device)
            self.model.select(kept)
            self.optimizer.select(kept)
        else:  # nothing left to keep: the next join starts a new model and optimizer
            self.model = self.optimizer = None
        return out


def train_batch(specs: Sequence[TrialSpec], data: DeviceData,
                on_epoch: BatchEpochHook | None = None, *, data_seed: int | None = None,
                tf32: bool = False, bf16: bool = False,
                fused: bool = False) -> list[TrialResult]:
    """Train ``specs`` (one ``group_key``) together; their results, in the same order.

    ``on_epoch(i, epoch, val_accuracy)`` is the sequential hook for ``specs[i]``: called
    per live trial per epoch, True prunes it. All trials follow one batch order seeded by
    ``data_seed`` (default: the specs' data_seed, else ``specs[0].seed``); every result
    records it. ``train_seconds`` and the curves' ``seconds`` are the batch's wall time up
    to that point: when the trial left (tested) or the epoch was validated.
    ``tf32``/``bf16`` trade exactness for GPU speed; ``fused`` compiles SGD's update
    into one kernel (torch.compile: for GPUs, where the update is memory-bound).
    """
    _check_batch(specs)
    stack = Stack(data, shared_data_seed(specs, data_seed), tf32=tf32, bf16=bf16, fused=fused)
    stack.join(specs, keys=range(len(specs)))
    decide = None
    if on_epoch is not None:
        def decide(rows: list[EpochRow]) -> list[Hashable]:
            return [row.key for row in rows if on_epoch(row.key, row.epoch, row.val_accuracy)]
    results: dict[Hashable, TrialResult] = {}
    while len(stack):
        results.update(stack.run_epoch(decide))
    return [results[i] for i in range(len(specs))]


# --- how many trials fit ---


def input_form(x: Tensor) -> tuple[tuple[int, ...], torch.dtype]:
    """The shape and dtype one of ``x``'s rows has as the model reads it."""
    return tuple(x.shape[1:]), (torch.float32 if x.dtype == torch.uint8 else x.dtype)


def max_trials_for_memory(model: str, batch_size: int, free_bytes: int,
                          optimizer: str = "adam", num_classes: int = 10,
                          example: Tensor | None = None) -> int:
    """How many trials of ``model`` one ``train_batch`` can hold in ``free_bytes``.

    Per trial, 4-byte floats: weights, gradients, optimizer state (SGD 1 buffer, Adam 2) and
    2 weight-sized temporaries of the update; a minibatch's activations 3 times (outputs
    kept for backward, their gradients, a temporary); the evaluation budget once. Planned
    against MEMORY_HEADROOM of ``free_bytes``. An estimate: measure before trusting a K.
    """
    if batch_size < 1 or free_bytes < 0:
        raise ValueError(f"need batch_size >= 1 and free_bytes >= 0, but got "
                         f"{batch_size=}, {free_bytes=}")
    states = {"sgd": 1, "adam": 2, "adamw": 2, "sgd_schedulefree": 1,
              "adamw_schedulefree": 2}  # schedule-free: z (and AdamW's second moment)
    if optimizer not in states:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(states)}")
    weight_copies = 2 + states[optimizer] + 2
    form = input_form(example) if example is not None else ((784,), torch.float32)
    per_trial = 4 * (weight_copies * parameter_count(model, num_classes)
                     + 3 * batch_size * activation_floats(model, num_classes, *form))
    usable = free_bytes * MEMORY_HEADROOM - 4 * EVAL_FLOATS
    return max(0, int(usable // per_trial))
