"""The ``lrbench`` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 done; 2 the user's mistake (one clear line, no traceback); 1 a sweep that
ended short of its trial count (it says why), a full disk, or anything else (a bug or a
broken machine: then the traceback is worth seeing); 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import optuna
from rich import box
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

from lrbench.errors import DataNotFoundError, StorageError, UserError, exit_code, signal_of
from lrbench.logs import show_warnings
from lrbench.store.outage import DEFAULT_WAIT_SECONDS
from lrbench.store.record import plan_of, record_of
from lrbench.store.schema import config_of
from lrbench.store.storage import is_url, open_storage, shown, storage_location, study_names
from lrbench.sweep import config as config_module
from lrbench.sweep import confirm as confirm_module
from lrbench.sweep import suite as suite_module
from lrbench.sweep.choice import ENGINES
from lrbench.sweep.devices import Slot
from lrbench.sweep.processes.stuck import DEFAULT_FLOOR_SECONDS
from lrbench.sweep.seeds import SEED_MAX
from lrbench.sweep.summary import study_rows
from lrbench.train import data
from lrbench.train.workload import add_import_root

if TYPE_CHECKING:
    import pandas as pd

    from lrbench.sweep.run import SweepOutcome

# The sweep machinery (lrbench.sweep.run and what it starts: Optuna's samplers, the
# storages) is imported by the functions that train, so `report`, `list` and every user
# error skip it (for `sweep` and `confirm` the console script imports it first, with
# signals held: lrbench.entry). torch is imported by the slots' processes alone.

# emoji=False: "--device cuda:-1" must not print a thumbs-down for ":-1".
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False, soft_wrap=True)  # whole lines: paths stay greppable

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


def _study_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not config_module.valid_study_name(value):
        raise click.BadParameter(f"must be {config_module.STUDY_NAME_RULE}, but got {value!r}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrbench-sweeps")
def cli() -> None:
    """Sweep and benchmark learning-rate schedules with Optuna."""


RESULTS = click.option("--results", "results_dir", default="results", show_default=True,
                       type=click.Path(file_okay=False), help="Output folder (default storage).")
STORAGE = click.option("--storage", default=None,
                       help="Optuna storage URL or journal file "
                            "[default: RESULTS/lrbench.journal].")


ENGINE = click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
                      help="sequential: one model at a time; batched: K trials as one stacked "
                           "model; auto: batched on GPUs (and on CPUs where it measured faster).")
BATCH_TRIALS = click.option("--batch-trials", type=click.IntRange(min=1),
                            help="Trials per stacked model (batched engine) [default: sized "
                                 "from free memory on a GPU; on a CPU, what fits 5 MiB of "
                                 "weights: 16 to 256].")
CLUSTER = click.option("--cluster", envvar="LRBENCH_CLUSTER", show_envvar=True,
                       help="Run the slots on the Dask cluster behind this scheduler "
                            "(tcp://HOST:8786); needs a server --storage (redis://... or "
                            "postgresql://...)")
STUCK_AFTER = click.option(
    "--stuck-after", type=click.FloatRange(min=0), default=DEFAULT_FLOOR_SECONDS,
    show_default=True, metavar="SECONDS",
    help="A local slot silent this long (and 5x its slowest epoch or ask so far; 3x this "
         "while it starts) is stuck: killed, its trials re-queued, a new slot started. "
         "0: never.")
STORAGE_WAIT = click.option(
    "--storage-wait", type=click.FloatRange(min=0), default=DEFAULT_WAIT_SECONDS,
    show_default=True, metavar="SECONDS",
    help="How long a server storage (PostgreSQL, Redis) may be unreachable, retried with "
         "backoff, before the sweep stops; a rerun resumes it.")
TF32 = click.option("--tf32", is_flag=True,
                    help="Batched engine on GPUs: TF32 matmuls (1.5x measured on an H200; "
                         "10-bit mantissas, so no longer bit-comparable with fp32 runs).")


@cli.command()
@click.argument("sweep")
@click.option("--trials", type=click.IntRange(min=1),
              help="Total trials in the study (search protocol).")
@click.option("--protocol", type=click.Choice(config_module.PROTOCOLS),
              help="search: one sampler over the families, to find the best; compare: the "
                   "same budget for every family, tuning repeated [default: the file's].")
@click.option("--budget", type=click.IntRange(min=1),
              help="compare: search trials per family in each repeat.")
@click.option("--repeats", type=click.IntRange(min=1),
              help="compare: independent repeats of the whole tuning [default: 3].")
@click.option("--workers", type=click.IntRange(min=1),
              help="Slots, each in a worker process of its own [default: one per GPU and "
                   "per spare CPU core].")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, or a list such as cuda:0,cuda:1.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per trial (all trials).")
@click.option("--dataset", type=click.Choice(["mnist", "fashion-mnist", "kmnist"]))
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="torchvision root holding MNIST/raw/ etc. [env: LRBENCH_DATA_DIR]")
@click.option("--seed", type=click.IntRange(0, SEED_MAX),
              help="Base seed: each trial's seed derives from it and the trial's configuration.")
@click.option("--study", "study_name", callback=_study_name,
              help="Study name [default: the sweep file's].")
@ENGINE
@BATCH_TRIALS
@TF32
@RESULTS
@STORAGE
@CLUSTER
@STUCK_AFTER
@STORAGE_WAIT
def sweep(sweep: str, trials: int | None, protocol: str | None, budget: int | None,
          repeats: int | None, workers: int | None, device: str, epochs: int | None,
          dataset: str | None, data_dir: str | None, seed: int | None, study_name: str | None,
          engine: str, batch_trials: int | None, tf32: bool, results_dir: str,
          storage: str | None, cluster: str | None, stuck_after: float,
          storage_wait: float) -> None:
    """Run (or resume) the sweep in sweeps/SWEEP.toml, or in a .toml file; a suite file
    runs each of its workloads as its own study."""
    path = find_sweep_file(sweep)
    options = {"results_dir": results_dir, "storage": storage, "device": device,
               "workers": workers, "engine": engine, "batch_trials": batch_trials, "tf32": tf32,
               "cluster": cluster, "stuck_after": stuck_after, "storage_wait": storage_wait}
    if suite_module.is_suite(path):
        for flag, value in (("--dataset", dataset), ("--study", study_name)):
            if value is not None:
                raise UserError(f"{flag}: suite {path} sets each workload's own; run one of "
                                f"its sweep files to override it")
        counts = {"trials": trials, "protocol": protocol, "budget": budget, "repeats": repeats}
        _run_suite(suite_module.load(path, find_sweep_file), data_dir, counts=counts,
                   epochs=epochs, seed=seed, **options)
        return
    cfg = config_module.load(path).with_overrides(
        trials=trials, epochs=epochs, dataset=dataset, seed=seed, study=study_name,
        protocol=protocol, budget=budget, repeats=repeats)
    _sweep_one(cfg, data_dir=data_dir, **options)


def _sweep_one(cfg: config_module.SweepConfig, **options: Any) -> None:
    _import_in_background(_BEST_TABLE_MODULES)
    if cfg.clipped:
        console.print(f"--epochs {cfg.epochs}: epoch-dependent ranges follow it: "
                      + "; ".join(cfg.clipped), highlight=False, markup=False)
    outcome = _run_with_progress(cfg, **options)
    if not outcome.reports and outcome.error is None and not outcome.gave_up:
        console.print(f"nothing to train: study {cfg.study!r} already holds {outcome.finished} "
                      f"finished trials (raise --trials to add more)")
    if not isinstance(outcome.error, StorageError):  # (reading it would fail, or wait, again)
        _print_best(outcome.study)
    _finish(outcome)


def _run_suite(suite: suite_module.Suite, data_dir: str | None, *, counts: dict[str, Any],
               epochs: int | None, seed: int | None, **options: Any) -> None:
    """Each workload in turn; one whose data set is not here (offline) is skipped."""
    ran = []
    for workload in suite.workloads:
        cfg = workload.config.with_overrides(epochs=epochs, seed=seed, **counts)
        try:
            add_import_root(cfg.workload_root)  # a user's model and data modules
            arrays = data.load_arrays(cfg.dataset, data_dir, source=cfg.source)
        except DataNotFoundError as missing:
            console.print(f"suite {suite.name}: skipping {cfg.study} ({cfg.dataset} is not "
                          f"here: {missing})", highlight=False, markup=False)
            continue
        console.print(f"suite {suite.name}: {cfg.study} ({workload.sweep.stem} on "
                      f"{cfg.dataset}, {cfg.model})", highlight=False)
        _sweep_one(cfg, arrays=arrays, **options)
        ran.append(cfg.study)
    if not ran:
        raise UserError(f"suite {suite.name} ({suite.source}): no workload's data set is here; "
                        f"pass --data-dir, or see the messages above")
    results = options["storage"] or options["results_dir"]
    console.print(f"suite {suite.name}: ran {', '.join(ran)}; compare them with `lrbench "
                  f"report" + (f" --results {results}`" if not options["storage"] else
                               f" --storage {shown(results)}`"), highlight=False)


def _run_with_progress(cfg: config_module.SweepConfig, **options: Any) -> SweepOutcome:
    """Run the slots with a progress bar drawn from the storage."""
    from lrbench.sweep.processes.cluster import hosts_text
    from lrbench.sweep.run import run_sweep

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

        def announce(slots: list[Slot]) -> None:
            if options.get("cluster"):
                console.print(f"cluster {options['cluster']}: {len(slots)} slots "
                              f"({hosts_text(slots)})", highlight=False, markup=False)

        def notice(text: str) -> None:  # above the bar, as it happens
            console.print(text, highlight=False, markup=False)

        return run_sweep(cfg, on_progress=show, on_slots=announce, on_notice=notice,
                         **options)


def _finish(outcome: SweepOutcome) -> None:
    """The closing lines of a run, and its exit code when it did not finish."""
    from lrbench.sweep.processes.cluster import ClusterLost

    slots = ", ".join(f"{r.slot.device}x{r.slot.threads}t {r.engine}"
                      + (f" K={r.batch_trials}" if r.engine == "batched" else "")
                      + (f" on {r.slot.host}" if r.slot.host else "")
                      for r in outcome.reports) or ", ".join(s.device for s in outcome.slots)
    if outcome.recovered:
        console.print(f"re-queued trials left running by dead worker processes: "
                      f"{sorted(set(outcome.recovered))}")
    console.print(f"{outcome.finished}/{outcome.target} trials finished in "
                  f"{shown(outcome.storage)} "
                  f"(slots: {slots}; wall {outcome.wall_seconds:.1f} s, training "
                  f"{outcome.train_seconds:.1f} s summed over slots)")
    gpu_mb = [r.peak_gpu_mb for r in outcome.reports if r.peak_gpu_mb]
    if gpu_mb:
        console.print(f"peak GPU memory per GPU slot: {', '.join(f'{m:,.0f} MiB' for m in gpu_mb)}")
    console.print(f"browse: optuna-dashboard {shown(outcome.storage)}")
    if isinstance(outcome.error, ClusterLost):  # nothing finished is lost: say so, no trace
        err_console.print(f"lrbench: error: {outcome.error}; finished trials are kept in "
                          f"{shown(outcome.storage)}: run the same command to resume",
                          markup=False)
        sys.exit(1)
    if isinstance(outcome.error, StorageError):  # an outage, a full disk, a journal gone:
        err_console.print(f"lrbench: error: {outcome.error}", markup=False)  # no traceback
        sys.exit(1)  # helps, and its message says what to do
    if outcome.error is not None:
        raise outcome.error
    if outcome.interrupted:
        console.print("interrupted: finished trials are kept; run the same command to resume")
        sys.exit(exit_code(outcome.interrupted))
    if outcome.short:
        err_console.print(f"lrbench: the sweep ended with {outcome.finished} of "
                          f"{outcome.target} trials finished: {_why_short(outcome)}",
                          markup=False)
        sys.exit(1)


def _why_short(outcome: SweepOutcome) -> str:
    from lrbench.sweep.run import snapshot

    now = snapshot(outcome.study)
    reasons = []
    if now.failed > outcome.failed_before:
        reasons.append(f"{now.failed - outcome.failed_before} trials failed in this run (each "
                       f"keeps its error: lrbench list, or optuna-dashboard)")
    if outcome.gave_up:
        reasons.append(f"{len(outcome.gave_up)} of {len(outcome.slots)} slots stopped after "
                       f"a run of failed trials")
    if outcome.deaths:
        reasons.append(f"worker processes died {outcome.deaths} times")
    if now.running:
        reasons.append(f"{now.running} trials are still running elsewhere")
    return "; ".join(reasons or ["no slot could take a trial"]) + (
        "; run the same command to try again")


# What the closing table needs (pandas among it; not scipy.stats, see
# lrbench.report.normal_range), which the parent imports while its slots train.
_BEST_TABLE_MODULES = ("lrbench.report.frames", "lrbench.report.ranking",
                       "lrbench.report.summary")


def _import_in_background(modules: tuple[str, ...]) -> None:
    """Import ``modules`` in a daemon thread; a later import waits for it or finds them."""
    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the real import, later, raises it where it is needed
                return
    threading.Thread(target=run, name="lrbench-imports", daemon=True).start()


def _print_best(study: optuna.Study) -> None:
    """The study's families in the report's one ranking, narrow enough for 80 columns:
    the parameters go on lines of their own under the table."""
    from lrbench.report.frames import trials_of  # pandas: only where used
    from lrbench.report.metric import metric_of
    from lrbench.report.ranking import rank
    from lrbench.report.summary import versus_best

    trials = trials_of(study)
    if trials.empty or not (trials["state"] == "complete").any():
        console.print("no completed trial yet")
        return
    m = metric_of(config_of(study))
    ranking = rank(trials, m)
    basis = (f"mean test {m.name} over confirm seeds" if ranking.basis == "confirm"
             else f"single runs' validation {m.name}")
    table = Table(title=f"study {study.study_name}: families ranked by {basis}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("family", no_wrap=True)
    for name in ("trials", f"val {m.short}", f"test {m.short}", "trial"):
        table.add_column(name, justify="right", no_wrap=True)
    if ranking.basis == "confirm":
        table.add_column("seeds test %" if m.percent else "seeds test", justify="right",
                         no_wrap=True)
    table.add_column("vs best", justify="right", no_wrap=True)
    ranked = {s.family for s in ranking.ranked}
    search = trials[trials["role"] == "search"]
    counted = search[search["state"].isin(["complete", "pruned"])]
    for place, s in enumerate(ranking.standings, start=1):
        rank = place if s.family in ranked else None
        cells = ["-" if rank is None else str(rank), s.family,
                 _counts(counted[counted["family"] == s.family]),
                 m.fraction(s.search_val), m.fraction(s.search_test),
                 str(s.trial)]
        if ranking.basis == "confirm":
            cells.append(m.interval(s.confirm) if s.confirm.n else "-")
        table.add_row(*cells, versus_best(s, rank, compact=True))
    for family in sorted(set(counted["family"]) - {s.family for s in ranking.standings}):
        cells = ["-", family, _counts(counted[counted["family"] == family]), "-", "-", "-"]
        table.add_row(*cells, *(["-"] * (len(table.columns) - len(cells))))
    console.print(table)
    console.print("trials: done/pruned/diverged; vs best: Tukey-adjusted p against the best "
                  "(tied: not distinguishable). Best parameters:", highlight=False)
    for s in ranking.standings:
        console.print(f"  {s.family}: {s.params}", highlight=False, markup=False)


def _counts(trials: pd.DataFrame) -> str:
    done = int((trials["state"] == "complete").sum())
    pruned = int((trials["state"] == "pruned").sum())
    return f"{done}/{pruned}/{int(trials['diverged'].sum())}"


@cli.command()
@click.argument("study_name", metavar="STUDY")
@click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=2),
              help="Fresh-seed re-runs of each family's best configuration.")
@click.option("--trial", "numbers", type=click.IntRange(min=0), multiple=True,
              help="Re-run this trial instead of each family's best (repeatable).")
@click.option("--sweep", "sweep_file", type=click.Path(dir_okay=False),
              help="The sweep file the study was made from [default: the one it recorded].")
@click.option("--workers", type=click.IntRange(min=1),
              help="Slots, each in a worker process of its own [default: one per GPU and "
                   "per spare CPU core].")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, or a list such as cuda:0,cuda:1.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="torchvision root holding MNIST/raw/ etc. [default: the folder the study "
                   "recorded, while it holds the data; then LRBENCH_DATA_DIR]")
@ENGINE
@BATCH_TRIALS
@TF32
@RESULTS
@STORAGE
@CLUSTER
@STUCK_AFTER
@STORAGE_WAIT
def confirm(study_name: str, seeds: int, numbers: tuple[int, ...], sweep_file: str | None,
            workers: int | None, device: str, data_dir: str | None, engine: str,
            batch_trials: int | None, tf32: bool, results_dir: str, storage: str | None,
            cluster: str | None, stuck_after: float, storage_wait: float) -> None:
    """Re-train each family's best configuration of STUDY with fresh seeds (STUDY may name
    a suite: then each of its workloads' studies)."""
    location = storage_location(storage, results_dir)
    options = {"seeds": seeds, "numbers": numbers, "sweep_file": sweep_file, "workers": workers,
               "device": device, "data_dir": data_dir, "engine": engine,
               "batch_trials": batch_trials, "tf32": tf32, "results_dir": results_dir,
               "location": location, "cluster": cluster, "stuck_after": stuck_after,
               "storage_wait": storage_wait}
    suite = _suite_named(study_name)
    # One read of the storage decides: a study of the suite's own name wins over the suite.
    stored = set(study_names(open_storage(location, create=False))) if suite else set()
    if suite is None or study_name in stored:
        _confirm_one(study_name, **options)
        return
    for workload in suite.workloads:
        if workload.study in stored:
            _confirm_one(workload.study, **options)
        else:
            console.print(f"suite {suite.name}: {workload.study} was never swept here "
                          f"(its data set was missing?): nothing to confirm", highlight=False)


