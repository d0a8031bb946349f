"""Issue 26: the lockbox counts looks at *sequences*, not at one exact test-set key.

Study A is built here as a sweep records it, without Ray: a parent run and two trial runs in a real sqlite
MLflow store (real files), the winner's checkpoint as its artifact, and A's one look taken through the
library's lockbox (`evaluate_test_once` mirrored on the parent, what `scolio_sweep.stages.finish.open_test`
does), on the tiny synthetic release (30 test ids). `scolio audit A` is CLEAN (exit 0) before each hole is
tried. Each test then takes one path that scores A's test labels (H1-H8 of the issue) and asserts that the
look is refused in one line before anything is evaluated, or recorded, and that `scolio audit A` then exits
non-zero naming it. The last tests show that a table partition study and a finetune stage audit CLEAN when
they are clean (`scolio audit` used to exit 3 on both).

Only H6 and H7 start a sweep script (a subprocess that must refuse before Ray starts); nothing here starts Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from scolio_core import names
from scolio_core.data.resolve import resolve_split
from scolio_core.errors import LockboxError
from scolio_core.evaluation.lockbox import evaluate_models_once, evaluate_test_once
from scolio_core.tracking.ledger import MlflowLedger, ParentRunLog, ledger_provenance
from scolio_core.training.batches import load_trainval
from scolio_core.training.checkpoint import read_checkpoint, write_checkpoint
from scolio_core.training.loop import run_training

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = names.DEFAULT_EXPERIMENT


# ------------------------------------------------------------------------------------------------ fixtures
@dataclass
class Models:
    root: Path
    config: object  # the tiny pose config on Scoliosis1K_112
    split: object
    winner: object  # seed 0: study A's winner
    runner_up: object  # seed 1: another trial of study A
    silhouette: object  # a silhouette model on the same split (H2)
    workdir: Path


def _train(config, workdir: Path):
    split = resolve_split(config)
    result = run_training(config, load_trainval(config, split.trainval()), workdir, lambda m, c: None)
    return read_checkpoint(result.best_checkpoint)


@pytest.fixture(scope="module")
def models(synth_root, tmp_path_factory) -> Models:
    workdir = tmp_path_factory.mktemp("holes")
    config = tiny_config(synth_root)
    split = resolve_split(config)
    winner = _train(config, workdir / "w")
    runner_up = _train(config.replace(**{"train.seed": 1}), workdir / "r")
    silhouette = _train(tiny_config(synth_root, **{"input.representation": "silhouette"}), workdir / "s")
    return Models(synth_root, config, split, winner, runner_up, silhouette, workdir)


def repackage(checkpoint, directory: Path, provenance: dict | None = None):
    """The same weights written as a new checkpoint (another hash): what a user's re-export produces, and,
    with `ledger_provenance`, what a sweep's trial writes (the checkpoint records its study's ledger)."""
    write_checkpoint(directory, config=checkpoint.config, model_state=checkpoint.model_state,
                     split=checkpoint.split, pav_stats=checkpoint.contract.get("pav_stats"),
                     iteration=int(checkpoint.contract.get("iteration", 0)), provenance=provenance or {})
    return read_checkpoint(directory)


def new_store(path: Path) -> str:
    uri = f"sqlite:///{path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment(EXPERIMENT, artifact_location=(path / "mlartifacts").as_uri())
    return uri


def make_parent(uri: str, name: str, split, root: Path, *, kind: str = "representation",
                trials: list = (), tags: dict | None = None) -> tuple[str, list[str]]:
    """A sweep's parent run as prepare/finish record it, with one trial run per checkpoint in `trials` (the
    first is the winner: best val); returns (parent run id, trial run ids)."""
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    trainval = split.trainval()
    parent = client.create_run(experiment_id, run_name=name, tags={
        names.TAG_SWEEP: name, names.TAG_ROLE: names.ROLE_PARENT, names.TAG_METRIC: names.METRIC_VAL_MACRO_F1,
        names.TAG_MODE: "max", names.TAG_SELECTION_SPLIT: "val", names.TAG_SPLIT_FINGERPRINT: split.fingerprint,
        names.TAG_TRAINVAL_FINGERPRINT: trainval.fingerprint, names.TAG_PARTITION: split.partition,
        names.TAG_PARTITION_FILE: str(Path(root / f"{split.partition}.json")), names.TAG_DATA_ROOT: str(root),
        names.TAG_KIND: kind, names.TAG_STUDY: name, **(tags or {})}).info.run_id
    from mlflow.entities import Metric

    runs = []
    for position, checkpoint in enumerate(trials):
        run_id = client.create_run(experiment_id, run_name=f"t{position}", tags={
            names.TAG_SWEEP: name, names.TAG_ROLE: names.ROLE_TRIAL, names.TAG_TRIAL_ID: f"t{position}",
            names.TAG_PARENT_RUN_ID: parent}).info.run_id
        client.log_batch(run_id, metrics=[Metric(names.METRIC_VAL_MACRO_F1, 0.8 - 0.1 * position, 1000, 1)])
        client.log_artifacts(run_id, str(checkpoint.directory), artifact_path=names.ARTIFACT_CHECKPOINT)
        client.set_terminated(run_id, "FINISHED")
        runs.append(run_id)
    if runs and kind != "table":
        for key, value in {names.TAG_SELECTED_TRIAL: "t0", names.TAG_SELECTED_RUN_ID: runs[0],
                           names.TAG_SELECTED_VAL_MACRO_F1: "0.800000"}.items():
            client.set_tag(parent, key, value)
    return parent, runs


@dataclass
class Study:
    uri: str
    parent: str
    look: object  # the LockboxResult of A's one look
    winner: object  # the checkpoint A tested
    dir: Path


def study_look(models: Models, uri: str, name: str, parent: str, checkpoint, **kwargs):
    return evaluate_test_once(checkpoint, models.config, models.split, MlflowLedger(uri), study=name,
                              entry_point="sweeps/representation.py", reopen_flag="--reopen-test",
                              bootstrap_resamples=20, mirror=ParentRunLog(uri, parent), **kwargs)


@pytest.fixture
def study_a(models, tmp_path) -> Study:
    """A fresh store holding study A after its one look; A's winner records A's ledger, as a sweep's trials do."""
    uri = new_store(tmp_path)
    winner = repackage(models.winner, tmp_path / "winner", ledger_provenance(uri, "A"))
    parent, _ = make_parent(uri, "A", models.split, models.root, trials=[winner, models.runner_up])
    look = study_look(models, uri, "A", parent, winner)
    assert look.look == 1 and not look.reopened
    MlflowClient(uri).set_terminated(parent, "FINISHED")
    study = Study(uri, parent, look, winner, tmp_path)
    code, out, _ = audit(study)
    assert code == 0 and "VERDICT: CLEAN" in out, out
    return study


