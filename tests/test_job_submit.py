"""The cluster path end to end on one machine: a private Ray head with the dashboard and token auth, the smoke
sweep submitted with `ray job submit --working-dir <repo>`, and the sweep found complete in MLflow.

Everything this test starts is ours to stop, and only that: `ray stop` would kill every Ray on the machine
(it finds processes by name), so the head is started with a unique marker in its environment, every Ray
process it spawns (GCS, raylet, dashboard, job supervisor, the job's driver and trial workers) inherits it,
and teardown kills exactly the processes carrying that marker, by pid. HOME points into the test's tmp dir,
so the auth token it generates lands there, never in the user's ~/.ray.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from _processes import free_ports, stop_marked

ROOT = Path(__file__).resolve().parents[1]
MARKER = "SCOLIO_JOB_SUBMIT_TEST"
RAY = shutil.which("ray", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
# The repo's working dir upload: .gitignore (which lists .venv) is honoured by Ray 2.60; these are excluded
# explicitly as well, so a checkout with a different .gitignore still uploads only the code.
EXCLUDES = [".venv", ".git", "ray_results", "mlruns", "*.db", "__pycache__", ".pytest_cache"]
TRIALS = 2
DEADLINE_S = 420

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(RAY is None, reason="the `ray` CLI is not installed (pip install 'ray[default]')"),
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to find our Ray processes"),
]




def _ray(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _wait_for_job_server(address: str, env: dict) -> None:
    deadline = time.monotonic() + 120
    while True:
        listed = _ray(["job", "list", "--address", address], env)
        if listed.returncode == 0:
            return
        assert time.monotonic() < deadline, f"job server at {address} not up: {listed.stderr[-2000:]}"
        time.sleep(3)


def test_ray_job_submit_runs_the_smoke_sweep_on_a_token_auth_head(tmp_path):
    marker = uuid.uuid4().hex
    temp_dir = tempfile.mkdtemp(prefix="sjs")  # short: Ray's socket paths are length-limited
    port, dash, *others = free_ports(7)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({MARKER: marker, "HOME": str(home), "RAY_AUTH_MODE": "token", "OMP_NUM_THREADS": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    env.pop("SCOLIO_TEST_READ_LOG", None)
    address = f"http://127.0.0.1:{dash}"
    work = tmp_path / "w"
    db = work / "mlflow.db"
    try:
        # Token mode never invents a token at `ray start`: generate one first (into HOME/.ray/auth_token).
        generated = _ray(["get-auth-token", "--generate"], env)
        assert generated.returncode == 0, generated.stderr[-2000:]
        assert (home / ".ray" / "auth_token").exists(), "the token was not written under HOME"
        # Every port with a fixed default (agent 52365, client server 10001, ...) is picked free: another Ray
        # on this machine may hold the defaults, and then our head's job agent never comes up.
        ports = [f"--{name}={number}" for name, number in zip((
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
            "metrics-export-port", "ray-client-server-port"), others)]
        started = _ray(["start", "--head", f"--port={port}", "--include-dashboard=true",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *ports, "--num-cpus=2",
                        "--num-gpus=0", f"--temp-dir={temp_dir}", "--disable-usage-stats"], env, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        _wait_for_job_server(address, env)

        # Without RAY_AUTH_MODE the CLI sends no token: the head must refuse it.
        anonymous = _ray(["job", "list", "--address", address],
                         {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"})
        assert anonymous.returncode != 0

        job_id = f"job-smoke-{marker[:8]}"
        entrypoint = ["python", "sweeps/representation.py", "--profile", "smoke", "--name", "job-smoke",
                      "--num-samples", str(TRIALS), "--tracking-uri", f"sqlite:///{db}",
                      "--storage-path", str(work / "ray_results"), "--cache-dir", str(work / "cache"),
                      "--results-dir", str(work / "results"),
                      # half the smoke trial (what is checked is the cluster path, not learning)
                      "--set", "train.iterations=12", "--set", "train.milestones=[8]",
                      # the confirmation stage runs in the job too, at its smallest (one re-training)
                      "--confirm-candidates", "1", "--confirm-seeds", "1"]
        submit = ["job", "submit", "--address", address, "--submission-id", job_id, "--no-wait",
                  "--working-dir", str(ROOT), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
                  "--", *entrypoint]
        deadline = time.monotonic() + 120
        # The job server answers before the head's dashboard agent is ready to take jobs; retry until it is.
        while (submitted := _ray(submit, env)).returncode != 0 and "No available agent" in submitted.stderr \
                and time.monotonic() < deadline:
            time.sleep(2)
        assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]

        deadline = time.monotonic() + DEADLINE_S
        status, asked = "", 0.0
        while time.monotonic() < deadline:
            # Each `ray job status` is a CLI start (~1 s of a core the job needs): asked every 10 s while the
            # job runs, every second once its leaderboard exists (it is about to exit).
            near_end = (work / "results" / "job-smoke" / "leaderboard.csv").exists()
            if time.monotonic() - asked >= (1 if near_end else 10):
                asked = time.monotonic()
                status = _ray(["job", "status", "--address", address, job_id], env).stdout.lower()
                if any(f"' {state}" in status for state in ("succeeded", "failed", "stopped")):  # "Job 'id' succeeded"
                    break
            time.sleep(0.2)
        logs = _ray(["job", "logs", "--address", address, job_id], env).stdout
        assert f"'{job_id}' succeeded" in status, f"job {job_id}: {status[-500:]}\n{logs[-4000:]}"
        assert "sweep job-smoke: winner" in logs

        # What was uploaded: the code, not the virtualenv or the git history.
        packages = [p for p in Path(temp_dir, "session_latest", "runtime_resources", "working_dir_files").iterdir()
                    if p.is_dir()]
        assert packages and all((p / "sweeps" / "representation.py").exists() for p in packages)
        assert not any((p / name).exists() for p in packages for name in (".venv", ".git"))
    finally:
        left = stop_marked(MARKER, marker, graceful_seconds=5.0)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, f"Ray processes of this test still alive: {left}"

    # The sweep is in MLflow: one parent, one finished child per trial, nothing left RUNNING.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        def tagged(key: str, value: str) -> set[str]:
            rows = conn.execute("SELECT run_uuid FROM tags WHERE key = ? AND value = ?", (key, value))
            return {row[0] for row in rows}

        sweep = tagged("scolio.sweep", "job-smoke")
        parents = sweep & tagged("scolio.role", "parent")
        assert len(parents) == 1
        children = sweep & tagged("scolio.role", "trial") & tagged("mlflow.parentRunId", next(iter(parents)))
        assert len(children) == TRIALS
        statuses = dict(conn.execute("SELECT run_uuid, status FROM runs").fetchall())
        assert not [run for run in sweep if statuses[run] == "RUNNING"]
        assert {statuses[run] for run in children} <= {"FINISHED", "KILLED"}
        confirms = sweep & tagged("scolio.role", "confirmation") & tagged("mlflow.parentRunId", next(iter(parents)))
        assert len(confirms) == 1 and statuses[next(iter(confirms))] == "FINISHED"
    assert (work / "results" / "job-smoke" / "leaderboard.csv").exists()
