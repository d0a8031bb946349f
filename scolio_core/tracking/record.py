"""A sweep as the MLflow record holds it, read back: the parent run, its trials and its lockbox entries.

    record = load_sweep(resolve_tracking_uri(None), "repr-sweep")
    record.winner(), winner_test_result(record), confirmation_record(record)

Everything here only READS MLflow (see "What MLflow holds" in docs/design.md): the sweep's parent run
(selection tags, lockbox ledger tags, one-shot `test/*` metrics) and its child runs (one per trial, with
per-evaluation `val/*` histories and a `checkpoint/` artifact). Nothing comes from the Ray results folder,
so the audit (tracking/audit.py) and the report (tracking/report.py) run on any machine that reaches the store.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scolio_core import CLASS_NAMES, names
from scolio_core.errors import ConfigError, DataError
from scolio_core.tracking import lookups
from scolio_core.tracking.store import open_client

if TYPE_CHECKING:  # mlflow is imported when a store is opened, so `scolio audit --help` stays fast
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient


@dataclass
class Trial:
    """One child run, reduced to what the leaderboard and the audit need."""

    run: Run
    params: dict[str, Any]  # parsed values of every logged param
    history: dict[str, dict[int, float]]  # metric -> step -> value

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def trial_id(self) -> str:
        return self.run.data.tags.get(names.TAG_TRIAL_ID, self.run.info.run_name or self.run_id[:8])

    @property
    def status(self) -> str:
        status = self.run.info.status
        if status == "KILLED":
            stopped = self.run.data.tags.get(names.TAG_STOPPED_BY)
            if stopped == names.STOPPED_BY_SCHEDULER:
                return "KILLED by early stopping"
            return f"KILLED ({stopped or 'reason not recorded'})"
        return status

    def best(self, metric: str = names.METRIC_VAL_MACRO_F1, mode: str = "max") -> tuple[int | None, float]:
        """(step, value) of the best value over the history; earliest step on ties; (None, nan) if none."""
        values = self.history.get(metric, {})
        if not values:
            return None, math.nan
        sign = 1.0 if mode == "max" else -1.0
        step = max(sorted(values), key=lambda s: sign * values[s])
        return step, values[step]


@dataclass
class SweepRecord:
    """A sweep as MLflow holds it."""

    name: str
    experiment_id: str
    parent: Run
    trials: list[Trial]  # the search's trials
    searched: list[str]
    ledger: list[dict]
    confirmations: list[Trial] = field(default_factory=list)  # re-trainings of top candidates (confirmation stage)

    @property
    def tags(self) -> dict[str, str]:
        return self.parent.data.tags

    @property
    def metric(self) -> str:
        return self.tags.get(names.TAG_METRIC, names.DEFAULT_METRIC)

    @property
    def mode(self) -> str:
        return self.tags.get(names.TAG_MODE, names.DEFAULT_MODE)

    def winner(self) -> Trial | None:
        run_id, trial_id = self.tags.get(names.TAG_SELECTED_RUN_ID), self.tags.get(names.TAG_SELECTED_TRIAL)
        for trial in [*self.trials, *self.confirmations]:
            if (run_id and trial.run_id == run_id) or (not run_id and trial_id and trial.trial_id == trial_id):
                return trial
        return None


# ------------------------------------------------------------------------------------------- reading
def _parse_param(text: str) -> Any:
    """MLflow params are strings; recover numbers, booleans and tuples (plain words stay strings)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step -> value; a step logged twice (a replay after restore) keeps its latest value."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {int(m.step): float(m.value) for m in points}