def scolio(*args: str) -> tuple[int, str, str]:
    """`scolio ARGS` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from scolio_core.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def audit(study: Study, name: str = "A") -> tuple[int, str, str]:
    return scolio("audit", name, "--tracking-uri", study.uri)


def audit_json(study: Study, name: str = "A") -> dict:
    code, out, err = scolio("audit", name, "--tracking-uri", study.uri, "--json")
    report = json.loads(out)
    assert (code == 0) == report["clean"], (code, err)
    return report


def evaluate(models: Models, checkpoint, partition: Path, *extra: str, split: str = "test") -> tuple[int, str, str]:
    return scolio("eval", "--checkpoint", str(checkpoint.directory), "--data-root", str(models.root),
                  "--partition", str(partition), "--split", split, "--device", "cpu", *extra)


def one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


def partition_file(models: Models, folder: Path, *, train=None, test=None) -> Path:
    """A partition JSON with the release's file name (so the same TRAIN_SET keeps the same train/val split)."""
    original = json.loads((models.root / "Scoliosis1K_112.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Scoliosis1K_112.json"
    path.write_text(json.dumps({"TRAIN_SET": original["TRAIN_SET"] if train is None else train,
                                "TEST_SET": original["TEST_SET"] if test is None else test}))
    return path


def look_experiments(uri: str) -> list:
    from mlflow.entities import ViewType

    return [e for e in MlflowClient(uri).search_experiments(view_type=ViewType.ALL)
            if e.name.startswith(names.LOCKBOX_EXPERIMENT_PREFIX)]


def relook_named(report: dict, *, study: str | None = None, entry_point: str | None = None) -> dict:
    """The audit's entry for one foreign look at the study's test ids."""
    found = [look for look in report["foreign_looks"]
             if (study is None or look["study"] == study) and (entry_point is None or look["entry_point"] == entry_point)]
    assert len(found) == 1, report["foreign_looks"]
    return found[0]


# --------------------------------------------------------------------------------------------------- H1
def test_h1_a_subset_of_the_test_set_is_a_relook_refused_or_recorded_and_the_audit_names_it(models, study_a):
    ids = list(models.split.test)
    subset = partition_file(models, study_a.dir / "minus-one", test=ids[1:])
    code, _, err = evaluate(models, study_a.winner, subset, "--tracking-uri", study_a.uri)
    assert code == 2 and "study 'A'" in err and "29 of" in err and "--reopen" in err, err
    one_line(err)
    assert audit(study_a)[0] == 0  # a refusal is not a look

    code, out, err = evaluate(models, study_a.winner, subset, "--tracking-uri", study_a.uri, "--reopen")
    assert code == 0 and "REOPENED" in out, err
    code, out, _ = audit(study_a)
    assert code != 0 and "VERDICT: CLEAN" not in out
    assert "scolio eval" in out and "29 of this study's 30 test ids" in out, out
    look = relook_named(audit_json(study_a), entry_point="scolio eval")
    assert look["touched"] == 29 and look["when"] == "after"


# --------------------------------------------------------------------------------------------------- H2
def test_h2_the_other_modality_on_the_same_ids_is_a_relook(models, study_a):
    partition = models.root / "Scoliosis1K_112.json"
    code, _, err = evaluate(models, models.silhouette, partition, "--tracking-uri", study_a.uri)
    assert code == 2 and "study 'A'" in err and "30 of" in err, err
    one_line(err)
    code, out, err = evaluate(models, models.silhouette, partition, "--tracking-uri", study_a.uri, "--reopen")
    assert code == 0 and "REOPENED" in out, err
    code, out, _ = audit(study_a)
    assert code != 0 and "silhouette" in out and "30 of this study's 30 test ids" in out, out
    assert relook_named(audit_json(study_a), entry_point="scolio eval")["modality"] == "silhouette"


# --------------------------------------------------------------------------------------------------- H3
def test_h3_a_checkpoint_is_evaluated_in_its_studys_ledger_or_refused(models, study_a, tmp_path, monkeypatch):
    partition = models.root / "Scoliosis1K_112.json"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other_uri = f"sqlite:///{elsewhere / 'other.db'}"
    db_path = study_a.uri[len("sqlite:///"):]
    # Another ledger named on the command line: refused in one line naming the checkpoint's own ledger.
    for flags in (["--ledger", str(elsewhere / "ledger.jsonl")], ["--tracking-uri", other_uri]):
        code, _, err = evaluate(models, study_a.winner, partition, *flags, "--reopen")
        assert code == 2 and db_path in err and "--ledger-override" in err, err
        one_line(err)
    # The cwd-relative spelling of "a store here" is another ledger too.
    monkeypatch.chdir(elsewhere)
    code, _, err = evaluate(models, study_a.winner, partition, "--tracking-uri", "sqlite:///mlflow.db")
    assert code == 2 and db_path in err, err
    # No environment variable switches the ledger: the checkpoint's own one refuses the second look.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other_uri)
    monkeypatch.setenv("SCOLIO_LEDGER", str(elsewhere / "env-ledger.jsonl"))
    code, _, err = evaluate(models, study_a.winner, partition)
    assert code == 2 and "study 'A'" in err, err
    assert not (elsewhere / "other.db").exists() and not (elsewhere / "env-ledger.jsonl").exists()
    assert not (elsewhere / "mlflow.db").exists() and not (elsewhere / "ledger.jsonl").exists()
    assert audit(study_a)[0] == 0  # nothing was looked at
    # An override is allowed only as a look recorded in the study's own ledger, where its audit sees it.
    code, out, err = evaluate(models, study_a.winner, partition, "--tracking-uri", other_uri, "--ledger-override",
                              "--reopen")
    assert code == 0 and "REOPENED" in out, err
    assert len(look_experiments(other_uri)) == 1 and len(look_experiments(study_a.uri)) == 2
    code, out, _ = audit(study_a)
    assert code != 0 and "scolio eval" in out and other_uri in out, out


def test_h3_a_checkpoint_without_a_recorded_ledger_says_which_ledger_the_environment_chose(models, study_a,
                                                                                           monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study_a.uri)
    code, _, err = evaluate(models, models.runner_up, models.root / "Scoliosis1K_112.json")
    assert code == 2 and "study 'A'" in err and "MLFLOW_TRACKING_URI" in err, err
    one_line(err)


# --------------------------------------------------------------------------------------------------- H4
def test_h4_reopen_on_the_runner_up_or_repackaged_weights_is_a_relook(models, study_a):
    partition = models.root / "Scoliosis1K_112.json"
    repackaged = repackage(study_a.winner, study_a.dir / "repackaged")
    for checkpoint in (models.runner_up, repackaged):
        code, _, err = evaluate(models, checkpoint, partition, "--tracking-uri", study_a.uri)
        assert code == 2 and "study 'A'" in err, err
        code, out, err = evaluate(models, checkpoint, partition, "--tracking-uri", study_a.uri, "--reopen")
        assert code == 0 and "REOPENED" in out, err
    code, out, _ = audit(study_a)
    assert code != 0 and "VERDICT: CLEAN" not in out and "(one-shot)" not in out, out
    assert "look 2 by scolio eval" in out and "look 3 by scolio eval" in out
    report = audit_json(study_a)
    assert report["test_evaluations"] == 3
    assert [look["look"] for look in report["foreign_looks"]] == [2, 3]


# --------------------------------------------------------------------------------------------------- H5
@pytest.mark.parametrize("how", ["purged", "deleted", "retagged", "renamed", "parent-entry-retagged"])
def test_h5_deleting_purging_or_editing_a_look_is_tampering(models, study_a, how):
    partition = models.root / "Scoliosis1K_112.json"
    code, _, err = evaluate(models, models.runner_up, partition, "--tracking-uri", study_a.uri, "--reopen")
    assert code == 0, err
    client = MlflowClient(study_a.uri)
    (second,) = [e for e in look_experiments(study_a.uri) if e.tags[names.TAG_LOOK] == "2"]
    (first,) = [e for e in look_experiments(study_a.uri) if e.tags[names.TAG_LOOK] == "1"]
    if how in ("purged", "deleted"):
        client.delete_experiment(second.experiment_id)
        if how == "purged":
            done = subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", study_a.uri,
                                   "--experiment-ids", second.experiment_id], check=False, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
            assert second.experiment_id not in {e.experiment_id for e in look_experiments(study_a.uri)}
    elif how == "retagged":  # rewrite who looked: "only the study's own look"
        opened = json.loads(second.tags[names.TAG_LOOK_OPENED])
        client.set_experiment_tag(second.experiment_id, names.TAG_LOOK_OPENED,
                                  json.dumps({**opened, "study": "A", "reopened": False}, sort_keys=True))
    elif how == "renamed":
        client.rename_experiment(first.experiment_id, first.name + "-old")
    else:  # the study's own record of its look, on its parent run
        entry = names.lockbox_entry_tag(1, "opened")
        recorded = json.loads(client.get_run(study_a.parent).data.tags[entry])
        client.set_tag(study_a.parent, entry, json.dumps({**recorded, "checkpoint_hash": "0" * 64}))
    code, out, _ = audit(study_a)
    assert code != 0 and "TAMPER" in out.upper(), out
    assert audit_json(study_a)["tampering"]


# --------------------------------------------------------------------------------------------------- H6
def _sweep(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    command = [sys.executable, str(REPO / "sweeps" / script), "--cache-dir", str(workdir / "cache"),
               "--storage-path", str(workdir / "ray_results"), "--results-dir", str(workdir / "results"), *args]
    return subprocess.run(command, check=False, cwd=workdir, capture_output=True, text=True, timeout=600, env=env)


def _runs(uri: str) -> int:
    client = MlflowClient(uri)
    return len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]))


