"""`scolio audit`: selection and test use stated from the MLflow record; exit 3 when something is wrong.

The stores are built by tests/test_report.py's `make_sweep` (real sqlite MLflow, real lockbox ledger tags,
a real checkpoint contract artifact on the winner), one sweep per scenario in one database.
"""

from __future__ import annotations

import json

import pytest
from test_report import BEST, make_sweep


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("audit")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    make_sweep(uri, workdir, "clean")
    make_sweep(uri, workdir, "tested-twice", looks=2)
    make_sweep(uri, workdir, "not-best", select="t3")
    make_sweep(uri, workdir, "on-test", selection_split="test")
    make_sweep(uri, workdir, "other-data", tested_trainval="f" * 64)
    return uri


def test_clean_sweep_passes(store, capsys):
    from scolio_core.cli.main import main
    from scolio_core.tracking.audit import audit_sweep

    audit = audit_sweep(store, "clean", "scoliotune")
    assert audit["clean"] and audit["problems"] == []
    assert (audit["selection_split"], audit["selected_trial"], audit["test_evaluations"]) == ("val", BEST, 1)
    assert audit["winner_is_best_by_val"] and audit["winner_value"] == pytest.approx(0.62)
    assert audit["contract"]["trainval_fingerprint"] == audit["trainval_fingerprint"]
    assert main(["audit", "clean", "--tracking-uri", store]) == 0
    assert "VERDICT: CLEAN" in capsys.readouterr().out
    assert main(["audit", "clean", "--tracking-uri", store, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # strict JSON: no NaN
    assert printed["clean"] is True and printed["ledger"][0]["state"] == "opened"


def test_audit_without_a_flag_reads_the_environments_store(store, capsys, monkeypatch):
    from scolio_core.cli.main import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert main(["audit", "clean"]) == 0
    assert "VERDICT: CLEAN" in capsys.readouterr().out


def test_two_test_evaluations_are_flagged(store, capsys):
    from scolio_core.cli.main import main
    from scolio_core.tracking.audit import audit_sweep

    audit = audit_sweep(store, "tested-twice")
    assert audit["test_evaluations"] == 2 and audit["reopened_attempts"] == [2]
    assert any("evaluated 2 times" in p for p in audit["problems"])
    assert main(["audit", "tested-twice", "--tracking-uri", store]) == 3
    assert "PROBLEM" in capsys.readouterr().out


def test_winner_that_is_not_best_by_val_is_flagged(store):
    from scolio_core.cli.main import main
    from scolio_core.tracking.audit import audit_sweep

    audit = audit_sweep(store, "not-best")
    assert not audit["winner_is_best_by_val"]
    assert (audit["winner_value"], audit["best_value"]) == (pytest.approx(0.57), pytest.approx(0.62))
    assert any("t3" in p and "t1" in p for p in audit["problems"])
    assert main(["audit", "not-best", "--tracking-uri", store]) == 3


@pytest.mark.parametrize("sweep, phrase", [("on-test", "selected on 'test'"), ("other-data", "contract mismatch")])
def test_selection_on_test_and_contract_mismatch_are_flagged(store, sweep, phrase):
    from scolio_core.tracking.audit import audit_sweep

    audit = audit_sweep(store, sweep)
    assert not audit["clean"]
    assert any(phrase in p for p in audit["problems"]), audit["problems"]
