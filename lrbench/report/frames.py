"""Storage -> tidy pandas frames: everything the report draws, and nothing drawn yet.

``trials``: one row per trial (search trials and ``lrbench confirm`` re-runs), with
one ``param:NAME`` column per searched parameter. ``epochs``: one row per trial and
epoch. The other frames are derived for particular figures: the searched ranges
(``space``), per-batch LR traces of each family's best trial (``lr_steps``), Optuna's
parameter importances and time-to-target. Tests check these without drawing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from lrbench.errors import UserError
from lrbench.report.metric import ACCURACY, Metric, metric_of
from lrbench.store import data_identity, journal, schema
from lrbench.store.claims import worker_alive
from lrbench.store.data_identity import DataIdentity
from lrbench.store.picks import best_per_family as study_best_per_family
from lrbench.store.record import TrialRecord, claim_of, plan_of, record_of, trained_seeds
from lrbench.store.schema import (
    CONFIRM_SUFFIX,
    FAMILY_PARAM,
    confirm_study_name,
    params_text,
    run_options,
)
from lrbench.store.storage import is_url, open_storage, shown, study_names
from lrbench.train.schedules import FAMILIES, ScheduleContext, ScheduleSpec
from lrbench.train.trial import CURVE_KEYS
from lrbench.train.workload import is_import_path

PARAM_PREFIX = "param:"
# Validation-accuracy targets for time-to-target, per data set: where a good run of the
# seed's FNN lands in 10 epochs, and a stricter one.
DEFAULT_TARGETS = {"mnist": (0.97, 0.98), "fashion-mnist": (0.85, 0.88), "kmnist": (0.90, 0.95)}
MIN_TRIALS_FOR_IMPORTANCE = 4  # importances of fewer completed trials are noise
IMPORTANCE_COLUMNS = ["study", "scope", "param", "importance"]
# A run that ends below twice chance (10 classes: 20%) trained without learning; runs at
# 16-19% were counted as neither diverged nor failed before it had a status of its own.
CHANCE = 0.1
LEARNED_ABOVE = 2 * CHANCE

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "fail",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


@dataclass
class StudyInfo:
    """One study's setup and provenance, for the page's header and provenance section."""

    name: str
    config: dict[str, Any]
    sweep_file: str
    provenance: dict[str, Any]
    trials: int  # all trials, any state
    confirm_trials: int
    data: DataIdentity | None = None  # what the study trained on (None: nothing recorded)
    # Runs trained on other data than the study's, left out of every frame: their data's
    # description -> how many (a report never pools runs of different data).
    other_data: dict[str, int] = field(default_factory=dict)
    orphaned: int = 0  # RUNNING trials (search and confirm) whose worker is gone
    runs: list[dict[str, Any]] = field(default_factory=list)  # each sweep run's options
    confirm_runs: list[dict[str, Any]] = field(default_factory=list)  # each confirm run's
    location: str = ""  # the storage it was read from

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", "unknown"))


@dataclass
class ReportFrames:
    studies: list[StudyInfo]
    trials: pd.DataFrame
    epochs: pd.DataFrame
    space: pd.DataFrame
    # The LR at every batch of each family's best trial (``lr_steps``): None until first
    # read. Replaying imports torch (~1.4 s), which only a process drawing an LR figure
    # needs.
    replayed_lr_steps: pd.DataFrame | None = None
    # Optuna's parameter importances (``importances``): None until first read, from each
    # study's search trials. Only the process drawing the importance figure needs them,
    # and computing them before the drawing processes fork kept both cores waiting.
    computed_importances: pd.DataFrame | None = None
    search_trials: dict[str, list[FrozenTrial]] = field(default_factory=dict, repr=False)
    # (study, role, number) -> Optuna's params, with their types (a frame turns ints
    # of a column holding NaN into floats, and a scheduler wants its ints back).
    params: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # damage found in the storage
    # Derived values computed once per trials frame (the ranking, which every figure and
    # table orders by): report.ranking.ranking_of fills it.
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def metric(self) -> Metric:
        """What the scores (the ``*_accuracy`` columns) are: accuracy, or a regression's
        −MSE. One study's frames have one; a comparison's studies each their own."""
        return metric_of(self.studies[0].config) if self.studies else ACCURACY

    @property
    def lr_steps(self) -> pd.DataFrame:
        if self.replayed_lr_steps is None:
            self.replayed_lr_steps = replay_lr_steps(self)
        return self.replayed_lr_steps

    @property
    def importances(self) -> pd.DataFrame:
        if self.computed_importances is None:
            self.computed_importances = pd.concat(
                [importances(study, trials) for study, trials in self.search_trials.items()]
                or [pd.DataFrame(columns=IMPORTANCE_COLUMNS)], ignore_index=True)
        return self.computed_importances

    def study(self, name: str) -> ReportFrames:
        """The frames of one study (its confirm runs included): made once per trials
        frame, so the study's page and a comparison share it (and its cached ranking)."""
        cached = self.cache.get(("study", name))
        if cached is not None and cached[0] is self.trials:
            return cached[1]

        def pick(df: pd.DataFrame) -> pd.DataFrame:
            return df[df["study"] == name].reset_index(drop=True) if len(df) else df
        one = ReportFrames([s for s in self.studies if s.name == name], pick(self.trials),
                           pick(self.epochs), pick(self.space),
                           search_trials={k: v for k, v in self.search_trials.items()
                                          if k == name},
                           params={k: v for k, v in self.params.items() if k[0] == name},
                           warnings=self.warnings)
        if self.replayed_lr_steps is not None:
            one.replayed_lr_steps = pick(self.replayed_lr_steps)
        if self.computed_importances is not None:
            one.computed_importances = pick(self.computed_importances)
        self.cache[("study", name)] = (self.trials, one)
        return one