def test_h6_a_rerun_of_a_study_on_another_split_is_refused_before_compute(models, study_a):
    ids = list(models.split.test)
    tweaked = partition_file(models, study_a.dir / "tweaked", test=ids[1:])
    runs = _runs(study_a.uri)
    done = _sweep("representation.py", study_a.dir, "--profile", "smoke", "--name", "A", "--data-root",
                  str(models.root), "--partition", str(tweaked), "--tracking-uri", study_a.uri)
    assert done.returncode == 2 and "'A'" in done.stderr and "split" in done.stderr and "--name" in done.stderr, \
        done.stdout[-2000:] + done.stderr[-2000:]
    one_line(done.stderr)
    assert not (study_a.dir / "ray_results").exists() and _runs(study_a.uri) == runs  # before any compute

    # The lockbox refuses the same study on another test set, whoever calls it ...
    tweaked_split = resolve_split(models.config.replace(**{"data.partition": str(tweaked)}))
    with pytest.raises(LockboxError, match="another test set"):
        evaluate_test_once(study_a.winner, models.config.replace(**{"data.partition": str(tweaked)}), tweaked_split,
                           MlflowLedger(study_a.uri), study="A", entry_point="sweeps/representation.py",
                           mirror=ParentRunLog(study_a.uri, study_a.parent))
    # ... and a parent run's look entries are never overwritten.
    log = ParentRunLog(study_a.uri, study_a.parent)
    (opened,) = [e for e in log.entries() if e["state"] == "opened"]
    with pytest.raises(LockboxError, match="overwrite"):
        log.append({**opened, "split_fingerprint": tweaked_split.fingerprint})
    assert [e for e in log.entries() if e["state"] == "opened"] == [opened]
    assert len(look_experiments(study_a.uri)) == 1 and audit(study_a)[0] == 0


