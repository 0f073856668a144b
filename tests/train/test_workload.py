"""A user's model and data by import path (lrbench/train/workload.py): resolving, the
loader's checks, their errors shown as theirs, and the generic batched engine on models
this file defines (a CNN, a transformer), against the sequential engine."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_batched import DATA_SEED, ONECYCLE, STEP, WARMUP, assert_same_trial
from torch import nn

from lrbench.errors import UserError
from lrbench.sweep.config import OptimizerConfig
from lrbench.train import data, workload
from lrbench.train.batched import train_batch
from lrbench.train.schedules import ScheduleSpec
from lrbench.train.sequential import train_trial
from lrbench.train.stacked import unstackable
from lrbench.train.trial import TrialSpec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
_modules = itertools.count()


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module of the user's into its own folder, importable from there; its name."""
    monkeypatch.setattr(sys, "path", list(sys.path))

    def write(source: str) -> str:
        name = f"user_workload_{next(_modules)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        workload.add_import_root(tmp_path)
        return name

    yield write


# --- the user's models, as a user writes them ---


class SmallCNN(nn.Module):
    """A user's CNN on 8x8 one-channel images: nothing lrbench knows about."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.max_pool2d(self.conv(x).relu(), 2).flatten(1))


def digits() -> dict[str, object]:
    """scikit-learn's bundled digits, as examples/digits loads them."""
    sys.path.insert(0, str(REPO / "examples" / "digits"))
    try:
        import digits as module
    finally:
        sys.path.remove(str(REPO / "examples" / "digits"))
    return module.load()


@pytest.fixture(scope="module")
def digits_data() -> data.DeviceData:
    pytest.importorskip("sklearn")
    workload.add_import_root(Path(__file__).parent)
    arrays = workload.load_user_data("test_workload:digits")
    return data.split_to_device(arrays, 0.2, 0, "cpu")


def spec(number: int, model: str, schedule: ScheduleSpec, *, epochs: int = 2,
         batch: int = 50, optimizer: OptimizerConfig | None = None) -> TrialSpec:
    return TrialSpec(number=number, seed=number, model=model, epochs=epochs, batch_size=batch,
                     optimizer=optimizer or OptimizerConfig("sgd", lr=0.1, momentum=0.9),
                     schedule=schedule, data_seed=DATA_SEED)


def small_cnn() -> nn.Module:
    return SmallCNN()


def test_a_user_cnn_batched_equals_its_sequential_trials(digits_data: data.DeviceData):
    """The generic torch.func path (functional_call under vmap), with today's tolerances."""
    workload.add_import_root(Path(__file__).parent)
    specs = [spec(k, "test_workload:small_cnn", s) for k, s in enumerate((STEP, ONECYCLE, WARMUP))]
    for one, got in zip(specs, train_batch(specs, digits_data)):
        assert got.status == "complete" and got.val_accuracy > 0.5  # it learns
        assert_same_trial(got, train_trial(one, digits_data), len(digits_data.val_y),
                          len(digits_data.test_y))


def test_a_small_transformer_batched_equals_its_sequential_trials():
    """examples/modular's transformer (embeddings, attention, layer norm, GELU) on token
    ids: integer inputs reach the model as they are, and AdamW stacks too."""
    workload.add_import_root(REPO / "examples" / "modular")
    arrays = data.load_arrays("modular:load")
    assert arrays.train_images.dtype == torch.int64 and arrays.num_classes == 47
    device_data = data.split_to_device(arrays, 0.1, 0, "cpu")
    adamw = OptimizerConfig("adamw", lr=3e-3, weight_decay=0.1)
    specs = [spec(k, "modular:transformer", s, batch=128, optimizer=adamw)
             for k, s in enumerate((STEP, WARMUP))]
    assert unstackable("modular:transformer", arrays.examples(2), 47) == ""
    for one, got in zip(specs, train_batch(specs, device_data)):
        assert_same_trial(got, train_trial(one, device_data), len(device_data.val_y),
                          len(device_data.test_y))


# --- what cannot stack, and why ---


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        return out if out.sum() > 0 else -out  # a branch on the data: vmap cannot follow it


def with_batch_norm() -> nn.Module:
    return WithBatchNorm()


def with_dropout() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))


def with_no_dropout() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.0), nn.Linear(8, 3))


def data_dependent() -> nn.Module:
    return DataDependent()


