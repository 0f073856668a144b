"""A sweep's model and data: a built-in name (``fnn``, ``mnist``) or a user's import path.

A sweep file names its own workload as ``"package.module:attribute"``:

- ``[train] model = "mymodels:small_cnn"``: a factory, called with no arguments, that
  returns a ``torch.nn.Module``. Its forward takes a batch of inputs ``[B, ...]`` and
  returns logits ``[B, classes]``; its weights are drawn by the constructor, under the
  trial's seed, exactly as for the built-in models.
- ``[data] dataset = "mydata:load"``: a loader, called with no arguments, that returns a
  mapping ``{"train": (x, y), "test": (x, y)}``. Each split is a pair of tensors (or numpy
  arrays) with one row per example, or a map-style ``Dataset`` of ``(x, y)`` pairs; ``y``
  holds integer class labels ``0..C-1`` (an optional ``"num_classes"`` entry gives ``C``,
  else the largest label + 1), or float targets ``[N]`` or ``[N, D]`` for a regression
  (``[train] loss = "mse"``; the model then returns ``[B, D]``). The validation split is
  cut from ``train`` by ``[data] validation_size``, as for MNIST. ``uint8`` inputs are
  scaled to [0, 1] per batch (images); any other dtype reaches the model as it is (token
  ids stay integers).

A module is looked for in the sweep file's folder first, then on ``sys.path``; slot
processes add the same folder. A path that does not import, an attribute that is not
there, or a return value of the wrong form is the user's error, named by the sweep file's
key and value (exit 2, no traceback). An exception raised *inside* the user's code is
theirs: ``UserCodeError`` carries their traceback, without lrbench's frames, and one line
of lrbench's context.
"""

from __future__ import annotations

import importlib
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrbench.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lrbench.train.data import DatasetArrays

BUILTIN_MODELS = ("fnn", "cnn", "logreg")
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
IMPORT_PATH_RULE = '"package.module:attribute" (e.g. "mymodels:small_cnn")'


class UserCodeError(UserError):
    """An exception raised inside a user's factory, loader or model: their traceback (their
    frames only) and one line saying where lrbench called it."""

    def __init__(self, context: str, error: BaseException) -> None:
        self.user_traceback = their_traceback(error) or "".join(
            traceback.format_exception_only(type(error), error)).rstrip()
        super().__init__(f"{context} raised {type(error).__name__}: {error}\n"
                         f"{self.user_traceback}")


def their_traceback(error: BaseException) -> str:
    """``error``'s traceback through the user's code only (lrbench's, torch's and
    importlib's frames left out), or "" if none of its frames is theirs."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not _is_library_frame(f.filename)]
    if not frames:
        return ""
    lines = ["Traceback (your code, most recent call last):\n",
             *traceback.format_list(frames),
             *traceback.format_exception_only(type(error), error)]
    return "".join(lines).rstrip()


def _is_library_frame(filename: str) -> bool:
    """lrbench's, importlib's and torch's frames: not the user's to read."""
    import torch

    path = Path(filename)
    return filename.startswith("<frozen") or any(
        path.is_relative_to(Path(package.__file__).parent)
        for package in (sys.modules["lrbench"], torch, importlib))


def is_import_path(name: str) -> bool:
    """A user's ``module:attribute``, as opposed to a built-in name."""
    return ":" in name


def check_import_path(name: str) -> str | None:
    """Why ``name`` is not a well-formed import path, or None."""
    if _IMPORT_PATH.fullmatch(name):
        return None
    return f"is not an import path of the form {IMPORT_PATH_RULE}"


_root: str = ""  # the folder added last: the sweep file whose workload runs now


def add_import_root(root: str | Path | None) -> None:
    """Look for users' modules in ``root`` (a sweep file's folder) before ``sys.path``."""
    global _root
    if not root:
        return
    _root = str(root)
    if _root in sys.path:
        sys.path.remove(_root)
    sys.path.insert(0, _root)


def _forget_other_roots_module(module_name: str) -> None:
    """A suite's workloads may each keep a module of the same name beside their sweep
    files: the one beside the current sweep file is meant, not one imported earlier
    from another folder (Python would hand back that one)."""
    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    here = Path(_root) / top if _root else None
    if cached is None or here is None or not (here.is_dir() or here.with_suffix(".py").is_file()):
        return
    file = getattr(cached, "__file__", None)
    if file and not Path(file).resolve().is_relative_to(Path(_root).resolve()):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def _where(key: str, name: str, source: str) -> str:
    """"sweeps/mine.toml: train.model = 'mymodels:cnn'": what the user wrote, and where."""
    return f"{source}: {key} = {name!r}" if source else f"{key} = {name!r}"