# --------------------------------------------------------------------------------------------------- H7
def test_h7_a_finetune_validating_on_its_studys_test_ids_is_refused_whatever_allow_contract_change(models,
                                                                                                   study_a):
    original = json.loads((models.root / "Scoliosis1K_112.json").read_text())
    swapped = partition_file(models, study_a.dir / "swapped", train=original["TEST_SET"], test=original["TRAIN_SET"])
    runs = _runs(study_a.uri)
    done = _sweep("finetune.py", study_a.dir, "--from-sweep", "A", "--profile", "finetune_smoke", "--name", "A-ft",
                  "--data-root", str(models.root), "--partition", str(swapped), "--tracking-uri", study_a.uri,
                  "--set", "train.allow_contract_change=true")
    assert done.returncode == 2 and "'A'" in done.stderr and "test ids" in done.stderr, \
        done.stdout[-2000:] + done.stderr[-2000:]
    # one error line (MLflow draws its download progress bar for the baseline above it)
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "own test ids" in errors[0] and "Traceback" not in done.stderr, done.stderr
    assert not (study_a.dir / "ray_results").exists() and _runs(study_a.uri) == runs
    assert len(look_experiments(study_a.uri)) == 1 and audit(study_a)[0] == 0


# --------------------------------------------------------------------------------------------------- H8
def test_h8_training_or_validating_on_a_studys_test_ids_is_refused_or_recorded(models, study_a, tmp_path,
                                                                                monkeypatch):
    original = json.loads((models.root / "Scoliosis1K_112.json").read_text())
    swapped = partition_file(models, tmp_path / "swapped", train=original["TEST_SET"], test=original["TRAIN_SET"])
    config = models.config.replace(**{"data.partition": str(swapped)})
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    # `scolio train`: no study to record it under, so it is refused, in one line, before any training.
    code, _, err = scolio("train", "--config", str(config_file), "--workdir", str(tmp_path / "run"),
                          "--tracking-uri", study_a.uri)
    assert code == 2 and "study 'A'" in err and "30" in err, err
    one_line(err)
    assert not (tmp_path / "run" / "checkpoints").exists()
    # ... and no environment variable makes it look elsewhere without saying so.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study_a.uri)
    code, _, err = scolio("train", "--config", str(config_file), "--workdir", str(tmp_path / "run"))
    assert code == 2 and "study 'A'" in err and "MLFLOW_TRACKING_URI" in err, err
    monkeypatch.delenv("MLFLOW_TRACKING_URI")

    # A sweep under a new name (study B) whose TRAIN_SET is A's TEST_SET: its train/val use of A's test ids is a
    # look recorded before compute (the check prepare_sweep runs before Ray starts), and A's audit names it.
    from scolio_core.tracking.guard import check_sweep_split

    split = resolve_split(config)
    recorded = check_sweep_split(study_a.uri, EXPERIMENT, "B", split, kind="representation")
    assert recorded is not None and recorded["touched"] == 30
    assert check_sweep_split(study_a.uri, EXPERIMENT, "B", split, kind="representation")["look"] == recorded["look"]
    code, out, _ = audit(study_a)
    assert code != 0 and "'B'" in out and "30 of this study's 30 test ids" in out, out

    # A checkpoint trained on A's test ids evaluated on its *own* val carve scores A's test labels: a look.
    trained = _train(config, tmp_path / "on-test")
    code, _, err = evaluate(models, trained, swapped, "--tracking-uri", study_a.uri, split="val")
    assert code == 2 and "study 'A'" in err, err


