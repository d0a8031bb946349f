"""The main job end to end on a real local Ray: the smoke representation sweep, its MLflow record, the
one-shot test, results/ consistent with MLflow, the registered model (loads and predicts as `scolio predict`),
data lineage, an idempotent re-run, and a finetune sweep from its winner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import access_log_reads, read_log_env
from mlflow.tracking import MlflowClient

from scolio_core import names
from scolio_core.tracking import lookups
from scolio_core.tracking.ledger import MlflowLedger
from scolio_sweep.settings.profile import load_profile
from scolio_sweep.stages.finish import choose_final

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def sweep_command(script: str, workdir: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "sweeps" / script), "--cache-dir", str(workdir / "cache"),
            "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--storage-path", str(workdir / "ray_results"),
            "--results-dir", str(workdir / "results"), *args]


def run_sweep(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_command(script, workdir, *args), cwd=workdir, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The smoke sweep (search, then its top 2 confirmed with 2 new seeds, then the one test look), with every
    pkl read of every process it starts logged (conftest.read_log_env) and its driver's pid kept."""
    workdir = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, **read_log_env(workdir / "reads.tsv")}
    command = sweep_command("representation.py", workdir, "--profile", "smoke", "--name", "e2e")
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    stdout, stderr = process.communicate(timeout=900)
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (workdir / "driver.pid").write_text(str(process.pid))
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


def test_one_shot_test_recorded_once_on_the_model_the_confirmation_selected(sweep):
    workdir, done = sweep
    children, parent = runs_of(workdir, "e2e")
    assert parent["tags.scolio.lockbox.evaluations"] == "1"
    assert parent["tags.scolio.lockbox.state"] == "completed"
    assert parent["tags.scolio.selection_split"] == "val"
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")

    def best_val(run_id: str) -> float:
        return max(m.value for m in client.get_metric_history(run_id, "val/macro_f1"))

    # The confirmation's candidates are the search's top 2 configurations by val ...
    confirmation = json.loads(parent[f"tags.{names.TAG_CONFIRMATION}"])
    assert confirmation["seeds"] == [1, 2] and len(confirmation["candidates"]) == 2
    search = {row["tags.ray.trial_id"]: best_val(row["run_id"]) for _, row in children.iterrows()}
    candidates = [row["search_trial"] for row in confirmation["candidates"]]
    assert min(search[c] for c in candidates) >= max(v for t, v in search.items() if t not in candidates) - 1e-9
    assert [row["search_val"] for row in confirmation["candidates"]] == pytest.approx([search[c] for c in candidates])
    # ... each re-trained once per seed as a child run of the sweep tagged as a confirmation of it ...
    confirms = confirmation_runs(workdir, parent["run_id"])
    assert len(confirms) == 4 and set(confirms["status"]) == {"FINISHED"}
    assert sorted(confirms["tags.scolio.confirm.candidate"]) == sorted(candidates * 2)
    means = {}
    for candidate, group in confirms.groupby("tags.scolio.confirm.candidate"):
        assert sorted(group["params.train.seed"].astype(int)) == [1, 2]
        search_row = children[children["tags.ray.trial_id"] == candidate].iloc[0]
        for key in ("params.input.representation", "params.loss.class_weighting", "params.input.sigma"):
            assert (group[key].fillna("-") == ("-" if pd.isna(search_row[key]) else search_row[key])).all()
        means[candidate] = np.mean([best_val(r) for r in group["run_id"]])
    # ... the selected configuration has the best mean over its confirmation seeds (ties: better search rank),
    # and the tested model is its first seed's, as the declared rule says.
    chosen = confirmation["chosen"]
    assert means[chosen] == pytest.approx(max(means.values()))
    assert confirmation["candidates"][[r["search_trial"] for r in confirmation["candidates"]].index(chosen)][
        "mean"] == pytest.approx(means[chosen])
    tested = confirms[(confirms["tags.scolio.confirm.candidate"] == chosen)
                      & (confirms["params.train.seed"].astype(int) == 1)].iloc[0]
    assert parent["tags.scolio.selected_run_id"] == tested["run_id"]
    # The profile tests the chosen configuration's seed ensemble: both its re-trainings, as one model.
    assert parent["tags.scolio.confirm.rule"].startswith("the selected configuration's seed ensemble")
    from scolio_core.training.ensemble import Ensemble, read_model

    tested_model = read_model(workdir / "ray_results" / "e2e" / "winner_checkpoint")
    assert isinstance(tested_model, Ensemble) and sorted(tested_model.seeds) == [1, 2]
    assert parent[f"metrics.{names.confirmed_metric('val/macro_f1')}"] == pytest.approx(means[chosen])
    winner_search = confirmation["candidates"][0]
    assert parent[f"metrics.{names.confirmed_metric('val/macro_f1', 'optimism')}"] == pytest.approx(
        winner_search["search_val"] - means[winner_search["search_trial"]])
    assert 0.0 <= parent["metrics.test/macro_f1"] <= 1.0
    assert not any(c.startswith("metrics.test/") and pd.notna(v) for c, v in children.iloc[0].items())
    assert "one-shot test: macro-F1" in done.stdout and "[95 % CI " in done.stdout
    assert "confirmation: the top 2 by search val" in done.stdout and "<- selected" in done.stdout
    summary = (workdir / "results" / "e2e" / "summary.md").read_text()
    assert "## Confirmation before selection" in summary and "Search-time optimism" in summary
    # Each ceiling is printed beside the number measured on the same ids, and both are on the parent.
    val_oracle, test_oracle = (parent[f"tags.{tag}"] for tag in (names.TAG_ORACLE_VAL_MACRO_F1,
                                                                  names.TAG_ORACLE_MACRO_F1))
    assert f"severity oracle on these val ids: {val_oracle}" in done.stdout
    assert f"severity oracle on these test ids: {test_oracle}" in done.stdout
    assert re.search(r"on \d+ test sequences \(\d+ negative / \d+ neutral / \d+ positive\)", done.stdout)


