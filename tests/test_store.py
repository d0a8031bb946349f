"""tracking/store.py: which MLflow store a command uses when no --tracking-uri is given."""

from __future__ import annotations

from pathlib import Path

import pytest

import scolio_core
from scolio_core.errors import ConfigError
from scolio_core.tracking.store import DEFAULT_TRACKING_URI, open_client, resolve_tracking_uri


def test_the_flag_then_the_environment_then_the_checkout_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri("sqlite:///flag.db") == "sqlite:///flag.db"
    assert resolve_tracking_uri(None) == "sqlite:///from-env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)  # the default does not follow the working directory
    root = Path(scolio_core.__file__).resolve().parents[1]
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == f"sqlite:///{root / 'mlflow.db'}"


def test_a_missing_sqlite_store_is_refused_not_created(tmp_path):
    with pytest.raises(ConfigError, match="no MLflow database"):
        open_client(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