@pytest.mark.parametrize(("factory", "reason"), [
    ("with_batch_norm", "it has BatchNorm1d, which computes differently in training and"),
    ("with_dropout", "it has Dropout, which computes differently"),
    ("data_dependent", "torch.func.vmap cannot run its forward (RuntimeError: "),
])
def test_a_model_vmap_cannot_train_exactly_says_why(factory: str, reason: str):
    workload.add_import_root(Path(__file__).parent)
    assert unstackable(f"test_workload:{factory}", torch.randn(2, 4), 3).startswith(reason)


def test_models_that_stack_have_no_reason():
    workload.add_import_root(Path(__file__).parent)
    assert unstackable("test_workload:with_no_dropout", torch.randn(2, 4), 3) == ""
    assert unstackable("test_workload:small_cnn", torch.randn(2, 1, 8, 8), 10) == ""
    assert unstackable("cnn", torch.rand(2, 784), 10) == ""


# --- import paths ---


def test_a_path_that_does_not_import_names_the_key_and_value(user_module):
    name = user_module("def make():\n    return 1\n")
    with pytest.raises(UserError, match=r"^sweep.toml: train.model = 'nowhere:make': no module "
                                        r"named 'nowhere' \(looked in "):
        workload.resolve("nowhere:make", "train.model", "sweep.toml")
    with pytest.raises(UserError, match=rf"train.model = '{name}:missing': module '{name}' "
                                        rf"\(.*{name}.py\) has no attribute 'missing'"):
        workload.resolve(f"{name}:missing", "train.model")
    with pytest.raises(UserError, match=r"= 'a.b' is not an import path of the form"):
        workload.resolve("a.b", "train.model")
    (Path(sys.path[0]) / f"{name}_const.py").write_text("VALUE = 3\n")
    with pytest.raises(UserError, match=r"VALUE = 3 is not callable"):
        workload.resolve(f"{name}_const:VALUE", "data.dataset")


def test_an_error_inside_the_users_code_is_shown_as_theirs(user_module):
    name = user_module("""
        import torch

        def make():
            return helper()

        def helper():
            raise ValueError("my bad width")
    """)
    with pytest.raises(workload.UserCodeError) as caught:
        workload.build_model(f"{name}:make", 10, "mine.toml")
    text = str(caught.value)
    assert text.startswith(f"mine.toml: train.model = '{name}:make': calling {name}:make() "
                           f"raised ValueError: my bad width\nTraceback (your code")
    # their two frames, with their lines; none of lrbench's or importlib's
    assert f"{name}.py\", line 5, in make" in text and "line 8, in helper" in text
    assert 'raise ValueError("my bad width")' in text
    assert "lrbench" not in caught.value.user_traceback.replace(name, "")
    broken = user_module("import torch\nx = 1 / 0\n\ndef make():\n    return None\n")
    with pytest.raises(workload.UserCodeError, match=rf"importing {broken} raised "
                                                     r"ZeroDivisionError"):
        workload.resolve(f"{broken}:make", "train.model")


def test_a_factory_must_return_a_module_that_gives_logits(user_module):
    name = user_module("""
        from torch import nn

        def not_a_module():
            return "fnn"

        def three_outputs():
            return nn.Linear(4, 3)

        def no_parameters():
            return nn.ReLU()
    """)
    with pytest.raises(UserError, match=r"returned a str, not a torch.nn.Module"):
        workload.build_model(f"{name}:not_a_module", 10)
    with pytest.raises(UserError, match=r"on a batch of 2 inputs it returned \(2, 3\); lrbench "
                                        r"needs logits of shape \(2, 10\)"):
        workload.check_model(f"{name}:three_outputs", torch.randn(2, 4), 10)
    with pytest.raises(UserError, match=r"has no parameters to train"):
        workload.check_model(f"{name}:no_parameters", torch.randn(2, 4), 10)
    with pytest.raises(workload.UserCodeError, match=r"its forward \(evaluation\) on a batch "
                                                     r"of \(2, 5\) torch.float32 inputs raised "
                                                     r"RuntimeError"):
        workload.check_model(f"{name}:three_outputs", torch.randn(2, 5), 3)


# --- the loader's forms and checks ---