def test_the_answer_is_a_set_with_evidence_on_val(sweep):
    """The best set on val (a model confidence set over configurations) and each knob's effect: printed before
    the test look, tagged on the parent, its evidence in answer/answer.json (every model's val predictions, from
    the checkpoint its recorded best val came from), in summary.md and in the audit."""
    from sklearn.metrics import f1_score

    from scolio_core.data.resolve import resolve_split
    from scolio_core.tracking.audit import audit_sweep

    workdir, done = sweep
    children, parent = runs_of(workdir, "e2e")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    local = mlflow.artifacts.download_artifacts(run_id=parent["run_id"], artifact_path=names.ARTIFACT_ANSWER,
                                                dst_path=str(workdir / "answer"), tracking_uri=uri)
    answer = json.loads(Path(local).read_text())
    best = json.loads(parent[f"tags.{names.TAG_ANSWER_BEST_SET}"])
    assert best and best == answer["best_set"] and answer["selected"] in {r["label"] for r in answer["configurations"]}
    assert parent[f"tags.{names.TAG_ANSWER_SELECTED_IN_SET}"] == str(answer["selected"] in best).lower()
    assert parent[f"tags.{names.TAG_ANSWER_CONFIGURATIONS}"] == str(len(answer["configurations"]))
    # The evidence is val, never test: the split's val ids, in order, with their labels.
    config = load_profile("smoke").base_config().replace(**{"data.root": parent["tags.scolio.data_root"]})
    split = resolve_split(config)
    evidence = answer["evidence"]
    assert evidence["ids"] == list(split.trainval().val) and not set(evidence["ids"]) & set(split.test)
    # Every search trial but the confirmed candidates' own runs, and every confirmation run, each scored by the
    # checkpoint of its recorded best val: its predictions give that run's best val macro-F1 again.
    confirms = confirmation_runs(workdir, parent["run_id"])
    runs = {row["tags.ray.trial_id"]: row["run_id"] for frame in (children, confirms) for _, row in frame.iterrows()}
    candidates = {row["search_trial"] for row in json.loads(parent[f"tags.{names.TAG_CONFIRMATION}"])["candidates"]}
    trials = [m["trial"] for m in evidence["models"]]
    assert set(confirms["tags.ray.trial_id"]) <= set(trials) <= set(runs) and not candidates & set(trials)
    client = MlflowClient(uri)
    for model in evidence["models"]:
        recorded = max(m.value for m in client.get_metric_history(runs[model["trial"]], "val/macro_f1"))
        again = f1_score(evidence["labels"], model["predicted"], labels=[0, 1, 2], average="macro", zero_division=0)
        assert again == pytest.approx(recorded), model["trial"]
    assert {len(r["models"]) for r in answer["configurations"] if r["label"] == answer["selected"]} == {2}  # 2 seeds
    for effect in answer["effects"]:
        assert effect["knob"] in load_profile("smoke").search
        assert effect["macro_recall"]["low"] <= effect["macro_recall"]["effect"] <= effect["macro_recall"]["high"]
    # Where a researcher reads it: the printout (before the look), summary.md and the audit.
    assert done.stdout.index("answer: ") < done.stdout.index("registered the tested model")
    assert "  the answer on val (" in done.stdout and "    best set: " in done.stdout
    summary = (workdir / "results" / "e2e" / "summary.md").read_text()
    assert "## The answer: the best set and each knob's effect" in summary
    verdict = audit_sweep(uri, "e2e")["verdict"]
    assert "- best set on val (model confidence set;" in verdict and "the selected configuration is" in verdict


