"""Checkpoints: tamper detection, contract checks on evaluation, warm-start contract."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config

from scolio_core.data.resolve import resolve_split
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ContractError
from scolio_core.evaluation.contract import check_contract, warm_start_violations
from scolio_core.models import create_model
from scolio_core.training.checkpoint import (
    HASHES,
    read_checkpoint,
    sha256_file,
    write_checkpoint,
)


@pytest.fixture
def checkpoint_dir(synth_root, tmp_path):
    config = tiny_config(synth_root)
    split = resolve_split(config).trainval()
    model = create_model(config.model, config.input.in_channels)
    return write_checkpoint(tmp_path / "ckpt", config=config, model_state=model.state_dict(), split=split,
                            pav_stats=None, iteration=3)


def test_weights_load_with_weights_only_and_round_trip(checkpoint_dir):
    checkpoint = read_checkpoint(checkpoint_dir)
    raw = torch.load(checkpoint_dir / "weights.pt", weights_only=True)
    assert all(torch.equal(raw[k], checkpoint.model_state[k]) for k in raw)
    assert checkpoint.contract["iteration"] == 3


@pytest.mark.parametrize("victim", ["weights.pt", "contract.json"])
def test_tampered_files_are_refused(checkpoint_dir, victim):
    path = checkpoint_dir / victim
    if victim == "contract.json":
        contract = json.loads(path.read_text())
        contract["config"]["input"]["sigma"] = 3.0
        path.write_text(json.dumps(contract))
    else:
        state = torch.load(path, weights_only=True)
        key = next(iter(state))
        state[key] = state[key] + 1
        torch.save(state, path)
    with pytest.raises(ContractError, match=f"{victim}.*sha256"):
        read_checkpoint(checkpoint_dir)


def test_foreign_class_order_is_refused(checkpoint_dir):
    # A consistent (re-hashed) checkpoint in another class order must still be refused: it needs remapping.
    path = checkpoint_dir / "contract.json"
    contract = json.loads(path.read_text())
    contract["class_names"] = ["negative", "positive", "neutral"]
    path.write_text(json.dumps(contract))
    hashes = json.loads((checkpoint_dir / HASHES).read_text())
    hashes["contract.json"] = sha256_file(path)
    (checkpoint_dir / HASHES).write_text(json.dumps(hashes))
    with pytest.raises(ContractError, match="class order"):
        read_checkpoint(checkpoint_dir)


def test_contract_violations_raise_unless_overridden(checkpoint_dir):
    checkpoint = read_checkpoint(checkpoint_dir)
    other_render = checkpoint.config.replace(**{"input.sigma": 4.0})
    with pytest.raises(ContractError, match="input.sigma"):
        check_contract(checkpoint, other_render, checkpoint.split.val, "val")
    other_modality = checkpoint.config.replace(**{"input.representation": "silhouette"})
    with pytest.raises(ContractError, match="modality"):
        check_contract(checkpoint, other_modality, checkpoint.split.val, "val")
    with pytest.raises(ContractError, match="training ids"):
        check_contract(checkpoint, checkpoint.config, checkpoint.split.train[:2], "test")
    recorded = check_contract(checkpoint, other_render, checkpoint.split.val, "val", override=True)
    assert any("input.sigma" in problem for problem in recorded)
    assert check_contract(checkpoint, checkpoint.config, checkpoint.split.val, "val") == []


def test_warm_start_contract(checkpoint_dir):
    checkpoint = read_checkpoint(checkpoint_dir)
    split = checkpoint.split
    assert warm_start_violations(checkpoint, checkpoint.config, split) == []
    assert any("input.joint_weight" in p for p in warm_start_violations(
        checkpoint, checkpoint.config.replace(**{"input.joint_weight": 2.0}), split))
    moved = TrainValSplit(partition=split.partition, train=split.train[1:], val=split.val + split.train[:1])
    assert any(p.startswith("split") for p in warm_start_violations(checkpoint, checkpoint.config, moved))
