"""Everything lrbench persists, and the only code that reads or writes it.

- ``storage``: opening a storage (a journal file, or a server URL), showing it safely.
- ``journal``: Optuna's journal file with a kept torn tail and a lock that times out.
- ``outage``: server calls retried through a restart or a network blip.
- ``schema``: the study's stored keys and names (the family parameter, confirm studies).
- ``record``: the typed trial record (plan, claim, result), one attribute per trial.
- ``claims``: the claim lock, who is running what, and recovering dead workers' trials.
- ``picks``: which trials are each family's best (the one definition of "best").
- ``data_identity``: which data a study and each trial trained on.
"""