# ------------------------------------------------------------------------------ table and finetune audits
def test_a_table_studys_partitions_overlap_but_are_one_study_and_audit_clean(models, tmp_path):
    uri = new_store(tmp_path)
    original = json.loads((models.root / "Scoliosis1K_112.json").read_text())
    # A second partition of the same sequences whose TEST_SET shares half its ids with 112's and whose
    # TRAIN_SET holds the other half of 112's test ids (as the release's four partitions do).
    test_114 = original["TEST_SET"][:15] + original["TRAIN_SET"][:15]
    train_114 = sorted(set(original["TEST_SET"] + original["TRAIN_SET"]) - set(test_114))
    folder = tmp_path / "p114"
    folder.mkdir()
    path_114 = folder / "Scoliosis1K_114.json"
    path_114.write_text(json.dumps({"TRAIN_SET": train_114, "TEST_SET": test_114}))
    config_114 = models.config.replace(**{"data.partition": str(path_114)})
    split_114 = resolve_split(config_114)
    model_114 = _train(config_114, tmp_path / "m114")

    from scolio_core.tracking.guard import check_sweep_split, table_family

    for name, split, config, checkpoints in (
            ("T-p112", models.split, models.config, {"seed0": models.winner, "seed1": models.runner_up}),
            ("T-p114", split_114, config_114, {"seed0": model_114})):
        # the partition's train/val use of its sibling's test ids is the table's own business: no look, no refusal
        assert check_sweep_split(uri, EXPERIMENT, name, split, kind="table") is None
        parent, _ = make_parent(uri, name, split, models.root, kind="table", trials=list(checkpoints.values()),
                                tags={names.TAG_TABLE: "T", names.TAG_TABLE_SEEDS: json.dumps(list(range(len(checkpoints))))})
        look = evaluate_models_once(checkpoints, config, split, MlflowLedger(uri), study=name, family=table_family(name, "table"),
                                    entry_point="sweeps/table.py", mirror=ParentRunLog(uri, parent))
        assert look.seen_before == 0
        MlflowClient(uri).set_terminated(parent, "FINISHED")
    for name in ("T-p112", "T-p114"):
        code, out, _ = scolio("audit", name, "--tracking-uri", uri)
        assert code == 0 and "VERDICT: CLEAN" in out and "no winner" not in out, out
        assert "one-shot" in out


