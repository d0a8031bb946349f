"""scolio_core.tracking.schema: the one owner of MLflow names and lookups. Writers and readers resolve a
sweep to the same parent run (the oldest), against a real sqlite MLflow store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from scolio_core.errors import ConfigError
from scolio_core.tracking import schema

SWEEP = "twin"


@pytest.fixture()
def store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment(schema.DEFAULT_EXPERIMENT,
                                                 artifact_location=(tmp_path / "artifacts").as_uri())


def _parent(client: MlflowClient, experiment_id: str, start_time: int, sweep: str = SWEEP) -> str:
    return client.create_run(experiment_id, start_time=start_time, run_name=sweep, tags={
        schema.TAG_SWEEP: sweep, schema.TAG_ROLE: schema.ROLE_PARENT}).info.run_id


def _twin_parents(client: MlflowClient, experiment_id: str) -> tuple[str, str]:
    """Two parents of one sweep, the newer created first (so creation order cannot pass for age)."""
    newer = _parent(client, experiment_id, start_time=2_000_000)
    older = _parent(client, experiment_id, start_time=1_000_000)
    _parent(client, experiment_id, start_time=500_000, sweep="other")
    return older, newer


def test_find_parent_run_is_the_oldest_of_twins(store):
    _, client, experiment_id = store
    older, newer = _twin_parents(client, experiment_id)
    assert [r.info.run_id for r in schema.find_parent_runs(client, experiment_id, SWEEP)] == [older, newer]
    assert schema.find_parent_run(client, experiment_id, SWEEP).info.run_id == older
    assert schema.find_parent_run(client, experiment_id, "missing") is None
    assert schema.sweep_names(client, experiment_id) == ["other", SWEEP]


def test_report_and_lifecycle_resolve_the_same_parent(store):
    from scolio_core.tracking.report import load_sweep
    from sweeps.tracking import MLflowLifecycle

    uri, client, experiment_id = store
    older, _ = _twin_parents(client, experiment_id)
    callback = MLflowLifecycle(uri, schema.DEFAULT_EXPERIMENT, SWEEP, metric=schema.METRIC_VAL_MACRO_F1)
    callback.setup()
    assert callback.parent_run_id == older
    assert load_sweep(uri, SWEEP).parent.info.run_id == older
    # The lifecycle records versions under the one naming, scolio.version.<package>.
    tags = client.get_run(older).data.tags
    assert tags[schema.version_tag("mlflow")] and not any(k.startswith("versions.") for k in tags)


def test_find_trial_run(store):
    _, client, experiment_id = store
    parent = _parent(client, experiment_id, start_time=1_000)
    runs = [client.create_run(experiment_id, start_time=t, tags={
        schema.TAG_PARENT_RUN_ID: parent, schema.TAG_SWEEP: SWEEP, schema.TAG_ROLE: schema.ROLE_TRIAL,
        schema.TAG_TRIAL_ID: trial}).info.run_id for t, trial in ((3_000, "a_00000"), (2_000, "a_00000"),
                                                                  (2_500, "a_00001"))]
    assert schema.find_trial_run(client, experiment_id, parent, "a_00000").info.run_id == runs[1]  # oldest
    assert schema.find_trial_run(client, experiment_id, parent, "a_00001").info.run_id == runs[2]
    assert schema.find_trial_run(client, experiment_id, parent, "a_00002") is None
    assert [r.info.run_id for r in schema.find_child_runs(client, experiment_id, parent)] == [runs[1], runs[2],
                                                                                               runs[0]]


def test_quote_and_filters():
    assert schema.quote("repr-sweep", "sweep name") == "'repr-sweep'"
    with pytest.raises(ConfigError, match="sweep name .*single quote"):
        schema.quote("it's", "sweep name")
    with pytest.raises(ConfigError, match="quote"):
        schema.parents_filter("it's")
    assert schema.parents_filter("s") == "tags.`scolio.sweep` = 's' and tags.`scolio.role` = 'parent'"
    assert schema.children_filter("r1", trial_id="t1", status="RUNNING") == (
        "tags.`mlflow.parentRunId` = 'r1' and tags.`ray.trial_id` = 't1' and attributes.status = 'RUNNING'")
    assert schema.TAG_PARENT_RUN_ID == MLFLOW_PARENT_RUN_ID
    assert schema.lockbox_entry_tag(2, "opened") == "scolio.lockbox.entry.2.opened"


def test_schema_is_the_bottom_of_the_tracking_layer():
    tree = ast.parse(Path(schema.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m for m in imported if not m.startswith("mlflow")} <= {"__future__", "typing", "scolio_core.errors"}
