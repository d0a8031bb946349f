"""The main job end to end on a real local Ray: the smoke representation sweep, its MLflow record, the
one-shot test, results/ consistent with MLflow, an idempotent re-run, and a finetune sweep from its winner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def run_sweep(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "sweeps" / script), "--cache-dir", str(workdir / "cache"),
               "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--storage-path", str(workdir / "ray_results"),
               "--results-dir", str(workdir / "results"), *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    done = run_sweep("representation.py", workdir, "--profile", "smoke", "--name", "e2e")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir, done


def runs_of(workdir: Path, sweep_name: str) -> tuple[pd.DataFrame, pd.Series]:
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["scoliotune"], filter_string=f"tags.`scolio.sweep` = '{sweep_name}'")
    parents = runs[runs["tags.scolio.role"] == "parent"]
    assert len(parents) == 1
    return runs[runs["tags.scolio.role"] == "trial"], parents.iloc[0]


def test_one_child_run_per_trial_none_running_and_asha_stopped_some(sweep):
    workdir, _ = sweep
    children, parent = runs_of(workdir, "e2e")
    trial_dirs = [p for p in (workdir / "ray_results" / "e2e").iterdir() if p.name.startswith("train_baseline_")]
    assert len(trial_dirs) >= 4
    assert len(children) == len(trial_dirs)
    assert sorted(children["tags.ray.trial_id"]) == sorted(p.name.rsplit("_", 1)[1] for p in trial_dirs)
    assert set(children["status"]) <= {"FINISHED", "KILLED"}
    assert (children["tags.scolio.stopped_by"] == "scheduler").sum() >= 1
    assert parent["status"] == "FINISHED"
    assert len(children) == children["tags.ray.trial_id"].nunique()
    # The parent records the searched space as the profile wrote it.
    assert json.loads(parent["params.search.input.sigma"]) == {"uniform": [1.0, 6.0]}
    assert json.loads(parent["params.search.input.representation"]) == {
        "choice": ["full-body", "body-only", "head-lite", "silhouette"]}
    # The point to evaluate (the published default) ran as exactly one trial, with exactly its values.
    representation = children["params.input.representation"]
    sigma, weight = (pd.to_numeric(children[f"params.input.{k}"]) for k in ("sigma", "joint_weight"))
    assert set(representation) <= {"full-body", "body-only", "head-lite", "silhouette"}
    default = children[(representation == "body-only") & (sigma == 4.0) & (weight == 1.0)
                       & (children["params.loss.class_weighting"] == "plain")]
    assert len(default) == 1
    # The conditional space: skeleton trials sampled the skeleton-map knobs within their ranges; silhouette
    # trials (if TPE drew any) have none logged at all.
    skeleton = representation != "silhouette"
    assert sigma[skeleton].between(1.0, 6.0).all() and weight[skeleton].between(0.25, 2.0).all()
    assert sigma[~skeleton].isna().all() and weight[~skeleton].isna().all()


def test_one_shot_test_recorded_once_on_the_winner_selected_by_val(sweep):
    workdir, done = sweep
    children, parent = runs_of(workdir, "e2e")
    assert parent["tags.scolio.lockbox.evaluations"] == "1"
    assert parent["tags.scolio.lockbox.state"] == "completed"
    assert parent["tags.scolio.selection_split"] == "val"
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    best_val = {row["run_id"]: max(m.value for m in client.get_metric_history(row["run_id"], "val/macro_f1"))
                for _, row in children.iterrows()}
    winner = parent["tags.scolio.selected_run_id"]
    assert best_val[winner] == max(best_val.values())
    assert 0.0 <= parent["metrics.test/macro_f1"] <= 1.0
    assert not any(c.startswith("metrics.test/") and pd.notna(v) for c, v in children.iloc[0].items())
    assert "one-shot test: macro-F1" in done.stdout
    assert "oracle ceiling" in done.stdout


def test_results_agree_with_mlflow(sweep):
    workdir, _ = sweep
    children, parent = runs_of(workdir, "e2e")
    results = workdir / "results" / "e2e"
    for name in ("leaderboard.csv", "leaderboard.md", "learning_curves.png", "val_f1_by_param.png",
                 "test_confusion_matrix.png"):
        assert (results / name).stat().st_size > 0, name
    board = pd.read_csv(results / "leaderboard.csv")
    assert "one-shot" in (results / "leaderboard.md").read_text()
    # One val row per child run, ranked 1..n by its best val macro-F1 as MLflow recorded it ...
    trials, tests = board[board["split"] == "val"], board[board["split"] != "val"]
    assert sorted(trials["run_id"]) == sorted(children["run_id"])
    assert trials["rank"].tolist() == list(range(1, len(children) + 1))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for _, row in trials.iterrows():
        history = client.get_metric_history(row["run_id"], "val/macro_f1")
        assert row["macro_f1"] == pytest.approx(max(m.value for m in history)), row["run_id"]
        # the run's MLflow status, with who stopped it when someone did ("KILLED by ASHA")
        assert row["status"].split()[0] == children.set_index("run_id").at[row["run_id"], "status"]
    assert trials["macro_f1"].is_monotonic_decreasing
    # ... then exactly one test row: the selected winner, with the parent's test score.
    assert len(tests) == 1
    test = tests.iloc[0]
    assert test["split"] == "one-shot test" and pd.isna(test["rank"])
    assert test["run_id"] == parent["tags.scolio.selected_run_id"]
    assert test["macro_f1"] == pytest.approx(parent["metrics.test/macro_f1"])


def test_rerun_reuses_the_sweep_and_does_not_look_at_test_again(sweep):
    workdir, _ = sweep
    before, _ = runs_of(workdir, "e2e")
    again = run_sweep("representation.py", workdir, "--profile", "smoke", "--name", "e2e")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already recorded" in again.stdout
    after, parent = runs_of(workdir, "e2e")
    assert sorted(after["run_id"]) == sorted(before["run_id"])
    assert parent["tags.scolio.lockbox.evaluations"] == "1"


def test_finetune_sweep_from_the_winner(sweep):
    workdir, _ = sweep
    done = run_sweep("finetune.py", workdir, "--from-sweep", "e2e", "--profile", "finetune_smoke", "--name", "e2e-ft")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The study (e2e) already opened its test set with its baseline: the finetune stage is selected on val
    # and reported without a second look.
    assert "baseline val macro-F1" in done.stdout and "no test look in this stage" in done.stdout
    children, parent = runs_of(workdir, "e2e-ft")
    assert len(children) == 2 and "tags.scolio.lockbox.evaluations" not in parent.dropna().index
    assert parent["tags.scolio.study"] == "e2e"
    assert (children["params.train.optimizer"] == "adamw").all()
    _, baseline_parent = runs_of(workdir, "e2e")
    assert parent["tags.scolio.baseline_run"] == baseline_parent["tags.scolio.selected_run_id"]
