"""``lrbench confirm``: re-train each family's best configuration with fresh seeds.

A study's best trial is an optimistic estimate: it won, in part, by luck of its seed.
Confirm runs live in a sibling study, ``NAME:confirm``, in the same storage: they do
not feed the sampler, do not count towards the sweep's trials, and are trained by the
same worker slots as a sweep (with pruning off: every run must reach its last epoch).
Running confirm again resumes it; a higher ``--seeds`` adds only the missing runs.

Run i of every configuration trains on one batch order, its own fresh one (common
random numbers: the families are compared on the same data order, seed by seed), with
fresh initial weights per configuration; so the i-th runs of all families stack on one
batched slot.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrbench.errors import UserError
from lrbench.store import data_identity, schema
from lrbench.store.claims import claim_lock
from lrbench.store.picks import best_per_family
from lrbench.store.record import plan_attrs, plan_of
from lrbench.store.schema import CONFIRM_SUFFIX, confirm_study_name, run_options
from lrbench.store.storage import open_storage, shown, study_names
from lrbench.sweep import config as config_module
from lrbench.sweep.config import SweepConfig
from lrbench.sweep.study import open_study
from lrbench.train import data
from lrbench.train.workload import add_import_root

# Run i's batch order: base seed + SEED_OFFSET x (i + 1); its initial weights: that plus
# the re-run trial's number.
SEED_OFFSET = 1_000_000


def sweep_config_of(study: optuna.Study, sweep_file: str | None = None) -> SweepConfig:
    """Rebuild the SweepConfig a study was made from: its sweep file, checked unchanged."""
    name = study.study_name
    stored = schema.config_of(study)
    if not stored:  # a study lrbench did not make
        raise UserError(f"study {name!r} was not made by `lrbench sweep`: nothing to confirm")
    path = Path(sweep_file or schema.sweep_file_of(study))
    if not path.is_file():
        raise UserError(f"study {name!r} was made from {path}, which is gone; "
                        f"pass --sweep FILE with the same sweep file")
    config = config_module.load(path)
    # The command-line overrides the sweep ran with are in the stored setup.
    overrides = {key: stored.get(key) for key in ("epochs", "dataset", "seed")
                 if stored.get(key) != getattr(config, key)}
    protocol = stored.get("protocol", "search")
    if protocol != config.protocol:  # --protocol: its counts are in the last run's options
        last = (run_options(study) or [{}])[-1]
        overrides["protocol"] = protocol
        if protocol == "compare":
            overrides.update(budget=last.get("budget") or 1, repeats=last.get("repeats"))
        else:
            overrides["trials"] = last.get("trials") or 1
    config = config.with_overrides(**overrides)
    identity = json.loads(json.dumps(config.identity()))
    if identity != stored:
        changed = sorted(k for k in identity if identity[k] != stored.get(k))
        raise UserError(f"{path} no longer matches study {name!r} (changed: "
                        f"{', '.join(changed)}); pass --sweep FILE with the file it was run from")
    return dataclasses.replace(config, study=name)


def _run_key(trial: FrozenTrial) -> tuple[int, int] | None:
    plan = plan_of(trial)
    if plan.confirm_of is None or plan.confirm_index is None:
        return None
    return plan.confirm_of, plan.confirm_index


def chosen_trials(study: optuna.Study, numbers: list[int]) -> dict[str, FrozenTrial]:
    """Trials named on the command line (``--trial 3``), e.g. each of dlwizard's five."""
    trials = study.get_trials(deepcopy=False)
    chosen = {}
    for number in numbers:
        if not 0 <= number < len(trials) or trials[number].state != TrialState.COMPLETE:
            raise UserError(f"--trial {number}: study {study.study_name!r} has no completed "
                            f"trial number {number}")
        trial = trials[number]
        chosen[f"{trial.params.get('schedule', '?')} #{number}"] = trial
    return chosen


@dataclass
class Confirmation:
    config: SweepConfig  # the confirm study's; ``trials`` is the runs it should hold
    winners: dict[str, FrozenTrial]  # what it re-runs, by label
    arrays: data.DatasetArrays  # the search study's data, checked


def _load_study(location: str, study_name: str) -> optuna.Study:
    storage = open_storage(location, create=False)
    names = study_names(storage)
    if study_name not in names:
        known = ", ".join(n for n in names if not n.endswith(CONFIRM_SUFFIX)) or "none"
        raise UserError(f"no study {study_name!r} in {shown(location)} (studies: {known})")
    return optuna.load_study(study_name=study_name, storage=storage)


def prepare(location: str, study_name: str, seeds: int, sweep_file: str | None = None,
            numbers: list[int] | None = None, data_dir: str | None = None) -> Confirmation:
    """Check the data, then queue the missing confirm runs.

    By default each family's best trial is re-run; ``numbers`` picks trials instead.
    Without ``data_dir`` the runs read the folder the study recorded, while it still holds
    the data set; runs on other data than the study's are refused before anything is queued.
    """
    parent = _load_study(location, study_name)
    config = sweep_config_of(parent, sweep_file)
    winners = chosen_trials(parent, numbers) if numbers else best_per_family(parent)
    if not winners:
        raise UserError(f"study {study_name!r} has no completed trial to confirm yet")
    if data_dir is None:
        data_dir = data_identity.recorded_location(parent)
    add_import_root(config.workload_root)  # a user's model and data modules
    arrays = data.load_arrays(config.dataset, data_dir, source=config.source)
    identity = data_identity.identity_of(arrays, config.validation_size)
    data_identity.check(parent, identity)

    # The runs are queued: they are counted, never sampled, under either protocol.
    confirm_config = dataclasses.replace(config, study=confirm_study_name(study_name),
                                         pruner="none", sampler="random", fixed=(),
                                         protocol="search", budget=None, repeats=1)
    with claim_lock(location, confirm_config.study):  # two confirms queue the runs once
        study = open_study(confirm_config, parent._storage)
        data_identity.check_and_record(study, identity)
        queued = _queue_runs(confirm_config, study, winners, seeds, config.seed)
    return Confirmation(queued, winners, arrays)


def _queue_runs(confirm_config: SweepConfig, study: optuna.Study,
                winners: dict[str, FrozenTrial], seeds: int, base_seed: int) -> SweepConfig:
    """Queue each winner's missing runs; the config's ``trials`` is then the runs' total."""
    planned = {key for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.FAIL and (key := _run_key(t)) is not None}
    for best in winners.values():
        for index in range(seeds):
            if (best.number, index) in planned:
                continue
            data_seed = base_seed + SEED_OFFSET * (index + 1)
            plan = dataclasses.replace(
                plan_of(best), seed=data_seed + best.number, data_seed=data_seed,
                confirm_of=best.number, confirm_index=index, requeued_from=None)
            study.enqueue_trial(best.params, user_attrs=plan_attrs(plan))
            planned.add((best.number, index))
    return dataclasses.replace(confirm_config, trials=len(planned))