def _suite_named(name: str) -> suite_module.Suite | None:
    """The suite file called ``name``, if there is one."""
    try:
        path = find_sweep_file(name)
    except UserError:
        return None
    if not path.is_file() or not suite_module.is_suite(path):
        return None
    return suite_module.load(path, find_sweep_file)


def _confirm_one(study_name: str, *, seeds: int, numbers: tuple[int, ...],
                 sweep_file: str | None, workers: int | None, device: str,
                 data_dir: str | None, engine: str, batch_trials: int | None, tf32: bool,
                 results_dir: str, location: str, cluster: str | None,
                 stuck_after: float, storage_wait: float) -> None:
    plan = confirm_module.prepare(location, study_name, seeds, sweep_file, list(numbers),
                                  data_dir)
    console.print(f"re-running {len(plan.winners)} configurations with {seeds} seeds each, in "
                  f"study {plan.config.study!r}, on {plan.arrays.root}", highlight=False)
    outcome = _run_with_progress(plan.config, results_dir=results_dir, storage=location,
                                 device=device, workers=workers, engine=engine,
                                 batch_trials=batch_trials, tf32=tf32, arrays=plan.arrays,
                                 cluster=cluster, stuck_after=stuck_after,
                                 storage_wait=storage_wait)
    if not isinstance(outcome.error, StorageError):
        _print_confirmed(outcome.study, plan.winners)
    _finish(outcome)
    console.print(f"next: lrbench report --study {study_name}"
                  + (f" --storage {shown(location)}" if is_url(location) else
                     "" if results_dir == "results" else f" --results {results_dir}"))


