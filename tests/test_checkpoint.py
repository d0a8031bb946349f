"""Checkpoints: tamper detection, contract checks on evaluation, warm-start contract; writes that never delete
what they did not write and survive a crash at any point; hash lists that name only regular files inside."""

from __future__ import annotations

import json
import os
import shutil
import signal

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


# ---- writing never deletes what it did not write; replacing is atomic --------------------------------------


def _rewrite(directory, *, iteration, training_state=None):
    """Write a checkpoint at `directory` with the config and weights of the one already there."""
    old = read_checkpoint(directory)
    return write_checkpoint(directory, config=old.config, model_state=old.model_state, split=old.split,
                            pav_stats=None, iteration=iteration, training_state=training_state)


def _siblings(directory):
    return sorted(p.name for p in directory.parent.iterdir() if p.name.startswith(f".{directory.name}."))


@pytest.mark.parametrize("kind", ["user-file", "nested-user-file", "regular-file", "symlink-to-checkpoint"])
def test_write_refuses_an_existing_target_that_is_not_a_checkpoint(checkpoint_dir, tmp_path, kind):
    target = tmp_path / "target"
    if kind == "user-file":
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
        (target / HASHES).write_text("{}")  # even with a hash list: a file we did not write is never removed
    elif kind == "nested-user-file":  # checkpoint names, but weights.pt is a directory rmtree would recurse into
        (target / "weights.pt").mkdir(parents=True)
        (target / "weights.pt" / "thesis.tex").write_text("years of work")
        (target / HASHES).write_text("{}")
    elif kind == "regular-file":
        target.write_text("years of work")
    else:
        target.symlink_to(checkpoint_dir)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ContractError, match=f"{target}: exists and is .*refusing to replace it") as refused:
        write_checkpoint(target, config=read_checkpoint(checkpoint_dir).config, model_state={}, split=None,
                         pav_stats=None, iteration=9)
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp dir left, nothing deleted
    if kind == "user-file":
        assert (target / "thesis.tex").read_text() == "years of work"
    elif kind == "nested-user-file":
        assert (target / "weights.pt" / "thesis.tex").read_text() == "years of work"
    elif kind == "regular-file":
        assert target.read_text() == "years of work"
    assert read_checkpoint(checkpoint_dir).contract["iteration"] == 3


def test_write_replaces_a_checkpoint_and_fills_an_empty_directory(checkpoint_dir, tmp_path):
    _rewrite(checkpoint_dir, iteration=4, training_state={"iteration": 4})
    replaced = read_checkpoint(checkpoint_dir)
    assert replaced.contract["iteration"] == 4 and replaced.training_state() == {"iteration": 4}
    assert _siblings(checkpoint_dir) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    write_checkpoint(empty, config=replaced.config, model_state=replaced.model_state, split=None, pav_stats=None,
                     iteration=5)
    assert read_checkpoint(empty).contract["iteration"] == 5


@pytest.mark.parametrize("fail_on_call", [1, 2])  # weights.pt, then training_state.pt
def test_a_failed_replacement_keeps_the_old_checkpoint(checkpoint_dir, monkeypatch, fail_on_call):
    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == fail_on_call:
            f.write(b"half a file")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        _rewrite(checkpoint_dir, iteration=4, training_state={"iteration": 4})
    assert len(calls) == fail_on_call  # it failed inside the temporary directory, after it was created
    monkeypatch.undo()
    kept = read_checkpoint(checkpoint_dir)
    assert kept.contract["iteration"] == 3
    assert _siblings(checkpoint_dir) == []  # the temporary directory was removed


def _crash_while_replacing(directory, point):
    """Replace the checkpoint at `directory` in a forked child that dies (os._exit, no cleanup) at `point`."""
    old = read_checkpoint(directory)
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            signal.alarm(60)  # a hung child is killed rather than hanging the suite
            renames, real_rename = [], os.rename

            def rename(src, dst):
                renames.append(src)
                if point == f"rename{len(renames)}":
                    os._exit(9)
                real_rename(src, dst)

            def save(obj, f, *args, **kwargs):
                f.write(b"half")
                os._exit(9)

            os.rename = rename
            if point == "save":
                torch.save = save
            if point == "rmtree":
                shutil.rmtree = lambda *args, **kwargs: os._exit(9)
            write_checkpoint(directory, config=old.config, model_state=old.model_state, split=old.split,
                             pav_stats=None, iteration=4, training_state={"iteration": 4})
        finally:
            os._exit(1)  # reached only if the write finished or failed without crashing at `point`
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("point, survivor", [
    ("save", 3),      # while writing the new files into the temporary directory
    ("rename1", 3),   # before the old checkpoint is renamed aside
    ("rename2", 3),   # old renamed aside, new not yet renamed in: the target name is empty
    ("rmtree", 4),    # new renamed in, old aside copy not yet removed
])
def test_a_crash_at_any_point_leaves_a_whole_checkpoint(checkpoint_dir, point, survivor):
    assert _crash_while_replacing(checkpoint_dir, point) == 9
    if point == "rename2":
        assert not checkpoint_dir.exists() and any(".old-" in name for name in _siblings(checkpoint_dir))
    found = read_checkpoint(checkpoint_dir)  # rolls the aside copy back when the crash left only that
    assert found.directory == checkpoint_dir
    assert found.contract["iteration"] == survivor
    assert found.training_state() == (None if survivor == 3 else {"iteration": 4})
    # The next write settles what the crash left: no aside copy survives it.
    _rewrite(checkpoint_dir, iteration=5)
    assert read_checkpoint(checkpoint_dir).contract["iteration"] == 5
    assert not any(".old-" in name for name in _siblings(checkpoint_dir))