def confirmation_runs(workdir: Path, parent_run_id: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["scoliotune"],
                              filter_string=f"tags.`scolio.role` = 'confirmation' and "
                                            f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return runs


def test_no_trial_or_confirmation_process_reads_a_test_id(sweep):
    """Only the driver (its data checks and the lockbox) reads test files; every trial process, the search's and
    the confirmation's alike, reads train and val only, and the confirmation runs list only those as inputs."""
    from scolio_core.data.resolve import resolve_split

    workdir, _ = sweep
    _, parent = runs_of(workdir, "e2e")
    driver = int((workdir / "driver.pid").read_text())
    reads = access_log_reads(workdir / "reads.tsv")
    config = load_profile("smoke").base_config().replace(**{"data.root": parent["tags.scolio.data_root"]})
    test_ids = set(resolve_split(config).test)
    assert reads and {seq for pid, seq in reads if pid == driver} & test_ids  # the log works: the lockbox read test
    assert not [(pid, seq) for pid, seq in reads if pid != driver and seq in test_ids]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for run_id in confirmation_runs(workdir, parent["run_id"])["run_id"]:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        contexts = sorted(next(t.value for t in i.tags if t.key == "mlflow.data.context") for i in inputs)
        assert contexts == ["training", "validation"], run_id


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
    trials = board[board["split"] == "val"]
    assert sorted(trials["run_id"]) == sorted(children["run_id"])
    assert trials["rank"].tolist() == list(range(1, len(children) + 1))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for _, row in trials.iterrows():
        history = client.get_metric_history(row["run_id"], "val/macro_f1")
        assert row["macro_f1"] == pytest.approx(max(m.value for m in history)), row["run_id"]
        # the run's MLflow status, with who stopped it when someone did ("KILLED by early stopping")
        assert row["status"].split()[0] == children.set_index("run_id").at[row["run_id"], "status"]
    assert trials["macro_f1"].is_monotonic_decreasing
    # ... then one row per confirmation run, then exactly one test row: the selected model, with the parent's
    # test score.
    confirms = board[board["split"].str.startswith("val, confirmation seed")]
    assert sorted(confirms["run_id"]) == sorted(confirmation_runs(workdir, parent["run_id"])["run_id"])
    tests = board[~board["split"].str.startswith("val")]
    assert len(tests) == 1
    test = tests.iloc[0]
    assert test["split"] == "one-shot test" and pd.isna(test["rank"])
    assert test["run_id"] == parent["tags.scolio.selected_run_id"]
    assert test["macro_f1"] == pytest.approx(parent["metrics.test/macro_f1"])


def test_the_tested_model_is_registered_and_predicts_like_scolio_predict(sweep, capsys):
    from scolio_core.cli.main import main as scolio
    from scolio_core.data.release import index_release, load_pose, load_silhouette
    from scolio_core.training.ensemble import read_model

    workdir, done = sweep
    _, parent = runs_of(workdir, "e2e")  # also points mlflow's tracking URI at the sweep's store
    assert parent["tags.scolio.model_uri"] == "models:/scoliotune-e2e@champion"
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    version = client.get_model_version_by_alias("scoliotune-e2e", "champion")
    assert str(version.version) == "1" and version.run_id == parent["run_id"]
    assert float(version.tags["scolio.test.macro_f1"]) == pytest.approx(parent["metrics.test/macro_f1"], abs=1e-6)
    assert version.tags["scolio.audit.clean"] == "true" and version.tags["scolio.audit.verdict"].startswith("CLEAN")
    assert version.tags["scolio.trainval_fingerprint"] == parent["tags.scolio.trainval_fingerprint"]
    assert version.tags["scolio.test_set"] == parent["tags.scolio.test_set"]
    assert version.tags["scolio.profile"] == "smoke" and version.tags["scolio.study"] == "e2e"
    assert "model: models:/scoliotune-e2e@champion" in done.stdout
    # Models-from-code: the logged model holds code and the checkpoint, no pickle to run on load.
    local = Path(mlflow.artifacts.download_artifacts(parent["tags.scolio.model_uri"]))
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]

    # The tested checkpoint's modality decides which files; scolio predict and the MLflow model must agree.
    winner = workdir / "ray_results" / "e2e" / "winner_checkpoint"
    config = read_model(winner).config.replace(**{"data.root": parent["tags.scolio.data_root"]})
    modality = config.input.modality
    index = index_release(config.data.modality_root(modality))
    files = [str(index[seq_id].path) for seq_id in sorted(index)[:6]]
    assert scolio(["predict", "--checkpoint", str(winner), *files, "--json", "--device", "cpu"]) == 0
    expected = json.loads(capsys.readouterr().out)
    model = mlflow.pyfunc.load_model(parent["tags.scolio.model_uri"])
    load = load_pose if modality == "skeleton" else load_silhouette
    predicted = model.predict([load(f) for f in files])
    assert predicted["class"].tolist() == [expected[f]["class"] for f in files]
    for row, f in zip(predicted.itertuples(index=False), files):
        assert [row.negative, row.neutral, row.positive] == pytest.approx(
            [expected[f]["probabilities"][c] for c in ("negative", "neutral", "positive")], abs=1e-4)
    # The other modality's arrays are refused in one line that names the model's contract.
    wrong = np.zeros((5, 64, 64), np.uint8) if modality == "skeleton" else np.zeros((5, 17, 3), np.float32)
    with pytest.raises(Exception, match=f"contract says {modality}") as refused:
        model.predict([wrong])
    assert "\n" not in str(refused.value)