def _searched_params(parent: Run, trials: list[Trial]) -> list[str]:
    """Config keys of the parent's `search.<key>` params; else the params that differ across trials."""
    known = sorted({k for t in trials for k in t.params}, key=len, reverse=True)
    searched: list[str] = []
    for name in parent.data.params:
        prefix = next((p for p in names.SEARCH_PARAM_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            continue
        key = name[len(prefix):]
        # `search.input.sigma.uniform` (a flattened distribution) names the config key input.sigma.
        match = next((k for k in known if key == k or key.startswith(k + ".")), key)
        if match not in searched:
            searched.append(match)
    if searched:
        return sorted(searched)
    varying = [k for k in known if len({repr(t.params.get(k)) for t in trials}) > 1]
    return sorted(varying)


def _ledger_entries(tracking_uri: str, parent_id: str) -> list[dict]:
    from scolio_core.tracking.ledger import ParentRunLog

    return ParentRunLog(tracking_uri, parent_id).entries()


def test_set_looks(tracking_uri: str, record: SweepRecord) -> list[dict]:
    """Every look at the sweep's test set, by any study or entry point, in ledger order."""
    from scolio_core.tracking.ledger import MlflowLedger

    key = record.tags.get(names.TAG_TEST_SET) or next(
        (e.get("test_set") for e in record.ledger if e.get("test_set")), None)
    return MlflowLedger(tracking_uri).looks(key) if key else []


test_set_looks.__test__ = False  # not a pytest test


def load_sweep(tracking_uri: str, sweep_name: str, experiment: str = names.DEFAULT_EXPERIMENT) -> SweepRecord:
    """Read a sweep's parent run, child runs (with metric histories) and lockbox ledger."""
    client = open_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        experiments = [e.name for e in client.search_experiments()]
        raise ConfigError(f"no MLflow experiment {experiment!r} at {tracking_uri} (found: {experiments}); "
                          "pass --experiment")
    parent = lookups.find_parent_run(client, found.experiment_id, sweep_name)
    if parent is None:
        sweeps = lookups.sweep_names(client, found.experiment_id)
        raise ConfigError(f"no sweep {sweep_name!r} in experiment {experiment!r} at {tracking_uri} "
                          f"(sweeps there: {', '.join(sweeps) or 'none'})")
    children = lookups.find_child_runs(client, found.experiment_id, parent.info.run_id)
    trials, confirmations = [], []
    for run in children:
        keys = [k for k in (names.METRIC_VAL_MACRO_F1, names.METRIC_VAL_ACCURACY, names.METRIC_ITERATION)
                if k in run.data.metrics]
        metric = parent.data.tags.get(names.TAG_METRIC, names.DEFAULT_METRIC)
        if metric in run.data.metrics and metric not in keys:
            keys.append(metric)
        confirmation = run.data.tags.get(names.TAG_ROLE) == names.ROLE_CONFIRMATION
        (confirmations if confirmation else trials).append(
            Trial(run, {k: _parse_param(v) for k, v in run.data.params.items()},
                  {k: _history(client, run.info.run_id, k) for k in keys}))
    searched = _searched_params(parent, trials)
    return SweepRecord(sweep_name, found.experiment_id, parent, trials, searched,
                       _ledger_entries(tracking_uri, parent.info.run_id), confirmations)


def download_json(tracking_uri: str, run_id: str, artifact: str) -> dict | None:
    """An artifact of a run parsed as JSON, or None when the run has no such artifact."""
    import mlflow.artifacts

    client = open_client(tracking_uri)
    folder = artifact.rpartition("/")[0]
    if artifact not in {f.path for f in client.list_artifacts(run_id, folder or None)}:
        return None
    # MLflow draws a progress bar on stderr for every download, even of one small JSON file; it would bury the
    # audit's output. Its only switch is an environment variable, so the bar is swallowed here instead.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        text = Path(local).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"run {run_id}: artifact {artifact} is not valid JSON ({exc})") from None


# ---------------------------------------------------------------------------------- what it records
def config_key(trial: Trial, searched: list[str]) -> str:
    """A trial's searched values as one comparable string (ties and duplicates are decided on it)."""
    return repr([trial.params.get(name) for name in searched])


def test_interval(metrics: dict[str, float], name: str) -> tuple[float, float] | None:
    """The 95 % interval of test metric `name` (`macro_f1`) as the lockbox records it, or None."""
    low, high = names.ci_metrics(names.split_metric(names.SPLIT_TEST, name))
    if low in metrics and high in metrics:
        return metrics[low], metrics[high]
    return None


test_interval.__test__ = False  # not a pytest test


def _confusion(metrics: dict[str, float], entry: dict | None) -> list[list[float]] | None:
    if entry and entry.get("confusion_matrix"):
        return entry["confusion_matrix"]
    keys = [[names.confusion_metric(names.SPLIT_TEST, t, p) for p in CLASS_NAMES] for t in CLASS_NAMES]
    if all(k in metrics for row in keys for k in row):
        return [[metrics[k] for k in row] for row in keys]
    return None


def winner_test_result(record: SweepRecord) -> dict | None:
    """The winner's test evaluation: metrics (latest completed ledger entry, else the parent's `test/*`
    metrics), whether it was a reopened look, its confusion matrix; None when test was never evaluated."""
    completed = [e for e in record.ledger if e.get("state") == "completed"]
    metrics = {k: v for k, v in record.parent.data.metrics.items() if k.startswith(names.TEST_METRIC_PREFIX)}
    entry = completed[-1] if completed else None
    if entry:
        metrics.update({k: float(v) for k, v in entry.get("metrics", {}).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not metrics:
        return None
    reopened = (record.tags.get(names.TAG_TEST_REOPENED, "").lower() == "true"
                or metrics.get(names.METRIC_TEST_REOPENED, 0) > 0.5
                or bool(entry and entry.get("reopened")))
    return {"metrics": metrics, "reopened": reopened, "attempt": entry["attempt"] if entry else None,
            "label": "REOPENED test" if reopened else "one-shot test",
            "confusion_matrix": _confusion(metrics, entry)}


def confirmation_record(record: SweepRecord) -> dict | None:
    """The parent's confirmation (the confirmation stage's JSON) as recorded: candidates, seeds, chosen and
    tested trial; None when the sweep has none or it does not parse."""
    text = record.tags.get(names.TAG_CONFIRMATION)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None
