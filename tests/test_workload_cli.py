"""A user's own model and data through the ``lrbench`` command, as a user runs it: a sweep
file with a module beside it, swept, confirmed and reported; data identity for their
loader; their mistakes and their exceptions; a model vmap cannot stack."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from conftest import run_lrbench

from lrbench.store.record import record_of

pytestmark = pytest.mark.slow  # whole lrbench processes

MODULE = """
    import torch
    from torch import nn

    SHIFT = 0.0  # a test edits it: "the loader now returns other data"


    def blobs():
        # three Gaussian blobs in 4 dimensions: 300 train and 90 test points
        g = torch.Generator().manual_seed(0)
        centres = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
        y = torch.arange(390) % 3
        x = centres[y] + torch.randn(390, 4, generator=g) + SHIFT
        return {"train": (x[:300], y[:300]), "test": (x[300:], y[300:])}


    def mlp():
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


    def normed():
        return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


    def broken():
        return build_the_net(width=-1)


    def build_the_net(width):
        return nn.Linear(4, width)
"""

SWEEP = """
    [study]
    name = "{name}"
    trials = 4
    [data]
    dataset = "{dataset}"
    validation_size = 0.2
    [train]
    model = "{model}"
    epochs = 2
    batch_size = 30
    [search]
    lr = {{ low = 0.01, high = 0.3, log = true }}
    [schedules]
    families = ["constant", "cosine"]
"""


def workload(folder: Path, name: str = "mine", model: str = "blobs_module:mlp",
             dataset: str = "blobs_module:blobs", module: str = MODULE) -> Path:
    """A sweep file and its module, side by side in ``folder``; the sweep file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "blobs_module.py").write_text(textwrap.dedent(module))
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(SWEEP.format(name=name, model=model, dataset=dataset)))
    return path


def test_a_user_workload_sweeps_confirms_and_reports(tmp_path: Path):
    sweep_file = workload(tmp_path / "mine")
    results = tmp_path / "results"
    # run from another folder: the module is found beside the sweep file
    done = run_lrbench("sweep", str(sweep_file), "--engine", "batched", "--workers", "1",
                       results=results)
    assert done.returncode == 0, done.stderr
    assert "4/4 trials finished" in " ".join(done.stdout.split())
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "lrbench.journal")))
    study = optuna.load_study(study_name="mine", storage=storage)
    identity = study.user_attrs["lrbench_data"]
    assert identity["dataset"] == "blobs_module:blobs"
    assert (identity["train_size"], identity["val_size"], identity["test_size"]) == (240, 60, 90)
    assert len(identity["fingerprint"]) == 16
    assert identity["location"] == str(tmp_path / "mine" / "blobs_module.py")
    engines = {record_of(t).engine for t in study.trials}
    assert engines == {"batched"}  # an MLP stacks: the generic torch.func path

    confirmed = run_lrbench("confirm", "mine", "--seeds", "2", results=results)
    assert confirmed.returncode == 0, confirmed.stderr
    page = tmp_path / "page"
    report = run_lrbench("report", "--out", str(page), results=results)
    assert report.returncode == 0, report.stderr
    # The report leaves without Python's teardown (entry.quick_exit), its piped output
    # written whole first: the verdict, then the page's line, the last one printed.
    printed = " ".join(report.stdout.split())  # (rich wraps long lines in a pipe)
    # (and folds a path longer than its 80 columns mid-word: pytest-xdist's are longer)
    assert printed.startswith("mine: ") and "index.html" in "".join(printed.split())
    assert printed.endswith("verdict-mine.csv)"), printed
    html = (page / "index.html").read_text()
    assert "blobs_module:blobs: 240 train / 60 validation / 90 test examples" in html
    assert ("# train.model = &#39;blobs_module:mlp&#39;, data.dataset = "
            "&#39;blobs_module:blobs&#39;: imported from") in html
    assert "--data-dir" not in html  # a loader is not a folder

    # the loader now returns other data: pooling it with the study's is refused
    module = MODULE.replace("SHIFT = 0.0", "SHIFT = 1.0")
    workload(tmp_path / "mine", module=module)
    again = run_lrbench("sweep", str(sweep_file), "--trials", "6", results=results)
    assert again.returncode == 2
    assert "its loader now returns blobs_module:blobs: 240 train" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_model_vmap_cannot_stack_trains_sequentially_and_says_why(tmp_path: Path):
    sweep_file = workload(tmp_path / "normed", name="normed", model="blobs_module:normed")
    results = tmp_path / "results"
    done = run_lrbench("sweep", str(sweep_file), "--engine", "batched", "--workers", "1",
                       results=results)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert ("blobs_module:normed trains on the sequential engine, one trial at a time: it has "
            "BatchNorm1d, which computes differently in training and evaluation") in said
    assert said.count("trains on the sequential engine") == 1  # once, not per slot
    page = tmp_path / "page"
    assert run_lrbench("report", "--out", str(page), results=results).returncode == 0
    html = (page / "index.html").read_text()
    assert "engine fallback" in html and "it has BatchNorm1d" in html


