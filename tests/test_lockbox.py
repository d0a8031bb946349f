"""The one-shot test lockbox: looks keyed by the test set, refusals, reopen labelling, crash-safety, atomic
claims between processes, and both ledgers (a JSON-lines file and a real MLflow store)."""

from __future__ import annotations

import json
import multiprocessing

import pytest
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from scolio_core.data.resolve import resolve_split
from scolio_core.errors import ContractError, LockboxError
from scolio_core.evaluation.lockbox import decide, evaluate_test_once
from scolio_core.evaluation.looks import FileLedger, resolve_test_set, test_set_key
from scolio_core.tracking.ledger import MlflowLedger, ParentRunLog
from scolio_core.training.batches import load_trainval
from scolio_core.training.checkpoint import read_checkpoint
from scolio_core.training.loop import run_training


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    config = tiny_config(synth_root)
    split = resolve_split(config)
    result = run_training(config, load_trainval(config, split.trainval()), tmp_path_factory.mktemp("run"),
                          lambda m, c: None)
    return read_checkpoint(result.best_checkpoint), config, split


def test_the_key_is_the_test_set_not_its_file_or_order():
    labels = {"00001": 0, "00002": 2, "00003": 1}
    key = test_set_key(["00003", "00001", "00002"], labels, "skeleton")
    assert key == test_set_key(["00001", "00002", "00003"], labels, "skeleton")
    assert key != test_set_key(["00001", "00002", "00003"], {**labels, "00003": 2}, "skeleton")  # a class moved
    assert key != test_set_key(["00001", "00002", "00003"], labels, "silhouette")
    assert key != test_set_key(["00001", "00002"], labels, "skeleton")


def test_a_standalone_second_look_is_refused_and_reopen_is_labelled(trained, tmp_path):
    checkpoint, config, split = trained
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    first = evaluate_test_once(checkpoint, config, split, ledger, bootstrap_resamples=50)
    assert not first.reopened and first.look == 1 and first.metrics["test/reopened"] == 0.0
    assert 0.0 <= first.metrics["test/macro_f1"] <= 1.0
    assert first.metrics["test/macro_f1/ci_low"] <= first.metrics["test/macro_f1"] <= first.metrics["test/macro_f1/ci_high"]
    with pytest.raises(LockboxError, match="already looked at 1 time"):
        evaluate_test_once(checkpoint, config, split, ledger)
    again = evaluate_test_once(checkpoint, config, split, ledger, reopen=True, bootstrap_resamples=50)
    assert again.reopened and again.look == 2 and again.metrics["test/reopened"] == 1.0
    looks = ledger.looks(first.test_set.key)
    assert [look["look"] for look in looks] == [1, 2] and all(look["state"] == "completed" for look in looks)
    assert [look["reopened"] for look in looks] == [False, True]
    assert all(look["split_fingerprint"] == split.fingerprint for look in looks)
    # A study is a new research question: it may look at a test set others saw, and the look says so.
    study = evaluate_test_once(checkpoint, config, split, ledger, study="sweep-b", entry_point="sweeps/x.py",
                               bootstrap_resamples=20)
    assert study.look == 3 and study.seen_before == 2 and not study.reopened and study.attempt == 1


def test_a_study_reuses_its_completed_look_and_refuses_a_second_checkpoint(trained, tmp_path):
    checkpoint, config, split = trained
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    first = evaluate_test_once(checkpoint, config, split, ledger, study="s", bootstrap_resamples=20)
    again = evaluate_test_once(checkpoint, config, split, ledger, study="s")  # a restored sweep's re-run
    assert again.reused and again.look == 1 and again.metrics == first.metrics
    assert len(ledger.looks(first.test_set.key)) == 1


