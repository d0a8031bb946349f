"""The training loop: bit-exact resume, reporting, checkpoints carrying their contract."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config

from scolio_core.data.resolve import resolve_split
from scolio_core.errors import ConfigError
from scolio_core.training.batches import load_trainval
from scolio_core.training.checkpoint import read_checkpoint
from scolio_core.training.loop import lr_factor, run_training


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("model_name, representation", [("sconet", "body-only"), ("sconet", "silhouette"),
                                                         ("drf", "full-body")])
def test_resume_is_bit_identical_to_an_uninterrupted_run(synth_root, tmp_path, model_name, representation):
    torch.set_num_threads(1)
    config = tiny_config(synth_root, **{"model.name": model_name, "input.representation": representation})
    split = resolve_split(config).trainval()
    data = load_trainval(config, split)

    reports = []
    full = run_training(config, data, tmp_path / "full", lambda m, c: reports.append(m))
    assert [m["iteration"] for m in reports] == [3, 6]

    def stop_after_first(metrics, checkpoint_dir):
        raise Interrupt(str(checkpoint_dir))

    with pytest.raises(Interrupt) as stopped:
        run_training(config, data, tmp_path / "cut", stop_after_first)
    resumed_reports = []
    resumed = run_training(config, data, tmp_path / "cut", lambda m, c: resumed_reports.append(m),
                           resume_from=str(stopped.value))
    assert [m["iteration"] for m in resumed_reports] == [6]
    a = read_checkpoint(full.last_checkpoint).model_state
    b = read_checkpoint(resumed.last_checkpoint).model_state
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed_reports[0]["val/macro_f1"] == reports[1]["val/macro_f1"]


def test_checkpoint_contract_records_the_run(synth_root, tmp_path):
    config = tiny_config(synth_root, **{"model.name": "drf"})
    split = resolve_split(config).trainval()
    result = run_training(config, load_trainval(config, split), tmp_path, lambda m, c: None)
    contract = json.loads((result.best_checkpoint / "contract.json").read_text())
    assert contract["class_names"] == ["negative", "neutral", "positive"]
    assert contract["config"]["input"]["sigma"] == config.input.sigma
    assert contract["split"]["fingerprint"] == split.fingerprint
    assert sorted(contract["split"]["train_ids"]) == sorted(split.train)
    assert contract["pav_stats"] is not None
    # only the best and the latest checkpoints stay on disk
    assert len(list((tmp_path / "checkpoints").glob("iter_*"))) <= 2


def test_the_best_checkpoint_is_chosen_on_the_metric_passed_in(synth_root, tmp_path):
    torch.set_num_threads(1)
    config = tiny_config(synth_root)
    split = resolve_split(config).trainval()
    data = load_trainval(config, split)
    with pytest.raises(ConfigError, match="train/loss"):  # refused before any work
        run_training(config, data, tmp_path / "bad", lambda m, c: None, select_metric="train/loss")
    assert not (tmp_path / "bad").exists()
    reports = []
    result = run_training(config, data, tmp_path / "acc", lambda m, c: reports.append((m, c)),
                          select_metric="val/accuracy")
    best = max(range(len(reports)), key=lambda i: (reports[i][0]["val/accuracy"], -i))  # the first of ties
    assert result.best_metrics == reports[best][0] and result.best_checkpoint == reports[best][1]


def test_schedules():
    config = tiny_config(".", **{"train.iterations": 100, "train.milestones": [50, 80]}).train
    assert lr_factor(config, 0) == 1.0 and lr_factor(config, 50) == pytest.approx(0.1)
    assert lr_factor(config, 80) == pytest.approx(0.01)
    cosine = tiny_config(".", **{"train.iterations": 100, "train.scheduler": "cosine",
                                 "train.warmup_iterations": 10}).train
    assert lr_factor(cosine, 0) == pytest.approx(0.1)
    assert lr_factor(cosine, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 99) < 0.01
