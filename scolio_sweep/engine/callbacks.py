"""MLflow run lifecycle for Ray Tune sweeps: one parent run per sweep, one child run per trial.

`MLflowLifecycle` is a driver-side `tune.Callback` that owns every MLflow run of a sweep through an
explicit `MlflowClient` (no fluent `mlflow.start_run` global state). Runs are found by tags, never by
in-memory handles, so a sweep restored after a driver crash or SIGKILL reattaches to the same parent and
child runs instead of duplicating them, and nothing is left RUNNING once the experiment ends:

    parent: tags scolio.sweep=<sweep>, scolio.role=parent
    child:  tags scolio.sweep=<sweep>, scolio.role=trial, ray.trial_id=<id>, mlflow.parentRunId=<parent>
            (scolio.role=confirmation for the re-trainings of scolio_sweep/stages/confirm.py, under the same parent)

Every tag name comes from scolio_core.names and every run lookup from scolio_core.tracking.lookups, which
the readers (record, audit, finetune's baseline lookup, scripts/check_mlflow_ui.py) share.

Usage (see scolio_sweep/engine/tuner.py):

    cb = MLflowLifecycle("sqlite:///mlflow.db", "scoliotune", "repr-sweep", metric="val/macro_f1",
                         mode="max", params={"space.input.sigma": "..."}, budget="train.iterations")
    run_or_restore(trainable, ..., callbacks=[cb])
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search.sample import Domain

from scolio_core import names
from scolio_core.errors import ConfigError
from scolio_core.names import (
    ARTIFACT_CHECKPOINT,
    ROLE_PARENT,
    ROLE_TRIAL,
    STOPPED_BY_INTERRUPT,
    STOPPED_BY_SCHEDULER,
    STOPPED_BY_STOPPER,
    TAG_CHECKPOINT,
    TAG_CHECKPOINT_SCORE,
    TAG_ERROR,
    TAG_FAILURES,
    TAG_PARENT_RUN_ID,
    TAG_RESTARTS,
    TAG_ROLE,
    TAG_RUN_NOTE,
    TAG_STOPPED_BY,
    TAG_SWEEP,
    TAG_TRIAL_ID,
)
from scolio_core.provenance import git_commit, package_versions
from scolio_core.tracking import lookups
from scolio_core.tracking.lineage import DataSetRef, dataset_input

logger = logging.getLogger(__name__)

# Result keys Tune fills in itself: bookkeeping, not metrics of the model.
_BOOKKEEPING = frozenset({
    "training_iteration", "iterations_since_restore", "timesteps_total", "timesteps_since_restore",
    "episodes_total", "pid", "hostname", "node_ip", "timestamp", "date", "done", "trial_id", "experiment_id",
    "experiment_tag", "checkpoint_dir_name", "should_checkpoint", "config", "trainable_name",
    "warmup_time", "__duplicate__", "__trial_info__",
})
_FINAL_TRIAL_STATES = (Trial.TERMINATED, Trial.ERROR)
# How a searched number reads in a child run's name (`body-only σ3.1 weighted lr0.18`); other keys show as
# `<last part of the key>=<value>`, and text values (representation, class weighting) as themselves.
_SHORT_LABELS = {"input.sigma": "σ", "train.lr": "lr", "input.joint_weight": "jw", "train.weight_decay": "wd"}


def environment_tags() -> dict[str, str]:
    """The parent run's provenance tags: package versions and the git commit (`scolio_core.provenance`)."""
    versions = package_versions()
    tags = {names.TAG_PYTHON: versions.pop("python")}
    tags.update({names.version_tag(package): version for package, version in versions.items()})
    commit = git_commit()
    if commit != "unknown":  # not a checkout (e.g. an installed wheel): the package versions identify the code
        tags[names.TAG_GIT_COMMIT] = commit
    return tags


def _describe(value: Any) -> Any:
    """A readable text for Tune search-space objects (their repr is only a memory address)."""
    if isinstance(value, Domain):
        parts = {k: v for k, v in vars(value).items() if k != "sampler"}
        sampler = getattr(value, "sampler", None)
        quantum = getattr(sampler, "q", None)
        if quantum is not None:
            sampler = getattr(sampler, "sampler", None)
            parts["q"] = quantum
        kind = type(sampler).__name__.strip("_").lower() if sampler is not None else type(value).__name__.lower()
        return f"{kind}({', '.join(f'{k}={v!r}' for k, v in parts.items())})"
    return value


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> dotted keys with MLflow-sized string values (long values are truncated)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "grid_search" not in value:
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        text = str(_describe(value))
        if len(text) > MAX_PARAM_VAL_LENGTH:
            text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
        flat[name[:MAX_ENTITY_KEY_LENGTH]] = text
    return flat