# --- reading the storage ---------------------------------------------------------------


def load(location: str, studies: list[str] | None = None) -> ReportFrames:
    """Read the named studies (default: every sweep study) with their confirm runs.

    A missing storage, an empty one, or an unknown study name is the user's mistake
    (``UserError``); a study without finished trials still yields its rows.
    """
    storage = open_storage(location, create=False, warn=False)  # storage_warnings says it
    names = study_names(storage)
    sweeps = [n for n in names if not n.endswith(CONFIRM_SUFFIX)]
    if not sweeps:
        raise UserError(f"{shown(location)} holds no study yet: run `lrbench sweep NAME` "
                        f"first")
    unknown = [n for n in studies or [] if n not in sweeps]
    if unknown:
        raise UserError(f"no study {', '.join(map(repr, unknown))} in {shown(location)} "
                        f"(studies: {', '.join(sweeps)})")
    trial_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    space_rows: list[dict[str, Any]] = []
    infos = []
    search_trials: dict[str, list[FrozenTrial]] = {}
    raw_params: dict[tuple[str, str, int], dict[str, Any]] = {}
    for name in studies or sweeps:
        study = optuna.load_study(study_name=name, storage=storage)
        info, kept = _read_study(study, names, location)
        infos.append(info)
        for role, trial, row in kept:
            trial_rows.append(row)
            raw_params[(name, role, trial.number)] = trial.params
            epoch_rows.extend(_epoch_rows(name, role, trial))
        trials = study.get_trials(deepcopy=False)
        space_rows.extend(_space_rows(name, trials))
        # the search trials on the study's data, as every other figure's
        search_trials[name] = [t for role, t, _ in kept if role == "search"]
    trials_df = _typed_trials(pd.DataFrame(trial_rows))
    epochs_df = pd.DataFrame(epoch_rows, columns=["study", "number", "role", "family",
                                                  *CURVE_KEYS])
    frames = ReportFrames(infos, trials_df, epochs_df,
                          pd.DataFrame(space_rows, columns=["study", "family", "param", "low",
                                                            "high", "log", "choices"]),
                          search_trials=search_trials, params=raw_params)
    frames.warnings = storage_warnings(location, infos)
    return frames


