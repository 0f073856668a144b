"""The ``lrbench`` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 done, 2 the user's mistake (one clear line, no traceback), 1 anything
else (a bug or a broken machine: the traceback is worth seeing), 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import optuna
from joblib.externals.loky.process_executor import TerminatedWorkerError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lrbench import config as config_module
from lrbench.errors import UserError
from lrbench.storage import is_url, open_storage, storage_location
from lrbench.summary import best_by_family, study_rows
from lrbench.sweep import run_sweep

console = Console()
err_console = Console(stderr=True)

SWEEP_DIRS = (Path("sweeps"), Path(__file__).resolve().parents[1] / "sweeps")


def find_sweep_file(name: str) -> Path:
    """``step`` -> ``sweeps/step.toml`` (here, then beside the package); a path as given."""
    if name.endswith(".toml") or "/" in name:
        return Path(name)
    for folder in SWEEP_DIRS:
        if (folder / f"{name}.toml").is_file():
            return folder / f"{name}.toml"
    known = sorted({p.stem for folder in SWEEP_DIRS for p in folder.glob("*.toml")})
    folders = ", ".join(str(d) for d in SWEEP_DIRS)
    raise UserError(f"no sweep file {name!r}: looked for {name}.toml in {folders} "
                    f"(known: {', '.join(known) or 'none'})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrbench-sweeps")
def cli() -> None:
    """Sweep and benchmark learning-rate schedules with Optuna."""


RESULTS = click.option("--results", "results_dir", default="results", show_default=True,
                       type=click.Path(file_okay=False), help="Output folder (default storage).")
STORAGE = click.option("--storage", default=None,
                       help="Optuna storage URL or journal file "
                            "[default: RESULTS/lrbench.journal].")


@cli.command()
@click.argument("sweep")
@click.option("--trials", type=click.IntRange(min=1), help="Total trials in the study.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker slots [default: per device].")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, or a list such as cuda:0,cuda:1.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per trial (all trials).")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist", "kmnist"]))
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="torchvision root holding MNIST/raw/ etc. [env: LRBENCH_DATA_DIR]")
@click.option("--seed", type=click.IntRange(min=0), help="Base seed (trial seed = seed + number).")
@click.option("--study", "study_name", help="Study name [default: the sweep file's].")
@RESULTS
@STORAGE
def sweep(sweep: str, trials: int | None, workers: int | None, device: str, epochs: int | None,
          dataset: str | None, data_dir: str | None, seed: int | None, study_name: str | None,
          results_dir: str, storage: str | None) -> None:
    """Run (or resume) the sweep in sweeps/SWEEP.toml, or in a .toml file."""
    cfg = config_module.load(find_sweep_file(sweep)).with_overrides(
        trials=trials, epochs=epochs, dataset=dataset, seed=seed, study=study_name)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("running {task.fields[running]}"), TextColumn("best {task.fields[best]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks = []  # the bar appears with the first report: after the checks that may fail

        def show(p):  # type: ignore[no-untyped-def]
            if not tasks:
                tasks.append(bar.add_task(cfg.study, total=cfg.trials, running=0, best="-"))
            bar.update(tasks[0], completed=p.finished, running=p.running,
                       best="-" if p.best is None else f"{p.best:.4f}")

        outcome = run_sweep(cfg, results_dir=results_dir, storage=storage, data_dir=data_dir,
                            device=device, workers=workers, on_progress=show)
    slots = ", ".join(f"{s.device}x{s.threads}t" for s in outcome.slots)
    if not outcome.reports and outcome.error is None:
        console.print(f"nothing to train: study {cfg.study!r} already holds {outcome.finished} "
                      f"finished trials (raise --trials to add more)")
    if outcome.recovered:
        console.print(f"re-queued trials left running by dead workers: {outcome.recovered}")
    _print_best(outcome.study)
    console.print(f"{outcome.finished}/{outcome.target} trials finished in {outcome.storage} "
                  f"(slots: {slots}; wall {outcome.wall_seconds:.1f} s, training "
                  f"{outcome.train_seconds:.1f} s summed over slots)")
    console.print(f"browse: optuna-dashboard {outcome.storage}")
    if isinstance(outcome.error, TerminatedWorkerError):
        # Not the user's mistake, but no traceback helps either: the storage is intact.
        err_console.print(f"lrbench: a worker process died ({outcome.error}); its trial was "
                          f"re-queued: run the same command to resume", markup=False)
        sys.exit(1)
    if outcome.error is not None:
        raise outcome.error
    if outcome.interrupted:
        console.print("interrupted: finished trials are kept; run the same command to resume")
        sys.exit(130)


def _print_best(study: optuna.Study) -> None:
    rows = best_by_family(study)
    if not rows:
        console.print("no completed trial yet")
        return
    table = Table(title=f"best trial per schedule family — study {study.study_name}")
    for name in ("family", "trials", "pruned", "diverged", "val acc", "test acc", "trial"):
        table.add_column(name, justify="left" if name == "family" else "right")
    table.add_column("params", overflow="fold")
    for r in rows:
        table.add_row(r["family"], str(r["complete"]), str(r["pruned"]), str(r["diverged"]),
                      f"{r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}", str(r["number"]),
                      r["params"])
    console.print(table)


@cli.command(name="list")
@RESULTS
@STORAGE
def list_(results_dir: str, storage: str | None) -> None:
    """Show the sweep files and the studies in storage."""
    table = Table(title="sweep files")
    table.add_column("name")
    table.add_column("file")
    seen = set()
    for folder in SWEEP_DIRS:
        for path in sorted(folder.glob("*.toml")):
            if path.stem not in seen:
                seen.add(path.stem)
                table.add_row(path.stem, str(path))
    console.print(table)
    location = storage_location(storage, results_dir)
    if not is_url(location) and not Path(location).exists():
        console.print(f"no studies yet ({location} does not exist)")
        return
    studies = Table(title=f"studies in {location}")
    studies.add_column("study", no_wrap=True)
    for name in ("complete", "pruned", "failed", "running", "best val acc", "families"):
        studies.add_column(name)
    for row in study_rows(open_storage(location, create=False)):
        studies.add_row(row["study"], str(row["complete"]), str(row["pruned"]), str(row["failed"]),
                        str(row["running"]), row["best"], row["families"])
    console.print(studies)


def main(argv: list[str] | None = None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        cli.main(args=argv, prog_name="lrbench", standalone_mode=False)
    except click.ClickException as err:  # bad flags: click's own message, exit 2
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except UserError as err:
        # markup=False: messages quote sweep-file keys like [schedules.step] verbatim
        err_console.print(f"lrbench: error: {err}", style="bold red", markup=False,
                          highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