def test_a_loader_may_return_tensors_arrays_or_a_dataset(user_module):
    name = user_module("""
        import numpy as np
        import torch
        from torch.utils.data import TensorDataset

        def tensors():
            x = torch.arange(24.0).reshape(6, 4)
            return {"train": (x, torch.tensor([0, 1, 2, 0, 1, 2])),
                    "test": (x[:2], torch.tensor([2, 0]))}

        def arrays():
            return {"train": (np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])),
                    "test": (np.zeros((2, 4), np.float32), [1, 1]), "num_classes": 5}

        def dataset():
            x = torch.arange(24.0).reshape(6, 4)
            y = torch.tensor([0, 1, 2, 0, 1, 2])
            return {"train": TensorDataset(x, y), "test": TensorDataset(x[:2], y[:2])}
    """)
    got = workload.load_user_data(f"{name}:tensors")
    assert (got.name, got.num_classes, tuple(got.train_images.shape)) == \
        (f"{name}:tensors", 3, (6, 4))
    assert got.root.name == f"{name}.py" and not got.built_in
    assert workload.load_user_data(f"{name}:arrays").num_classes == 5
    from_dataset = workload.load_user_data(f"{name}:dataset")
    assert torch.equal(from_dataset.train_images, got.train_images)
    assert torch.equal(from_dataset.test_labels, torch.tensor([0, 1]))
    # the same data, however it came, has the same fingerprint; other data another
    assert data.fingerprint(from_dataset) != data.fingerprint(got)  # test labels differ
    assert data.fingerprint(workload.load_user_data(f"{name}:tensors")) == data.fingerprint(got)


@pytest.mark.parametrize(("body", "message"), [
    ("return [1, 2]", r"returned a list; lrbench needs a mapping \{\"train\": \(x, y\), "),
    ("return {'train': (x, y)}", r"returned a dict; lrbench needs a mapping"),
    ("return {'train': (x, y[:3]), 'test': (x, y)}",
     r"its 'train' split: labels are \(3,\) for 6 inputs; lrbench needs one integer label "
     r"per input, shape \(6,\)"),
    ("return {'train': (x, y > 0), 'test': (x, y)}",
     r"its 'train' split: labels are torch.bool; lrbench needs integer class labels "
     r"\(cross-entropy\) or float targets \(mse\)"),
    ("return {'train': (x, y.float()), 'test': (x, y)}",
     r"train labels are \(1,\) torch.float32 but test labels are \(\) torch.int64: one task "
     r"has one kind of label"),
    ("return {'train': (x, torch.ones(6, 2, 2)), 'test': (x, y)}",
     r"its 'train' split: targets are \(6, 2, 2\) for 6 inputs; lrbench needs \(6,\) or "
     r"\(6, D\) float targets"),
    ("return {'train': (x, y), 'test': (x[:, :2], y)}",
     r"train inputs are \(4,\) torch.float32 but test inputs are \(2,\) torch.float32"),
    ("return {'train': (x, y - 1), 'test': (x, y)}", r"label -1 is outside 0-2 \(2 such labels\)"),
    ("return {'train': (x, y), 'test': (x, y), 'num_classes': 1}",
     r"num_classes = 1; it must be an integer >= 2"),
    ("return {'train': 'x', 'test': (x, y)}",
     r"its 'train' split is a str; lrbench needs \(x, y\) tensors or a map-style Dataset"),
])
def test_a_loader_returning_the_wrong_form_is_named(user_module, body: str, message: str):
    name = user_module(f"""
        import torch

        def load():
            x = torch.ones(6, 4)
            y = torch.tensor([0, 1, 2, 0, 1, 2])
            {body}
    """)
    with pytest.raises(UserError, match=rf"^s.toml: data.dataset = '{name}:load': {message}"):
        workload.load_user_data(f"{name}:load", "s.toml")


def test_built_in_data_still_flattens_and_user_data_keeps_its_shape(digits_data):
    assert tuple(digits_data.train_x.shape[1:]) == (1, 8, 8)
    assert digits_data.chance is None and digits_data.train_x.dtype == torch.float32
    images = data.DatasetArrays("mnist", torch.zeros(5, 28, 28, dtype=torch.uint8),
                                torch.zeros(5, dtype=torch.int64),
                                torch.zeros(2, 28, 28, dtype=torch.uint8),
                                torch.zeros(2, dtype=torch.int64), Path("."))
    split = data.split_to_device(images, 1, 0, "cpu")
    assert tuple(split.train_x.shape) == (4, 784) and split.chance == 0.1
    assert torch.equal(images.examples(1), torch.zeros(1, 784))