def test_decide_rules():
    done = {"look": 1, "study": "s", "state": "completed", "checkpoint_hash": "aaa", "time": "t"}
    rules = dict(standalone=False, reopen=False, reopen_flag="--reopen-test")
    assert decide([done], study="s", **rules).action == "reuse"
    # A re-run of the study reuses its one look even if it would now select another checkpoint; only an
    # explicit reopen looks again.
    assert decide([done], study="s", **rules).recorded == done
    assert decide([done], study="s", **{**rules, "reopen": True}).reopened
    with pytest.raises(LockboxError, match="never completed"):
        decide([{**done, "state": "opened"}], study="s", **rules)
    other = decide([done], study="t", **rules)
    assert other.action == "look" and other.seen_before == 1 and not other.reopened
    with pytest.raises(LockboxError, match="already looked at 1 time"):
        decide([done], study="eval:ccc", **{**rules, "standalone": True})


def test_a_look_that_crashed_still_counts(trained, tmp_path, monkeypatch):
    checkpoint, config, split = trained
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    import scolio_core.evaluation.lockbox as lockbox

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-evaluation")

    monkeypatch.setattr(lockbox, "predict_checkpoint", crash)
    with pytest.raises(RuntimeError):
        evaluate_test_once(checkpoint, config, split, ledger, study="crashy")
    monkeypatch.undo()
    with pytest.raises(LockboxError, match="never completed"):
        evaluate_test_once(checkpoint, config, split, ledger, study="crashy")
    with pytest.raises(LockboxError, match="already looked at 1 time"):
        evaluate_test_once(checkpoint, config, split, ledger)  # a standalone look sees it too


def test_contract_is_checked_before_the_look(trained, tmp_path):
    checkpoint, config, split = trained
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    with pytest.raises(ContractError, match="input.sigma"):
        evaluate_test_once(checkpoint, config.replace(**{"input.sigma": 3.0}), split, ledger)
    assert ledger.looks(resolve_test_set(config, split.test).key) == []  # a refused evaluation is not a look


def test_a_torn_ledger_line_is_one_line_and_stays_a_look(trained, tmp_path, capsys):
    checkpoint, config, split = trained
    path = tmp_path / "ledger.jsonl"
    key = resolve_test_set(config, split.test).key
    path.write_text(json.dumps({"key": "other", "look": 1, "state": "opened"}) + "\n"
                    + '{"checkpoint": "x", "key": "' + key + '", "look": 1, "sta')  # a crash mid-append
    ledger = FileLedger(path)
    assert len(ledger.looks(key)) == 1  # the torn claim may have been a look: it counts
    assert "torn ledger line" in capsys.readouterr().err
    with pytest.raises(LockboxError, match="already looked at 1 time"):
        evaluate_test_once(checkpoint, config, split, ledger)
    result = evaluate_test_once(checkpoint, config, split, ledger, reopen=True, bootstrap_resamples=20)
    assert result.look == 2 and result.reopened
    lines = path.read_text().splitlines()
    assert lines[1].endswith('"sta') and json.loads(lines[2])["look"] == 2  # appended after, not glued on


def _claim(args):
    kind, where, key = args
    ledger = FileLedger(where) if kind == "file" else MlflowLedger(where)
    return ledger.claim(key, 1, {"study": f"racer-{multiprocessing.current_process().pid}"})


@pytest.mark.parametrize("kind", ["file", "mlflow"])
def test_of_racing_claims_for_one_look_exactly_one_wins(tmp_path, kind):
    where = str(tmp_path / "ledger.jsonl") if kind == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    if kind == "mlflow":
        MlflowClient(where).search_experiments()  # create the schema once, not in every racer
    # fork: racers start in milliseconds (spawn would re-import torch and MLflow in each, ~25 s)
    with multiprocessing.get_context("fork").Pool(5) as pool:
        won = pool.map(_claim, [(kind, where, "k" * 64)] * 5)
    assert sorted(won) == [False] * 4 + [True]
    ledger = FileLedger(where) if kind == "file" else MlflowLedger(where)
    assert [look["look"] for look in ledger.looks("k" * 64)] == [1]


