"""`scolio report`: results rebuilt from a real (sqlite) MLflow store written the way a sweep writes it.

`make_sweep` builds a parent run + 4 child runs (FINISHED, KILLED by early stopping, FINISHED, FAILED) with
per-step val metrics, a checkpoint artifact with contract.json on the winner, and real lockbox ledger
entries (scolio_core.tracking.ledger.ParentRunLog) on the parent. tests/test_audit.py reuses it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scolio_core.config import ExperimentConfig, InputConfig
from scolio_core.errors import ConfigError

EXPERIMENT = "scoliotune"
# trial id -> (status, stopped_by, searched values, val macro-F1 per evaluation)
TRIALS = {
    "t1": ("FINISHED", None, {"input.representation": "body-only", "input.sigma": 4.0, "train.lr": 0.1},
           [0.30, 0.50, 0.62, 0.58]),
    "t2": ("KILLED", "scheduler", {"input.representation": "full-body", "input.sigma": 10.0, "train.lr": 0.02},
           [0.20, 0.35]),
    "t3": ("FINISHED", None, {"input.representation": "head-lite", "input.sigma": 7.0, "train.lr": 0.05},
           [0.40, 0.50, 0.55, 0.57]),
    "t4": ("FAILED", None, {"input.representation": "body-only", "input.sigma": 2.0, "train.lr": 0.2}, [0.10]),
}
BEST = "t1"
SEARCH = {"input.representation": "{'choice': ['full-body', 'body-only', 'head-lite']}",
          "input.sigma": "{'uniform': [2.0, 12.0]}", "train.lr": "{'loguniform': [0.02, 0.2]}"}
ITERATIONS_PER_EVAL = 30


def _split():
    from scolio_core.data.splits import Split

    return Split("Scoliosis1K_118", train=("00001", "00002", "00003", "00004"), val=("00005", "00006"),
                 test=("00007", "00008", "00009", "00010", "00011", "00012"))


def _test_metrics(y_true, y_pred) -> dict:
    from scolio_core.training.metrics import (
        bootstrap_ci,
        classification_metrics,
        flatten_metrics,
    )

    metrics = flatten_metrics(classification_metrics(y_true, y_pred), "test")
    # test/<name>/ci_low, test/<name>/ci_high: the lockbox's spelling, the one the report reads
    metrics.update(flatten_metrics(bootstrap_ci(y_true, y_pred, n_resamples=200, seed=0), "test"))
    return metrics


def make_sweep(tracking_uri: str, workdir: Path, sweep: str, *, looks: int = 1, select: str = BEST,
               selection_split: str = "val", tested_trainval: str | None = None) -> dict:
    """Write one sweep into the store; returns {"parent": run id, "children": {trial id: run id}}."""
    import torch
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking.ledger import ParentRunLog
    from scolio_core.training.checkpoint import checkpoint_hash, write_checkpoint

    torch.set_num_threads(1)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        EXPERIMENT, artifact_location=(workdir / "mlartifacts").as_uri())
    split = _split()
    trainval = split.trainval()
    parent = client.create_run(experiment_id, run_name=sweep, tags={
        "scolio.sweep": sweep, "scolio.role": "parent", "scolio.profile": "smoke", "scolio.metric": "val/macro_f1",
        "scolio.mode": "max", "scolio.selection_split": selection_split, "scolio.split_fingerprint": split.fingerprint,
        "scolio.trainval_fingerprint": trainval.fingerprint, "scolio.partition": split.partition,
        "scolio.oracle_macro_f1": "0.91"}).info.run_id
    client.log_batch(parent, params=[Param(f"search.{k}", v) for k, v in SEARCH.items()]
                     + [Param("profile.num_samples", "4")])
    children = {}
    for trial_id, (status, stopped_by, values, scores) in TRIALS.items():
        config = ExperimentConfig.from_dict({"model.width": 16, "train.iterations": 120, **values})
        tags = {"scolio.sweep": sweep, "scolio.role": "trial", "ray.trial_id": trial_id,
                "mlflow.parentRunId": parent}
        if stopped_by:
            tags["scolio.stopped_by"] = stopped_by
        run_id = client.create_run(experiment_id, run_name=f"trainable_{trial_id}", tags=tags).info.run_id
        metrics = []
        for step, score in enumerate(scores, start=1):
            metrics += [Metric("val/macro_f1", score, 1000 + step, step),
                        Metric("val/accuracy", score + 0.1, 1000 + step, step),
                        Metric("iteration", ITERATIONS_PER_EVAL * step, 1000 + step, step),
                        Metric("train/loss", 2.0 / step, 1000 + step, step)]
        client.log_batch(run_id, metrics=metrics,
                         params=[Param(k, str(v)) for k, v in config.to_flat().items()],
                         tags=[RunTag("scolio.best_checkpoint", f"/ray/{trial_id}/checkpoint_best")])
        client.set_terminated(run_id, status=status)
        children[trial_id] = run_id

    winner = children[select]
    checkpoint = write_checkpoint(workdir / f"{sweep}_ckpt", config=ExperimentConfig(),
                                  model_state={"w": torch.zeros(2)}, split=trainval, pav_stats=None, iteration=90)
    client.log_artifacts(winner, str(checkpoint), artifact_path="checkpoint")
    for key, value in {"scolio.selected_trial": select, "scolio.selected_run_id": winner,
                       "scolio.selected_checkpoint": f"/ray/{select}/checkpoint_best"}.items():
        client.set_tag(parent, key, value)

    ledger = ParentRunLog(tracking_uri, parent)
    y_true = [0, 0, 1, 2, 2, 2]
    predictions = [[0, 1, 1, 2, 2, 0], [0, 0, 1, 2, 2, 2]]
    for attempt in range(1, looks + 1):
        entry = {"attempt": attempt, "reopened": attempt > 1, "checkpoint": str(checkpoint),
                 "checkpoint_hash": checkpoint_hash(checkpoint), "split_fingerprint": split.fingerprint,
                 "trainval_fingerprint": tested_trainval or trainval.fingerprint, "partition": split.partition,
                 "n_test": len(split.test), "contract_overrides": [], "code_version": "0.1.0",
                 "git_commit": "unknown", "time": f"2025-01-0{attempt}T00:00:00+00:00"}
        ledger.append({**entry, "state": "opened"})
        metrics = _test_metrics(y_true, predictions[(attempt - 1) % 2])
        metrics["test/reopened"] = float(attempt > 1)
        ledger.append({**entry, "state": "completed", "metrics": metrics, "time_completed": entry["time"]})
    client.set_terminated(parent, status="FINISHED")
    return {"parent": parent, "children": children}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    sweeps = {"clean": make_sweep(uri, workdir, "clean"), "reopened": make_sweep(uri, workdir, "reopened", looks=2)}
    return uri, sweeps


def _search_children(uri: str, parent: str) -> pd.DataFrame:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[EXPERIMENT],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    finally:
        mlflow.set_tracking_uri(previous)


def test_leaderboard_rows_match_the_mlflow_record(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking.report import build_report

    uri, sweeps = store
    paths = build_report(uri, "clean", tmp_path / "results", experiment=EXPERIMENT)
    board = pd.read_csv(paths.leaderboard_csv)
    trials = board[board["split"] == "val"]
    runs = _search_children(uri, sweeps["clean"]["parent"])
    assert len(trials) == len(runs) == len(TRIALS)
    assert set(trials["run_id"]) == set(runs["run_id"])
    client = MlflowClient(uri)
    for _, run in runs.iterrows():
        row = trials[trials["run_id"] == run["run_id"]].iloc[0]
        history = client.get_metric_history(run["run_id"], "val/macro_f1")
        assert row["macro_f1"] == pytest.approx(max(m.value for m in history))
        assert row["evaluations"] == len(history)
        assert row["iterations"] == ITERATIONS_PER_EVAL * len(history)
        assert row["input.sigma"] == pytest.approx(float(run["params.input.sigma"]))
        assert row["status"].split()[0] == run["status"]
    # sorted by best val macro-F1, winner first; accuracy is taken at the best step, not the last one
    assert list(trials["trial_id"]) == ["t1", "t3", "t2", "t4"]
    best = trials.iloc[0]
    assert (best["best_step"], best["accuracy"]) == (3, pytest.approx(0.72))
    assert dict(zip(trials["trial_id"], trials["status"])) == {
        "t1": "FINISHED", "t2": "KILLED by early stopping", "t3": "FINISHED", "t4": "FAILED"}
    # the searched params come from the parent's search.<key> params, not from all 50+ config params
    assert {"input.representation", "input.sigma", "train.lr"} <= set(board.columns)
    assert "model.width" not in board.columns


def test_one_test_row_for_the_winner_only(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking.report import build_report

    uri, sweeps = store
    board = pd.read_csv(build_report(uri, "clean", tmp_path / "clean").leaderboard_csv)
    tests = board[board["split"] != "val"]
    assert len(tests) == 1
    row = tests.iloc[0]
    parent = MlflowClient(uri).get_run(sweeps["clean"]["parent"]).data.metrics
    assert (row["split"], row["trial_id"]) == ("one-shot test", BEST)
    assert row["macro_f1"] == pytest.approx(parent["test/macro_f1"])
    assert row["macro_f1_ci_low"] == pytest.approx(parent["test/macro_f1/ci_low"])
    assert row["macro_f1_ci_low"] <= row["macro_f1"] <= row["macro_f1_ci_high"]
    reopened = pd.read_csv(build_report(uri, "reopened", tmp_path / "reopened").leaderboard_csv)
    assert list(reopened.loc[reopened["split"] != "val", "split"]) == ["REOPENED test"]


def test_report_writes_plots_and_summary(store, tmp_path):
    from scolio_core.tracking.report import build_report

    uri, _ = store
    paths = build_report(uri, "clean", tmp_path / "out")
    assert set(paths.plots) == {"val_f1_by_param", "learning_curves", "test_confusion_matrix"}
    for path in paths.plots.values():
        assert path.suffix == ".png" and path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = paths.summary_md.read_text()
    assert "# Sweep clean" in summary and "one-shot test" in summary and "95 % CI" in summary
    assert "FINISHED: 2" in summary and "KILLED by early stopping: 1" in summary and "FAILED: 1" in summary
    assert "severity-oracle macro-F1 on the test ids (synthetic data; the reference a test number is compared with): 0.91" in summary
    assert "VERDICT: CLEAN" in summary
    table = paths.leaderboard_md.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # minus the header
    assert len(rows) == len(TRIALS) + 1 and "| one-shot test |" in rows[-1]


def _write_pose(root: Path, seq_id: str, poses: np.ndarray) -> None:
    folder = root / "Scoliosis1K-pose-pkl" / seq_id / "positive" / "000_180"
    folder.mkdir(parents=True)
    with open(folder / "000_180.pkl", "wb") as handle:
        pickle.dump(poses, handle)


def _walker(frames: int = 8) -> np.ndarray:
    """A stick figure in image pixels whose arms swing; joint 9 is missing (0) in frame 2."""
    base = np.array([[50, 20], [48, 18], [52, 18], [46, 19], [54, 19], [42, 35], [58, 35], [38, 52], [62, 52],
                     [36, 68], [64, 68], [45, 75], [55, 75], [44, 100], [56, 100], [43, 125], [57, 125]], float)
    poses = np.zeros((frames, 17, 3), np.float32)
    for t in range(frames):
        poses[t, :, :2] = base + [0, 0]
        poses[t, 7:11, 0] += 4 * np.sin(t / 2)
        poses[t, :, 2] = 0.9
    poses[2, 9] = 0
    return poses


def test_skeleton_preview_renders_each_setting(tmp_path):
    import matplotlib.image
    import torch

    from scolio_core.tracking.plots import skeleton_preview

    torch.set_num_threads(1)
    poses = _walker()
    one = skeleton_preview(poses, [("a", InputConfig(sigma=4.0))], tmp_path / "one.png", frames=4)
    two = skeleton_preview(poses, [("a", InputConfig(sigma=4.0)), ("b", InputConfig(representation="full-body",
                                                                                     sigma=10.0))],
                           tmp_path / "two.png", frames=4)
    image_one, image_two = matplotlib.image.imread(one), matplotlib.image.imread(two)
    assert image_two.shape[0] > image_one.shape[0]  # one strip per setting
    assert image_one[..., :3].std() > 0.05  # something was drawn
    with pytest.raises(ConfigError, match="silhouette"):
        skeleton_preview(poses, [("s", InputConfig(representation="silhouette"))], tmp_path / "s.png")


def test_report_adds_previews_when_data_is_found(store, tmp_path, monkeypatch):
    import torch

    from scolio_core.data.release import read_hook
    from scolio_core.tracking.report import build_report

    torch.set_num_threads(1)
    uri, _ = store
    _write_pose(tmp_path / "data", "00007", _walker())  # a test id of _split(): must never be read
    _write_pose(tmp_path / "data", "00003", _walker())
    reads: list[str] = []
    with read_hook(lambda seq_id, path: reads.append(seq_id)):
        paths = build_report(uri, "clean", tmp_path / "with", data_root=tmp_path / "data")
    assert paths.plots["skeleton_previews"].stat().st_size > 5000
    assert reads == ["00003"]
    missing = build_report(uri, "clean", tmp_path / "without", data_root=tmp_path / "nowhere")
    assert "skeleton_previews" not in missing.plots
    assert any("skeleton_previews.png skipped" in note for note in missing.notes)


def test_cli_report_prints_files_and_names_unknown_sweeps(store, tmp_path, capsys):
    from scolio_core.cli.main import main

    uri, _ = store
    out = tmp_path / "cli"
    assert main(["report", "clean", "--tracking-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'leaderboard.csv'}" in printed and "| t1 |" in printed
    assert main(["report", "nope", "--tracking-uri", uri, "--out", str(out)]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err
    assert main(["report", "clean", "--tracking-uri", f"sqlite:///{tmp_path / 'absent.db'}"]) == 2
    assert not (tmp_path / "absent.db").exists()  # reading never creates a store


def test_markdown_table_blanks_missing_values():
    from scolio_core.tracking.report import markdown_table

    table = markdown_table(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x|y", None]}))
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | x\\|y |", "|  |  |"]


def test_searched_params_from_parent_or_from_what_varies():
    from types import SimpleNamespace

    from scolio_core.tracking.record import _searched_params

    def trial(**params):
        return SimpleNamespace(params={"model.width": 16, **params})

    trials = [trial(**{"input.sigma": 4.0, "train.lr": 0.1}), trial(**{"input.sigma": 8.0, "train.lr": 0.1})]
    flattened = SimpleNamespace(data=SimpleNamespace(params={"search.input.sigma.uniform": "[2.0, 12.0]",
                                                             "search.train.lr.loguniform": "[0.01, 0.1]"}))
    assert _searched_params(flattened, trials) == ["input.sigma", "train.lr"]
    unnamed = SimpleNamespace(data=SimpleNamespace(params={"profile.num_samples": "2"}))
    assert _searched_params(unnamed, trials) == ["input.sigma"]