def storage_warnings(location: str, infos: list[StudyInfo]) -> list[str]:
    """What is wrong with the storage, for the terminal and the top of the page."""
    found = []
    if not is_url(location):
        health = journal.inspect(location)
        if health.torn_bytes:
            found.append(
                f"{location} ends in {health.torn_bytes:,} torn bytes (an interrupted write): "
                f"the record they held is lost, so a trial that ended there may show as "
                f"running. The next `lrbench sweep` moves them to a side file and re-runs "
                f"such trials.")
    for info in infos:
        if info.orphaned:
            found.append(
                f"study {info.name}: {info.orphaned} trial(s) are RUNNING with no live worker "
                f"process (interrupted, or their end was lost): they count as unfinished; "
                f"`lrbench sweep` (or `confirm`) recovers and re-runs them.")
    return found


def trials_of(study: optuna.Study) -> pd.DataFrame:
    """One study's trials frame, its confirm runs included: what the terminal's table
    ranks (``report.ranking``), without reading curves or drawing anything."""
    _, kept = _read_study(study, study_names(study._storage))
    return _typed_trials(pd.DataFrame([row for _, _, row in kept]))


def _read_study(study: optuna.Study, names: list[str], location: str = ""
                ) -> tuple[StudyInfo, list[tuple[str, FrozenTrial, dict[str, Any]]]]:
    """A study's setup, and the rows of its trials and confirm runs on the study's data
    (runs on other data are counted in the info, never returned: they are not pooled)."""
    name = study.study_name
    trials = study.get_trials(deepcopy=False)
    confirm: list[FrozenTrial] = []
    confirm_runs: list[dict[str, Any]] = []
    if confirm_study_name(name) in names:
        confirm_study = optuna.load_study(study_name=confirm_study_name(name),
                                          storage=study._storage)
        confirm = confirm_study.get_trials(deepcopy=False)
        confirm_runs = run_options(confirm_study)
    config = schema.config_of(study)
    info = StudyInfo(name, config, schema.sweep_file_of(study),
                     schema.provenance_of(study), len(trials), len(confirm),
                     data=data_identity.recorded(study), runs=run_options(study),
                     confirm_runs=confirm_runs, location=location)
    info.orphaned = sum(t.state == TrialState.RUNNING and not worker_alive(t)
                        for t in [*trials, *confirm])
    winners = {t.number for t in study_best_per_family(study).values()}
    kept = []
    for role, group in (("search", trials), ("confirm", confirm)):
        rerun = {plan_of(t).requeued_from for t in group} - {None}
        for trial in group:
            if _other_data(trial, info):
                continue
            row = _trial_row(name, role, trial, config)
            row["best_in_family"] = role == "search" and trial.number in winners
            # spent on the tuning: every trial but a waiting one and one that was re-run
            row["spent"] = row["state"] in ("complete", "pruned", "running") or (
                row["state"] == "fail" and trial.number not in rerun)
            kept.append((role, trial, row))
    return info, kept


def _other_data(trial: FrozenTrial, info: StudyInfo) -> bool:
    """Whether ``trial`` trained on other data than its study's; counted in ``info`` if so."""
    if info.data is None:
        return False
    mine = data_identity.trial_identity(trial, info.data.dataset)
    if mine is None or info.data.same_data(mine):
        return False
    key = mine.describe()
    info.other_data[key] = info.other_data.get(key, 0) + 1
    return True


def _ten_classes(config: dict[str, Any]) -> bool:
    """A study on the built-in data sets (10 classes, so chance is known); not a user's
    loader nor a regression, whose scores have no chance level here."""
    return config.get("loss", "cross_entropy") == "cross_entropy" \
        and not is_import_path(str(config.get("dataset", "")))


