"""Tests for lrbench.train.batched: K trials trained as one stack equal K sequential trials.

CPU only, on the slice of real MNIST that tests/train/test_sequential.py uses (1,600 train / 400
validation / 1,000 test images). Each batched trial is compared with `train_trial` on the
same spec and the same `data_seed`.

Tolerance: curves and test loss within rel 1e-5 (abs 1e-7). Measured: the batched and
sequential losses differ by at most 4e-7 relative after 5 epochs (float32 GEMMs that
sum in another order; fused vs unfused optimizer arithmetic), so 1e-5 leaves 25x room
for other BLAS builds while a wrong LR, a missed step or a wrong optimizer rule moves
them by 1e-3 or more. Accuracies were equal to the image; they may differ by at most one
image (a near-tie in argmax flips with the last bit). `lr` and `epoch` must be exact.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from conftest import mnist_subset

from lrbench.sweep.config import OptimizerConfig
from lrbench.train import batched, stacked_optim
from lrbench.train.batched import (
    group_specs,
    max_trials_for_memory,
    train_batch,
)
from lrbench.train.data import DeviceData
from lrbench.train.lr_schedule import lr_trace
from lrbench.train.schedules import ScheduleContext, ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.stacked_optim import stacked_optimizer
from lrbench.train.trial import CURVE_KEYS, TrialResult, TrialSpec

N_TRAIN, N_TEST, VALIDATION = 2000, 1000, 0.2  # as tests/train/test_sequential.py
# In-process training on 2 cores: one torch thread (tests/conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_torch_thread")
BATCH = 100
REL, ABS = 1e-5, 1e-7
DATA_SEED = 11
NESTEROV = OptimizerConfig("sgd", lr=0.1, momentum=0.9, nesterov=True)
STEP = ScheduleSpec("step", {"step_size": 1, "gamma": 0.5})
# Measured: with data seed 11, trial 1 (seed 1, SGD lr 0.1) drops in validation accuracy in
# epoch 4 (0.8675 -> 0.86), so its plateau halves the LR for epoch 5 (asserted below).
PLATEAU = ScheduleSpec("plateau", {"factor": 0.5, "patience": 0})
ONECYCLE = ScheduleSpec("onecycle", {"max_lr_ratio": 2.0, "pct_start": 0.3, "div_factor": 10.0})
WARMUP = ScheduleSpec("cosine", {"eta_min_ratio": 0.01}, warmup_epochs=1)
SCHEDULES = (STEP, PLATEAU, ONECYCLE, WARMUP)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return mnist_subset(N_TRAIN, N_TEST, VALIDATION)


@pytest.fixture(scope="module")
def tiny(data: DeviceData) -> DeviceData:
    """300 train / 200 validation / 200 test images: one CNN epoch in ~0.3 s."""
    return dataclasses.replace(data, train_x=data.train_x[:300], train_y=data.train_y[:300],
                               val_x=data.val_x[:200], val_y=data.val_y[:200],
                               test_x=data.test_x[:200], test_y=data.test_y[:200])


def specs_for(schedules=SCHEDULES, *, lrs=None, **changes: object) -> list[TrialSpec]:
    """One trial per schedule, seeds 0, 1, ...; `changes` apply to all of them."""
    lrs = lrs or [None] * len(schedules)
    out = []
    for number, (schedule, lr) in enumerate(zip(schedules, lrs)):
        spec = TrialSpec(number=number, seed=number, model="fnn", epochs=5, batch_size=BATCH,
                         optimizer=NESTEROV, schedule=schedule)
        spec = dataclasses.replace(spec, **changes)
        if lr is not None:
            spec = dataclasses.replace(spec, optimizer=dataclasses.replace(spec.optimizer, lr=lr))
        out.append(spec)
    return out


def sequential(spec: TrialSpec, data: DeviceData, on_epoch=None) -> TrialResult:
    return train_trial(dataclasses.replace(spec, data_seed=DATA_SEED), data, on_epoch)


def assert_same_trial(got: TrialResult, want: TrialResult, n_val: int, n_test: int) -> None:
    assert (got.status, got.reason, got.epochs_run) == (want.status, want.reason, want.epochs_run)
    assert got.curves["epoch"] == want.curves["epoch"]
    assert got.curves["lr"] == want.curves["lr"]
    for key in ("train_loss", "val_loss"):
        assert got.curves[key] == pytest.approx(want.curves[key], rel=REL, abs=ABS, nan_ok=True)
    one_image = 1 / n_val + 1e-12
    assert got.curves["val_accuracy"] == pytest.approx(want.curves["val_accuracy"], abs=one_image)
    assert got.val_accuracy == got.curves["val_accuracy"][-1]
    assert got.test_loss == pytest.approx(want.test_loss, rel=REL, abs=ABS, nan_ok=True)
    assert got.test_accuracy == pytest.approx(want.test_accuracy, abs=1 / n_test + 1e-12)
    assert got.data_seed == want.data_seed == DATA_SEED


def without_seconds(result: TrialResult) -> dict[str, list[float]]:
    return {k: v for k, v in result.curves.items() if k != "seconds"}


# --- equivalence with the sequential engine ----------------------------------------------


@pytest.mark.parametrize("optimizer", [
    NESTEROV,
    OptimizerConfig("sgd", lr=0.1, momentum=0.8, nesterov=False, weight_decay=1e-3),
    OptimizerConfig("adam", lr=2e-3, weight_decay=1e-4),
    OptimizerConfig("adamw", lr=2e-3, weight_decay=0.05),
], ids=["sgd-nesterov", "sgd-momentum-decay", "adam", "adamw"])
def test_fnn_batch_equals_sequential_trials(data: DeviceData, optimizer: OptimizerConfig):
    """step, plateau, onecycle (per batch) and a warm-up, on every optimizer rule."""
    specs = specs_for(optimizer=optimizer)
    results = train_batch(specs, data, data_seed=DATA_SEED)
    for spec, got in zip(specs, results):
        assert_same_trial(got, sequential(spec, data), len(data.val_y), len(data.test_y))
        assert got.status == "complete"
    if optimizer is NESTEROV:
        plateau_lrs = results[1].curves["lr"]
        assert plateau_lrs[-1] < plateau_lrs[0], "the plateau never cut the LR: a weak test"


# 2026's families (and their warm-up): per-batch LambdaLR shapes, with the same tolerances.
MODERN = (ScheduleSpec("wsd", {"decay_fraction": 0.4, "shape": "1-sqrt",
                               "final_lr_ratio": 0.0}, warmup_epochs=1),
          ScheduleSpec("inverse_sqrt", {"ramp_epochs": 0.5, "timescale_epochs": 1.0}),
          ScheduleSpec("rex", {"beta": 0.5}),
          ScheduleSpec("decay_to_zero", {"power": 1.0}))


@pytest.mark.parametrize("optimizer", [NESTEROV, OptimizerConfig("adamw", lr=2e-3,
                                                                 weight_decay=0.05)],
                         ids=["sgd-nesterov", "adamw"])
def test_modern_families_batch_equal_sequential_trials(data: DeviceData,
                                                       optimizer: OptimizerConfig):
    specs = specs_for(MODERN, optimizer=optimizer)
    for spec, got in zip(specs, train_batch(specs, data, data_seed=DATA_SEED)):
        assert_same_trial(got, sequential(spec, data), len(data.val_y), len(data.test_y))
        assert got.status == "complete"
        assert len(set(got.curves["lr"])) > 1  # the schedule moved


def test_logreg_batch_equals_sequential_trials(data: DeviceData):
    specs = specs_for(model="logreg", epochs=3)
    for spec, got in zip(specs, train_batch(specs, data, data_seed=DATA_SEED)):
        assert_same_trial(got, sequential(spec, data), len(data.val_y), len(data.test_y))


def test_cnn_batch_equals_sequential_trials(tiny: DeviceData):
    """The CNN goes through torch.func.vmap: one epoch on 300 images is enough to compare."""
    specs = specs_for((STEP, ONECYCLE), model="cnn", epochs=1)
    for spec, got in zip(specs, train_batch(specs, tiny, data_seed=DATA_SEED)):
        assert_same_trial(got, sequential(spec, tiny), len(tiny.val_y), len(tiny.test_y))


def test_one_trial_batch_equals_sequential(data: DeviceData):
    """K = 1 and the default data seed (the first spec's seed): exactly train_trial's order."""
    spec = specs_for((ONECYCLE,), epochs=2, seed=DATA_SEED)[0]
    (got,) = train_batch([spec], data)
    assert_same_trial(got, train_trial(spec, data), len(data.val_y), len(data.test_y))


def test_lr_table_follows_lr_trace():
    """Every step's LR, epoch by epoch, as lr_trace has it (per-batch, warm-up, constant)."""
    steps, epochs = 7, 4
    for schedule in (STEP, ONECYCLE, WARMUP, ScheduleSpec("cyclic", {"base_lr_ratio": 0.1,
                                                                     "half_cycle_epochs": 1.5,
                                                                     "mode": "triangular2"})):
        spec = specs_for((schedule,), epochs=epochs)[0]
        shadow = batched._shadow_schedule(spec, steps)
        trace = lr_trace(schedule, ScheduleContext(epochs, steps), spec.optimizer.lr)
        for epoch in range(epochs):
            table = batched._lr_table([shadow], steps, torch.device("cpu"))
            assert table[:, 0].tolist() == pytest.approx(trace[epoch], rel=1e-6)
            shadow.after_epoch(val_accuracy=float(epoch), val_loss=-float(epoch))


def test_shadow_schedulers_raise_no_warnings(data: DeviceData):
    """torch warns when a scheduler steps before its optimizer: the shadows must not."""
    specs = specs_for((ONECYCLE, WARMUP, PLATEAU), epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_batch(specs, data)


@pytest.mark.parametrize("cfg", [
    OptimizerConfig("sgd", momentum=0.0, nesterov=False),
    OptimizerConfig("sgd", momentum=0.9, nesterov=False, weight_decay=0.01),
    OptimizerConfig("sgd", momentum=0.9, nesterov=True, weight_decay=0.01),
    OptimizerConfig("adam", weight_decay=0.01),
    OptimizerConfig("adamw", weight_decay=0.1),
], ids=["sgd", "momentum-decay", "nesterov-decay", "adam-decay", "adamw"])
@pytest.mark.parametrize("shape", [(4, 5), (200, 200)], ids=["small", "large"])
def test_stacked_optimizer_matches_torch_optim(cfg: OptimizerConfig, shape: tuple[int, int],
                                               monkeypatch):
    """Three trials, three LRs, five steps: each slice moves as torch.optim moves it alone.
    SGD with momentum takes torch's fused CPU kernel for trials of 40,000 weights, and
    the eager update for trials of 20 (where a kernel call per trial costs more)."""
    fused_calls = []
    if stacked_optim._FUSED_CPU_SGD is not None:
        kernel = stacked_optim._FUSED_CPU_SGD
        monkeypatch.setattr(stacked_optim, "_FUSED_CPU_SGD",
                            lambda *a, **kw: fused_calls.append(1) or kernel(*a, **kw))
    torch.manual_seed(0)
    lrs = torch.tensor([0.3, 0.01, 0.1])
    start = torch.randn(3, *shape)
    grads = [torch.randn(3, *shape) for _ in range(5)]
    stacked = start.clone()
    optimizer = stacked_optimizer(cfg)
    for g in grads:
        optimizer.step([stacked], (g,), lrs)
    kernel_expected = (stacked_optim._FUSED_CPU_SGD is not None and cfg.name == "sgd"
                       and cfg.momentum > 0 and shape == (200, 200))
    assert bool(fused_calls) == kernel_expected
    torch_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    for k, lr in enumerate(lrs.tolist()):
        weight = torch.nn.Parameter(start[k].clone())
        kwargs = {"momentum": cfg.momentum, "nesterov": cfg.nesterov} if cfg.name == "sgd" else {}
        reference = torch_class[cfg.name]([weight], lr=lr, weight_decay=cfg.weight_decay, **kwargs)
        for g in grads:
            weight.grad = g[k].clone()
            reference.step()
        torch.testing.assert_close(stacked[k], weight.detach(), rtol=1e-6, atol=1e-6)


# --- a stack refilled between epochs (continuous batching) ----------------------------


@pytest.mark.parametrize("optimizer", [
    NESTEROV,
    OptimizerConfig("adamw", lr=2e-3, weight_decay=0.05),
], ids=["sgd-nesterov", "adamw"])
def test_a_trial_that_joins_a_running_stack_equals_train_trial_at_its_offset(
        data: DeviceData, optimizer: OptimizerConfig):
    """Members join at stack epochs 0, 1 and 2, with their own epochs, and leave at their
    own ends; each equals train_trial on its spec with data_offset = the epoch it joined."""
    specs = specs_for(SCHEDULES + (STEP,), optimizer=optimizer, data_seed=DATA_SEED)
    specs = [dataclasses.replace(s, epochs=e) for s, e in zip(specs, (2, 3, 3, 2, 1))]
    stack = batched.Stack(data, DATA_SEED)
    stack.join(specs[:2])
    results = dict(stack.run_epoch())
    stack.join(specs[2:4])  # joins at stack epoch 1
    results.update(stack.run_epoch())
    assert set(results) == {0}  # trial 0 (2 epochs) left after stack epoch 2
    stack.join(specs[4:])  # joins at stack epoch 2, into the place trial 0 left
    assert len(stack) == 4
    while len(stack):
        results.update(stack.run_epoch())
    offsets = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}
    for spec in specs:
        got = results[spec.number]
        assert got.data_offset == offsets[spec.number]
        want = train_trial(dataclasses.replace(spec, data_offset=offsets[spec.number]), data)
        assert got.status == "complete" and got.epochs_run == spec.epochs
        assert_same_trial(got, want, len(data.val_y), len(data.test_y))


def test_a_refilled_stack_decides_pruning_once_per_epoch_for_all_members(data: DeviceData):
    specs = specs_for((STEP, STEP, STEP), epochs=3, data_seed=DATA_SEED)
    stack = batched.Stack(data, DATA_SEED)
    stack.join(specs)
    seen: list[list[tuple[int, int, bool]]] = []

    def decide(rows):
        seen.append([(row.key, row.epoch, row.last) for row in rows])
        return [1] if rows[0].epoch == 1 else []

    results = {}
    while len(stack):
        results.update(stack.run_epoch(decide))
    assert seen == [[(0, 0, False), (1, 0, False), (2, 0, False)],
                    [(0, 1, False), (1, 1, False), (2, 1, False)],
                    [(0, 2, True), (2, 2, True)]]
    assert results[1].status == "pruned" and results[1].epochs_run == 2
    want = sequential(specs[1], data, lambda epoch, accuracy: epoch == 1)
    assert_same_trial(results[1], want, len(data.val_y), len(data.test_y))


def test_a_stack_refuses_a_trial_of_another_group(data: DeviceData):
    stack = batched.Stack(data, DATA_SEED)
    stack.join(specs_for((STEP,), data_seed=DATA_SEED))
    with pytest.raises(ValueError, match="cannot join"):
        stack.join(specs_for((STEP,), batch_size=50, data_seed=DATA_SEED))


# --- trials that stop early --------------------------------------------------------------


def test_diverging_trials_leave_the_others_untouched(data: DeviceData):
    """lr 1e10 makes NaN in epoch 1; lr 3 collapses to chance in epoch 2 (test_sequential's
    cases). The two healthy trials train exactly as in a batch without them."""
    schedules = (STEP, STEP, STEP, ONECYCLE)
    specs = specs_for(schedules, lrs=[0.1, 1e10, 3.0, 0.1], epochs=3)
    results = train_batch(specs, data, data_seed=DATA_SEED)
    alone = train_batch([specs[0], specs[3]], data, data_seed=DATA_SEED)

    nan, collapsed = results[1], results[2]
    assert nan.status == "diverged" and "nan" in nan.reason and nan.epochs_run == 1
    assert collapsed.status == "diverged" and "collapsed" in collapsed.reason
    assert collapsed.epochs_run == 2
    for stopped, spec in ((nan, specs[1]), (collapsed, specs[2])):
        assert 0 <= stopped.test_accuracy <= 1
        assert_same_trial(stopped, sequential(spec, data), len(data.val_y), len(data.test_y))
    for got, want in ((results[0], alone[0]), (results[3], alone[1])):
        assert got.status == "complete"
        assert_same_trial(got, want, len(data.val_y), len(data.test_y))


def test_pruned_trial_stops_and_the_others_go_on(data: DeviceData):
    specs = specs_for(epochs=4)
    calls: list[tuple[int, int]] = []

    def prune_trial_1_after_epoch_2(i: int, epoch: int, val_accuracy: float) -> bool:
        calls.append((i, epoch))
        return i == 1 and epoch == 1

    results = train_batch(specs, data, prune_trial_1_after_epoch_2, data_seed=DATA_SEED)
    unpruned = train_batch(specs, data, data_seed=DATA_SEED)

    pruned = results[1]
    assert pruned.status == "pruned" and "epoch 2" in pruned.reason
    assert pruned.epochs_run == 2
    assert [e for i, e in calls if i == 1] == [0, 1]
    assert [e for i, e in calls if i == 0] == [0, 1, 2, 3]  # the last epoch is asked too
    # Tested where it stopped: as the sequential engine's pruned trial.
    want = sequential(specs[1], data, lambda epoch, accuracy: epoch == 1)
    assert_same_trial(pruned, want, len(data.val_y), len(data.test_y))
    for k in (0, 2, 3):
        assert results[k].status == "complete"
        for key, values in without_seconds(unpruned[k]).items():
            assert results[k].curves[key] == pytest.approx(values, rel=REL, abs=ABS)
        assert results[k].test_loss == pytest.approx(unpruned[k].test_loss, rel=REL, abs=ABS)


def test_hook_on_the_last_epoch_does_not_prune(data: DeviceData):
    specs = specs_for((STEP, STEP), epochs=2)
    results = train_batch(specs, data, lambda i, epoch, accuracy: True, data_seed=DATA_SEED)
    assert [r.status for r in results] == ["pruned", "pruned"]  # after epoch 1 of 2
    results = train_batch(specs, data, lambda i, epoch, accuracy: epoch == 1)
    assert [r.status for r in results] == ["complete", "complete"]


# --- results -----------------------------------------------------------------------------


def test_results_record_curves_time_and_data_seed(data: DeviceData):
    specs = specs_for((STEP, ONECYCLE), epochs=3, lrs=[0.1, 1e10])
    results = train_batch(specs, data)
    assert all(r.data_seed == specs[0].seed for r in results)  # default: the first spec's seed
    for result in results:
        assert tuple(result.curves) == CURVE_KEYS
        seconds = result.curves["seconds"]
        assert seconds == sorted(seconds) and seconds[0] > 0
        assert result.train_seconds >= seconds[-1]
        assert result.device == "cpu"
    assert results[1].train_seconds < results[0].train_seconds  # it left after epoch 1
    assert results[0].epochs_run == 3 and results[1].epochs_run == 1
    assert 0 <= results[1].test_accuracy <= 1  # tested where it stopped


def test_data_seed_conflicts_are_errors(data: DeviceData):
    specs = specs_for((STEP, STEP), epochs=1, data_seed=5)
    with pytest.raises(ValueError, match="data_seed=5"):
        train_batch(specs, data, data_seed=6)
    assert [r.data_seed for r in train_batch(specs, data)] == [5, 5]  # theirs, by default


# --- grouping and sizing -----------------------------------------------------------------


def test_speed_options_still_learn(data: DeviceData):
    """bf16 autocast and TF32 are not exact, but must train as well; precision is restored."""
    specs = specs_for((STEP, ONECYCLE), epochs=2)
    exact = train_batch(specs, data)
    before = torch.get_float32_matmul_precision()
    fast = train_batch(specs, data, tf32=True, bf16=True)
    assert torch.get_float32_matmul_precision() == before
    for got, want in zip(fast, exact):
        assert got.status == "complete"
        assert got.val_accuracy == pytest.approx(want.val_accuracy, abs=0.03)
        assert got.curves["train_loss"] == pytest.approx(want.curves["train_loss"], rel=0.05)


def test_group_specs_splits_what_cannot_stack(data: DeviceData):
    base = specs_for((STEP,) * 7)
    mixed = [
        base[0],
        dataclasses.replace(base[1], data_seed=99),
        dataclasses.replace(base[2], batch_size=50),
        dataclasses.replace(base[3], model="cnn"),
        dataclasses.replace(base[4], optimizer=OptimizerConfig("adam", lr=1e-3)),
        dataclasses.replace(base[5], schedule=ONECYCLE, plateau_metric="loss",
                            optimizer=dataclasses.replace(NESTEROV, lr=0.3)),  # same group
        dataclasses.replace(base[6], data_seed=99),
    ]
    groups = group_specs(mixed)
    assert [[s.number for s in g] for g in groups] == [[0, 5], [1, 6], [2], [3], [4]]
    # Epochs do not split a stack: each member leaves after its own.
    assert len(group_specs([base[0], dataclasses.replace(base[1], epochs=3)])) == 1
    assert [len(g) for g in group_specs(base, max_trials=3)] == [3, 3, 1]
    with pytest.raises(ValueError, match="group_specs"):
        train_batch(mixed[:2], data)


def test_max_trials_for_memory():
    """FNN, batch 100, Adam: ~2.2 MB a trial, so an 80 GB GPU holds ~28,000."""
    gib = 2**30
    fnn = max_trials_for_memory("fnn", 100, 80 * gib)
    assert 20_000 < fnn < 40_000
    assert max_trials_for_memory("fnn", 100, 80 * gib, optimizer="sgd") > fnn
    assert max_trials_for_memory("cnn", 100, 80 * gib) < fnn / 10  # big activations
    assert max_trials_for_memory("fnn", 100, 0) == 0
    with pytest.raises(ValueError, match="optimizer"):
        max_trials_for_memory("fnn", 100, gib, optimizer="lion")


# --- the fused (torch.compile'd) SGD update, as GPU slots use it -------------------------


@pytest.mark.slow  # compiling the update takes ~20 s on these 2 cores
@pytest.mark.parametrize("optimizer", [
    NESTEROV,
    OptimizerConfig("sgd", lr=0.1, momentum=0.8, nesterov=False, weight_decay=1e-3),
], ids=["sgd-nesterov", "sgd-momentum-decay"])
def test_fused_update_trains_like_the_eager_one(tiny: DeviceData, optimizer: OptimizerConfig):
    specs = specs_for(optimizer=optimizer, epochs=2, data_seed=DATA_SEED)
    eager = train_batch(specs, tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback to eager here
        fused = train_batch(specs, tiny, fused=True)
    for got, want in zip(fused, eager):
        assert got.curves["lr"] == want.curves["lr"]
        # Same rule, other rounding (the compiled kernel fuses multiply-adds).
        assert got.curves["train_loss"] == pytest.approx(want.curves["train_loss"], rel=1e-4)
        assert got.test_accuracy == pytest.approx(want.test_accuracy, abs=2 / len(tiny.test_y))


def test_model_sizes_are_counted_without_moving_the_global_seed():
    """The FNN: 784x100 + 100 + 100x10 + 10 weights; 100 + 100 + 10 activations per image
    (both linear layers' outputs and the ReLU's). Counting builds a model: on a fork of
    the RNG, so the trials seeded after it draw what they would have drawn."""
    from lrbench.train.stacked import activation_floats, parameter_count

    activation_floats.cache_clear()
    parameter_count.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert parameter_count("fnn") == 784 * 100 + 100 + 100 * 10 + 10
    assert activation_floats("fnn") == 100 + 100 + 10
    assert parameter_count("logreg") == 784 * 10 + 10
    assert torch.equal(torch.rand(3), expected)