@pytest.mark.parametrize(("model", "dataset", "said"), [
    ("nowhere:mlp", "blobs_module:blobs",
     "train.model = 'nowhere:mlp': no module named 'nowhere'"),
    ("blobs_module:mlp", "blobs_module:no_such_loader",
     "data.dataset = 'blobs_module:no_such_loader': module 'blobs_module'"),
    ("blobs_module", "blobs_module:blobs", "train.model: must be one of ('fnn', 'cnn', "
     "'logreg'), or a factory's import path"),
])
def test_a_bad_import_path_is_named_with_exit_2_and_no_traceback(tmp_path: Path, model: str,
                                                                 dataset: str, said: str):
    sweep_file = workload(tmp_path / "bad", model=model, dataset=dataset)
    done = run_lrbench("sweep", str(sweep_file), results=tmp_path / "results")
    assert done.returncode == 2
    assert str(sweep_file) in done.stderr and said in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


def test_an_exception_in_the_users_factory_shows_their_traceback(tmp_path: Path):
    sweep_file = workload(tmp_path / "raises", model="blobs_module:broken")
    done = run_lrbench("sweep", str(sweep_file), results=tmp_path / "results")
    assert done.returncode == 2
    err = done.stderr
    assert f"{sweep_file}: train.model = 'blobs_module:broken': calling blobs_module:broken() " \
           f"raised RuntimeError" in " ".join(err.split())
    assert "Traceback (your code, most recent call last)" in err
    assert "in broken" in err and "in build_the_net" in err  # their frames ...
    assert "lrbench/" not in err.replace(str(tmp_path), "")  # ... and none of lrbench's


def test_a_suite_compares_user_workloads_from_their_own_sweep_files(tmp_path: Path):
    """A suite may list other sweep files per workload (a transformer's and MNIST's): the
    report compares them by the suite, not by a shared sweep file."""
    first = workload(tmp_path / "one", name="one")
    second = workload(tmp_path / "two", name="two", model="blobs_module:normed")
    suite = tmp_path / "both.toml"
    suite.write_text(f'[suite]\nname = "both"\n[[workload]]\nsweep = "{first}"\n'
                     f'[[workload]]\nsweep = "{second}"\n')
    results = tmp_path / "results"
    done = run_lrbench("sweep", str(suite), "--workers", "1", results=results)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "page"
    assert run_lrbench("report", "--out", str(page), results=results).returncode == 0
    html = (page / "index.html").read_text()
    assert "Comparison across workloads: both" in html
    standings = __import__("pandas").read_csv(page / "comparison-both.csv")
    assert set(standings["study"]) == {"both-one-blobs_module-blobs", "both-two-blobs_module-blobs"}
    assert set(standings["family"]) == {"constant", "cosine"}


REGRESSION = """
    import torch
    from torch import nn


    def waves():
        g = torch.Generator().manual_seed(3)
        x = torch.rand(390, 4, generator=g) * 2 - 1
        y = torch.sin(3 * x[:, 0]) * x[:, 1] + x[:, 2] ** 2 - x[:, 3]
        return {"train": (x[:300], y[:300]), "test": (x[300:], y[300:])}


    def mlp():
        return nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
"""


