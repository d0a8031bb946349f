"""Shared fixtures: one small synthetic release per test session, tiny CPU configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    # Without --tracking-uri, commands use $MLFLOW_TRACKING_URI, else the checkout's mlflow.db (and its
    # test-set ledger): tests never touch the user's store.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'default-store.db'}")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """60 sequences x 16 frames, 1:1:2 training ratio, both modalities and Scoliosis1K_112.json."""
    from scolio_core.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, num_sequences=60, frames=16, train_ratio=(1, 1, 2), seed=0, progress=False, overwrite=True)
    return root


def tiny_config(root: Path, **overrides):
    """A config that trains in seconds on CPU (width 4, 32x22 maps, 8 parts)."""
    from scolio_core.config import ExperimentConfig

    values = {
        "data.root": str(root), "data.partition": "Scoliosis1K_112.json", "data.val_fraction": 0.25,
        "model.width": 4, "model.parts": 8, "input.map_size": 32, "input.side_crop": 5,
        "train.iterations": 6, "train.eval_every": 3, "train.milestones": [4], "train.batch_ids": 4,
        "train.batch_samples": 2, "train.frames": 6, "train.max_eval_frames": 16, "train.eval_batch_size": 8,
        "train.device": "cpu",
    }
    values.update(overrides)
    return ExperimentConfig.from_dict(values)


READ_LOG_SITE = Path(__file__).resolve().parent / "_read_log"


def read_log_env(path: Path) -> dict[str, str]:
    """Environment for processes a test starts: each (and each process it starts, Ray workers included) logs
    every pkl it reads to `path`, through tests/_read_log/sitecustomize.py and the library's read hook."""
    paths = [str(READ_LOG_SITE), str(READ_LOG_SITE.parents[1])]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    return {"SCOLIO_TEST_READ_LOG": str(path), "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def ray_with_access_log(tmp_path_factory):
    """A local Ray whose workers log every pkl they read (read_log_env), as does this process."""
    import ray
    from _read_log.sitecustomize import install

    from scolio_core.data.release import set_read_hook

    path = tmp_path_factory.mktemp("access") / "reads.tsv"
    values = read_log_env(path)
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    install(path)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield path
    ray.shutdown()
    set_read_hook(None)
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def access_log_reads(path: Path, start: int = 0) -> list[tuple[int, str]]:
    """(pid, sequence id) of every pkl read logged to a read_log_env file, from line `start` on."""
    lines = path.read_text().splitlines()[start:] if path.exists() else []
    return [(int(pid), seq_id) for pid, seq_id, _ in (line.split("\t") for line in lines)]

def tune_result_rows(paths: list[Path]) -> dict[str, list[dict]]:
    """Every result Tune recorded in these result.json files, per trial id, in order (a line still being
    written, or a file that vanished, is skipped)."""
    found: dict[str, list[dict]] = {}
    for path in sorted(paths):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            found.setdefault(row["trial_id"], []).append(row)
    return found
