"""Reliability of a real representation sweep under crashes; nothing recorded is lost or duplicated.

One sweep is run six times with the same command, each run but the last ended by a fault:
1. a trial's Ray worker is SIGKILLed right after its first report: the trial is retried from that report's
   checkpoint (scolio_sweep/engine/tuner.py allows two retries) and its MLflow child run continues, marked restarted;
2. then the driver is SIGKILLed during the search, once Tune's saved state holds a finished trial and an
   interrupted one: after the resume the finished trial has executed no step again, and the interrupted one's
   first step is its saved checkpoint's step + 1 (the profile evaluates every step, so each trial's
   result.json is a log of the steps it ran; MLflow cannot show this: it skips already-logged steps);
3. the re-run's driver is SIGKILLed during the one-shot test (its lockbox entry is opened, not completed);
4. the next re-run refuses a second look, naming --reopen-test, and takes none;
5. with --reopen-test the driver is SIGKILLed while writing results (the reopened look is recorded);
6. the plain re-run completes and reuses that recorded look: one MLflow child run per trial, none RUNNING,
   every step logged once, two looks in the ledger (the crashed one and the reopened one), labelled REOPENED
   in MLflow, summary.md and the leaderboard.
Chaining the faults in one sweep costs one search instead of four (the suite runs on 2 cores).

Drivers run tests/_sweep_driver.py (the real sweep CLI on a private local Ray) with a marker in their
environment: every process that inherits it (Ray's GCS, raylet, workers) is ours, found and ended by pid.
Kill points are found by watching the sweep's own records (the trial's result.json, the parent run's
lockbox tags in the sqlite store), not by hooks in production code.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from _processes import stop_marked
from conftest import tune_result_rows

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "_sweep_driver.py"
MARKER = "SCOLIO_RELIAB_RUN"
NUM_TRIALS = 3
LOOKS_TAG = "scolio.lockbox.evaluations"
STATE_TAG = "scolio.lockbox.state"

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                reason="needs Linux /proc to find the sweep's Ray processes")


# ------------------------------------------------------------------------------------------- processes
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1]
    except OSError:
        return False
    return not state.startswith("Z")  # a zombie has already died


# ------------------------------------------------------------------------------------------- the sweep
class Sweep:
    """One sweep name with its own MLflow store, Tune storage and results folder; starts drivers."""

    def __init__(self, directory: Path, name: str, data_root: Path, partition: Path, iterations: int) -> None:
        self.dir, self.name, self.iterations = directory, name, iterations
        directory.mkdir(parents=True, exist_ok=True)
        self.db = directory / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"
        self.storage = directory / "ray_results"
        self.results = directory / "results"
        # A frozen copy: a colleague editing sweeps/smoke.yaml between our re-runs must not change the sweep.
        profile = directory / "smoke.yaml"
        text = (ROOT / "sweeps" / "smoke.yaml").read_text()
        # eval_every 1: every optimiser step is a Tune report with a checkpoint, so each trial's result.json
        # is a log of the steps it executed (the resume assertions count them).
        text, edits = re.subn(r"(?m)^  train\.eval_every: .*$", "  train.eval_every: 1", text)
        assert edits == 1, "sweeps/smoke.yaml changed: update this test's profile edit"
        # The confirmation stage stays in the chain (its Tune run is restored like the search's), at its smallest:
        # the top configuration re-trained once, with seed 1.
        text, edits = re.subn(r"(?m)^confirm: .*$", "confirm: {candidates: 1, seeds: 1}", text)
        assert edits == 1, "sweeps/smoke.yaml changed: update this test's profile edit"
        # ASHA off in effect (grace = every evaluation): a trial it stopped at its first rung would never
        # report again, and with trials a few seconds long that raced the worker kill below.
        profile.write_text(re.sub(r"(?m)^asha: .*$", f"asha: {{grace_period: {iterations}, reduction_factor: 2}}",
                                  text))
        self.args = ["--profile", str(profile), "--name", name, "--data-root", str(data_root),
                     "--partition", str(partition), "--tracking-uri", self.uri,
                     "--storage-path", str(self.storage), "--results-dir", str(self.results),
                     "--num-samples", str(NUM_TRIALS), "--set", f"train.iterations={iterations}"]
        self.markers: list[str] = []
        self.temp_dirs: list[str] = []
        self.logs: list[Path] = []

    def start(self, *extra: str) -> subprocess.Popen:
        marker = uuid.uuid4().hex
        temp_dir = tempfile.mkdtemp(prefix="srl")  # short: Ray's socket paths are length-limited
        self.markers.append(marker)
        self.temp_dirs.append(temp_dir)
        log = self.dir / f"driver{len(self.logs)}.log"
        self.logs.append(log)
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
        env.update({MARKER: marker, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        with open(log, "wb") as handle:
            return subprocess.Popen([sys.executable, str(DRIVER), "--ray-temp-dir", temp_dir, "--",
                                     *self.args, *extra], env=env, cwd=self.dir, stdout=handle,
                                    stderr=subprocess.STDOUT)

    def run(self, *extra: str, timeout: float = 300) -> tuple[int, str]:
        """Run a driver to its end; (exit code, its output). Its Ray is gone afterwards."""
        driver = self.start(*extra)
        try:
            code = driver.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            driver.kill()
            pytest.fail(f"driver did not finish in {timeout} s:\n{self.tail()}")
        assert stop_marked(MARKER, self.markers[-1]) == []
        return code, self.logs[-1].read_text(errors="replace")

    def kill(self, driver: subprocess.Popen) -> None:
        """SIGKILL a driver, then the Ray it started (a SIGKILLed driver cannot shut Ray down itself)."""
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert stop_marked(MARKER, self.markers[-1]) == []

    def tail(self, chars: int = 4000) -> str:
        return self.logs[-1].read_text(errors="replace")[-chars:] if self.logs else ""

    def wait_for(self, driver: subprocess.Popen, what: str, probe: Callable[[], object], timeout: float = 300,
                 every: float = 0.05):
        """Poll `probe` until it returns something truthy while the driver runs; fail naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            assert driver.poll() is None, f"driver exited ({driver.returncode}) before {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{self.tail()}"
            time.sleep(every)

    def parent_tags(self) -> dict[str, str]:
        """The parent run's tags read straight from sqlite (read-only: the driver owns the store)."""
        if not self.db.exists():
            return {}
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1) as conn:
                rows = conn.execute(
                    "SELECT key, value FROM tags WHERE run_uuid IN "
                    "(SELECT run_uuid FROM tags WHERE key = 'scolio.role' AND value = 'parent')").fetchall()
        except sqlite3.Error:
            return {}  # tables not created yet, or a write in progress
        return dict(rows)

    def results_by_trial(self) -> dict[str, list[dict]]:
        """Every result Tune recorded, per trial id, in order (from each trial's result.json)."""
        return tune_result_rows(list((self.storage / self.name).glob("*/result.json")))

    def persisted_trials(self) -> dict[str, dict]:
        """Each trial's status and last result in Tune's saved experiment state: what a restore starts from.

        Read as plain JSON (the state's pickled parts are left alone); {} while the file is being written."""
        states = sorted((self.storage / self.name).glob("experiment_state-*.json"))  # names sort by time
        if not states:
            return {}
        try:
            trials = {}
            for trial_json, metadata_json in json.loads(states[-1].read_text())["trial_data"]:
                trial, metadata = json.loads(trial_json), json.loads(metadata_json)
                trials[trial["trial_id"]] = {"status": trial["status"],
                                             "last_result": metadata.get("last_result") or {}}
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return trials

    def checkpoint_step(self, trial_id: str, checkpoint_dir_name: str) -> int:
        """The optimiser step a checkpoint holds, from its own contract.json."""
        contract = self.storage / self.name / f"train_baseline_{trial_id}" / checkpoint_dir_name / "contract.json"
        return int(json.loads(contract.read_text())["iteration"])

    def cleanup(self) -> None:
        for marker in self.markers:
            stop_marked(MARKER, marker)
        for directory in self.temp_dirs:
            shutil.rmtree(directory, ignore_errors=True)