# ---- hashes.json names: plain files inside the checkpoint only -----------------------------------------------


@pytest.fixture
def no_hang():
    def hung(signum, frame):
        raise TimeoutError("reading the checkpoint hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _list(directory, name, digest="0" * 64):
    hashes = json.loads((directory / HASHES).read_text())
    hashes[name] = digest
    (directory / HASHES).write_text(json.dumps(hashes))


@pytest.mark.parametrize("name", ["ABSOLUTE", "../secret.txt", "../../dev/zero", "sub/weights.pt", "..", ""])
def test_hash_list_names_outside_the_directory_are_refused(checkpoint_dir, tmp_path, no_hang, name):
    secret = tmp_path / "secret.txt"
    secret.write_text("the guess is right")
    if name == "ABSOLUTE":
        name = str(secret)  # a correct guess at an outside file's hash must not be confirmable
    _list(checkpoint_dir, name, sha256_file(secret))
    with pytest.raises(ContractError, match=f"{HASHES}: entry .* is not a plain file name inside the checkpoint"):
        read_checkpoint(checkpoint_dir)


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-dev-zero", "symlink-to-a-matching-copy"])
def test_listed_files_that_are_not_regular_files_are_refused_unread(checkpoint_dir, tmp_path, no_hang, kind):
    if kind == "fifo":
        os.mkfifo(checkpoint_dir / "extra.bin")
        _list(checkpoint_dir, "extra.bin")
        victim = checkpoint_dir / "extra.bin"
    elif kind == "symlink-to-dev-zero":
        (checkpoint_dir / "extra.bin").symlink_to("/dev/zero")
        _list(checkpoint_dir, "extra.bin")
        victim = checkpoint_dir / "extra.bin"
    else:  # the right bytes behind a symlink are still refused: what is hashed is what sits in the directory
        victim = checkpoint_dir / "weights.pt"
        copy = tmp_path / "copy.pt"
        copy.write_bytes(victim.read_bytes())
        victim.unlink()
        victim.symlink_to(copy)
    with pytest.raises(ContractError, match=f"{victim}: a (FIFO|symlink), not a regular file"):
        read_checkpoint(checkpoint_dir)
    with pytest.raises(ContractError, match="not a regular file"):
        sha256_file(victim)


def test_a_fifo_hash_list_is_refused_unread(checkpoint_dir, no_hang):
    (checkpoint_dir / HASHES).unlink()
    os.mkfifo(checkpoint_dir / HASHES)
    with pytest.raises(ContractError, match=f"{HASHES}: a FIFO, not a regular file"):
        read_checkpoint(checkpoint_dir)


# ---- an unlisted training_state.pt is never loaded -----------------------------------------------------------


def test_an_unlisted_training_state_is_refused_not_loaded(checkpoint_dir, synth_root, tmp_path, monkeypatch):
    from scolio_core.training import checkpoint as ck
    from scolio_core.training.batches import load_trainval
    from scolio_core.training.loop import run_training

    # Someone drops a training_state.pt into a checkpoint written without one (not in hashes.json).
    torch.save({"iteration": 10**6}, checkpoint_dir / "training_state.pt")
    loaded, real_load = [], ck._load_tensor_bytes
    monkeypatch.setattr(ck, "_load_tensor_bytes", lambda data, path: loaded.append(path.name) or real_load(data, path))

    checkpoint = read_checkpoint(checkpoint_dir)  # predict/eval never need it, so reading still works
    assert loaded == ["weights.pt"]
    with pytest.raises(ContractError, match="training_state.pt: not listed in hashes.json; refusing to load it"):
        checkpoint.training_state()
    config = checkpoint.config
    with pytest.raises(ContractError, match="training_state.pt: not listed in hashes.json"):
        run_training(config, load_trainval(config, checkpoint.split), tmp_path / "resumed", lambda m, c: None,
                     resume_from=str(checkpoint_dir))
    assert "training_state.pt" not in loaded
