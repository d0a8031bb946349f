"""One recorded look per test set, across entry points and both stages of a study, on a real local Ray and a
real MLflow store: (a) `scolio eval` on a sweep's winner is refused, `--reopen` is recorded and the audit
fails; (b) a "val" carve whose ids are the real test ids is a test look; (e) a new sweep name on the same
store records its look and the audit lists the earlier ones; (d) the two-stage study looks once, after the
finetune, on the model that won on val. Racing claims are covered in tests/test_lockbox.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scolio_core.tracking import schema
from scolio_core.tracking.ledger import MlflowLedger
from sweeps.finish import choose_final

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def run_sweep(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "sweeps" / script), "--cache-dir", str(workdir / "cache"),
               "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--storage-path", str(workdir / "ray_results"),
               "--results-dir", str(workdir / "results"), *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)


def scolio(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scolio_core.cli", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=600)


def parent_tags(workdir: Path, sweep: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(schema.DEFAULT_EXPERIMENT)
    return schema.find_parent_run(client, experiment.experiment_id, sweep).data.tags


def looks(workdir: Path, key: str) -> list[dict]:
    return MlflowLedger(f"sqlite:///{workdir / 'mlflow.db'}").looks(key)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    done = run_sweep("representation.py", workdir, "--profile", "smoke", "--num-samples", "3", "--name", "s1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data_root = next((workdir / "cache").glob("synth-*"))
    return workdir, data_root


def test_eval_after_a_sweep_is_refused_reopen_is_recorded_and_the_audit_fails(store):
    workdir, data_root = store
    key = parent_tags(workdir, "s1")[schema.TAG_TEST_SET]
    assert [look["study"] for look in looks(workdir, key)] == ["s1"]
    evaluate = ["eval", "--checkpoint", str(workdir / "ray_results" / "s1" / "winner_checkpoint"),
                "--data-root", str(data_root), "--partition", str(data_root / "Scoliosis1K_112.json"),
                "--split", "test", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    refused = scolio(workdir, *evaluate)
    assert refused.returncode == 2 and "already looked at 1 time" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    audit = scolio(workdir, "audit", "s1", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}")
    assert audit.returncode == 0 and "VERDICT: CLEAN" in audit.stdout, audit.stdout + audit.stderr

    reopened = scolio(workdir, *evaluate, "--reopen")
    assert reopened.returncode == 0 and "REOPENED" in reopened.stdout, reopened.stderr
    recorded = looks(workdir, key)
    assert [(look["look"], look["entry_point"], look["reopened"]) for look in recorded] == [
        (1, "sweeps/representation.py", False), (2, "scolio eval", True)]
    assert recorded[1]["checkpoint_hash"] == recorded[0]["checkpoint_hash"]  # the winner, looked at again
    audit = scolio(workdir, "audit", "s1", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--json")
    assert audit.returncode == 3, audit.stdout[-2000:]
    report = json.loads(audit.stdout)
    assert report["test_evaluations"] == 2 and not report["clean"]
    assert [look["look"] for look in report["test_set_looks"]] == [1, 2]


def test_a_val_carve_of_the_test_ids_is_a_test_look(store, tmp_path):
    workdir, data_root = store
    partition = json.loads((data_root / "Scoliosis1K_112.json").read_text())
    # TRAIN_SET is the real TEST_SET: the "val" carve is made of test ids the checkpoint never trained on.
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"TRAIN_SET": partition["TEST_SET"], "TEST_SET": partition["TRAIN_SET"]}))
    ledger_before = {e.name for e in _look_experiments(workdir)}
    done = scolio(workdir, "eval", "--checkpoint", str(workdir / "ray_results" / "s1" / "winner_checkpoint"),
                  "--data-root", str(data_root), "--partition", str(swapped), "--split", "val",
                  "--override-contract", "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", "--json")
    assert done.returncode == 0, done.stderr
    assert "a test look" in json.loads(done.stdout)["label"]
    new = [e for e in _look_experiments(workdir) if e.name not in ledger_before]
    assert len(new) == 1  # recorded before it ran, in the store's ledger, override or not
    opened = json.loads(new[0].tags[schema.TAG_LOOK_OPENED])
    assert opened["entry_point"] == "scolio eval" and opened["split_name"] == "val"
    assert set(json.loads(done.stdout)["metrics"]) and opened["contract_overrides"]


def _look_experiments(workdir: Path):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return [e for e in client.search_experiments(view_type=ViewType.ALL)
            if e.name.startswith(schema.LOCKBOX_EXPERIMENT_PREFIX)]


def test_a_two_stage_study_on_the_same_store_looks_once_after_the_finetune_and_lists_earlier_looks(store):
    """(d) and (e) in one run, to spare CI a sweep: a new study name on the same store and test set."""
    workdir, _ = store
    done = run_sweep("representation.py", workdir, "--profile", "smoke", "--num-samples", "3", "--name", "st",
                     "--finetune-profile", "finetune_smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    baseline, finetune = parent_tags(workdir, "st"), parent_tags(workdir, "st-finetune")
    assert baseline[schema.TAG_TEST_DEFERRED] == "true" and finetune[schema.TAG_STUDY] == "st"
    final_parent = baseline[schema.TAG_STUDY_FINAL_PARENT]
    assert final_parent == finetune[schema.TAG_STUDY_FINAL_PARENT]
    stage = choose_final(float(baseline[schema.TAG_SELECTED_VAL_MACRO_F1]),
                         float(finetune[schema.TAG_SELECTED_VAL_MACRO_F1]))
    tested = finetune if stage == "finetune" else baseline
    assert tested[schema.TAG_LOCKBOX_EVALUATIONS] == "1" and f"the study's model: the {stage}" in done.stdout
    key = tested[schema.TAG_TEST_SET]
    assert key == parent_tags(workdir, "s1")[schema.TAG_TEST_SET]
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
    assert "look 1 by sweeps/representation.py 's1'" in audit.stdout
