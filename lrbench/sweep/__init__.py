"""The Optuna side: the sweep file, the study and its sampler, the trial record,
the slots and their processes, storage, confirm runs."""