def test_a_regression_sweeps_confirms_and_reports_its_mse(tmp_path: Path):
    """loss = "mse": float targets, the score is −MSE (higher is better everywhere), and
    the terminal and the page name it so, with no percentages and no "did not learn"."""
    folder = tmp_path / "reg"
    sweep_file = workload(folder, name="reg", model="blobs_module:mlp",
                          dataset="blobs_module:waves", module=REGRESSION)
    sweep_file.write_text(sweep_file.read_text().replace("batch_size = 30",
                                                         'batch_size = 30\nloss = "mse"'))
    results = tmp_path / "results"
    done = run_lrbench("sweep", str(sweep_file), "--workers", "1", results=results)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "families ranked by single runs' validation −MSE" in said and "val −MSE" in said
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "lrbench.journal")))
    study = optuna.load_study(study_name="reg", storage=storage)
    records = [record_of(t) for t in study.trials]
    assert all(r.val_accuracy < 0 and r.test_accuracy < 0 for r in records)  # −MSE
    assert all(r.test_accuracy == pytest.approx(-r.test_loss) for r in records)
    assert study.best_value == max(r.val_accuracy for r in records)  # maximised: least MSE
    assert run_lrbench("confirm", "reg", "--seeds", "2", results=results).returncode == 0
    page = tmp_path / "page"
    report = run_lrbench("report", "--out", str(page), results=results)
    assert report.returncode == 0, report.stderr
    html = (page / "index.html").read_text()
    assert "test −MSE over seeds" in html and "val −MSE<br>(search pick)" in html
    assert "−MSE is minus the mean squared error: higher is better" in html
    assert "did not learn" not in html
    leaderboard = html[html.index('id="leaderboard-reg"'):html.index("</table>",
                                                                     html.index('id="leaderboard-reg"'))]
    assert "%" not in leaderboard.replace("95% CI", "")
    verdict = __import__("pandas").read_csv(page / "verdict-reg.csv")
    assert (verdict["score"] < 0).all()
    assert "Targets: validation −MSE of" in html

    # integer labels with loss = "mse": refused before anything trains
    wrong = workload(tmp_path / "wrong", name="wrong")
    wrong.write_text(wrong.read_text().replace("batch_size = 30",
                                               'batch_size = 30\nloss = "mse"'))
    refused = run_lrbench("sweep", str(wrong), results=results)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (f"{wrong}: train.loss: 'mse' does not fit blobs_module:blobs, which holds integer "
            f"class labels: set loss = 'cross_entropy'") in " ".join(refused.stderr.split())


LATE_ERROR = MODULE + """

    class Late(nn.Module):
        # trains a few steps, then its forward raises: past every check before training
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 3)
            self.steps = 0

        def forward(self, x):
            if torch.is_grad_enabled():
                self.steps += 1
                if self.steps > 4:
                    return self.grow(x)
            return self.layer(x)

        def grow(self, x):
            raise RuntimeError("my buffer ran out")


    def late():
        return Late()
"""


def test_an_error_in_the_users_model_while_training_shows_their_frames(tmp_path: Path):
    sweep_file = workload(tmp_path / "late", model="blobs_module:late",
                          module=LATE_ERROR)
    done = run_lrbench("sweep", str(sweep_file), "--workers", "1", "--engine", "sequential",
                       results=tmp_path / "results")
    assert done.returncode == 1  # the trials failed: the sweep did not finish (not input)
    said = done.stdout
    assert ("3 trials in a row failed; last: RuntimeError('my buffer ran out'), raised in "
            "your code (train.model = 'blobs_module:late')") in " ".join(said.split())
    assert "Traceback (your code, most recent call last)" in said
    assert "in forward" in said and "in grow" in said
    assert "lrbench/" not in said.replace(str(tmp_path), "")
    assert "nothing to train" not in said  # the slot gave up: there was something to train
