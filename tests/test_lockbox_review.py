"""What an adversarial review of the rebuilt lockbox got through, each closed: the same sequence under a
second id (a fullwidth-digit folder name, a linked id folder), a stand-in's identity faked by reformatting its
synth_meta.json, a table named after an existing study joining that study's family, and a parent-run record
cut by the store's tag limit crashing the audit."""

from __future__ import annotations

import json
import shutil

import pytest

from scolio_core.errors import ConfigError, DataError, LockboxError


def _copy_root(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root, symlinks=True)
    return root


def test_an_id_folder_named_with_non_ascii_digits_is_refused(synth_root, tmp_path):
    from scolio_core.data.release import index_release

    poses = _copy_root(synth_root, tmp_path) / "Scoliosis1K-pose-pkl"
    first = sorted(p for p in poses.iterdir() if p.is_dir())[0]
    first.rename(poses / "".join(chr(ord("０") + int(c)) for c in first.name))  # fullwidth digits: \d matched them
    with pytest.raises(DataError, match="five-digit ids"):
        index_release(poses)


def test_an_id_folder_that_links_to_another_is_refused(synth_root, tmp_path):
    from scolio_core.data.release import index_release

    poses = _copy_root(synth_root, tmp_path) / "Scoliosis1K-pose-pkl"
    first = sorted(p for p in poses.iterdir() if p.is_dir())[0]
    (poses / "99999").symlink_to(first, target_is_directory=True)  # one sequence, a second id
    with pytest.raises(DataError, match="may not be a link"):
        index_release(poses)


def test_a_stand_ins_identity_is_its_generator_settings_not_its_file_bytes(synth_root, tmp_path):
    from scolio_core.evaluation.looks import dataset_identity

    original = dataset_identity(synth_root)
    assert original.startswith("synth:")
    view = tmp_path / "view"
    view.mkdir()
    meta = json.loads((synth_root / "synth_meta.json").read_text())
    (view / "synth_meta.json").write_text(json.dumps(meta, indent=3) + "\n ")  # reformatted: the same stand-in
    assert dataset_identity(view) == original
    (view / "synth_meta.json").write_text("")  # not a stand-in's record: the release's ids
    assert dataset_identity(view) == "release"
    (view / "synth_meta.json").write_text(json.dumps({"seed": 1}))  # a record without the generator's settings
    assert dataset_identity(view) == "release"
    meta["seed"] += 1  # another generator seed is another data set (same id names, other sequences)
    (view / "synth_meta.json").write_text(json.dumps(meta))
    assert dataset_identity(view) not in (original, "release")


def test_a_table_named_after_a_study_does_not_join_its_family():
    from scolio_core.evaluation.looks import family_of
    from scolio_core.tracking.guard import table_family

    assert table_family("A-p112", "table") == "table:A" != "A"
    assert table_family("A-p112", "representation") is None
    assert family_of({"study": "A-p114", "entry_point": "sweeps/table.py"}) == "table:A"
    assert family_of({"study": "A"}) == "A"


def test_a_cut_parent_record_is_one_line_not_a_traceback(tmp_path):
    from mlflow.tracking import MlflowClient

    from scolio_core.names import TAG_LOCKBOX_ENTRY
    from scolio_core.tracking.ledger import ParentRunLog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x"))
    client.set_tag(run.info.run_id, f"{TAG_LOCKBOX_ENTRY}1.opened", '{"attempt": 1, "state": "op')  # cut short
    with pytest.raises(LockboxError, match="not whole JSON") as info:
        ParentRunLog(uri, run.info.run_id).entries()
    assert "\n" not in str(info.value)


def test_a_table_has_at_most_twenty_seeds():
    from scolio_sweep.settings.partitions import MAX_SEEDS, parse_seeds

    assert parse_seeds(MAX_SEEDS) == list(range(MAX_SEEDS))
    with pytest.raises(ConfigError, match="--seeds must be <= 20"):
        parse_seeds(MAX_SEEDS + 1)


def test_a_file_ledger_edited_before_its_last_line_takes_no_more_looks(synth_root, tmp_path):
    from conftest import tiny_config

    from scolio_core.data.resolve import resolve_split
    from scolio_core.evaluation.lockbox import evaluate_test_once
    from scolio_core.evaluation.looks import FileLedger
    from scolio_core.training.batches import load_trainval
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.loop import run_training

    config = tiny_config(synth_root)
    split = resolve_split(config)
    result = run_training(config, load_trainval(config, split.trainval()), tmp_path / "run", lambda m, c: None)
    checkpoint = read_checkpoint(result.best_checkpoint)
    path = tmp_path / "ledger.jsonl"
    evaluate_test_once(checkpoint, config, split, FileLedger(path), bootstrap_resamples=20)
    first = path.read_text().splitlines()[0]
    assert '"study"' in first
    lines = path.read_text().splitlines()
    lines[0] = first.replace('"study": "', '"study": "x', 1)  # the claim rewritten by hand
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LockboxError, match="no look is taken on an edited ledger") as info:
        evaluate_test_once(checkpoint, config, split, FileLedger(path), reopen=True, bootstrap_resamples=20)
    assert "\n" not in str(info.value)