def resolve(name: str, key: str, source: str = "") -> Callable[[], Any]:
    """The callable ``module:attribute`` names; a UserError naming the sweep file
    (``source``), ``key`` and the value if the module does not import (for want of the
    module itself) or lacks the attribute."""
    where = _where(key, name, source)
    problem = check_import_path(name)
    if problem:
        raise UserError(f"{where} {problem}")
    module_name, attribute = name.split(":")
    _forget_other_roots_module(module_name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):  # the path itself
            raise UserError(f"{where}: no module named {err.name!r} (looked in "
                            f"{_roots_text()})") from None
        raise UserCodeError(f"{where}: importing {module_name}", err) from None
    except Exception as err:  # their module raised while importing
        raise UserCodeError(f"{where}: importing {module_name}", err) from None
    found = getattr(module, attribute, None)
    if found is None:
        raise UserError(f"{where}: module {module_name!r} ({module.__file__}) has "
                        f"no attribute {attribute!r}")
    if not callable(found):
        raise UserError(f"{where}: {attribute} = {found!r} is not callable")
    return found


def _roots_text() -> str:
    first = [p for p in sys.path[:3] if p]
    return ", ".join(first) + ", and the rest of sys.path"


def source_file(name: str) -> str:
    """The file a user's import path lives in (for the data's location), or ""."""
    try:
        module = importlib.import_module(name.split(":")[0])
    except Exception:  # noqa: BLE001 - a location only; resolve() reports the problem
        return ""
    return str(getattr(module, "__file__", "") or "")


# --- models ---


def build_model(name: str, num_classes: int, source: str = "") -> nn.Module:
    """A fresh model: a built-in by name, or a user's factory called with no arguments.
    Its weights come from the global torch generator, which the caller seeds."""
    from torch import nn

    from lrbench.train.models import MODELS

    if not is_import_path(name):
        return MODELS[name](num_classes)
    where = _where("train.model", name, source)
    factory = resolve(name, "train.model", source)
    try:
        model = factory()
    except Exception as err:
        raise UserCodeError(f"{where}: calling {name}()", err) from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{where}: returned a {type(model).__name__}, not a "
                        f"torch.nn.Module")
    return model


def check_model(name: str, example: torch.Tensor, num_classes: int, source: str = "",
                loss: str = "cross_entropy") -> None:
    """Build the model and run it on a few examples: it must give ``[B, num_classes]``
    logits (a regression: ``[B, D]`` outputs). A user's error in its forward is shown as
    theirs."""
    import torch

    where = _where("train.model", name, source)
    batch = f"a batch of {tuple(example.shape)} {example.dtype} inputs"
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, num_classes, source)
        if not any(True for _ in model.parameters()):
            raise UserError(f"{where}: the module has no parameters to train")
        try:
            with torch.no_grad():
                out = model.eval()(example)
        except Exception as err:
            raise UserCodeError(f"{where}: its forward (evaluation) on {batch}", err) from None
        try:  # as training runs it: train mode, gradients on, then backward
            model.train()(example).float().sum().backward()
        except Exception as err:
            raise UserCodeError(f"{where}: its forward and backward (training) on {batch}",
                                err) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(example), num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        what = "outputs" if loss == "mse" else "logits"
        per = "targets" if loss == "mse" else "classes"
        raise UserError(f"{where}: on a batch of {len(example)} inputs it "
                        f"returned {shape}; lrbench needs {what} of shape "
                        f"({len(example)}, {num_classes}) (the data's {per})")


# --- data ---


