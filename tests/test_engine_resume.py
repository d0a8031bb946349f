"""scolio_sweep.engine.tuner: Ray connection choice, and a sweep driver SIGKILLed mid-run that resumes on re-run with
exactly one MLflow child run per trial, every step logged once and nothing left RUNNING.

The kill test runs tests/_toy_sweep.py as a subprocess with its own Ray temp dir and a marker in its
environment; every process that inherits the marker (Ray's GCS, raylet, workers) is ours to clean up by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import ray
from _processes import marked_pids, stop_marked
from mlflow import MlflowClient

from scolio_sweep.engine import tuner as engine

ROOT = Path(__file__).resolve().parents[1]
TOY = Path(__file__).resolve().parent / "_toy_sweep.py"
MARKER = "SCOLIO_TOY_SWEEP_RUN"


def test_experiment_path_keeps_uris_and_resolves_local_paths(tmp_path, monkeypatch):
    assert engine.experiment_path("s3://bucket/runs/", "sweep") == "s3://bucket/runs/sweep"
    monkeypatch.chdir(tmp_path)
    assert engine.experiment_path("ray", "sweep") == str(tmp_path / "ray" / "sweep")


def test_connect_ray_starts_a_private_local_ray_unless_an_address_is_given(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    engine.connect_ray(num_cpus=2)
    # Never plain ray.init(): it would join whatever cluster `ray start` last left on this machine.
    assert calls[-1] == {"address": "local", "num_cpus": 2}
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # what `ray job submit` sets for its driver
    engine.connect_ray(num_cpus=2)
    assert calls[-1] == {"address": "10.0.0.1:6379"}
    engine.connect_ray(address="ray://head:10001")
    assert calls[-1] == {"address": "ray://head:10001"}
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    engine.connect_ray()
    assert len(calls) == 3  # already connected: nothing to do


def _count_logged(db: Path) -> int:
    """Metric rows of child runs, read straight from sqlite (read-only: the driver owns the store)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM metrics m JOIN tags t ON m.run_uuid = t.run_uuid "
                                "WHERE t.key = 'ray.trial_id'").fetchone()[0]
    except sqlite3.Error:
        return 0  # tables not created yet, or a write in progress


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to find Ray's processes")
def test_sigkilled_driver_resumes_with_one_child_run_per_trial(tmp_path):
    trials, steps = 4, 6
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    markers = [uuid.uuid4().hex, uuid.uuid4().hex]
    temp_dirs = [tempfile.mkdtemp(prefix="srk") for _ in markers]  # short: Ray socket paths are limited

    def command(i: int) -> tuple[list[str], dict[str, str]]:
        cmd = [sys.executable, str(TOY), "--storage", str(tmp_path / "ray"), "--tracking-uri", uri,
               "--ray-temp-dir", temp_dirs[i], "--trials", str(trials), "--steps", str(steps),
               "--sleep", "0.2"]  # 1.2 s a trial: still killed mid-trial (2 steps logged, 4 trials)
        env = {**os.environ, MARKER: markers[i], "PYTHONPATH": str(ROOT)}
        return cmd, env

    try:
        cmd, env = command(0)
        with open(tmp_path / "first.log", "wb") as log:
            first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while _count_logged(db) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no child run logged a metric within 180 s"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # A SIGKILLed driver cannot shut down the Ray it started: Ray's agents outlive it (seen: the
        # dashboard and runtime-env agents), so they are ours to end.
        assert stop_marked(MARKER, markers[0]) == []

        client = MlflowClient(uri)
        before = client.search_runs([client.get_experiment_by_name("toy").experiment_id],
                                    "tags.`scolio.role` = 'trial'")
        assert any(run.info.status == "RUNNING" for run in before)  # killed mid-trial, as intended

        cmd, env = command(1)
        second = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert f"finished {trials} trials, errors: 0" in second.stdout

        experiment_id = client.get_experiment_by_name("toy").experiment_id
        parents = client.search_runs([experiment_id], "tags.`scolio.role` = 'parent'")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        children = client.search_runs([experiment_id], "tags.`scolio.role` = 'trial'")
        assert len(children) == trials
        assert len({run.data.tags["ray.trial_id"] for run in children}) == trials
        assert {run.data.tags["ray.trial_id"] for run in before} <= {r.data.tags["ray.trial_id"] for r in children}
        for run in children:
            assert run.info.status == "FINISHED", run.data.tags
            assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            # Steps replayed from the last checkpoint after the restore are not logged a second time.
            assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == \
                list(range(1, steps + 1))

        # The resumed driver exited normally: the Ray it started must be gone with it.
        deadline = time.monotonic() + 30
        while marked_pids(MARKER, markers[1]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marked_pids(MARKER, markers[1]) == []
    finally:
        for marker in markers:
            stop_marked(MARKER, marker)
        for directory in temp_dirs:
            shutil.rmtree(directory, ignore_errors=True)
