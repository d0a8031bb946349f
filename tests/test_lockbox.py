"""The one-shot test lockbox: one look, refusals, reopen labelling, crash-safety, both ledgers."""

from __future__ import annotations

import pytest
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from scolio_core.data.resolve import resolve_split
from scolio_core.errors import ContractError, LockboxError
from scolio_core.evaluation.lockbox import (
    FileLedger,
    evaluate_test_once,
    evaluation_count,
)
from scolio_core.tracking.ledger import MlflowLedger
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


def test_second_look_is_refused_and_reopen_is_labelled(trained, tmp_path):
    checkpoint, config, split = trained
    ledger = FileLedger("sweep-a", tmp_path / "ledger.jsonl")
    first = evaluate_test_once(checkpoint, config, split, ledger, bootstrap_resamples=50)
    assert not first.reopened and first.metrics["test/reopened"] == 0.0
    assert 0.0 <= first.metrics["test/macro_f1"] <= 1.0
    assert first.metrics["test/macro_f1/ci_low"] <= first.metrics["test/macro_f1"] <= first.metrics["test/macro_f1/ci_high"]
    with pytest.raises(LockboxError, match="already evaluated 1 time"):
        evaluate_test_once(checkpoint, config, split, ledger)
    again = evaluate_test_once(checkpoint, config, split, ledger, reopen=True, bootstrap_resamples=50)
    assert again.reopened and again.attempt == 2 and again.metrics["test/reopened"] == 1.0
    entries = ledger.entries()
    assert evaluation_count(entries) == 2
    assert [e["reopened"] for e in entries if e["state"] == "completed"] == [False, True]
    assert all(e["split_fingerprint"] == split.fingerprint for e in entries)
    # another scope (another sweep) has its own single look
    assert evaluation_count(FileLedger("sweep-b", tmp_path / "ledger.jsonl").entries()) == 0


def test_a_look_that_crashed_still_counts(trained, tmp_path, monkeypatch):
    checkpoint, config, split = trained
    ledger = FileLedger("crashy", tmp_path / "ledger.jsonl")
    import scolio_core.evaluation.lockbox as lockbox

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-evaluation")

    monkeypatch.setattr(lockbox, "predict_checkpoint", crash)
    with pytest.raises(RuntimeError):
        evaluate_test_once(checkpoint, config, split, ledger)
    monkeypatch.undo()
    with pytest.raises(LockboxError, match="never completed"):
        evaluate_test_once(checkpoint, config, split, ledger)


def test_contract_is_checked_before_the_look(trained, tmp_path):
    checkpoint, config, split = trained
    ledger = FileLedger("contract", tmp_path / "ledger.jsonl")
    with pytest.raises(ContractError, match="input.sigma"):
        evaluate_test_once(checkpoint, config.replace(**{"input.sigma": 3.0}), split, ledger)
    assert ledger.entries() == []  # a refused evaluation is not a look


def test_mlflow_ledger_records_on_the_parent_run(trained, tmp_path):
    checkpoint, config, split = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("lockbox"))
    ledger = MlflowLedger(uri, run.info.run_id)
    evaluate_test_once(checkpoint, config, split, ledger, bootstrap_resamples=20)
    with pytest.raises(LockboxError):
        evaluate_test_once(checkpoint, config, split, ledger)
    data = client.get_run(run.info.run_id).data
    assert data.tags["scolio.lockbox.state"] == "completed"
    assert data.tags["scolio.lockbox.evaluations"] == "1"
    assert data.tags["scolio.test.reopened"] == "false"
    assert "test/macro_f1" in data.metrics
