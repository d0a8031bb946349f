"""The partition table (sweeps/table.py): the stand-in's four partition files, the mean/CI arithmetic, the
refusals before compute, and one real run over two partitions that is killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _processes import stop_marked
from sklearn.metrics import confusion_matrix

from scolio_core.data.synth import synthesize, write_partition
from scolio_core.errors import ConfigError, DataError
from scolio_core.training.metrics import classification_metrics, metrics_from_confusion
from scolio_sweep.settings.partitions import parse_partitions
from scolio_sweep.studies.table import (
    PartitionResult,
    build_table,
    mean_ci,
    recipe_from_profile,
    table_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
MARKER = "SCOLIO_TEST_TABLE"


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stand_in")
    synthesize(root, num_sequences=240, frames=2, train_ratio=(1, 1, 8), seed=0, progress=False)
    return root


def _classes(root: Path, ids: list[str]) -> Counter:
    meta = json.loads((root / "synth_meta.json").read_text())["sequences"]
    return Counter(meta[i]["class"] for i in ids)


def test_the_stand_in_gets_four_release_style_partitions_of_the_same_sequences(stand_in):
    every = set(json.loads((stand_in / "synth_meta.json").read_text())["sequences"])
    negative_share = []
    for ratio in ((1, 1, 2), (1, 1, 4), (1, 1, 8), (1, 1, 16)):
        path = write_partition(stand_in, ratio)
        split = json.loads(path.read_text())
        train, test = set(split["TRAIN_SET"]), set(split["TEST_SET"])
        assert not train & test and train | test == every, path.name
        counts = _classes(stand_in, split["TRAIN_SET"])
        assert min(counts.values()) >= 6 and min(_classes(stand_in, split["TEST_SET"]).values()) >= 3
        negative_share.append(counts["negative"] / len(train))
        if ratio != (1, 1, 8):  # the carve follows the ratio where the floors allow it
            assert abs(counts["negative"] / counts["positive"] - ratio[2]) <= max(1.0, 0.25 * ratio[2]), counts
            assert write_partition(stand_in, ratio).read_text() == path.read_text()  # deterministic
    assert negative_share == sorted(negative_share) and negative_share[0] < negative_share[-1]


def test_write_partition_needs_a_stand_in(tmp_path):
    with pytest.raises(DataError, match="synth_meta.json"):
        write_partition(tmp_path, (1, 1, 4))


@pytest.mark.parametrize("text, message", [("112,115x", "115x"), ("12", "'12'"), ("112,112", "twice"),
                                           ("110", "'110'")])
def test_bad_partitions_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_partitions(text)


def test_the_release_names_map_to_their_ratios():
    assert parse_partitions("112,114,118,1116") == [("112", (1, 1, 2)), ("114", (1, 1, 4)), ("118", (1, 1, 8)),
                                                    ("1116", (1, 1, 16))]


def test_metrics_from_a_recorded_confusion_matrix_match_scikit_learn():
    rng = np.random.default_rng(3)
    for _ in range(20):
        y_true, y_pred = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        y_pred[:5] = 0  # some class is sometimes never predicted: the zero_division path
        direct = classification_metrics(y_true, y_pred)
        from_cm = metrics_from_confusion(confusion_matrix(y_true, y_pred, labels=[0, 1, 2]))
        for name in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
            assert from_cm[name] == pytest.approx(direct[name])
        assert from_cm["sensitivity/positive"] == pytest.approx(direct["sensitivity"]["positive"])
        assert from_cm["specificity/negative"] == pytest.approx(direct["specificity"]["negative"])
        assert from_cm["refer/sensitivity"] == pytest.approx(direct["refer"]["sensitivity"])


def test_mean_ci_is_a_t_interval_over_seeds():
    mean, low, high = mean_ci([0.5, 0.6, 0.7])
    # t(0.975, 2) = 4.303; sd 0.1; n 3
    assert mean == pytest.approx(0.6) and high - mean == pytest.approx(4.3027 * 0.1 / np.sqrt(3), rel=1e-3)
    assert mean - low == pytest.approx(high - mean)
    assert mean_ci([0.4, 0.4]) == (0.4, 0.4, 0.4)
    assert mean_ci([0.99, 0.5, 0.98])[2] == 1.0  # clipped to the metric's range
    single = mean_ci([0.3])
    assert single[0] == 0.3 and np.isnan(single[1]) and np.isnan(single[2])


def test_the_table_shows_counts_and_mean_with_interval(tmp_path):
    from scolio_sweep.settings.profile import load_profile

    def result(token, scores):
        rows = [{"seed": s, "val/macro_f1": 0.5, **{k: v for k in ("accuracy", "macro_precision", "macro_recall",
                                                                    "sensitivity/positive", "specificity/negative",
                                                                    "refer/sensitivity", "refer/specificity")},
                 "macro_f1": v} for s, v in enumerate(scores)]
        return PartitionResult(partition=token, sweep=f"t-p{token}", parent_run_id="x", per_seed=rows,
                               train_counts={"positive": 9, "neutral": 9, "negative": 18},
                               test_counts={"positive": 30, "neutral": 4, "negative": 20}, look=1, reused=False,
                               seen_before=0)

    table, per_seed = build_table([result("112", [0.5, 0.7]), result("1116", [0.4, 0.4])])
    assert list(table["partition"]) == ["1:1:2", "1:1:16"] and list(table["seeds"]) == [2, 2]
    assert table.loc[0, "macro_f1_mean"] == pytest.approx(0.6) and table.loc[0, "macro_f1_ci_low"] < 0.5
    assert len(per_seed) == 4
    text = table_markdown(table, "table_smoke", load_profile("table_smoke"), tmp_path, synthetic=True)
    assert "| 1:1:2 | 9/9/18 | 30/4/20 | 2 |" in text and "0.600 [" in text and "0.400 [0.400, 0.400]" in text
    header = next(line for line in text.splitlines() if line.startswith("| Partition"))
    assert header.count("|") == 12 and "refer sens." in header  # 4 + 7 metric columns (no duplicate)


def test_a_recipe_profile_that_searches_is_refused():
    with pytest.raises(ConfigError, match="searches input.representation"):
        recipe_from_profile("smoke")


def test_a_bad_table_command_exits_2_with_one_line_before_ray_starts(tmp_path):
    probe = (f"import sys; sys.argv[0] = 'table'; sys.path.insert(0, {str(ROOT / 'sweeps')!r}); from table import main; code = main(sys.argv[1:]); "
             "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, "--recipe", "smoke", "--seeds", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("partition table: error: --recipe smoke") and "searches" in lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


# ------------------------------------------------------------------------------------ the real command
def _start(workdir: Path, marker: str, log: Path, args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update({MARKER: marker, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    temp_dir = f"/tmp/st{marker[:6]}"  # short: Ray's socket paths are length-limited
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, str(ROOT / "tests" / "_sweep_driver.py"), "--script", "table",
                                 "--ray-temp-dir", temp_dir, "--", *args], env=env, cwd=workdir, stdout=handle,
                                stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_the_table_resumes_after_a_killed_driver_and_opens_each_test_set_once(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--recipe", "table_smoke", "--partitions", "112,1116", "--seeds", "2", "--name", "tbl",
            "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray_results"),
            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
            # a third of the recipe's training: the kill, resume and lockbox checks below do not need learning
            "--set", "train.iterations=8", "--set", "train.eval_every=4", "--set", "train.milestones=[6]"]
    markers = [uuid.uuid4().hex, uuid.uuid4().hex]
    try:
        first_log = tmp_path / "first.log"
        driver = _start(tmp_path, markers[0], first_log, args)
        deadline = time.monotonic() + 400
        while "partition 112:" not in first_log.read_text(errors="replace"):
            assert driver.poll() is None, first_log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "the first partition did not finish in 400 s"
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)  # between partitions: the second one's trials may be starting
        driver.wait()
        assert stop_marked(MARKER, markers[0]) == []
        assert not (tmp_path / "results" / "tbl" / "table.md").exists()

        second_log = tmp_path / "second.log"
        driver = _start(tmp_path, markers[1], second_log, args)
        assert driver.wait(timeout=400) == 0, second_log.read_text(errors="replace")[-4000:]
        output = second_log.read_text(errors="replace")
    finally:
        for marker in markers:
            stop_marked(MARKER, marker)

    assert "partition 112: test macro-F1 per seed" in output and "(recorded look reused)" in output
    assert "partition 1116: test macro-F1 per seed" in output
    table = pd.read_csv(tmp_path / "results" / "tbl" / "table.csv")
    assert list(table["partition"]) == ["1:1:2", "1:1:16"] and list(table["seeds"]) == [2, 2]
    assert (table[["test_positive", "test_neutral", "test_negative"]] >= 3).all().all()
    assert (tmp_path / "results" / "tbl" / "table.png").stat().st_size > 0
    assert "| 1:1:16 |" in (tmp_path / "results" / "tbl" / "table.md").read_text()

    client = MlflowClient(uri)
    looks = [e for e in client.search_experiments() if e.name.startswith("scoliotune-lockbox/")]
    # one look per test set (the studies below), numbered across the store: 1 and 2, no re-look after the kill
    assert sorted(int(e.name.rsplit("look-", 1)[1]) for e in looks) == [1, 2]
    recorded = {}
    for experiment in looks:
        opened = json.loads(experiment.tags["scolio.look.opened"])
        completed = json.loads(experiment.tags["scolio.look.completed"])
        assert opened["entry_point"] == "sweeps/table.py" and set(opened["checkpoint_hashes"]) == {"seed0", "seed1"}
        recorded[opened["study"]] = completed["confusion_matrices"]
    assert set(recorded) == {"tbl-p112", "tbl-p1116"}

    experiment_id = client.get_experiment_by_name("scoliotune").experiment_id
    parents = client.search_runs([experiment_id], "tags.`scolio.table` = 'tbl'")
    assert {p.data.tags["scolio.sweep"] for p in parents} == {"tbl-p112", "tbl-p1116"} and len(parents) == 2
    per_seed = pd.read_csv(tmp_path / "results" / "tbl" / "per_seed.csv", dtype={"partition": str})
    for parent in parents:
        sweep = parent.data.tags["scolio.sweep"]
        for seed in (0, 1):
            expected = metrics_from_confusion(recorded[sweep][f"seed{seed}"])["macro_f1"]
            assert parent.data.metrics[f"test/seed{seed}/macro_f1"] == pytest.approx(expected)
            row = per_seed[(per_seed["partition"] == sweep.rsplit("-p", 1)[1]) & (per_seed["seed"] == seed)]
            assert row["macro_f1"].item() == pytest.approx(expected, abs=1e-5)  # the csv keeps 6 digits
        contexts = [tag.value for d in client.get_run(parent.info.run_id).inputs.dataset_inputs for tag in d.tags
                    if tag.key == "mlflow.data.context"]
        assert "test" in contexts
        trials = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert len(trials) == 2
        for trial in trials:
            trial_contexts = {tag.value for d in trial.inputs.dataset_inputs for tag in d.tags
                              if tag.key == "mlflow.data.context"}
            assert trial_contexts == {"training", "validation"}, trial_contexts


@pytest.mark.parametrize("name", ["table_smoke", "table_demo", "table_paper"])
def test_the_table_recipes_are_fixed_configurations(name):
    profile = recipe_from_profile(name)
    config = profile.base_config()
    assert not profile.search and config.input.representation == "body-only" and config.train.lr == 0.1
    # the published defaults: sigma 8 on the 128 canvas, i.e. the same drawing on the CPU profiles' 64 canvas
    assert config.input.sigma * 128 / config.input.canvas_size == 8.0
