"""The `scolio` CLI as a user runs it: synth -> inspect -> train (learns) -> eval (reproduces val exactly)
-> predict -> the test lockbox through `scolio eval --split test`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scolio_core.cli.main import COMMANDS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def scolio(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scolio_core.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


def test_help_lists_every_command():
    done = scolio("--help")
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout
    for name in COMMANDS:
        sub = scolio(name, "--help")
        assert sub.returncode == 0 and "usage: scolio " + name in sub.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    done = scolio("eval", "--checkpoint", str(tmp_path / "nope"), "--data-root", str(tmp_path),
                  "--partition", "x.json", "--split", "val")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "nope" in done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    # 16 frames a sequence (training samples 8; evaluation reads up to 32): half the synthesis, loading and
    # evaluation of 32 for the same val score.
    done = scolio("synth", str(root), "--num-sequences", "240", "--frames", "16", "--train-ratio", "1:1:2",
                  "--quiet", "--force")
    assert done.returncode == 0, done.stderr
    workdir = tmp_path_factory.mktemp("run")
    # 100 of the config's 150 iterations (decay at 80): val macro-F1 0.54 against the 0.37 the test asks for
    # (0.55 with 32 frames; 80 iterations reach 0.54 too, but 60 only 0.32: kept clear of that edge).
    done = scolio("train", "--config", str(REPO / "configs" / "train_cpu.yaml"), "--data-root", str(root),
                  "--workdir", str(workdir),
                  "--set", "train.device=cpu", "--set", "train.iterations=100", "--set", "train.milestones=[80]")
    assert done.returncode == 0, done.stdout + done.stderr
    return root, workdir, json.loads((workdir / "best.json").read_text())


def test_inspect_prints_class_counts(trained):
    root, _, _ = trained
    done = scolio("inspect", str(root), "--partition", str(root / "Scoliosis1K_112.json"))
    assert done.returncode == 0, done.stderr
    for word in ("train", "val", "test", "negative", "neutral", "positive"):
        assert word in done.stdout


def test_train_learns_and_eval_reproduces_val_exactly(trained):
    root, workdir, best = trained
    val_f1 = best["metrics"]["val/macro_f1"]
    # chance: the best constant prediction on this val set (majority class) scores 2p/(1+p)/3 macro-F1
    done = scolio("eval", "--checkpoint", best["checkpoint"], "--data-root", str(root),
                  "--partition", str(root / "Scoliosis1K_112.json"), "--split", "val", "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    counts = [sum(row) for row in report["confusion_matrix"]]
    p = max(counts) / sum(counts)
    constant_f1 = 2 * p / (1 + p) / 3
    assert val_f1 >= constant_f1 + 0.15, (val_f1, constant_f1)
    for key, value in best["metrics"].items():
        assert report["metrics"][key] == value, key


def test_predict_and_the_lockbox(trained, tmp_path):
    root, _, best = trained
    files = sorted((root / "Scoliosis1K-pose-pkl").glob("*/*/*/*.pkl"))[:2]
    done = scolio("predict", "--checkpoint", best["checkpoint"], *map(str, files), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == set(map(str, files))
    for row in out.values():
        assert row["class"] in ("negative", "neutral", "positive")
        assert abs(sum(row["probabilities"].values()) - 1.0) < 1e-5

    ledger = str(tmp_path / "ledger.jsonl")
    args = ["eval", "--checkpoint", best["checkpoint"], "--data-root", str(root),
            "--partition", str(root / "Scoliosis1K_112.json"), "--split", "test", "--ledger", ledger]
    first = scolio(*args)
    assert first.returncode == 0 and "one-shot" in first.stdout, first.stderr
    second = scolio(*args)
    assert second.returncode == 2 and "already looked at 1 time" in second.stderr
    third = scolio(*args, "--reopen")
    assert third.returncode == 0 and "REOPENED" in third.stdout