def test_runs_list_their_data_and_read_at_a_glance(sweep):
    workdir, _ = sweep
    children, parent = runs_of(workdir, "e2e")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    digest = parent["tags.scolio.trainval_fingerprint"][:36]  # MLflow caps a dataset digest at 36 characters
    for _, child in children.iterrows():
        inputs = client.get_run(child["run_id"]).inputs.dataset_inputs
        contexts = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
        assert sorted(contexts) == ["training", "validation"], child["run_id"]  # never test
        assert {d.digest for d in contexts.values()} == {digest}
        assert contexts["training"].name.endswith("/train") and contexts["validation"].name.endswith("/val")
        # Named by what it tried, not train_baseline_<id> (the Ray trial id stays a tag).
        assert child["tags.mlflow.runName"].startswith(child["params.input.representation"])
        if child["status"] == "KILLED":
            assert "not a crash" in child["tags.mlflow.note.content"]
    # Only the parent of the study's look lists the test set, keyed by the lockbox's test-set key.
    tested = client.get_run(parent["run_id"]).inputs.dataset_inputs
    assert [(i.dataset.name.rsplit("/", 1)[1], i.dataset.digest) for i in tested] == [
        ("test", parent["tags.scolio.test_set"][:36])]
    # The parent's row shows the selected val number as a metric beside test/*.
    assert parent["metrics.val/macro_f1"] == pytest.approx(float(parent["tags.scolio.selected_val_macro_f1"]),
                                                           abs=1e-6)