def _trial_row(study: str, role: str, trial: FrozenTrial, config: dict[str, Any]) -> dict:
    plan, claim = plan_of(trial), claim_of(trial)
    record = record_of(trial) or TrialRecord(status="")
    state = STATES.get(trial.state, trial.state.name.lower())
    status = (record.status or state) if state in ("complete", "pruned") else state
    if status == "complete" and record.val_accuracy < LEARNED_ABOVE and _ten_classes(config):
        status = "did not learn"  # trained to the end, yet near chance: say so
    optimizer = config.get("optimizer", {})
    seeds = trained_seeds(trial)
    row = {
        "study": study, "number": trial.number, "role": role,
        "confirm_of": plan.confirm_of, "confirm_index": plan.confirm_index,
        "repeat": plan.repeat,  # compare protocol: which tuning it belongs to
        "state": state, "status": status,
        "family": record.family or trial.params.get(FAMILY_PARAM, ""),
        "params": params_text(trial.params),
        "diverged": record.diverged, "reason": record.reason,
        "seed": seeds[0] if seeds else None, "data_seed": seeds[1] if seeds else None,
        # The last epoch's validation accuracy; a pruned trial has one too (Optuna has none).
        "val_accuracy": record.val_accuracy, "test_accuracy": record.test_accuracy,
        "test_loss": record.test_loss,
        "epochs": record.epochs or plan.epochs or config.get("epochs"),
        "epochs_run": record.epochs_run if record.status else None,
        "train_seconds": record.train_seconds,
        "device": record.device or (claim.device if claim else ""), "engine": record.engine,
        "batch_trials": record.batch_trials,
        "lr": _base_lr(trial, optimizer.get("lr")),
        "warmup_epochs": trial.params.get("warmup_epochs", plan.fixed_warmup_epochs or 0),
        "dataset": config.get("dataset", ""), "model": config.get("model", ""),
        "train_size": record.train_size, "val_size": record.val_size,
        "test_size": record.test_size, "data_fingerprint": record.data_fingerprint,
        "steps_per_epoch": record.steps_per_epoch,
        "started": trial.datetime_start, "finished": trial.datetime_complete,
    }
    row.update({PARAM_PREFIX + k: v for k, v in trial.params.items() if k != FAMILY_PARAM})
    return row


def _base_lr(trial: FrozenTrial, default: float | None) -> float | None:
    """The trial's base LR: searched (shared, or its family's own range), else planned."""
    family = trial.params.get(FAMILY_PARAM, "")
    for name in ("lr", f"{family}.lr"):
        if name in trial.params:
            return trial.params[name]
    plan = plan_of(trial)
    return plan.fixed_lr if plan.fixed_lr is not None else default


