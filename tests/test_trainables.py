"""Trainables under a real local Ray: trials never read test data; finetune inherits the baseline contract."""

from __future__ import annotations

import json
import os

import pytest
from conftest import access_log_reads, tiny_config
from ray import tune

from scolio_core.data.resolve import resolve_split
from scolio_core.errors import ContractError
from scolio_core.training.batches import load_trainval
from scolio_core.training.checkpoint import read_checkpoint
from scolio_core.training.loop import run_training
from scolio_sweep.trainables.baseline import train_baseline
from scolio_sweep.trainables.finetune import load_warm_start, train_finetune

pytestmark = pytest.mark.slow


def reads_by_other_processes(path) -> list[tuple[int, str]]:
    return [(pid, seq_id) for pid, seq_id in access_log_reads(path) if pid != os.getpid()]


def test_trials_never_read_test_ids(synth_root, tmp_path, ray_with_access_log):
    config = tiny_config(synth_root)
    split = resolve_split(config)
    space = config.for_trial().to_flat()
    space["input.representation"] = tune.grid_search(["body-only", "silhouette"])
    tuner = tune.Tuner(tune.with_parameters(train_baseline, split=split.trainval()), param_space=space,
                       tune_config=tune.TuneConfig(metric="val/macro_f1", mode="max"),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="leak"))
    results = tuner.fit()
    assert not results.errors and len(results) == 2

    reads = reads_by_other_processes(ray_with_access_log)
    read_ids = {seq_id for _, seq_id in reads}
    assert read_ids, "instrumentation saw no trial reads at all"
    assert read_ids <= set(split.train) | set(split.val)
    assert not read_ids & set(split.test)
    assert set(split.val) <= read_ids  # the trial does evaluate on val

    test_ids = set(split.test)
    for result in results:
        text = json.dumps(result.config) + json.dumps(result.metrics_dataframe.columns.tolist())
        assert result.config["data.partition"] == ""
        assert not any(seq_id in text for seq_id in test_ids)
        assert not any(col.startswith("test") for col in result.metrics_dataframe.columns)
        assert result.metrics["val/n"] == len(split.val)


def test_finetune_refuses_a_contradicting_contract_and_starts_from_the_exact_weights(
        synth_root, tmp_path, ray_with_access_log):
    config = tiny_config(synth_root)
    split = resolve_split(config).trainval()
    baseline = run_training(config, load_trainval(config, split), tmp_path / "base", lambda m, c: None)
    finetune = config.replace(**{"train.init_from": str(baseline.best_checkpoint), "train.optimizer": "adamw",
                                 "train.scheduler": "cosine", "train.lr": 1e-3, "train.milestones": []})
    with pytest.raises(ContractError, match="input.sigma"):
        load_warm_start(finetune.replace(**{"input.sigma": 3.0}), split)
    with pytest.raises(ContractError, match="model.width"):
        load_warm_start(finetune.replace(**{"model.width": 8}), split)
    allowed = finetune.replace(**{"input.sigma": 3.0, "train.allow_contract_change": True})
    assert load_warm_start(allowed, split).directory == baseline.best_checkpoint

    space = finetune.for_trial().to_flat()
    results = tune.Tuner(tune.with_parameters(train_finetune, split=split), param_space=space,
                         tune_config=tune.TuneConfig(metric="val/macro_f1", mode="max"),
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="ft")).fit()
    assert not results.errors
    reported = results[0].metrics_dataframe
    # The finetune's starting point, evaluated before its first step, is exactly the baseline's val score.
    baseline_val = read_checkpoint(baseline.best_checkpoint).contract["metrics"]["val/macro_f1"]
    assert reported["warmstart/val_macro_f1"].iloc[0] == baseline_val
    contract = read_checkpoint(results[0].checkpoint.path).contract
    assert contract["provenance"]["trainable"] == "finetune"
    assert contract["split"]["fingerprint"] == split.fingerprint
