"""The processes a sweep starts and supervises: where a newcomer looks for them.

- ``workers``: how a worker process is born (the first one before the parent's imports).
- ``pool``: one worker process per local slot, replaced when it dies or is stuck.
- ``lifeline``: a worker process's side: its signals, the stop flag, the parent watchdog,
  its progress marks.
- ``stuck``: the parent's side of those marks: when a slot counts as stuck.
- ``cluster``: the same slots as pinned tasks on Dask cluster workers.
"""