def load_user_data(name: str, source: str = "") -> DatasetArrays:
    """Call a user's loader and check what it returned; CPU tensors in lrbench's form."""
    import torch

    from lrbench.train.data import DatasetArrays

    key = "data.dataset"
    where = _where(key, name, source)
    loader = resolve(name, key, source)
    try:
        loaded = loader()
    except Exception as err:
        raise UserCodeError(f"{where}: calling {name}()", err) from None
    if not isinstance(loaded, Mapping) or not {"train", "test"} <= set(loaded):
        raise UserError(f"{where}: returned {_kind(loaded)}; lrbench needs a mapping "
                        f'{{"train": (x, y), "test": (x, y)}} (optionally "num_classes")')
    splits = {split: _split(loaded[split], f"{where}: its {split!r} split")
              for split in ("train", "test")}
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    if tuple(train_x.shape[1:]) != tuple(test_x.shape[1:]) or train_x.dtype != test_x.dtype:
        raise UserError(f"{where}: train inputs are {tuple(train_x.shape[1:])} "
                        f"{train_x.dtype} but test inputs are {tuple(test_x.shape[1:])} "
                        f"{test_x.dtype}: one model reads both")
    if train_y.is_floating_point() != test_y.is_floating_point() or \
            train_y.shape[1:] != test_y.shape[1:]:
        raise UserError(f"{where}: train labels are {tuple(train_y.shape[1:])} "
                        f"{train_y.dtype} but test labels are {tuple(test_y.shape[1:])} "
                        f"{test_y.dtype}: one task has one kind of label")
    if train_y.is_floating_point():  # a regression: D outputs, nothing more to check
        return DatasetArrays(name=name, train_images=train_x, train_labels=train_y,
                             test_images=test_x, test_labels=test_y,
                             root=Path(source_file(name) or "."), num_classes=train_y.shape[1])
    labels = torch.cat([train_y, test_y])
    num_classes = loaded.get("num_classes", int(labels.max()) + 1)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"{where}: num_classes = {num_classes!r}; it must be an "
                        f"integer >= 2")
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        raise UserError(f"{where}: label {int(labels[int(bad[0])])} is outside "
                        f"0-{num_classes - 1} ({len(bad):,} such labels)")
    return DatasetArrays(name=name, train_images=train_x, train_labels=train_y,
                         test_images=test_x, test_labels=test_y,
                         root=Path(source_file(name) or "."), num_classes=num_classes)


def _split(value: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (inputs, integer labels) CPU tensors with one row per example."""
    import torch

    if isinstance(value, Sequence) and len(value) == 2 and not _is_dataset(value):
        x, y = (_tensor(v, f"{where}'s {part}") for v, part in zip(value, ("inputs", "labels")))
    elif _is_dataset(value):
        try:
            pairs = [value[i] for i in range(len(value))]
            x = torch.stack([_tensor(p[0], f"{where}'s inputs") for p in pairs])
            y = torch.stack([_tensor(p[1], f"{where}'s labels") for p in pairs])
        except (TypeError, IndexError, RuntimeError) as err:
            raise UserError(f"{where}: a Dataset whose items are not (x, y) pairs of one "
                            f"shape ({err})") from None
    else:
        raise UserError(f"{where} is {_kind(value)}; lrbench needs (x, y) tensors or a "
                        f"map-style Dataset of (x, y) pairs")
    if x.dim() < 1 or len(x) == 0:
        raise UserError(f"{where} holds no examples")
    if y.dtype == torch.bool or y.is_complex():
        raise UserError(f"{where}: labels are {y.dtype}; lrbench needs integer class labels "
                        f"(cross-entropy) or float targets (mse)")
    if y.is_floating_point():  # regression targets: [N] or [N, D], as float32
        if y.dim() not in (1, 2) or len(y) != len(x):
            raise UserError(f"{where}: targets are {tuple(y.shape)} for {len(x):,} inputs; "
                            f"lrbench needs ({len(x)},) or ({len(x)}, D) float targets")
        return x.contiguous(), y.reshape(len(y), -1).to(torch.float32).contiguous()
    if y.dim() != 1 or len(y) != len(x):
        raise UserError(f"{where}: labels are {tuple(y.shape)} for {len(x):,} inputs; lrbench "
                        f"needs one integer label per input, shape ({len(x)},)")
    return x.contiguous(), y.to(torch.int64)


def _is_dataset(value: Any) -> bool:
    """A map-style Dataset: indexable and sized, but not a tuple, list, tensor or array."""
    return hasattr(value, "__getitem__") and hasattr(value, "__len__") \
        and not isinstance(value, (tuple, list, str, bytes)) and not hasattr(value, "__array__")


def _tensor(value: Any, where: str) -> torch.Tensor:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{where} are {_kind(value)}, not a tensor or array ({err})") from None


def _kind(value: Any) -> str:
    return f"a {type(value).__name__}"