def _check_complete_record(sweep: Sweep) -> dict:
    """One FINISHED parent, one child run per trial (none RUNNING), every step logged once."""
    from mlflow import MlflowClient

    client = MlflowClient(sweep.uri)
    experiment_id = client.get_experiment_by_name("scoliotune").experiment_id
    parents = client.search_runs([experiment_id], "tags.`scolio.role` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [p.info.status for p in parents]
    children = client.search_runs([experiment_id], "tags.`scolio.role` = 'trial'")
    trial_dirs = sorted(p.name for p in (sweep.storage / sweep.name).glob("train_baseline_*"))
    assert len(trial_dirs) == NUM_TRIALS, trial_dirs
    assert len(children) == NUM_TRIALS, [(c.info.run_name, c.info.status) for c in children]
    assert sorted(f"train_baseline_{c.data.tags['ray.trial_id']}" for c in children) == trial_dirs
    for child in children:
        assert child.info.status in ("FINISHED", "KILLED"), (child.info.run_name, child.info.status)
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/macro_f1")]
        assert steps == list(range(1, len(steps) + 1)) and steps, (child.info.run_name, steps)
    # The confirmation's one re-training: a child of the same parent with its own role, finished once.
    confirms = client.search_runs([experiment_id], "tags.`scolio.role` = 'confirmation'")
    assert [(c.info.status, c.data.tags["mlflow.parentRunId"], c.data.params["train.seed"]) for c in confirms] == [
        ("FINISHED", parents[0].info.run_id, "1")]
    assert parents[0].data.tags["scolio.selected_run_id"] == confirms[0].info.run_id
    return {"parent": parents[0], "children": {c.data.tags["ray.trial_id"]: c for c in children}}


def _span(steps: list[int]) -> str:
    if not steps:
        return "none"
    if steps == list(range(steps[0], steps[-1] + 1)):
        return f"{steps[0]}..{steps[-1]}"
    return str(steps)


def _check_resumed_not_rerun(sweep: Sweep, before: dict[str, list[dict]], at_kill: dict[str, dict],
                             resumed_from: dict[str, tuple[str, int]]) -> list[str]:
    """After the driver kill during the search: a trial Tune had saved as finished executed no step again,
    and every other trial's first executed step was its saved checkpoint's step + 1 (step 1 when it had no
    checkpoint), then every later step once. With eval_every 1 a trial's result.json lists the steps it ran;
    the rows the resumed sweep appended are those not in the copy taken at the kill."""
    def key(row: dict) -> tuple:
        return row["pid"], row["timestamp"], row["training_iteration"], row["iteration"]

    after, evidence = sweep.results_by_trial(), []
    for trial_id, state in sorted(at_kill.items()):
        old_rows = before.get(trial_id, [])
        seen = {key(row) for row in old_rows}
        new_rows = [row for row in after.get(trial_id, []) if key(row) not in seen]
        steps_before, steps_after = [r["iteration"] for r in old_rows], [r["iteration"] for r in new_rows]
        line = f"{trial_id}: {state['status']} at the kill, steps before {_span(steps_before)}"
        if state["status"] == "TERMINATED":
            line += f"; after the restore: {_span(steps_after)}"
            evidence.append(line)
            steps = [row["iteration"] for row in after[trial_id]]
            assert steps_after == [], f"a finished trial ran again: {line}"
            assert len(steps) == len(set(steps)) and steps[-1] == sweep.iterations, (trial_id, steps)
            continue
        name, step = resumed_from.get(trial_id, (None, 0))
        line += f"; saved checkpoint {name} (step {step}); after the restore: {_span(steps_after)}"
        evidence.append(line)
        # A restart from scratch would show step 1 here (and MLflow would not notice: it skips logged steps).
        assert steps_after == list(range(step + 1, sweep.iterations + 1)), line
        if new_rows:
            first = new_rows[0]
            assert first["iterations_since_restore"] == 1 and first["pid"] not in {r["pid"] for r in old_rows}, first
            # Tune's own counter agrees on where it restored: the saved last result's training_iteration + 1.
            assert first["training_iteration"] == state["last_result"].get("training_iteration", 0) + 1, (line, first)
    return evidence


@pytest.fixture(scope="module")
def crash_data(synth_root, tmp_path_factory) -> tuple[Path, Path]:
    """The synthetic release plus 5 copies of each test sequence under new ids, and a partition listing
    them as TEST_SET: the one-shot test then runs for seconds, long enough to be killed inside it."""
    root = tmp_path_factory.mktemp("crash") / "data"
    shutil.copytree(synth_root, root)
    partition = json.loads((root / "Scoliosis1K_112.json").read_text())
    clones = []
    for modality in ("Scoliosis1K-pose-pkl", "Scoliosis1K-sil-pkl"):
        for copy in range(5):
            for pos, seq_id in enumerate(partition["TEST_SET"]):
                new_id = f"{90000 + copy * 1000 + pos:05d}"
                (pkl,) = (root / modality / seq_id).glob("*/*/*.pkl")
                target = root / modality / new_id / pkl.relative_to(root / modality / seq_id)
                target.parent.mkdir(parents=True)
                shutil.copyfile(pkl, target)
                if modality == "Scoliosis1K-pose-pkl":
                    clones.append(new_id)
    big = root / "Scoliosis1K_112_bigtest.json"
    big.write_text(json.dumps({"TRAIN_SET": partition["TRAIN_SET"], "TEST_SET": partition["TEST_SET"] + clones}))
    return root, big


# ------------------------------------------------------------------------------------------- tests
def test_a_rerun_reuses_only_a_completed_latest_look():
    from scolio_core.errors import LockboxError
    from scolio_core.evaluation.lockbox import decide

    def look(number: int, state: str) -> dict:  # one look as the ledger merges it (opened, then completed)
        return {"look": number, "study": "s", "state": state, "checkpoint_hash": "aaa", "reopened": number > 1}

    def decision(*looks: dict):
        return decide(list(looks), study="s", standalone=False, reopen=False,
                      reopen_flag="--reopen-test")

    assert decision().action == "look"
    with pytest.raises(LockboxError, match="never completed"):
        decision(look(1, "opened"))  # crashed during the look: it may have been seen
    assert decision(look(1, "completed")).action == "reuse"
    # A reopened look that completed is reused (it stays labelled reopened); no third look is needed.
    reused = decision(look(1, "opened"), look(2, "completed"))
    assert reused.action == "reuse" and reused.reopened and reused.recorded["look"] == 2
    # A completed look followed by a reopened one that never completed: refuse, do not fall back silently.
    with pytest.raises(LockboxError, match="--reopen-test"):
        decision(look(1, "completed"), look(2, "opened"))


@pytest.mark.slow
def test_killed_worker_and_driver_killed_anywhere_resume_to_one_record_and_one_look(crash_data, tmp_path):
    root, partition = crash_data
    # 16 steps per trial, each a report: a trial killed after its first report has most of its budget left,
    # and the driver kill's window (an interrupted trial at steps 2..12) stays wide.
    sweep = Sweep(tmp_path / "sweep", "crash-resume", root, partition, iterations=16)
    try:
        first = sweep.start()

        # 1. A trial's worker process dies right after its first report (and checkpoint).
        def first_report():
            rows = [rows[0] for rows in sweep.results_by_trial().values() if rows and not rows[0].get("done")]
            rows = [row for row in rows if _alive(row["pid"])]
            return min(rows, key=lambda row: row["timestamp"]) if rows else None

        victim = sweep.wait_for(first, "a trial's first report", first_report)
        os.kill(victim["pid"], signal.SIGKILL)
        # (.get: Tune's periodic copy of result.json into storage can be caught half-written, even empty.)
        after = sweep.wait_for(first, "the killed trial's next report", lambda: [
            row for row in sweep.results_by_trial().get(victim["trial_id"], [])[1:] if row["pid"] != victim["pid"]])
        # Retried in a new worker from the checkpoint of the last report the killed one made, not from scratch
        # (polling may see the first report late, so the victim can have reported again before it died).
        last = max(row["training_iteration"] for row in sweep.wait_for(first, "the killed trial's rows", lambda: [
            row for row in sweep.results_by_trial().get(victim["trial_id"], []) if row["pid"] == victim["pid"]]))
        assert after[0]["training_iteration"] == last + 1 and after[0]["iterations_since_restore"] == 1, after[0]
        assert after[0]["iteration"] == last + 1, after[0]  # optimiser steps continue (eval_every 1)

        # 2. The driver dies during the search, once Tune's saved state (what a restore starts from) holds a
        # finished trial and one interrupted a few steps from either end (the margin covers the kill's latency).
        def finished_and_interrupted():
            trials = sweep.persisted_trials()
            done = [t for t, state in trials.items() if state["status"] == "TERMINATED"]
            going = [t for t, state in trials.items() if state["status"] != "TERMINATED"
                     and 2 <= state["last_result"].get("training_iteration", 0) <= sweep.iterations - 4]
            return done and going

        sweep.wait_for(first, "a finished and an interrupted trial in Tune's saved state", finished_and_interrupted)
        sweep.kill(first)
        tags = sweep.parent_tags()
        assert STATE_TAG not in tags and "scolio.selected_trial" not in tags  # mid-search: nothing selected
        before, at_kill = sweep.results_by_trial(), sweep.persisted_trials()
        # The checkpoint each interrupted trial must resume from: its saved last result's (every report
        # carries one), read now, before the resumed sweep prunes old checkpoints (num_to_keep).
        resumed_from = {t: (state["last_result"]["checkpoint_dir_name"],
                            sweep.checkpoint_step(t, state["last_result"]["checkpoint_dir_name"]))
                        for t, state in at_kill.items()
                        if state["status"] != "TERMINATED" and state["last_result"].get("checkpoint_dir_name")}
        assert any(state["status"] == "TERMINATED" for state in at_kill.values()), at_kill
        assert any(1 <= step < sweep.iterations for _, step in resumed_from.values()), (resumed_from, at_kill)

        # 3. Re-run; the driver dies during the one-shot test.
        second = sweep.start()
        sweep.wait_for(second, "the opened lockbox", lambda: sweep.parent_tags().get(STATE_TAG) == "opened",
                       every=0.02)
        sweep.kill(second)
        tags = sweep.parent_tags()
        assert "scolio.lockbox.entry.1.completed" not in tags, "killed too late: the test had already completed"
        assert tags[LOOKS_TAG] == "1"
        # The search was complete when the test opened: resumed, not re-run, counted from the steps each trial
        # reported (see _check_resumed_not_rerun).
        evidence = _check_resumed_not_rerun(sweep, before, at_kill, resumed_from)
        print("\nsteps per trial around the driver kill:\n  " + "\n  ".join(evidence))

        # 4. Re-run: the search is complete, but the opened look may have been seen: refused, with the way out.
        code, output = sweep.run()
        assert code == 2, output[-4000:]
        errors = [line for line in output.splitlines() if "error:" in line]
        assert len(errors) == 1 and "--reopen-test" in errors[0] and "never completed" in errors[0], errors
        assert "Traceback" not in output
        assert sweep.parent_tags()[LOOKS_TAG] == "1"  # the refusal took no look

        # 5. Re-run with --reopen-test; the driver dies while writing results (the look is recorded).
        third = sweep.start("--reopen-test")
        sweep.wait_for(third, "the completed reopened test",
                       lambda: "scolio.lockbox.entry.2.completed" in sweep.parent_tags(), every=0.02)
        assert third.poll() is None, "the driver finished before it could be killed while writing results"
        sweep.kill(third)

        # 6. Re-run the plain command: completes, reusing the recorded (reopened) look instead of a third.
        code, output = sweep.run()
        assert code == 0, output[-4000:]
        assert "one-shot test already recorded" in output and "not re-evaluated" in output, output[-4000:]
        assert "REOPENED test" in output
        record = _check_complete_record(sweep)
        tags = record["parent"].data.tags
        assert tags[LOOKS_TAG] == "2" and tags["scolio.test.reopened"] == "true"
        assert sorted(k for k in tags if k.startswith("scolio.lockbox.entry.")) == [
            "scolio.lockbox.entry.1.opened", "scolio.lockbox.entry.2.completed", "scolio.lockbox.entry.2.opened"]
        assert json.loads(tags["scolio.lockbox.entry.2.completed"])["reopened"] is True
        assert record["parent"].data.metrics["test/reopened"] == 1.0
        # The reopened look is labelled in the rebuilt results, not only in MLflow: summary and leaderboard.
        results = sweep.results / sweep.name
        summary = (results / "summary.md").read_text()
        assert "**REOPENED test** of the winner (REOPENED: not a clean one-shot estimate)" in summary, summary
        assert "**one-shot test**" not in summary, summary
        with open(results / "leaderboard.csv", newline="") as handle:
            board = list(csv.DictReader(handle))
        assert [row["split"] for row in board] == ["val"] * NUM_TRIALS + ["val, confirmation seed 1",
                                                                          "REOPENED test"], board
        assert "| REOPENED test |" in (results / "leaderboard.md").read_text()
        # The killed trial's child run continued (same run, marked as restarted, error kept), not a duplicate.
        child = record["children"][victim["trial_id"]]
        assert child.data.tags["scolio.restarts"] == "1" and child.data.tags.get("scolio.error")
    finally:
        sweep.cleanup()
