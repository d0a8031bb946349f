"""Ray Tune function trainable: AdamW + cosine finetune warm-started from a baseline checkpoint.

`train.init_from` names the baseline: a checkpoint directory (a Tune checkpoint is one), or
`mlflow:<run_id>` for the `checkpoint/` artifact of an MLflow run (the sweep driver hands the trial its
tracking URI through `tune.with_parameters`). The finetune inherits the baseline's data contract: input settings, model and split
must match unless `train.allow_contract_change: true` says the change is intended.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from scolio_core import names
from scolio_core.config import ExperimentConfig
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ConfigError
from scolio_core.evaluation.contract import check_warm_start
from scolio_core.evaluation.predict import predict_loaded
from scolio_core.training.checkpoint import Checkpoint, read_checkpoint
from scolio_core.training.loop import run_training
from scolio_sweep.trainables._tune_report import local_workdir, resume_directory, tune_reporter
from scolio_sweep.trainables.baseline import trial_experiment_config
from scolio_sweep.trainables.shared_data import SharedData, trial_data
from scolio_sweep.trainables.system_metrics import SystemMetricsSampler

MLFLOW_PREFIX = "mlflow:"


def fetch_baseline(init_from: str, tracking_uri: str | None = None) -> Path:
    """Resolve `train.init_from` to a local checkpoint directory."""
    if not init_from:
        raise ConfigError("train.init_from is empty: a finetune needs a baseline checkpoint "
                          "(a directory or mlflow:<run_id>)")
    if init_from.startswith(MLFLOW_PREFIX):
        import mlflow

        run_id = init_from[len(MLFLOW_PREFIX):]
        if not tracking_uri:
            raise ConfigError(f"train.init_from {init_from!r} names an MLflow run, but this trial was given "
                              "no tracking URI (run it through sweeps/finetune.py)")
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=names.ARTIFACT_CHECKPOINT,
                                                         tracking_uri=tracking_uri))
    path = Path(init_from)
    if not path.is_dir():
        raise ConfigError(f"train.init_from: baseline checkpoint directory {path} does not exist")
    return path


def load_warm_start(experiment: ExperimentConfig, split: TrainValSplit, tracking_uri: str | None = None) -> Checkpoint:
    """Read the baseline and enforce its contract (unless the config allows the change)."""
    baseline = read_checkpoint(fetch_baseline(experiment.train.init_from, tracking_uri))
    check_warm_start(baseline, experiment, split, allow_change=experiment.train.allow_contract_change)
    return baseline


def warm_start_metrics(experiment: ExperimentConfig, baseline: Checkpoint, data) -> dict:
    """Val macro-F1 of the baseline weights before any finetune step (the finetune's starting point)."""
    start = predict_loaded(baseline, experiment, data.val, data.val_pav).metrics()
    return {names.METRIC_WARMSTART_VAL_MACRO_F1: float(start["macro_f1"]),
            names.METRIC_WARMSTART_VAL_ACCURACY: float(start["accuracy"])}


def train_finetune(config: dict, split: TrainValSplit, shared: SharedData | None = None,
                   tracking_uri: str | None = None, system_metrics_interval_s: float | None = None,
                   select_metric: str = names.DEFAULT_METRIC, ledger: dict | None = None) -> None:
    """`system_metrics_interval_s`: seconds between system-metrics samples (trainables/system_metrics.py);
    None samples none. `select_metric`: the profile's metric, which picks the trial's best checkpoint."""
    experiment = trial_experiment_config(config)
    with SystemMetricsSampler(system_metrics_interval_s) as sampler:
        baseline = load_warm_start(experiment, split, tracking_uri)
        data = trial_data(experiment, split, shared)
        extra = warm_start_metrics(experiment, baseline, data)
        workdir = local_workdir()
        try:
            with resume_directory() as resume_from:
                run_training(experiment, data, workdir, tune_reporter(extra, system_metrics=sampler),
                             resume_from=resume_from,
                             initial_model_state=None if resume_from else baseline.model_state,
                             select_metric=select_metric,
                             provenance={"trainable": "finetune", "baseline": str(baseline.directory),
                                         "baseline_iteration": baseline.contract.get("iteration"),
                                         **(ledger or {})})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