def test_the_mlflow_ledger_is_shared_and_mirrored_on_the_parent_run(trained, tmp_path):
    checkpoint, config, split = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("lockbox"))
    first = evaluate_test_once(checkpoint, config, split, MlflowLedger(uri), study="sweep-a", bootstrap_resamples=20,
                               mirror=ParentRunLog(uri, run.info.run_id))
    # Any other entry point on the same store sees that look: a standalone eval is refused.
    with pytest.raises(LockboxError, match="already looked at 1 time"):
        evaluate_test_once(checkpoint, config, split, MlflowLedger(uri))
    data = client.get_run(run.info.run_id).data
    assert data.tags["scolio.lockbox.state"] == "completed"
    assert data.tags["scolio.lockbox.evaluations"] == "1"
    assert data.tags["scolio.test.reopened"] == "false"
    assert data.tags["scolio.test_set"] == first.test_set.key
    assert data.metrics["test/macro_f1"] == pytest.approx(first.metrics["test/macro_f1"])
    (look,) = MlflowLedger(uri).looks(first.test_set.key)
    assert look["study"] == "sweep-a" and look["state"] == "completed" and look["input"]["sigma"] == config.input.sigma
    # Deleting the look's experiment does not undo the look.
    client.delete_experiment(look["ledger_experiment_id"])
    assert len(MlflowLedger(uri).looks(first.test_set.key)) == 1


def _finish_like_a_driver(args):
    """One sweep driver's test step: the lockbox call `scolio_sweep.stages.finish.open_test` makes, in its own process."""
    checkpoint, config, split, uri = args
    try:
        result = evaluate_test_once(checkpoint, config, split, MlflowLedger(uri), study="raced-sweep",
                                    entry_point="sweeps/representation.py", bootstrap_resamples=20,
                                    reopen_flag="--reopen-test")
    except LockboxError as exc:
        return "refused", str(exc)
    return ("reused" if result.reused else "evaluated"), result.look


def test_two_drivers_finishing_one_sweep_at_once_make_one_look(trained, tmp_path):
    checkpoint, config, split = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # the store's schema, before the race
    # spawn, not fork: the children run torch, and a fork of a process whose OpenMP pool has run can hang
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        outcomes = pool.map(_finish_like_a_driver, [(checkpoint, config, split, uri)] * 2)
    kinds = sorted(kind for kind, _ in outcomes)
    # Exactly one evaluates; the other either saw the look in progress (refused: another process is evaluating)
    # or arrived after it completed (reuses the recorded result, as a restored sweep does).
    assert kinds in (["evaluated", "refused"], ["evaluated", "reused"]), outcomes
    key = resolve_test_set(config, split.test).key
    (look,) = MlflowLedger(uri).looks(key)
    assert look["study"] == "raced-sweep" and look["state"] == "completed"


def test_several_models_declared_before_the_look_share_one_look_and_a_rerun_reuses_it(trained, tmp_path):
    from scolio_core.evaluation.lockbox import evaluate_models_once

    checkpoint, config, split = trained
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    models = {"seed0": checkpoint, "seed1": checkpoint}
    first = evaluate_models_once(models, config, split, ledger, study="table-p112", entry_point="sweeps/table.py")
    assert first.look == 1 and not first.reused and set(first.confusion_matrices) == {"seed0", "seed1"}
    assert sum(map(sum, first.confusion_matrices["seed0"])) == len(split.test)
    looks = ledger.looks(first.test_set.key)
    assert len(looks) == 1 and looks[0]["state"] == "completed" and looks[0]["study"] == "table-p112"
    assert set(looks[0]["checkpoint_hashes"]) == {"seed0", "seed1"}
    again = evaluate_models_once(models, config, split, ledger, study="table-p112", entry_point="sweeps/table.py")
    assert again.reused and again.look == 1 and again.confusion_matrices == first.confusion_matrices
    assert len(ledger.looks(first.test_set.key)) == 1
    # The set has been seen: a standalone evaluation is refused; reopened, it agrees with the recorded matrix.
    with pytest.raises(LockboxError, match="already looked at 1 time"):
        evaluate_test_once(checkpoint, config, split, ledger)
    single = evaluate_test_once(checkpoint, config, split, ledger, reopen=True, bootstrap_resamples=20)
    assert single.reopened and single.confusion_matrix == first.confusion_matrices["seed1"]
