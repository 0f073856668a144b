"""Tests for lrbench.train.schedule_free: the stacked rule equals the schedulefree package,
and both engines evaluate the averaged weights.

Tolerances: the stacked optimizer against the package, 1e-6 on the weights (float32
arithmetic in another order; measured: at most 9e-8 after 6 steps). The engines against
each other: tests/train/test_batched.py's (losses rel 1e-5, accuracies one image); the
sequential engine runs the package itself, so the batched one is tested against it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import mnist_subset
from test_batched import DATA_SEED, N_TEST, N_TRAIN, VALIDATION, assert_same_trial, sequential

from lrbench.train import batched
from lrbench.train import sequential as sequential_engine
from lrbench.train.batched import group_specs, train_batch
from lrbench.train.data import DeviceData
from lrbench.train.optimizers import schedule_free_form, trial_optimizer
from lrbench.train.schedule_free import StackedScheduleFree, make_schedule_free
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.trial import OptimizerConfig, TrialSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SGD_SF = OptimizerConfig("sgd_schedulefree", lr=1.0, momentum=0.9)
ADAMW_SF = OptimizerConfig("adamw_schedulefree", lr=5e-3, momentum=0.9, weight_decay=0.05)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return mnist_subset(N_TRAIN, N_TEST, VALIDATION)


# --- the stacked rule, step by step, against the package ---


@pytest.mark.parametrize("name", ["sgd_schedulefree", "adamw_schedulefree"])
def test_stacked_schedule_free_matches_the_package(name: str):
    """Three trials with their own LRs (warming up), betas and step counts: a third
    joins after two steps. Each slice moves as the package moves it alone, in train mode
    (y) and in eval mode (x), across a switch back and forth."""
    torch.manual_seed(0)
    configs = [OptimizerConfig(name, lr=lr, momentum=beta, weight_decay=0.01)
               for lr, beta in ((0.3, 0.9), (0.01, 0.8), (0.1, 0.95))]
    start = torch.randn(3, 4, 5)
    grads = [torch.randn(3, 4, 5) for _ in range(6)]
    joined_at = [0, 0, 2]
    warmup = 4  # steps: the LR ramps per step, as lrbench's schedules feed it

    def lr_at(k: int, step: int) -> float:
        return configs[k].lr * min(1.0, (step + 1) / warmup)

    weights = start[:2].clone()
    optimizer = StackedScheduleFree(configs[0])
    optimizer.extend(configs[:2], [weights])
    for step, g in enumerate(grads):
        if step == 2:  # a trial joins a running stack, as Stack.join does, in eval mode
            optimizer.eval([weights])
            weights = torch.cat([weights, start[2:].clone()])
            optimizer.extend(configs[2:], [start[2:]])
            optimizer.train([weights])
        members = [k for k in range(3) if joined_at[k] <= step]
        lr = torch.tensor([lr_at(k, step - joined_at[k]) for k in members])
        optimizer.step([weights], (g[:len(members)],), lr)
        if step == 3:
            optimizer.eval([weights])
            optimizer.train([weights])
    trained_y = weights.clone()
    optimizer.eval([weights])

    for k, cfg in enumerate(configs):
        weight = torch.nn.Parameter(start[k].clone())
        reference = make_schedule_free([weight], cfg)
        reference.train()
        for step in range(joined_at[k], len(grads)):
            reference.param_groups[0]["lr"] = lr_at(k, step - joined_at[k])
            weight.grad = grads[step][k].clone()
            reference.step()
        torch.testing.assert_close(trained_y[k], weight.detach(), rtol=1e-6, atol=1e-6)
        reference.eval()
        torch.testing.assert_close(weights[k], weight.detach(), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(weights[k], trained_y[k])  # x and y differ: a real test


def test_a_step_in_eval_mode_is_refused():
    weights = torch.zeros(1, 3)
    optimizer = StackedScheduleFree(SGD_SF)
    optimizer.extend([SGD_SF], [weights])
    optimizer.eval([weights])
    with pytest.raises(RuntimeError, match="eval mode"):
        optimizer.step([weights], (torch.ones(1, 3),), torch.tensor([0.1]))


# --- which trials are schedule-free ---


def test_the_schedulefree_family_switches_the_optimizer_to_its_form():
    family = ScheduleSpec("schedulefree", {"momentum": 0.95})
    nesterov = OptimizerConfig("sgd", lr=2.0, momentum=0.9, nesterov=True)
    assert trial_optimizer(nesterov, family) == dataclasses.replace(
        nesterov, name="sgd_schedulefree", momentum=0.95)
    adamw = OptimizerConfig("adamw", lr=1e-3, weight_decay=0.1)
    assert trial_optimizer(adamw, family).name == "adamw_schedulefree"
    assert trial_optimizer(OptimizerConfig("adam", lr=1e-3), family).name == "adamw_schedulefree"
    assert trial_optimizer(nesterov, ScheduleSpec("cosine", {"eta_min_ratio": 0.0})) == nesterov
    with pytest.raises(ValueError, match="no schedule-free form"):
        schedule_free_form(OptimizerConfig("adam", weight_decay=0.01), 0.9)


def test_trials_of_different_betas_share_a_stack():
    """Beta is per trial, like the LR; the optimizer rule is not."""
    specs = [TrialSpec(i, i, "fnn", 2, 100, dataclasses.replace(SGD_SF, momentum=beta),
                       ScheduleSpec("schedulefree", {"momentum": beta}))
             for i, beta in enumerate((0.8, 0.9, 0.95))]
    specs.append(dataclasses.replace(specs[0], number=3, optimizer=ADAMW_SF))
    assert [len(g) for g in group_specs(specs)] == [3, 1]


# --- the engines: averaged weights evaluated, batched equal to the package ---


def _specs(optimizer: OptimizerConfig) -> list[TrialSpec]:
    """Four schedule-free trials: betas 0.8-0.95, LRs of their own, one with a warm-up."""
    out = []
    for number, (beta, scale, warmup) in enumerate(((0.9, 1.0, 0), (0.8, 0.5, 1),
                                                    (0.95, 2.0, 0), (0.9, 0.25, 0))):
        opt = dataclasses.replace(optimizer, momentum=beta, lr=optimizer.lr * scale)
        out.append(TrialSpec(number, number, "fnn", 3, 100, opt,
                             ScheduleSpec("schedulefree", {"momentum": beta}, warmup)))
    return out


@pytest.mark.parametrize("optimizer", [SGD_SF, ADAMW_SF], ids=["sgd", "adamw"])
def test_schedule_free_batch_equals_the_package_trained_sequentially(
        data: DeviceData, optimizer: OptimizerConfig):
    specs = _specs(optimizer)
    for spec, got in zip(specs, train_batch(specs, data, data_seed=DATA_SEED)):
        assert_same_trial(got, sequential(spec, data), len(data.val_y), len(data.test_y))
        assert got.status == "complete" and got.test_accuracy > 0.5  # it learned


@pytest.mark.parametrize("optimizer", [SGD_SF, ADAMW_SF], ids=["sgd", "adamw"])
def test_a_schedule_free_trial_joining_a_running_stack_equals_train_trial(
        data: DeviceData, optimizer: OptimizerConfig):
    """Joining while the stack holds averaged weights (eval mode) must not disturb them."""
    specs = [dataclasses.replace(s, data_seed=DATA_SEED) for s in _specs(optimizer)]
    stack = batched.Stack(data, DATA_SEED)
    stack.join(specs[:2])
    results = dict(stack.run_epoch())
    stack.join(specs[2:])  # joins at stack epoch 1
    while len(stack):
        results.update(stack.run_epoch())
    for spec in specs:
        offset = 0 if spec.number < 2 else 1
        want = train_trial(dataclasses.replace(spec, data_offset=offset), data)
        assert results[spec.number].data_offset == offset
        assert_same_trial(results[spec.number], want, len(data.val_y), len(data.test_y))


def test_the_sequential_engine_evaluates_the_averaged_weights(data: DeviceData, monkeypatch):
    """Every validation and the test run with the package in eval mode (x, not y)."""
    made: list[torch.optim.Optimizer] = []
    modes: list[bool] = []

    def make(params, cfg):
        made.append(make_schedule_free(params, cfg))
        return made[-1]

    def evaluate(model, x, y, loss):
        modes.append(made[-1].param_groups[0]["train_mode"])
        return real_evaluate(model, x, y, loss)

    real_evaluate = sequential_engine.evaluate
    monkeypatch.setattr(sequential_engine, "make_schedule_free", make)
    monkeypatch.setattr(sequential_engine, "evaluate", evaluate)
    spec = dataclasses.replace(_specs(SGD_SF)[0], data_seed=DATA_SEED)
    train_trial(spec, data)
    assert modes == [False] * (spec.epochs + 1)  # 3 validations and the test
