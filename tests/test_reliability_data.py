"""Bad input is refused before any compute: broken and malicious data files, bad configuration, tampered
and malicious checkpoints.

Each data case breaks a copy of the synthetic release and runs the real sweep CLI as a subprocess; the
subprocesses start in parallel from one module fixture. A refusal must be exit code 2 with one `error:`
line naming the offending file, no traceback, no Tune experiment or trial directory and no MLflow run; a
malicious pickle's payload (it would create a file) must never run. Configuration cases fail before Ray or
MLflow is touched, so they call the sweep scripts' main() in-process and check that no Ray was started.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
POSE, SIL = "Scoliosis1K-pose-pkl", "Scoliosis1K-sil-pkl"
PARTITION = "Scoliosis1K_112.json"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class _Payload:
    """Unpickling this calls open(path, "w"): the file's existence proves the payload ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pkl(root: Path, modality: str, seq_id: str) -> Path:
    (path,) = (root / modality / seq_id).glob("*/*/*.pkl")
    return path


@dataclass
class Case:
    name: str
    args: list[str]  # sweep script arguments besides the run's own paths
    expect: list[str]  # substrings the error line must contain (file, field, value)
    script: str = "representation"
    payload_marker: Path | None = None
    data_root: Path | None = None
    result: dict = field(default_factory=dict)


def _build_data_cases(synth_root: Path, base: Path) -> dict[str, Case]:
    partition = json.loads((synth_root / PARTITION).read_text())
    train_id, other_train_id, test_id = partition["TRAIN_SET"][0], partition["TRAIN_SET"][1], partition["TEST_SET"][0]
    cases: dict[str, Case] = {}

    def broken(name: str) -> Path:
        root = base / name / "data"
        shutil.copytree(synth_root, root)
        return root

    def data_case(name: str, root: Path, expect: list[str], **kwargs) -> None:
        cases[name] = Case(name, ["--data-root", str(root)], expect, data_root=root, **kwargs)

    # -------------------------------------------------------------------------------- data files
    root = broken("truncated")
    path = _pkl(root, SIL, train_id)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    data_case("truncated", root, [str(path), "truncated"])

    root = broken("wrong-shape")
    path = _pkl(root, POSE, train_id)
    path.write_bytes(pickle.dumps(np.zeros((16, 17, 2), dtype=np.float32)))
    data_case("wrong-shape", root, [str(path), "(T, 17, 3)", "(16, 17, 2)"])

    root = broken("nan")
    path = _pkl(root, POSE, test_id)  # a test file: test data is validated before the search too
    poses = pickle.loads(path.read_bytes())
    poses[3, 5, 1] = np.nan
    path.write_bytes(pickle.dumps(poses))
    data_case("nan", root, [str(path), "NaN"])

    root = broken("malicious")
    path = _pkl(root, POSE, test_id)
    marker = base / "malicious" / "payload-ran"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    data_case("malicious", root, [str(path), "refused to load global io.open"], payload_marker=marker)

    root = broken("missing-id")
    shutil.rmtree(root / POSE / test_id)
    data_case("missing-id", root, [str(root / PARTITION), test_id, "absent"])

    root = broken("two-classes")
    (class_dir,) = [p for p in (root / POSE / train_id).iterdir() if p.is_dir()]
    other = "positive" if class_dir.name != "positive" else "negative"
    shutil.copytree(class_dir, class_dir.with_name(other))
    data_case("two-classes", root, [f"sequence {train_id}", "more than one class", other])

    # Tests run as root here, and root reads through chmod 000: a directory in the file's place gives the
    # same OSError-on-read path (EISDIR) and works for everyone.
    root = broken("unreadable")
    path = _pkl(root, SIL, other_train_id)
    path.unlink()
    path.mkdir()
    data_case("unreadable", root, [str(path), "cannot read"])

    if not IS_ROOT:
        root = broken("chmod-000")
        path = _pkl(root, POSE, other_train_id)
        path.chmod(0)
        data_case("chmod-000", root, [str(path), "cannot read", "Permission denied"])

    return cases


