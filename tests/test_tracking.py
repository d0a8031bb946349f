"""MLflowLifecycle: one parent run per sweep and one child per trial, metrics per step, final statuses,
best checkpoints, and logging from many concurrent trials to sqlite and to an `mlflow server`.

The Ray tests share one private local Ray (num_cpus=2, own temp dir) and run toy trials from _toy_sweep.py.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _toy_sweep
import pytest
import ray
import ray.cloudpickle
from mlflow import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from scolio_core.errors import ConfigError
from scolio_sweep.engine.callbacks import MLflowLifecycle, flatten_params, result_metrics
from scolio_sweep.engine.tuner import connect_ray, run_or_restore

# Workers cannot import tests/_toy_sweep.py by name: ship the trainable's code with the pickle.
ray.cloudpickle.register_pickle_by_value(_toy_sweep)

EXPERIMENT = "toy"
F1 = "val/macro_f1"


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    # Short path: Ray's unix socket paths under the temp dir must stay below ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="scr")
    connect_ray(num_cpus=2, temp_dir=temp_dir, include_dashboard=False)
    yield
    if started:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(client: MlflowClient, sweep: str, role: str) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id],
                              f"tags.`scolio.sweep` = '{sweep}' and tags.`scolio.role` = '{role}'")


# ------------------------------------------------------------------------------------------ no Ray
def test_result_metrics_keeps_reported_metrics_and_drops_tune_bookkeeping():
    result = {"val/macro_f1": 0.5, "loss": 2, "train": {"ce": 1.5}, "training_iteration": 3,
              "time_this_iter_s": 0.1, "time_total_s": 1.0, "pid": 12, "hostname": "h", "node_ip": "1.2.3.4",
              "timestamp": 99, "date": "d", "done": False, "trial_id": "t", "experiment_id": "e",
              "checkpoint_dir_name": "checkpoint_000001", "should_checkpoint": True,
              "iterations_since_restore": 3, "config": {"lr": 0.1}, "config/lr": 0.1, "flag": True,
              "name": "text"}
    assert result_metrics(result) == {"val/macro_f1": 0.5, "loss": 2.0, "train/ce": 1.5}


def test_flatten_params_dotted_keys_truncated_values_and_readable_search_space():
    flat = flatten_params({"input": {"sigma": 4.0, "representation": "body-only"}, "long": "x" * 7000,
                           "lr": tune.loguniform(1e-4, 1e-1), "repr": tune.choice(["a", "b"])})
    assert flat["input.sigma"] == "4.0" and flat["input.representation"] == "body-only"
    assert len(flat["long"]) == 6000 and flat["long"].endswith("...")
    assert flat["lr"] == "loguniform(lower=0.0001, upper=0.1)"
    assert flat["repr"] == "uniform(categories=['a', 'b'])"


def test_parent_is_reused_and_a_changed_param_is_refused(tmp_path):
    uri = _sqlite_uri(tmp_path)
    first = MLflowLifecycle(uri, EXPERIMENT, "reuse", metric=F1, params={"space": {"lr": 0.1}})
    first.setup(total_num_samples=2)
    restored = pickle.loads(pickle.dumps(first))  # what Tuner.restore unpickles from tuner.pkl
    assert restored.parent_run_id is None
    restored.setup(total_num_samples=2)
    assert restored.parent_run_id == first.parent_run_id
    assert len(_runs(MlflowClient(uri), "reuse", "parent")) == 1
    assert MlflowClient(uri).get_run(first.parent_run_id).data.params == {"space.lr": "0.1"}
    with pytest.raises(ConfigError, match="space.lr"):
        MLflowLifecycle(uri, EXPERIMENT, "reuse", metric=F1, params={"space": {"lr": 0.2}}).setup()
    # Artifacts of a sqlite store go next to the database, not into the working directory.
    assert MlflowClient(uri).get_experiment_by_name(EXPERIMENT).artifact_location == \
        (tmp_path / "mlartifacts").as_uri()


# ------------------------------------------------------------------------------------------ Ray
@pytest.mark.slow
def test_asha_sweep_one_child_per_trial_with_metrics_statuses_and_best_checkpoint(tmp_path, local_ray):
    uri = _sqlite_uri(tmp_path)
    lifecycle = MLflowLifecycle(uri, EXPERIMENT, "asha", metric=F1, mode="max", budget="steps",
                                params={"profile": "toy"})
    space = {"scale": tune.grid_search([1.0, 1.5, 2.0, 3.0, 4.0, 6.0]), "steps": 4, "peak": 2}
    scheduler = ASHAScheduler(grace_period=1, max_t=4, reduction_factor=2)
    grid = run_or_restore(_toy_sweep.toy_trainable, name="asha", storage_path=str(tmp_path / "ray"),
                          param_space=space,
                          tune_config=tune.TuneConfig(metric=F1, mode="max", scheduler=scheduler,
                                                      max_concurrent_trials=2, reuse_actors=True),
                          run_config_kwargs={"verbose": 0}, callbacks=[lifecycle], resources={"cpu": 1})
    assert len(grid) == 6 and not grid.errors

    client = MlflowClient(uri)
    parents = _runs(client, "asha", "parent")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.params["profile"] == "toy"
    children = {run.data.tags["ray.trial_id"]: run for run in _runs(client, "asha", "trial")}
    reports = {r.metrics["trial_id"]: r.metrics["training_iteration"] for r in grid}
    assert sorted(children) == sorted(reports)  # exactly one child per trial
    killed = 0
    for trial_id, run in children.items():
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.params["scale"] in {"1.0", "1.5", "2.0", "3.0", "4.0", "6.0"}
        assert run.data.params["steps"] == "4"
        history = client.get_metric_history(run.info.run_id, F1)
        assert [m.step for m in history] == list(range(1, reports[trial_id] + 1))
        assert len(client.get_metric_history(run.info.run_id, "loss")) == reports[trial_id]
        if reports[trial_id] < 4:
            assert run.info.status == "KILLED" and run.data.tags["scolio.stopped_by"] == "scheduler"
            killed += 1
        else:
            assert run.info.status == "FINISHED" and "scolio.stopped_by" not in run.data.tags
        # The best checkpoint by val/macro_f1 (step <= peak), not simply the last one, was uploaded.
        best_step = max(history, key=lambda m: m.value).step
        local = client.download_artifacts(run.info.run_id, "checkpoint", str(tmp_path / trial_id))
        assert json.loads((Path(local) / "state.json").read_text())["step"] == best_step
        assert run.data.tags["scolio.best_checkpoint"].startswith(str(tmp_path / "ray" / "asha"))
    assert killed >= 1
    frame = summarize_sweep(uri, EXPERIMENT, "asha")
    assert len(frame) == 6 and "RUNNING" not in set(frame["status"])

    # Running the finished sweep again restores it: the new callback object runs and reuses the runs.
    again = MLflowLifecycle(uri, EXPERIMENT, "asha", metric=F1, mode="max", budget="steps",
                            params={"profile": "toy"})
    grid = run_or_restore(_toy_sweep.toy_trainable, name="asha", storage_path=str(tmp_path / "ray"),
                          param_space=space, tune_config=tune.TuneConfig(metric=F1, mode="max"),
                          callbacks=[again], resources={"cpu": 1})
    assert len(grid) == 6 and again.parent_run_id == parents[0].info.run_id
    assert len(_runs(client, "asha", "parent")) == 1 and len(_runs(client, "asha", "trial")) == 6
    assert client.get_run(again.parent_run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_crashing_trial_ends_failed_after_its_retries(tmp_path, local_ray):
    uri = _sqlite_uri(tmp_path)
    lifecycle = MLflowLifecycle(uri, EXPERIMENT, "crash", metric=F1, budget="steps")
    space = {"scale": 1.0, "steps": 3, "fail_at": tune.grid_search([0, 2])}
    grid = run_or_restore(_toy_sweep.toy_trainable, name="crash", storage_path=str(tmp_path / "ray"),
                          param_space=space,
                          tune_config=tune.TuneConfig(metric=F1, mode="max", reuse_actors=True),
                          run_config_kwargs={"verbose": 0}, callbacks=[lifecycle], resources={"cpu": 1})
    assert len(grid.errors) == 1

    client = MlflowClient(uri)
    runs = {run.data.params["fail_at"]: run for run in _runs(client, "crash", "trial")}
    assert len(runs) == 2
    failed, healthy = runs["2"], runs["0"]
    assert failed.info.status == "FAILED"
    assert "toy failure at step 2" in failed.data.tags["scolio.error"]
    assert failed.data.tags["scolio.restarts"] == "2"  # FailureConfig(max_failures=2) by default
    assert failed.data.tags["scolio.failures"] == "3"
    # Each retry resumed from the step-1 checkpoint and failed again at step 2: step 1 is logged once.
    assert [m.step for m in client.get_metric_history(failed.info.run_id, "loss")] == [1]
    assert healthy.info.status == "FINISHED" and "scolio.stopped_by" not in healthy.data.tags
    assert [m.step for m in client.get_metric_history(healthy.info.run_id, "loss")] == [1, 2, 3]
    assert _runs(client, "crash", "parent")[0].info.status == "FINISHED"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """An `mlflow server` on a free loopback port with a sqlite backend in tmp_path; yields (uri, log)."""
    port = _free_port()
    log_path = tmp_path / "server.log"
    db = tmp_path / "server" / "mlflow.db"
    db.parent.mkdir()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--backend-store-uri", f"sqlite:///{db}",
             "--artifacts-destination", str(tmp_path / "server" / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # No background job runner: it is a pool of processes this test has no use for.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri, log_path
    finally:
        os.killpg(server.pid, 15)  # its own session: the server and the workers it forked
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()


@pytest.mark.slow
def test_concurrent_trials_log_every_step_to_sqlite_and_to_a_server(tmp_path, local_ray, mlflow_server):
    server_uri, server_log = mlflow_server
    trials, steps = 8, 20
    stores = {"sqlite": _sqlite_uri(tmp_path), "server": server_uri}
    callbacks = [MLflowLifecycle(uri, EXPERIMENT, "many", metric=F1, budget="steps", log_checkpoints=False)
                 for uri in stores.values()]
    space = {"scale": tune.grid_search([1.0 + i for i in range(trials)]), "steps": steps,
             "sleep": 0.05, "checkpoint": False}
    grid = run_or_restore(_toy_sweep.toy_trainable, name="many", storage_path=str(tmp_path / "ray"),
                          param_space=space, tune_config=tune.TuneConfig(metric=F1, mode="max"),
                          run_config_kwargs={"verbose": 0}, callbacks=callbacks,
                          resources={"cpu": 2 / trials})  # all 8 trials at once on 2 CPUs
    assert len(grid) == trials and not grid.errors
    for store, uri in stores.items():
        client = MlflowClient(uri)
        runs = _runs(client, "many", "trial")
        assert len(runs) == trials, store
        counts = [len(client.get_metric_history(run.info.run_id, key))
                  for run in runs for key in ("loss", F1, "step")]
        assert sum(counts) == trials * steps * 3, (store, counts)
        assert {run.info.status for run in runs} == {"FINISHED"}, store
        # The trials really overlapped: count the runs open at the moment the last one started.
        last_start = max(run.info.start_time for run in runs)
        assert sum(run.info.end_time > last_start for run in runs) >= 2, store
    assert "database is locked" not in server_log.read_text()


def summarize_sweep(tracking_uri: str, experiment: str, sweep_name: str) -> "pandas.DataFrame":  # noqa: F821
    """Test helper: the child runs of a sweep as a DataFrame (`run_id`, `status`, `params.*`, `metrics.*`, `tags.*`)."""
    import mlflow

    from scolio_core.tracking import lookups

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.search_runs(
            experiment_names=[experiment],
            filter_string=lookups.trials_filter(sweep_name), output_format="pandas")
    finally:
        mlflow.set_tracking_uri(previous)