@pytest.mark.parametrize("tested", ["baseline", "finetune"])
def test_a_finetune_stage_and_its_baseline_audit_clean_after_the_studys_one_look(models, tmp_path, tested):
    uri = new_store(tmp_path)
    baseline, _ = make_parent(uri, "S", models.split, models.root, trials=[models.winner],
                              tags={names.TAG_TEST_DEFERRED: "true"})
    stage, _ = make_parent(uri, "S-ft", models.split, models.root, kind="finetune", trials=[models.runner_up],
                           tags={names.TAG_STUDY: "S", names.TAG_BASELINE_SWEEP_RUN: baseline})
    final_parent, checkpoint = (baseline, models.winner) if tested == "baseline" else (stage, models.runner_up)
    look = evaluate_test_once(checkpoint, models.config, models.split, MlflowLedger(uri), study="S",
                              entry_point="sweeps/finetune.py", reopen_flag="--reopen-test", bootstrap_resamples=20,
                              mirror=ParentRunLog(uri, final_parent))
    client = MlflowClient(uri)
    for run_id in (baseline, stage):
        client.set_tag(run_id, names.TAG_STUDY_FINAL_PARENT, final_parent)
        client.set_terminated(run_id, "FINISHED")
    for name in ("S", "S-ft"):
        code, out, _ = scolio("audit", name, "--tracking-uri", uri)
        assert code == 0 and "VERDICT: CLEAN" in out and "not been evaluated" not in out, out
        assert f"look {look.look}" in out and "one-shot" in out


