"""Ray Tune function trainable: the SGD baseline (published recipe; CPU profiles scale iterations).

The trial config is the flat dotted-key form of `ExperimentConfig` (modality, render parameters,
representation, loss, width, batch, frames, schedule, seed). The split arrives as a `TrainValSplit`
through `tune.with_parameters`: the trial has no test ids, no partition file and no way to load either.
Selection metrics are validation metrics only. With `shared` (scolio_sweep/trainables/shared_data.py) the train/val
arrays come read-only from the Ray object store, loaded once by the sweep driver, instead of from disk.

    tune.Tuner(tune.with_parameters(train_baseline, split=split.trainval(), shared=shared), param_space=...)
"""

from __future__ import annotations

import shutil

from scolio_core import names
from scolio_core.config import ExperimentConfig
from scolio_core.data.splits import TrainValSplit
from scolio_core.training.loop import run_training
from scolio_sweep.trainables._tune_report import local_workdir, resume_directory, tune_reporter
from scolio_sweep.trainables.shared_data import SharedData, trial_data
from scolio_sweep.trainables.system_metrics import SystemMetricsSampler


def trial_experiment_config(config: dict) -> ExperimentConfig:
    """The trial's ExperimentConfig; any partition reference is stripped so test ids are unreachable."""
    experiment = ExperimentConfig.from_dict(config)
    return experiment.for_trial()


def train_baseline(config: dict, split: TrainValSplit, shared: SharedData | None = None,
                   system_metrics_interval_s: float | None = None,
                   select_metric: str = names.DEFAULT_METRIC, ledger: dict | None = None) -> None:
    """`system_metrics_interval_s`: seconds between system-metrics samples (trainables/system_metrics.py);
    None samples none. `select_metric`: the profile's metric, which picks the trial's best checkpoint.
    `ledger`: the sweep's test ledger and study (tracking.ledger.ledger_provenance), recorded in every
    checkpoint so that `scolio eval` evaluates it there."""
    experiment = trial_experiment_config(config)
    # Started before the data loads, so the first report's metrics cover the loading too.
    with SystemMetricsSampler(system_metrics_interval_s) as sampler:
        data = trial_data(experiment, split, shared)
        workdir = local_workdir()
        try:
            with resume_directory() as resume_from:
                run_training(experiment, data, workdir, tune_reporter(system_metrics=sampler),
                             resume_from=resume_from, provenance={"trainable": "baseline", **(ledger or {})},
                             select_metric=select_metric)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