def test_rerun_reuses_the_sweep_and_does_not_look_at_test_again(sweep):
    workdir, _ = sweep
    before, _ = runs_of(workdir, "e2e")
    again = run_sweep("representation.py", workdir, "--profile", "smoke", "--name", "e2e")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already recorded" in again.stdout
    after, parent = runs_of(workdir, "e2e")
    assert sorted(after["run_id"]) == sorted(before["run_id"])
    assert parent["tags.scolio.lockbox.evaluations"] == "1"
    # The same look's model is not registered twice.
    versions = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").search_model_versions("name = 'scoliotune-e2e'")
    assert [str(v.version) for v in versions] == ["1"]


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


# ---------------------------------------------------------------------------------------------------------------
# One recorded look per test set, across entry points and both stages of a study, on the same store (these run
# after the tests above, which they would disturb: they add looks to this sweep's test set).
# (a) `scolio eval` on the sweep's winner is refused, `--reopen` is recorded and the audit fails; (b) a "val"
# carve whose ids are the real test ids is a test look; (d)+(e) a two-stage study under a new name on the same
# store looks once, after the finetune, and its audit lists the earlier looks. Racing claims and two drivers
# finishing one sweep at once are in tests/test_lockbox.py.


def scolio(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scolio_core.cli", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=600)


def parent_tags(workdir: Path, sweep: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(names.DEFAULT_EXPERIMENT)
    return lookups.find_parent_run(client, experiment.experiment_id, sweep).data.tags


def looks(workdir: Path, key: str) -> list[dict]:
    return MlflowLedger(f"sqlite:///{workdir / 'mlflow.db'}").looks(key)


def store_of(sweep) -> tuple[Path, Path]:
    workdir, _ = sweep
    return workdir, next((workdir / "cache").glob("synth-*"))


def test_eval_after_a_sweep_is_refused_reopen_is_recorded_and_the_audit_fails(sweep):
    workdir, data_root = store_of(sweep)
    key = parent_tags(workdir, "e2e")[names.TAG_TEST_SET]
    assert [look["study"] for look in looks(workdir, key)] == ["e2e"]
    evaluate = ["eval", "--checkpoint", str(workdir / "ray_results" / "e2e" / "winner_checkpoint"),
                "--data-root", str(data_root), "--partition", str(data_root / "Scoliosis1K_112.json"),
                "--split", "test", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    refused = scolio(workdir, *evaluate)
    assert refused.returncode == 2 and "already looked at 1 time" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    audit = scolio(workdir, "audit", "e2e", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}")
    assert audit.returncode == 0 and "VERDICT: CLEAN" in audit.stdout, audit.stdout + audit.stderr

    reopened = scolio(workdir, *evaluate, "--reopen")
    assert reopened.returncode == 0 and "REOPENED" in reopened.stdout, reopened.stderr
    recorded = looks(workdir, key)
    assert [(look["look"], look["entry_point"], look["reopened"]) for look in recorded] == [
        (1, "sweeps/representation.py", False), (2, "scolio eval", True)]
    assert recorded[1]["checkpoint_hash"] == recorded[0]["checkpoint_hash"]  # the winner, looked at again
    audit = scolio(workdir, "audit", "e2e", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--json")
    assert audit.returncode == 3, audit.stdout[-2000:]
    report = json.loads(audit.stdout)
    assert report["test_evaluations"] == 2 and not report["clean"]
    assert [look["look"] for look in report["test_set_looks"]] == [1, 2]


def test_a_val_carve_of_the_test_ids_is_a_test_look(sweep, tmp_path):
    workdir, data_root = store_of(sweep)
    partition = json.loads((data_root / "Scoliosis1K_112.json").read_text())
    # TRAIN_SET is the real TEST_SET: the "val" carve is made of test ids the checkpoint never trained on.
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"TRAIN_SET": partition["TEST_SET"], "TEST_SET": partition["TRAIN_SET"]}))
    ledger_before = {e.name for e in _look_experiments(workdir)}
    evaluate = ["eval", "--checkpoint", str(workdir / "ray_results" / "e2e" / "winner_checkpoint"),
                "--data-root", str(data_root), "--partition", str(swapped), "--split", "val",
                "--override-contract", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--json"]
    # Those ids were scored by the sweep's look (issue 26: a look is decided on its ids, not its exact set):
    # refused like any second look, and recorded as one with --reopen.
    refused = scolio(workdir, *evaluate)
    assert refused.returncode == 2 and "study 'e2e'" in refused.stderr, refused.stderr
    assert {e.name for e in _look_experiments(workdir)} == ledger_before
    done = scolio(workdir, *evaluate, "--reopen")
    assert done.returncode == 0, done.stderr
    assert "a test look" in json.loads(done.stdout)["label"]
    new = [e for e in _look_experiments(workdir) if e.name not in ledger_before]
    assert len(new) == 1  # recorded before it ran, in the store's ledger, override or not
    opened = json.loads(new[0].tags[names.TAG_LOOK_OPENED])
    assert opened["entry_point"] == "scolio eval" and opened["split_name"] == "val"
    assert set(json.loads(done.stdout)["metrics"]) and opened["contract_overrides"]


def _look_experiments(workdir: Path):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return [e for e in client.search_experiments(view_type=ViewType.ALL)
            if e.name.startswith(names.LOCKBOX_EXPERIMENT_PREFIX)]


def test_a_two_stage_study_on_the_same_store_looks_once_after_the_finetune_and_lists_earlier_looks(sweep):
    """(d) and (e) in one run, to spare CI a sweep: a new study name on the same store and test set. Its first
    stage is also the smoke sweep again (same profile, seed and data, default concurrency), so it must make the
    same suggestions and stop decisions and rank the same trials as the fixture's sweep: reproducible."""
    workdir, _ = store_of(sweep)
    done = run_sweep("representation.py", workdir, "--profile", "smoke", "--name", "st",
                     "--finetune-profile", "finetune_smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    same = ["rank", "status", "input.representation", "input.sigma", "input.joint_weight", "loss.class_weighting",
            "macro_f1", "accuracy", "iterations"]
    boards = [pd.read_csv(workdir / "results" / name / "leaderboard.csv") for name in ("e2e", "st")]
    first, again = (board[board["split"] == "val"][same].reset_index(drop=True) for board in boards)
    pd.testing.assert_frame_equal(first, again)
    assert (first["status"] != "FINISHED").any()  # some trials were stopped early, identically in both

    def confirmed(sweep_name: str) -> tuple:
        record = json.loads(parent_tags(workdir, sweep_name)[names.TAG_CONFIRMATION])
        chosen = next(row["label"] for row in record["candidates"] if row["search_trial"] == record["chosen"])
        return chosen, [(row["label"], row["search_val"], row["seed_vals"]) for row in record["candidates"]]

    assert confirmed("st") == confirmed("e2e")  # the same candidates, confirmed vals and selected configuration
    baseline, finetune = parent_tags(workdir, "st"), parent_tags(workdir, "st-finetune")
    assert baseline[names.TAG_TEST_DEFERRED] == "true" and finetune[names.TAG_STUDY] == "st"
    final_parent = baseline[names.TAG_STUDY_FINAL_PARENT]
    assert final_parent == finetune[names.TAG_STUDY_FINAL_PARENT]
    stage = choose_final(float(baseline[names.TAG_SELECTED_VAL_MACRO_F1]),
                         float(finetune[names.TAG_SELECTED_VAL_MACRO_F1]))
    tested = finetune if stage == "finetune" else baseline
    assert tested[names.TAG_LOCKBOX_EVALUATIONS] == "1" and f"the study's model: the {stage}" in done.stdout
    key = tested[names.TAG_TEST_SET]
    assert key == parent_tags(workdir, "e2e")[names.TAG_TEST_SET]
    all_looks = looks(workdir, key)
    (mine,) = [look for look in all_looks if look["study"] == "st"]  # exactly one look for the whole study
    assert mine["entry_point"] == "sweeps/finetune.py" and mine["state"] == "completed"  # after the finetune
    assert mine["look"] == max(look["look"] for look in all_looks) and mine["seen_before"] >= 2
    assert "not a first look" in done.stdout
    # the model tested is the stage's val winner: its checkpoint is the one that stage selected
    from scolio_core.training.checkpoint import checkpoint_hash

    winner_dir = workdir / "ray_results" / ("st-finetune" if stage == "finetune" else "st") / "winner_checkpoint"
    assert mine["checkpoint_hash"] == checkpoint_hash(winner_dir)
    audit = scolio(workdir, "audit", "st-finetune" if stage == "finetune" else "st",
                   "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}")
    assert audit.returncode == 3 and "had been looked at" in audit.stdout, audit.stdout
    assert "look 1 by sweeps/representation.py 'e2e'" in audit.stdout


def test_trial_runs_carry_system_metrics_at_the_steps_of_their_reports(sweep):
    """The smoke profile's monitoring section is on: every trial run carries MLflow's system metrics (the UI's
    "System metrics" tab), sampled in the trial and logged by the driver's callback at the trial's report steps."""
    workdir, _ = sweep
    children, parent = runs_of(workdir, "e2e")
    assert parent[f"tags.{names.TAG_MONITORING_PREFIX}system_metrics"] == "true"  # the switch, on the parent
    assert float(parent[f"tags.{names.TAG_MONITORING_PREFIX}sampling_interval_s"]) == 2.0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert len(children) >= 4
    for _, child in children.iterrows():
        run_id = child["run_id"]
        report_steps = {m.step for m in client.get_metric_history(run_id, names.METRIC_VAL_MACRO_F1)}
        cpu = client.get_metric_history(run_id, names.METRIC_SYSTEM_CPU)
        assert report_steps and cpu, run_id  # every trial reported, and its reports carried system metrics
        # At most one reading per report: a report that comes before the sampler is up carries none.
        assert {m.step for m in cpu} <= report_steps and len(cpu) == len({m.step for m in cpu})
        assert all(0.0 < m.value <= 100.0 for m in cpu)  # a training trial's node is never idle over a window
        assert 0.0 < child["metrics.system/system_memory_usage_percentage"] <= 100.0
        assert child["metrics.system/system_memory_usage_megabytes"] > 0


def test_a_partition_table_can_retrain_what_the_sweep_selected(sweep):
    """sweeps/table.py --from-sweep e2e: the recipe is the selected trial's configuration (from its checkpoint's
    contract), with no search, no seed, no partition; the sweep's profile gives the rest."""
    from scolio_sweep.studies.table import recipe_from_study

    workdir, _ = sweep
    _, parent = runs_of(workdir, "e2e")
    confirms = confirmation_runs(workdir, parent["run_id"])
    selected = confirms[confirms["run_id"] == parent["tags.scolio.selected_run_id"]].iloc[0]
    profile, data_root = recipe_from_study("e2e", f"sqlite:///{workdir / 'mlflow.db'}", "scoliotune")
    assert not profile.search and "train.seed" not in profile.fixed and "data.partition" not in profile.fixed
    assert data_root == parent["tags.scolio.data_root"] and profile.synth == load_profile("smoke").synth
    config = profile.base_config()
    assert config.input.representation == selected["params.input.representation"]
    assert str(config.loss.class_weighting) == selected["params.loss.class_weighting"]
    if config.input.modality == "pose":
        assert config.input.sigma == pytest.approx(float(selected["params.input.sigma"]))
