"""The worker side: data on a device, models, the schedule registry, the sequential and
batched engines. No Optuna here: it runs in worker processes, on any device."""