def test_ids_on_another_stand_in_are_other_sequences(models, tmp_path):
    """Two synthetic stand-ins share id names, not sequences: a look on one is no look at the other (the
    release and copies of it are one data set: `dataset_identity`)."""
    from scolio_core.evaluation.lockbox import check_trainval_use
    from scolio_core.evaluation.looks import FileLedger, dataset_identity, touched

    ledger = FileLedger(tmp_path / "ledger.jsonl")
    trainval = models.split.trainval()
    pairs = [[seq_id, "negative"] for seq_id in trainval.val]
    ledger.claim("k" * 64, 1, {"study": "X", "kind": "test", "pairs": pairs, "dataset": "synth:elsewhere"})
    (look,) = ledger.all_looks()
    here = dataset_identity(models.root)
    assert here.startswith("synth:") and here != "synth:elsewhere" and dataset_identity(tmp_path) == "release"
    assert touched(look, frozenset(trainval.val), dataset=here) == 0
    assert touched(look, frozenset(trainval.val), dataset="synth:elsewhere") == len(trainval.val)
    assert check_trainval_use(ledger, trainval, study=None, entry_point="scolio train", dataset=here) is None
    with pytest.raises(LockboxError, match="study 'X'"):
        check_trainval_use(ledger, trainval, study=None, entry_point="scolio train", dataset="synth:elsewhere")