def _print_confirmed(study: optuna.Study, winners: dict[str, optuna.trial.FrozenTrial]) -> None:
    from lrbench.report.metric import metric_of
    from lrbench.report.stats import mean_ci

    m = metric_of(config_of(study))
    runs: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        confirm_of = plan_of(trial).confirm_of
        runs.setdefault(-1 if confirm_of is None else confirm_of, []).append(trial)
    table = Table(title=f"confirm runs — study {study.study_name}")
    for name in ("configuration", "trial", f"val {m.short} (search)", "seeds",
                 f"test {m.short}{' %' if m.percent else ''} (mean ± 95% CI)", "diverged"):
        table.add_column(name, justify="left" if name == "configuration" else "right",
                         no_wrap=name == "configuration")  # "decay_to_zero r1" on one line
    ordered = sorted(winners.items(), key=lambda item: -(item[1].value or 0))
    for family, best in ordered:
        done = runs.get(best.number, [])
        records = [r for t in done if (r := record_of(t)) is not None]
        interval = mean_ci([r.test_accuracy for r in records])
        table.add_row(family, str(best.number), m.fraction(best.value), str(len(done)),
                      m.interval(interval),
                      str(sum(r.diverged for r in records)))
    console.print(table)


@cli.command()
@click.option("--study", "studies", multiple=True,
              help="A study to report (repeatable) [default: every study in the storage].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Report folder [default: RESULTS/report].")