def _run(case: Case, base: Path) -> None:
    workdir = base / case.name
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "mlflow.db"
    args = ["--name", f"bad-{case.name}", "--profile", "smoke", "--num-samples", "2",
            "--tracking-uri", f"sqlite:///{db}", "--storage-path", str(workdir / "ray_results"),
            "--results-dir", str(workdir / "results"), "--cache-dir", str(workdir / "cache"), *case.args]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    done = subprocess.run([sys.executable, str(ROOT / "sweeps" / f"{case.script}.py"), *args], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    case.result = {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "workdir": workdir}


@pytest.fixture(scope="module")
def refusals(synth_root, tmp_path_factory) -> dict[str, Case]:
    base = tmp_path_factory.mktemp("refusals")
    cases = _build_data_cases(synth_root, base)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda case: _run(case, base), cases.values()))
    return cases


def _mlflow_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0


DATA_CASES = ["truncated", "wrong-shape", "nan", "malicious", "missing-id", "two-classes", "unreadable", "chmod-000"]


@pytest.mark.slow
@pytest.mark.parametrize("name", DATA_CASES)
def test_sweep_refuses_bad_data_before_any_trial(refusals, name):
    if name == "chmod-000" and IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root reading (see the 'unreadable' case)")
    case = refusals[name]
    out = case.result
    detail = f"exit {out['code']}\nstdout: {out['stdout'][-2000:]}\nstderr: {out['stderr'][-3000:]}"
    assert out["code"] == 2, detail
    assert "Traceback" not in out["stderr"], detail
    errors = [line for line in out["stderr"].splitlines() if "error:" in line]
    assert len(errors) == 1, detail
    for needle in case.expect:
        assert needle in errors[0], f"{needle!r} not in the error line: {errors[0]}"
    # Nothing was started: no Tune experiment or trial directory, no MLflow run, no results, no synthesis.
    workdir = out["workdir"]
    assert not (workdir / "ray_results").exists(), sorted(p.name for p in (workdir / "ray_results").rglob("*"))
    assert _mlflow_runs(workdir / "mlflow.db") == 0
    assert not (workdir / "results").exists() and not (workdir / "cache").exists()
    if case.payload_marker is not None:
        assert not case.payload_marker.exists(), "the malicious pickle's payload ran"


# ------------------------------------------------------------------------------------------- configuration
# Configuration is refused before Ray or MLflow is touched, so these run the sweep scripts' main() in this
# process (no subprocess start-up); that Ray never started here is then checked directly.
CONFIG_CASES = ["set-unknown-representation", "profile-unknown-representation", "negative-sigma",
                "overlapping-partition", "unreachable-tracking", "finetune-without-baseline"]


def _config_case(name: str, synth_root: Path, workdir: Path) -> tuple[str, list[str], list[str]]:
    """(script, extra arguments, substrings the error line must contain) for one bad configuration."""
    good = ["--data-root", str(synth_root)]
    partition = json.loads((synth_root / PARTITION).read_text())
    if name == "set-unknown-representation":
        return "representation", good + ["--set", "input.representation=stick-figure"], \
            ["input.representation", "stick-figure"]
    if name == "profile-unknown-representation":
        profile = workdir / "smoke-typo.yaml"
        text = (ROOT / "sweeps" / "smoke.yaml").read_text()
        assert "choice: [full-body," in text, "sweeps/smoke.yaml changed: update this test's profile edit"
        profile.write_text(text.replace("choice: [full-body,", "choice: [stick-figure, full-body,"))
        return "representation", good + ["--profile", str(profile)], \
            [str(profile), "input.representation", "stick-figure"]
    if name == "negative-sigma":
        return "representation", good + ["--set", "input.sigma=-2"], ["input.sigma", "-2"]
    if name == "overlapping-partition":
        overlap = workdir / "overlap.json"
        leaked = partition["TRAIN_SET"][0]
        overlap.write_text(json.dumps({"TRAIN_SET": partition["TRAIN_SET"],
                                       "TEST_SET": partition["TEST_SET"] + [leaked]}))
        return "representation", good + ["--partition", str(overlap)], \
            [str(overlap), "TRAIN_SET and TEST_SET", leaked]
    if name == "unreachable-tracking":
        with socket.socket() as probe:  # a port nobody listens on (closed again before the sweep starts)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return "representation", good + ["--tracking-uri", f"http://127.0.0.1:{port}"], \
            [f"http://127.0.0.1:{port}", "cannot be reached"]
    # A finetune naming a baseline sweep that does not exist (the store and its experiment do).
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").create_experiment("scoliotune")
    return "finetune", ["--profile", "finetune_smoke", "--from-sweep", "nonexistent"], ["--from-sweep", "nonexistent"]