def test_the_built_in_model_names_are_the_registry_s():
    """The sweep file's check is torch-free (workload.BUILTIN_MODELS); the models are torch."""
    from lrbench.train.models import MODELS

    assert workload.BUILTIN_MODELS == tuple(MODELS)


def test_model_input_scales_images_and_leaves_other_inputs_alone():
    tokens = torch.tensor([[3, 4, 5]])
    assert data.model_input(tokens) is tokens
    pixels = torch.tensor([[0, 255]], dtype=torch.uint8)
    assert data.model_input(pixels).tolist() == [[0.0, 1.0]]
    floats = torch.from_numpy(np.array([[0.5]], np.float32))
    assert data.model_input(floats) is floats


def test_a_user_workload_never_collapses_for_sitting_near_chance(digits_data):
    """A transformer's early plateau is normal: only a non-finite loss diverges."""
    slow = spec(0, "test_workload:small_cnn", ScheduleSpec("constant"), epochs=3)
    slow = dataclasses.replace(slow, optimizer=OptimizerConfig("sgd", lr=1e-6, momentum=0.0,
                                                               nesterov=False))
    workload.add_import_root(Path(__file__).parent)
    result = train_trial(slow, digits_data)
    assert result.status == "complete" and result.epochs_run == 3
    assert result.val_accuracy < 0.3  # at chance, all three epochs


def test_the_module_beside_the_current_sweep_file_wins(tmp_path: Path, monkeypatch):
    """Two sweep files of one suite, each with its own ``shapes.py``: each gets its own."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for folder, width in (("a", 3), ("b", 5)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "shapes_for_suite.py").write_text(
            f"from torch import nn\n\ndef make():\n    return nn.Linear(2, {width})\n")
    workload.add_import_root(tmp_path / "a")
    assert workload.build_model("shapes_for_suite:make", 3).out_features == 3
    workload.add_import_root(tmp_path / "b")
    assert workload.build_model("shapes_for_suite:make", 5).out_features == 5
    workload.add_import_root(tmp_path / "a")  # back to the first: moved to the front again
    assert workload.build_model("shapes_for_suite:make", 3).out_features == 3
    sys.modules.pop("shapes_for_suite", None)


# --- a regression: float targets, the mean squared error, and a score that is -MSE ---


def waves() -> dict[str, object]:
    """A smooth two-output regression of four inputs, with a little noise."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(500, 4, generator=g) * 2 - 1
    y = torch.stack([torch.sin(3 * x[:, 0]) * x[:, 1], x[:, 2] ** 2 - x[:, 3]], dim=1)
    y = y + 0.05 * torch.randn(500, 2, generator=g)
    return {"train": (x[:400], y[:400]), "test": (x[400:], y[400:])}


def regressor() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))


def test_a_regression_batched_equals_its_sequential_trials():
    workload.add_import_root(Path(__file__).parent)
    arrays = workload.load_user_data("test_workload:waves")
    assert (arrays.loss, arrays.num_classes, arrays.train_labels.dtype) == \
        ("mse", 2, torch.float32)
    regression = data.split_to_device(arrays, 0.2, 0, "cpu")
    assert regression.loss == "mse" and regression.chance is None
    adam = OptimizerConfig("adam", lr=1e-2)
    specs = [spec(k, "test_workload:regressor", s, epochs=3, batch=40, optimizer=adam)
             for k, s in enumerate((STEP, ONECYCLE, WARMUP))]
    for one, got in zip(specs, train_batch(specs, regression)):
        want = train_trial(one, regression)
        for key in ("train_loss", "val_loss", "val_accuracy"):  # val_accuracy holds -MSE
            assert got.curves[key] == pytest.approx(want.curves[key], rel=1e-5, abs=1e-7)
        assert got.test_loss == pytest.approx(want.test_loss, rel=1e-5)
        # the score is minus the mean squared error, so higher is better, as accuracy
        assert want.curves["val_accuracy"] == pytest.approx([-v for v in want.curves["val_loss"]])
        assert want.test_accuracy == pytest.approx(-want.test_loss)
        assert want.curves["val_loss"][-1] < want.curves["val_loss"][0]  # it learns


def test_a_regression_model_must_return_its_targets_shape():
    workload.add_import_root(Path(__file__).parent)
    with pytest.raises(UserError, match=r"returned \(2, 3\); lrbench needs outputs of shape "
                                        r"\(2, 2\) \(the data's targets\)"):
        workload.check_model("test_workload:with_no_dropout", torch.randn(2, 4), 2,
                             loss="mse")
