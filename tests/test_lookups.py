"""scolio_core.tracking.lookups: the MLflow lookups on scolio_core.names. Writers and readers resolve a
sweep to the same parent run (the oldest), against a real sqlite MLflow store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from scolio_core import names
from scolio_core.errors import ConfigError
from scolio_core.tracking import lookups

SWEEP = "twin"


@pytest.fixture()
def store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment(names.DEFAULT_EXPERIMENT,
                                                 artifact_location=(tmp_path / "artifacts").as_uri())


def _parent(client: MlflowClient, experiment_id: str, start_time: int, sweep: str = SWEEP) -> str:
    return client.create_run(experiment_id, start_time=start_time, run_name=sweep, tags={
        names.TAG_SWEEP: sweep, names.TAG_ROLE: names.ROLE_PARENT}).info.run_id


def _twin_parents(client: MlflowClient, experiment_id: str) -> tuple[str, str]:
    """Two parents of one sweep, the newer created first (so creation order cannot pass for age)."""
    newer = _parent(client, experiment_id, start_time=2_000_000)
    older = _parent(client, experiment_id, start_time=1_000_000)
    _parent(client, experiment_id, start_time=500_000, sweep="other")
    return older, newer


def test_find_parent_run_is_the_oldest_of_twins(store):
    _, client, experiment_id = store
    older, newer = _twin_parents(client, experiment_id)
    assert [r.info.run_id for r in lookups.find_parent_runs(client, experiment_id, SWEEP)] == [older, newer]
    assert lookups.find_parent_run(client, experiment_id, SWEEP).info.run_id == older
    assert lookups.find_parent_run(client, experiment_id, "missing") is None
    assert lookups.sweep_names(client, experiment_id) == ["other", SWEEP]


def test_report_and_lifecycle_resolve_the_same_parent(store):
    from scolio_core.tracking.record import load_sweep
    from scolio_sweep.engine.callbacks import MLflowLifecycle

    uri, client, experiment_id = store
    older, _ = _twin_parents(client, experiment_id)
    callback = MLflowLifecycle(uri, names.DEFAULT_EXPERIMENT, SWEEP, metric=names.METRIC_VAL_MACRO_F1)
    callback.setup()
    assert callback.parent_run_id == older
    assert load_sweep(uri, SWEEP).parent.info.run_id == older
    # The lifecycle records versions under the one naming, scolio.version.<package>.
    tags = client.get_run(older).data.tags
    assert tags[names.version_tag("mlflow")] and not any(k.startswith("versions.") for k in tags)


def test_find_trial_run(store):
    _, client, experiment_id = store
    parent = _parent(client, experiment_id, start_time=1_000)
    runs = [client.create_run(experiment_id, start_time=t, tags={
        names.TAG_PARENT_RUN_ID: parent, names.TAG_SWEEP: SWEEP, names.TAG_ROLE: names.ROLE_TRIAL,
        names.TAG_TRIAL_ID: trial}).info.run_id for t, trial in ((3_000, "a_00000"), (2_000, "a_00000"),
                                                                  (2_500, "a_00001"))]
    assert lookups.find_trial_run(client, experiment_id, parent, "a_00000").info.run_id == runs[1]  # oldest
    assert lookups.find_trial_run(client, experiment_id, parent, "a_00001").info.run_id == runs[2]
    assert lookups.find_trial_run(client, experiment_id, parent, "a_00002") is None
    assert [r.info.run_id for r in lookups.find_child_runs(client, experiment_id, parent)] == [runs[1], runs[2],
                                                                                               runs[0]]


def test_quote_and_filters():
    assert lookups.quote("repr-sweep", "sweep name") == "'repr-sweep'"
    with pytest.raises(ConfigError, match="sweep name .*single quote"):
        lookups.quote("it's", "sweep name")
    with pytest.raises(ConfigError, match="quote"):
        lookups.parents_filter("it's")
    assert lookups.parents_filter("s") == "tags.`scolio.sweep` = 's' and tags.`scolio.role` = 'parent'"
    assert lookups.children_filter("r1", trial_id="t1", status="RUNNING") == (
        "tags.`mlflow.parentRunId` = 'r1' and tags.`ray.trial_id` = 't1' and attributes.status = 'RUNNING'")
    assert names.TAG_PARENT_RUN_ID == MLFLOW_PARENT_RUN_ID
    assert names.lockbox_entry_tag(2, "opened") == "scolio.lockbox.entry.2.opened"


def test_lookups_are_the_bottom_of_the_tracking_layer():
    tree = ast.parse(Path(lookups.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {f"{node.module}.{alias.name}" if node.module == "scolio_core" else node.module
                 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert {m for m in imported if not m.startswith("mlflow")} <= {"__future__", "typing", "scolio_core.names",
                                                                     "scolio_core.errors"}