def _typed_trials(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    for column in ("confirm_of", "confirm_index", "repeat", "seed", "data_seed", "epochs",
                   "epochs_run",
                   "train_size", "val_size", "test_size", "steps_per_epoch", "warmup_epochs"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    for column in ("val_accuracy", "test_accuracy", "test_loss", "train_seconds", "lr"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


def _epoch_rows(study: str, role: str, trial: FrozenTrial) -> list[dict[str, Any]]:
    record = record_of(trial)
    curves = record.curves if record is not None else None
    if not curves or not curves.get("epoch"):
        return []
    family = record.family or trial.params.get(FAMILY_PARAM, "")
    return [{"study": study, "number": trial.number, "role": role, "family": family,
             **{key: curves[key][i] for key in CURVE_KEYS}}
            for i in range(len(curves["epoch"]))]


def _space_rows(study: str, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """Each searched parameter's range, as Optuna recorded it: the sensitivity plot's x-axis."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for trial in trials:
        family = trial.params.get(FAMILY_PARAM, "")
        for name, dist in trial.distributions.items():
            if name == FAMILY_PARAM or (family, name) in seen:
                continue
            row = {"study": study, "family": family, "param": name, "low": math.nan,
                   "high": math.nan, "log": False, "choices": None}
            if isinstance(dist, CategoricalDistribution):
                row["choices"] = ", ".join(map(str, dist.choices))
            else:
                row.update(low=dist.low, high=dist.high, log=dist.log)
            seen[(family, name)] = row
    return list(seen.values())


# --- derived frames -------------------------------------------------------------------


def completed(trials: pd.DataFrame, role: str = "search") -> pd.DataFrame:
    """Trials that trained to the end without diverging."""
    ok = (trials["state"] == "complete") & ~trials["diverged"] & (trials["role"] == role)
    return trials[ok]


def picks(trials: pd.DataFrame) -> pd.DataFrame:
    """Each study's picks (among ``trials``), best first: its best search trial per family,
    and under the compare protocol per family and repeat, which confirm re-trains.

    The rule is ``lrbench.sweep.study.best_per_family``'s, the one that confirm and the
    terminal use: ``load`` marks the picks in the ``best_in_family`` column.
    """
    if trials.empty:
        return trials
    best = trials[trials["best_in_family"].astype(bool) & (trials["role"] == "search")]
    return best.sort_values(["study", "val_accuracy"], ascending=[True, False])


def best_per_family(trials: pd.DataFrame) -> pd.DataFrame:
    """Each study's best search trial per family, best first: the best of its picks (the
    figures draw one trial per family)."""
    chosen = picks(trials)
    return chosen.drop_duplicates(["study", "family"]) if len(chosen) else chosen


def top_k_per_family(trials: pd.DataFrame, k: int) -> pd.DataFrame:
    done = completed(trials).dropna(subset=["val_accuracy"])
    return (done.sort_values("val_accuracy", ascending=False)
            .groupby(["study", "family"]).head(k))


def time_to_target(frames: ReportFrames, targets: tuple[float, ...]) -> pd.DataFrame:
    """Epochs and seconds each family's best trial (and each confirm run) needs per target.

    A missed target has ``reached=False`` and NaN epochs: it is shown as missed, never
    as "the last epoch".
    """
    columns = ["study", "family", "number", "role", "target", "reached", "epoch", "seconds",
               "best_val_accuracy"]
    keys = ["study", "number", "role"]
    runs = pd.concat([best_per_family(frames.trials), completed(frames.trials, "confirm")])
    runs = runs[["study", "family", "number", "role"]].reset_index(drop=True)
    if runs.empty:
        return pd.DataFrame(columns=columns)
    # The runs' curves only, in one merge (a mask over all epochs per run, or grouping
    # them all, cost seconds on a study of a few hundred runs); a merge keeps the epochs'
    # order, so the first row of a run at or above a target is its first epoch there.
    curves = frames.epochs[[*keys, "epoch", "seconds", "val_accuracy"]] \
        if len(frames.epochs) else pd.DataFrame(columns=[*keys, "epoch", "seconds",
                                                         "val_accuracy"])
    curves = curves.merge(runs[keys].drop_duplicates(), on=keys)
    best = curves.groupby(keys, sort=False)["val_accuracy"].max().rename("best_val_accuracy")
    firsts = [curves[curves["val_accuracy"] >= target].drop_duplicates(keys)
              [[*keys, "epoch", "seconds"]].assign(target=target) for target in targets]
    table = (runs.merge(pd.DataFrame({"target": list(targets)}), how="cross")
             .merge(pd.concat(firsts), on=[*keys, "target"], how="left")
             .merge(best, on=keys, how="left"))
    table["reached"] = table["epoch"].notna()
    return table[columns].astype({"epoch": float, "seconds": float,
                                  "best_val_accuracy": float})


def replay_lr_steps(frames: ReportFrames) -> pd.DataFrame:
    """The LR at every batch of each family's best trial, replayed on its real scheduler.

    Replaying with the trial's recorded validation metric gives plateau's real drops;
    a trial stored without ``steps_per_epoch`` falls back to its per-epoch LR curve.
    Imports torch (the replay runs torch's schedulers): ``ReportFrames.lr_steps`` calls
    it on first read, in the process that draws the LR figures.
    """
    from lrbench.train.lr_schedule import lr_trace

    rows: list[dict[str, Any]] = []
    info = {s.name: s for s in frames.studies}
    for run in best_per_family(frames.trials).to_dict("records"):
        study, family, number = run["study"], run["family"], run["number"]
        curve = frames.epochs[(frames.epochs["study"] == study)
                              & (frames.epochs["number"] == number)
                              & (frames.epochs["role"] == "search")]
        steps = run["steps_per_epoch"]
        if pd.isna(steps) or family not in FAMILIES or curve.empty:
            rows += [{"study": study, "family": family, "number": number,
                      "position": float(e - 1), "lr": lr}
                     for e, lr in zip(curve["epoch"], curve["lr"])]
            continue
        metric = info[study].config.get("plateau_metric", "accuracy")
        values = curve["val_accuracy" if metric == "accuracy" else "val_loss"].tolist()
        params = {k.split(".", 1)[1]: v
                  for k, v in frames.params[(study, "search", number)].items()
                  if k.startswith(f"{family}.")}
        epochs, steps = int(run["epochs"]), int(steps)
        spec = ScheduleSpec(family, params, int(run["warmup_epochs"] or 0))
        padded = values + [values[-1]] * (epochs - len(values))  # a run cut short: unused tail
        trace = lr_trace(spec, ScheduleContext(epochs, steps, metric), float(run["lr"]), padded)
        stride = max(1, steps // 50)  # ~50 points per epoch draw every shape we have
        for epoch, lrs in enumerate(trace[:len(values)]):
            rows += [{"study": study, "family": family, "number": number,
                      "position": epoch + b / steps, "lr": lr}
                     for b, lr in enumerate(lrs) if b % stride == 0]
    return pd.DataFrame(rows, columns=["study", "family", "number", "position", "lr"])


def importances(study: str, trials: list[FrozenTrial]) -> pd.DataFrame:
    """Optuna's PED-ANOVA importances: over all trials, then within each family.

    The evaluator is named, not left to Optuna's default, which was fANOVA (it needs
    scikit-learn) before Optuna 5 and is PED-ANOVA since: the page says which it shows.
    Over all trials only the parameters every trial has (schedule, lr, warm-up) can be
    assessed; each family's own parameters are assessed on that family's trials.
    """
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and not _diverged(t)]
    groups: dict[str, list[FrozenTrial]] = {"all families": done}
    for trial in done:
        groups.setdefault(trial.params.get(FAMILY_PARAM, ""), []).append(trial)
    if len(groups) == 2:  # one family: its own scope is "all families" again, shown twice
        groups = {"all families": done}
    rows = []
    for scope, group in groups.items():
        shared = set.intersection(*(set(t.distributions) for t in group)) if group else set()
        searched = [p for p in shared if len({repr(t.params[p]) for t in group}) > 1]
        if len(group) < MIN_TRIALS_FOR_IMPORTANCE or not searched:
            continue
        sub = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler())
        # Only what the evaluator reads: adding a stored trial deep-copies its records too.
        sub.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                  value=t.value) for t in group])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(
                sub, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                params=sorted(searched))
        rows += [{"study": study, "scope": scope, "param": p, "importance": v}
                 for p, v in result.items()]
    return pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)


def export_csv(frames: ReportFrames, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in (("trials", frames.trials), ("epochs", frames.epochs)):
        path = folder / f"{name}.csv"
        df.to_csv(path, index=False)
        written.append(path)
    return written


def _diverged(trial: FrozenTrial) -> bool:
    record = record_of(trial)
    return record is not None and record.diverged