def result_metrics(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric metrics a trainable reported, with Tune's bookkeeping keys left out."""
    metrics: dict[str, float] = {}
    for key, value in result.items():
        if not prefix and (key in _BOOKKEEPING or key.startswith("time_") or key.startswith("config/")):
            continue
        if isinstance(value, Mapping):
            metrics.update(result_metrics(value, prefix=f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"{prefix}{key}"] = float(value)
    return metrics


def config_value(config: Mapping[str, Any], key: str) -> Any:
    """`key` of a trial config, flat (`{"input.sigma": 3.1}`) or nested (`{"input": {"sigma": 3.1}}`)."""
    if key in config:
        return config[key]
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def trial_label(config: Mapping[str, Any], searched: Sequence[str]) -> str:
    """What a trial tried, from its searched values: `body-only σ3.1 weighted lr0.18` ("" when none)."""
    parts = []
    for key in searched:
        value = config_value(config, key)
        if value is None or isinstance(value, Mapping):
            continue  # not sampled for this trial (e.g. sigma for a silhouette trial)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            short = _SHORT_LABELS.get(key)
            parts.append(f"{short}{value:.2g}" if short else f"{key.rsplit('.', 1)[-1]}={value:.3g}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class MLflowLifecycle(tune.Callback):
    """Owns the MLflow parent run of a sweep and one child run per Tune trial.

    Args:
        tracking_uri: MLflow tracking URI (`sqlite:///mlflow.db`, `http://head:5000`, ...).
        experiment_name: MLflow experiment; created when missing.
        sweep_name: identity of the sweep; a restored sweep with the same name reuses its runs.
        metric, mode: the sweep metric (`val/macro_f1`) and `max`/`min`; pick each trial's best checkpoint.
        params: parent run params (search space, profile, data fingerprint, ...); nested dicts become dotted
            keys. A restore may log them again, but a *different* value for an existing key is refused.
        tags: parent run tags (free to change between restores); `environment_tags()` are added.
        budget: the value of `time_attr` a trial reaches when it runs to its end: a number, or the key of the
            trial's config that holds it (dotted for nested configs). A trial Tune stopped below its budget is
            marked KILLED with `scolio.stopped_by`; without a budget only Tune's own stop signal is used.
        time_attr: result key the budget is counted in.
        artifact_location: where a new experiment stores artifacts; for a `sqlite:///` store the default is
            `mlartifacts/` next to the database (MLflow's own default is relative to the working directory).
        log_checkpoints: upload each trial's best checkpoint directory under `checkpoint/` of its child run.
        searched: the config keys the search varies; a child run is named by its values of them (the Ray trial
            id stays in the tag `ray.trial_id`).
        datasets: the train and val sets every trial sees (scolio_core.tracking.lineage), logged as each child
            run's MLflow dataset inputs. Never the test set: only the look's parent run lists it.
        role: the children's `scolio.role`: search trials, or the confirmation re-trainings (`for_role`).
    """

    def __init__(self, tracking_uri: str, experiment_name: str, sweep_name: str, *, metric: str,
                 mode: str = "max", params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, Any] | None = None, budget: str | float | None = None,
                 time_attr: str = "training_iteration", artifact_location: str | None = None,
                 log_checkpoints: bool = True, searched: Sequence[str] = (),
                 datasets: Sequence[DataSetRef] = (), role: str = ROLE_TRIAL) -> None:
        if mode not in ("max", "min"):
            raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
        lookups.quote(sweep_name, "sweep name")  # refuse a name no MLflow filter could find, before any run
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.sweep_name = sweep_name
        self.metric = metric
        self.mode = mode
        self.params = flatten_params(params or {})
        self.tags = {str(k): str(v)[:MAX_TAG_VAL_LENGTH] for k, v in (tags or {}).items()}
        self.budget = budget
        self.time_attr = time_attr
        self.artifact_location = artifact_location
        self.log_checkpoints = log_checkpoints
        self.searched = tuple(searched)
        self.datasets = tuple(datasets)
        self.role = role
        self._reset_runtime_state()

    def for_role(self, role: str, searched: Sequence[str]) -> "MLflowLifecycle":
        """The same sweep's lifecycle for another Tune run under the same parent run, whose children get
        `role` and are named by `searched` (a confirmation run: the searched values and its train.seed)."""
        twin = copy.copy(self)
        twin.role, twin.searched = role, tuple(searched)
        twin._reset_runtime_state()
        return twin

    # Tune pickles callbacks into the experiment directory (tuner.pkl): keep clients and caches out of it.
    def _reset_runtime_state(self) -> None:
        self._client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._children: dict[str, str] = {}  # trial id -> child run id
        self._last_step: dict[str, int] = {}  # trial id -> last step logged (a reused child: looked up once)
        self._stop_signal: dict[str, str] = {}  # trial id -> "scheduler" | "stopper", when Tune set done

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_client", "experiment_id", "parent_run_id", "_children", "_last_step", "_stop_signal"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = {"searched": (), "datasets": (), "role": ROLE_TRIAL, **state}  # pickled before these existed
        self.__dict__.update(state)
        self._reset_runtime_state()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ----------------------------------------------------------------------------------------- parent
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self.experiment_id = self._experiment_id()
        found = lookups.find_parent_runs(self.client, self.experiment_id, self.sweep_name)  # oldest first
        if found:
            parent = found[0]
            if len(found) > 1:
                logger.warning("sweep %r has %d parent runs; reusing the oldest, %s",
                               self.sweep_name, len(found), parent.info.run_id)
            self.parent_run_id = parent.info.run_id
            self._log_parent_params(parent.data.params)  # refuses a changed setting before reopening
            self.client.update_run(self.parent_run_id, status="RUNNING")
            self._load_children()
        else:
            parent = self.client.create_run(self.experiment_id, run_name=self.sweep_name,
                                            tags={TAG_SWEEP: self.sweep_name, TAG_ROLE: ROLE_PARENT})
            self.parent_run_id = parent.info.run_id
            self._log_parent_params({})
        tags = {**environment_tags(), **self.tags, names.TAG_METRIC: self.metric, names.TAG_MODE: self.mode}
        if total_num_samples is not None and self.role == ROLE_TRIAL:  # the search's count, not a later stage's
            tags[names.TAG_NUM_SAMPLES] = str(total_num_samples)
        self._log_batch(self.parent_run_id, tags=tags)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = self.artifact_location
        if location is None and self.tracking_uri.startswith("sqlite:///"):
            location = (Path(self.tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
        return self.client.create_experiment(self.experiment_name, artifact_location=location)

    def _log_parent_params(self, existing: Mapping[str, str]) -> None:
        changed = {k: (existing[k], v) for k, v in self.params.items() if k in existing and existing[k] != v}
        if changed:
            key, (old, new) = next(iter(changed.items()))
            raise ConfigError(
                f"sweep {self.sweep_name!r} (MLflow run {self.parent_run_id}) was started with param "
                f"{key}={old!r}, this run has {new!r} ({len(changed)} param(s) differ); resume with the "
                f"original settings or use a new sweep name")
        self._log_batch(self.parent_run_id, params={k: v for k, v in self.params.items() if k not in existing})

    def _load_children(self) -> None:
        """Index the parent's existing child runs by trial id (a restore reuses them)."""
        for run in lookups.find_child_runs(self.client, self.experiment_id, self.parent_run_id):
            trial_id = run.data.tags.get(TAG_TRIAL_ID)
            if trial_id:  # oldest first: a duplicate run of a trial (if any) never displaces the first
                self._children.setdefault(trial_id, run.info.run_id)

    # ----------------------------------------------------------------------------------------- children
    def _child(self, trial: Trial) -> str:
        run_id = self._children.get(trial.trial_id)
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id, run_name=trial_label(trial.config, self.searched) or str(trial),
                tags={TAG_SWEEP: self.sweep_name, TAG_ROLE: self.role, TAG_TRIAL_ID: trial.trial_id,
                      TAG_PARENT_RUN_ID: self.parent_run_id})
            run_id = self._children[trial.trial_id] = run.info.run_id
            self._last_step[trial.trial_id] = 0
        return run_id

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._trial_budget(trial)  # a budget key missing from the config fails now, not at the trial's end
        run_id = self._child(trial)
        run = self.client.get_run(run_id)
        if run.info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")  # a restored or retried trial runs again
        existing = run.data.params
        params = flatten_params(trial.config)
        for key in [k for k in params if k in existing and existing[k] != params[k]]:
            logger.warning("trial %s: param %s is already logged as %r, not %r", trial, key, existing[key],
                           params[key])
        tags = {names.TAG_TRIAL_NAME: str(trial)}
        if trial.local_path:
            tags[names.TAG_TRIAL_DIR] = trial.path or trial.local_path
        self._log_batch(run_id, params={k: v for k, v in params.items() if k not in existing}, tags=tags)
        if self.datasets and not (run.inputs and run.inputs.dataset_inputs):  # a restored trial has them
            self.client.log_inputs(run_id, datasets=[dataset_input(ref) for ref in self.datasets])

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info) -> None:
        step = int(result.get("training_iteration", 0))
        if result.get("done"):
            # Tune sets `done` on a result it decided to stop at: its stopper or the scheduler.
            criteria = trial.stopping_criterion or {}
            hit = any(k in result and result[k] >= v for k, v in criteria.items())
            self._stop_signal[trial.trial_id] = STOPPED_BY_STOPPER if hit else STOPPED_BY_SCHEDULER
        run_id = self._child(trial)
        if trial.trial_id not in self._last_step:
            self._last_step[trial.trial_id] = self._logged_step(run_id)
        if step <= self._last_step[trial.trial_id]:
            return  # replayed after a restore from an older checkpoint: each step is logged once
        now = int(time.time() * 1000)
        self._log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in result_metrics(result).items()])
        self._last_step[trial.trial_id] = step

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        run_id = self._child(trial)
        self._log_batch(run_id, tags={TAG_RESTARTS: str(trial.num_failures),
                                      TAG_ERROR: _error_text(trial)})
        self.client.update_run(run_id, status="RUNNING")

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        if trial.trial_id not in self._children and not trial.last_result:
            return  # stopped while still pending: it never ran, so it gets no run
        run_id = self._child(trial)
        tags = {}
        stopped_by = self._stopped_early_by(trial)
        if stopped_by:
            tags[TAG_STOPPED_BY] = stopped_by
            tags[TAG_RUN_NOTE] = self._stop_note(trial, stopped_by)
        tags.update(self._upload_best_checkpoint(trial, run_id))
        self._log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status="KILLED" if stopped_by else "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        run_id = self._child(trial)
        self._log_batch(run_id, tags={TAG_ERROR: _error_text(trial), TAG_FAILURES: str(trial.num_failures)})
        self.client.set_terminated(run_id, status="FAILED")

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        """Close every child still RUNNING, then the parent (FINISHED, or KILLED when interrupted)."""
        by_id = {t.trial_id: t for t in trials}
        running = lookups.find_child_runs(self.client, self.experiment_id, self.parent_run_id, status="RUNNING")
        for run in running:
            trial = by_id.get(run.data.tags.get(TAG_TRIAL_ID, ""))
            if trial is not None and trial.status == Trial.TERMINATED:
                status = "KILLED" if run.data.tags.get(TAG_STOPPED_BY) else "FINISHED"
            elif trial is not None and trial.status == Trial.ERROR:
                status = "FAILED"
            else:  # pending/paused/running at an interrupt, or a run of a trial Tune no longer knows
                self._log_batch(run.info.run_id, tags={TAG_STOPPED_BY: STOPPED_BY_INTERRUPT,
                                                       TAG_RUN_NOTE: self._stop_note(trial, STOPPED_BY_INTERRUPT)})
                status = "KILLED"
            self.client.set_terminated(run.info.run_id, status=status)
        finished = all(t.status in _FINAL_TRIAL_STATES for t in trials)
        if not finished:
            self._log_batch(self.parent_run_id, tags={TAG_STOPPED_BY: STOPPED_BY_INTERRUPT})
        self.client.set_terminated(self.parent_run_id, status="FINISHED" if finished else "KILLED")

    # ----------------------------------------------------------------------------------------- helpers
    def _logged_step(self, run_id: str) -> int:
        """The last step a reused child run has metrics for (0 for none), so a resumed trial's replayed
        steps are not logged twice. Asked only once per reused child, not on every result."""
        keys = self.client.get_run(run_id).data.metrics
        return max((m.step for key in keys for m in self.client.get_metric_history(run_id, key)), default=0)

    def _stop_note(self, trial: Trial | None, stopped_by: str) -> str:
        """The run's Description: why MLflow shows it KILLED (an early stop, not a crash)."""
        if stopped_by == STOPPED_BY_INTERRUPT or trial is None:
            return ("KILLED because the sweep ended (crash, Ctrl-C) before this trial finished; resuming the sweep "
                    "continues it. Not an error of the trial.")
        reached = (trial.last_result or {}).get(self.time_attr, "?")
        budget = self._trial_budget(trial)
        at = f"at {self.time_attr} {reached}" + (f" of {budget:g}" if budget is not None else "")
        if stopped_by == STOPPED_BY_STOPPER:
            return (f"Stopped {at} by the sweep's stop criterion. KILLED is MLflow's word for an early stop, "
                    "not a crash.")
        return (f"Stopped early by the sweep's scheduler (successive halving) {at}: its {self.metric} was not "
                "among the top of its rung. KILLED is MLflow's word for an early stop, not a crash; its checkpoint "
                "and metrics are kept.")

    def _trial_budget(self, trial: Trial) -> float | None:
        if self.budget is None or isinstance(self.budget, (int, float)):
            return self.budget
        value = config_value(trial.config, self.budget)
        if not isinstance(value, (int, float)):
            raise ConfigError(f"trial {trial}: budget key {self.budget!r} is not a number in its config "
                              f"(got {value!r})")
        return value

    def _stopped_early_by(self, trial: Trial) -> str | None:
        """Who stopped the trial before its budget, or None when it ran to its end."""
        signal = self._stop_signal.get(trial.trial_id)
        budget = self._trial_budget(trial)
        if budget is None:
            return signal
        reached = (trial.last_result or {}).get(self.time_attr)
        if reached is None or reached >= budget:
            return None
        # Below budget. Without Tune's stop signal (lost when the driver was restarted) the trainable
        # returning early is indistinguishable from a scheduler stop; the scheduler is by far the usual cause.
        return signal or STOPPED_BY_SCHEDULER

    def _upload_best_checkpoint(self, trial: Trial, run_id: str) -> dict[str, str]:
        if not self.log_checkpoints:
            return {}
        best, best_score = None, None
        for item in trial.run_metadata.checkpoint_manager.best_checkpoint_results:
            score = item.metrics.get(self.metric)
            if not isinstance(score, (int, float)) or math.isnan(score):
                continue
            if best is None or (score > best_score if self.mode == "max" else score < best_score):
                best, best_score = item, score
        if best is None:
            return {}
        with best.checkpoint.as_directory() as directory:  # downloads when storage is remote
            self.client.log_artifacts(run_id, directory, artifact_path=ARTIFACT_CHECKPOINT)
        return {TAG_CHECKPOINT: best.checkpoint.path, TAG_CHECKPOINT_SCORE: repr(best_score)}

    def _log_batch(self, run_id: str, metrics: list[Metric] = (), params: Mapping[str, str] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        """One log_batch call when it fits MLflow's per-request limits, else as few as needed."""
        params_list = [Param(k, v) for k, v in (params or {}).items()]
        tags_list = [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in (tags or {}).items()]
        metric_chunks = list(_chunks(list(metrics), MAX_METRICS_PER_BATCH)) or [[]]
        param_chunks = list(_chunks(params_list, MAX_PARAMS_TAGS_PER_BATCH)) or [[]]
        tag_chunks = list(_chunks(tags_list, MAX_PARAMS_TAGS_PER_BATCH)) or [[]]
        for i in range(max(len(metric_chunks), len(param_chunks), len(tag_chunks))):
            m = metric_chunks[i] if i < len(metric_chunks) else []
            p = param_chunks[i] if i < len(param_chunks) else []
            t = tag_chunks[i] if i < len(tag_chunks) else []
            if m or p or t:
                self.client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True)


def _error_text(trial: Trial) -> str:
    """The tail of the trial's error (the traceback Tune wrote to the trial directory)."""
    text = ""
    if trial.error_file and os.path.exists(trial.error_file):
        text = Path(trial.error_file).read_text(errors="replace")
    else:
        error = trial.get_pickled_error() if trial.pickled_error_file else None
        text = repr(error) if error is not None else "unknown error"
    return text[-MAX_TAG_VAL_LENGTH:]
