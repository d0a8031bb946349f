"""scripts/check_mlflow_ui.py: a sweep's parent and child runs are visible in the real MLflow UI.

The slow test builds a small store with MlflowClient (a parent run + 3 trials with a registered model, and a
second sweep that the page must filter out), serves it with `mlflow server` and looks at it in headless
Chromium: the runs page, then the registered model's page with its alias.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

from scolio_core.errors import ConfigError, DataError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_mlflow_ui.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("check_mlflow_ui", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


ui = _load_script()


def _build_store(path: Path) -> tuple[str, list[str], str]:
    """A sweep 'demo' (parent + 3 trials with params and per-iteration metrics) and a decoy sweep."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    experiment = client.create_experiment("scoliotune", artifact_location=str(path.parent / "artifacts"))
    decoy = client.create_run(experiment, run_name="other-sweep", tags={"scolio.sweep": "other",
                                                                        "scolio.role": "parent"})
    client.set_terminated(decoy.info.run_id)
    parent = client.create_run(experiment, run_name="demo-parent", tags={
        "scolio.sweep": "demo", "scolio.role": "parent", "scolio.metric": "val/macro_f1"})
    client.log_param(parent.info.run_id, "search.input.sigma", "[2.0, 4.0, 8.0]")
    children = []
    for i, sigma in enumerate((2.0, 4.0, 8.0)):
        child = client.create_run(experiment, run_name=f"trial_{i}", tags={
            "mlflow.parentRunId": parent.info.run_id, "scolio.sweep": "demo", "scolio.role": "trial"})
        client.log_param(child.info.run_id, "input.sigma", sigma)
        for step in (1, 2):
            client.log_metric(child.info.run_id, "val/macro_f1", 0.3 + 0.1 * i + 0.05 * step, step=step)
        client.set_terminated(child.info.run_id, "KILLED" if i == 0 else "FINISHED")
        children.append(child.info.run_id)
    # The study's tested model, registered as the sweep does it: a version with the alias, the URI on the parent.
    client.create_registered_model("scoliotune-demo")
    version = client.create_model_version("scoliotune-demo", source=str(path.parent / "artifacts" / "model"),
                                          run_id=parent.info.run_id)
    client.set_registered_model_alias("scoliotune-demo", "champion", version.version)
    client.set_tag(parent.info.run_id, "scolio.model_uri", "models:/scoliotune-demo@champion")
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id, children, decoy.info.run_id


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweep_parent_and_children_visible_in_browser(tmp_path):
    if ui.find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the UI check needs a browser")
    store = tmp_path / "mlflow.db"
    parent_id, child_ids, decoy_id = _build_store(store)
    before = hashlib.sha256(store.read_bytes()).hexdigest()

    result = ui.check_mlflow_ui(store, "demo", out_dir=tmp_path / "results" / "demo")

    assert result.parent.run_id == parent_id
    assert sorted(run.run_id for run in result.children) == sorted(child_ids)
    assert result.parent_visible, result.summary()
    assert {run.run_id for run in result.visible_children} == set(child_ids), result.summary()
    assert decoy_id not in result.visible  # only the requested sweep's runs are asked about
    assert result.columns == ["metrics.`val/macro_f1`", "params.`input.sigma`"]
    assert result.model_uri == "models:/scoliotune-demo@champion" and result.model_visible, result.summary()
    assert result.ok
    model_png = result.model_screenshot
    assert model_png == tmp_path / "results" / "demo" / "mlflow_model.png" and model_png.stat().st_size > 10_000
    png = result.screenshot
    assert png == tmp_path / "results" / "demo" / "mlflow_ui.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000, f"screenshot is only {len(data)} bytes: a blank page?"
    # The server ran on a snapshot: the user's store is byte-for-byte unchanged.
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


def test_store_argument_is_checked(tmp_path):
    with pytest.raises(DataError, match="no such MLflow sqlite store"):
        ui.check_mlflow_ui(tmp_path / "missing.db", "demo", chromium=sys.executable)
    with pytest.raises(DataError, match="sqlite"):
        ui.check_mlflow_ui("postgresql://host/db", "demo", chromium=sys.executable)
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"")
    assert ui._store_path(f"sqlite:///{existing}") == existing  # absolute URI: four slashes
    assert ui._store_path(existing) == existing


def test_main_reports_errors_with_exit_code_1(tmp_path, capsys):
    assert ui.main(["demo", "--store", str(tmp_path / "missing.db")]) == 1
    err = capsys.readouterr().err
    assert "missing.db" in err and err.count("\n") == 1


def test_filters_come_from_the_lookups():
    # The script asks the REST API with the lookups' filters, so it finds the parent `scolio report` reads.
    assert ui.lookups.sweep_filter("repr-sweep") == "tags.`scolio.sweep` = 'repr-sweep'"
    with pytest.raises(ConfigError, match="quote"):
        ui.lookups.parents_filter("it's")