@pytest.mark.parametrize("name", CONFIG_CASES)
def test_sweep_refuses_bad_configuration_before_any_compute(name, synth_root, tmp_path, monkeypatch, capsys):
    import importlib

    import ray

    monkeypatch.chdir(tmp_path)
    for key in ("MLFLOW_TRACKING_URI", "PYTHONPATH", "RAY_ADDRESS"):
        monkeypatch.setenv(key, "")  # records the original value, so whatever a script sets is undone
        monkeypatch.delenv(key)
    script, extra, expect = _config_case(name, synth_root, tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "sweeps"))  # the entry scripts are scripts, not a package
    main = importlib.import_module(script).main
    was_up = ray.is_initialized()
    code = main(["--name", f"bad-{name}", "--profile", "smoke", "--num-samples", "2",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "--storage-path", str(tmp_path / "ray_results"), "--results-dir", str(tmp_path / "results"),
                 "--cache-dir", str(tmp_path / "cache"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in expect:
        assert needle in errors[0], f"{needle!r} not in the error line: {errors[0]}"
    assert ray.is_initialized() == was_up  # no Ray started for it
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "results").exists()
    assert not (tmp_path / "cache").exists()  # nor a synthetic data set made
    assert _mlflow_runs(tmp_path / "mlflow.db") == 0


def test_the_malicious_pickle_is_live(tmp_path):
    # Guards the case above against passing vacuously: plain pickle really would run this payload.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


# ------------------------------------------------------------------------------------------- checkpoints




@pytest.fixture
def checkpoint(synth_root, tmp_path) -> Path:
    from conftest import tiny_config

    from scolio_core.data.resolve import resolve_split
    from scolio_core.models import create_model
    from scolio_core.training.checkpoint import write_checkpoint

    config = tiny_config(synth_root)
    model = create_model(config.model, config.input.in_channels)
    return write_checkpoint(tmp_path / "ckpt", config=config, model_state=model.state_dict(),
                            split=resolve_split(config).trainval(), pav_stats=None, iteration=6)


def _scolio_eval(checkpoint: Path, synth_root: Path, capsys) -> tuple[int, str]:
    from scolio_core.cli.main import main

    code = main(["eval", "--checkpoint", str(checkpoint), "--data-root", str(synth_root),
                 "--partition", str(synth_root / PARTITION), "--split", "val", "--device", "cpu", "--json"])
    return code, capsys.readouterr().err


def test_eval_accepts_the_untampered_checkpoint(checkpoint, synth_root, capsys):
    import torch

    torch.set_num_threads(1)
    code, err = _scolio_eval(checkpoint, synth_root, capsys)
    assert code == 0, err


def _rehash(directory: Path) -> None:
    from scolio_core.training.checkpoint import HASHES, sha256_file

    hashes = json.loads((directory / HASHES).read_text())
    (directory / HASHES).write_text(json.dumps({name: sha256_file(directory / name) for name in hashes}))


@pytest.mark.parametrize("victim", ["weights.pt", "contract.json", "hashes.json"])
def test_eval_refuses_a_tampered_checkpoint_naming_the_file(checkpoint, synth_root, capsys, victim):
    path = checkpoint / victim
    if victim == "weights.pt":
        path.write_bytes(path.read_bytes()[:-64])  # truncated
    elif victim == "contract.json":
        contract = json.loads(path.read_text())
        contract["config"]["input"]["sigma"] = 2.0  # a different preprocessing than the weights were trained on
        path.write_text(json.dumps(contract))
    else:
        path.unlink()
    code, err = _scolio_eval(checkpoint, synth_root, capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("scolio eval: error:"), err
    assert str(checkpoint) in lines[0] and victim in lines[0], err


def test_eval_refuses_malicious_weights_even_with_matching_hashes(checkpoint, synth_root, capsys, tmp_path):
    # An attacker who rewrites hashes.json gets past the hash check; weights_only=True must still stop the
    # payload, and the CLI must say so in one line naming the file (not a traceback).
    import torch

    marker = tmp_path / "payload-ran"
    state = torch.load(checkpoint / "weights.pt", weights_only=True)
    torch.save({**state, "extra": _Payload(marker)}, checkpoint / "weights.pt")
    _rehash(checkpoint)
    try:
        code, err = _scolio_eval(checkpoint, synth_root, capsys)
    finally:
        assert not marker.exists(), "the payload in weights.pt ran"
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(checkpoint / "weights.pt") in lines[0], err