@click.option("--target", "targets", type=click.FloatRange(0, 1, min_open=True), multiple=True,
              help="Validation accuracy for time-to-target, e.g. 0.97 (repeatable) "
                   "[default: 0.97 and 0.98 on MNIST, per data set otherwise].")
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="Trials per family in the convergence plot.")
@RESULTS
@STORAGE
def report(studies: tuple[str, ...], out_dir: str | None, targets: tuple[float, ...],
           top_k: int, results_dir: str, storage: str | None) -> None:
    """Write an HTML + PNG + CSV report comparing the schedules of stored studies."""
    from lrbench.report.build import build_report  # matplotlib: only for this command

    location = storage_location(storage, results_dir)
    folder = Path(out_dir) if out_dir else Path(results_dir) / "report"
    with console.status("reading the storage and drawing the figures..."):
        written = build_report(location, folder, list(studies) or None, targets, top_k)
    for warning in written.warnings:
        err_console.print(f"lrbench: warning: {warning}", style="yellow", markup=False,
                          highlight=False)
    for study in written.studies:
        console.print(f"[bold]{study.name}[/bold]: {study.verdict}", highlight=False)
    console.print(f"report: {written.index} ({len(written.figures)} figures; data in "
                  f"{', '.join(p.name for p in written.csvs)})")


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
    studies = Table(title=f"studies in {shown(location)}")
    studies.add_column("study", no_wrap=True)
    for name in ("complete", "pruned", "failed", "running", "best val acc", "families"):
        studies.add_column(name)
    for row in study_rows(open_storage(location, create=False)):
        studies.add_row(row["study"], str(row["complete"]), str(row["pruned"]), str(row["failed"]),
                        str(row["running"]), row["best"], row["families"])
    console.print(studies)


def main(argv: list[str] | None = None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    show_warnings()
    try:
        cli.main(args=argv, prog_name="lrbench", standalone_mode=False)
    except click.ClickException as err:  # bad flags: click's own message, exit 2
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:  # Ctrl-C inside a click prompt
        sys.exit(130)
    except UserError as err:
        # markup=False: messages quote sweep-file keys like [schedules.step] verbatim
        err_console.print(f"lrbench: error: {err}", style="bold red", markup=False,
                          highlight=False)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:  # a second Ctrl-C, or one outside a sweep's slots
        err_console.print("interrupted")
        sys.stdout.flush()
        sys.stderr.flush()
        # Leave now: waiting on worker processes at exit is what the second Ctrl-C refused.
        # They see the stop event or their parent gone, and re-queue their trials.
        os._exit(exit_code(signal_of(interrupt)))
