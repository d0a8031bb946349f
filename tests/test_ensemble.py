"""A seed ensemble as one model artifact: its logits are the mean of its members', it round-trips and refuses
tampered members, mixed configurations and foreign folders, it is one look in the lockbox, and the registered
MLflow model predicts what `scolio predict --checkpoint <ensemble>` prints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import tiny_config

from scolio_core import names
from scolio_core.errors import ContractError
from scolio_core.training.checkpoint import (
    checkpoint_hash,
    clear_for_copy,
    prune_checkpoints,
    read_checkpoint,
    remove_checkpoint,
)
from scolio_core.training.ensemble import (
    ENSEMBLE_MANIFEST,
    ENSEMBLE_MARKER,
    Ensemble,
    model_hash,
    read_model,
    write_ensemble,
)

RULE = "the selected configuration's seeds 0, 1, 2 (declared before training)"


def _member(root, directory, seed, **overrides):
    """A tiny untrained checkpoint of seed `seed` (its own initial weights, iteration and metrics)."""
    import torch

    from scolio_core.data.resolve import resolve_split
    from scolio_core.models import create_model
    from scolio_core.render.pav import PAVNormalizer
    from scolio_core.training.checkpoint import write_checkpoint

    config = tiny_config(root, **{"train.seed": seed, **overrides})
    torch.manual_seed(seed)
    model = create_model(config.model, config.input.in_channels)
    # DRF members carry the PAV statistics of their (shared) training ids.
    pavs = np.random.default_rng(0).random((8, 8, 3))
    stats = PAVNormalizer().fit(pavs).to_dict() if config.model.needs_pav else None
    return write_checkpoint(directory, config=config, model_state=model.state_dict(),
                            split=resolve_split(config).trainval(), pav_stats=stats, iteration=3 + seed,
                            metrics={"val/macro_f1": 0.1 * seed})


@pytest.fixture(scope="module")
def members(synth_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("members")
    return [_member(synth_root, base / f"seed{seed}", seed) for seed in (0, 1, 2)]


def _val_ids(config):
    from scolio_core.data.resolve import resolve_split

    return resolve_split(config).val


@pytest.mark.parametrize("model_name", ["sconet", "drf"])
def test_ensemble_logits_are_the_mean_of_its_members_logits(synth_root, tmp_path, members, model_name):
    from scolio_core.evaluation.predict import predict_checkpoint

    sources = members if model_name == "sconet" else \
        [_member(synth_root, tmp_path / f"drf{seed}", seed, **{"model.name": "drf"}) for seed in (0, 1)]
    ensemble = read_model(write_ensemble(tmp_path / "ens", sources, rule=RULE))
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == len(sources)
    ids = _val_ids(ensemble.config)
    combined = predict_checkpoint(ensemble, ensemble.config, ids)
    singles = [predict_checkpoint(read_checkpoint(path), ensemble.config, ids) for path in sources]
    assert combined.ids == singles[0].ids and np.array_equal(combined.labels, singles[0].labels)
    assert combined.logits.shape == (len(ids), 3)
    np.testing.assert_allclose(combined.logits, np.mean([s.logits for s in singles], axis=0), atol=1e-6)
    assert not np.allclose(combined.logits, singles[0].logits, atol=1e-4)  # not just its first member


def test_write_read_round_trip_and_rewrite(members, tmp_path):
    target = write_ensemble(tmp_path / "ens", members, rule=RULE)
    model = read_model(target)
    assert model.seeds == (0, 1, 2) and model.rule == RULE
    assert model.config.train.seed == 0 and model.split == read_checkpoint(members[0]).split
    assert [checkpoint_hash(m.directory) for m in model.members] == [checkpoint_hash(p) for p in members]
    manifest = (target / ENSEMBLE_MANIFEST).read_bytes()
    assert model_hash(target) == hashlib.sha256(manifest).hexdigest()
    assert model_hash(members[0]) == checkpoint_hash(members[0])
    assert isinstance(read_model(members[0]), type(read_checkpoint(members[0])))  # a checkpoint reads as one
    # Content only: the same members and rule written elsewhere are the same model.
    assert model_hash(write_ensemble(tmp_path / "again", members, rule=RULE)) == model_hash(target)

    # Re-writing over an ensemble scoliotune wrote replaces it (and leaves no sibling behind).
    write_ensemble(target, members[:2], rule="seeds 0 and 1")
    assert read_model(target).seeds == (0, 1) and not (target / "member-2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "ens"]


def test_a_tampered_or_swapped_member_is_refused(members, tmp_path):
    target = write_ensemble(tmp_path / "ens", members, rule=RULE)
    weights = target / "member-1" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ContractError, match="member-1.*sha256 does not match"):
        read_model(target)

    # A whole, valid checkpoint put in a member's place: its own hashes verify, the manifest's do not.
    other = write_ensemble(tmp_path / "other", members, rule=RULE)
    swapped = other / "member-1"
    for name in ("weights.pt", "contract.json", "hashes.json"):
        (swapped / name).write_bytes((members[2] / name).read_bytes())
    with pytest.raises(ContractError, match="checkpoint hash is not the one ensemble.json records"):
        read_model(other)
    with pytest.raises(ContractError, match="checkpoint hash is not the one ensemble.json records"):
        model_hash(other)


@pytest.mark.parametrize("name", ["../seed0", "/tmp/member-0", "member-0/..", "member-1"])
def test_manifest_names_are_plain_member_folders(members, tmp_path, name):
    target = write_ensemble(tmp_path / "ens", members[:1], rule=RULE)
    manifest = json.loads((target / ENSEMBLE_MANIFEST).read_text())
    manifest["members"][0]["dir"] = name
    (target / ENSEMBLE_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ContractError, match=r"members\[0\] must be"):
        read_model(target)


def test_a_symlinked_member_is_refused(members, tmp_path):
    import shutil

    target = write_ensemble(tmp_path / "ens", members[:1], rule=RULE)
    shutil.rmtree(target / "member-0")
    (target / "member-0").symlink_to(members[0])
    with pytest.raises(ContractError, match="not a link or a file"):
        read_model(target)
    assert not remove_checkpoint(target) and members[0].is_dir()


def test_members_of_another_configuration_are_refused_naming_the_field(synth_root, members, tmp_path):
    odd = _member(synth_root, tmp_path / "sigma", 3, **{"input.sigma": 3.0})
    with pytest.raises(ContractError, match=r"sigma: input\.sigma is 3\.0.*differ only in train\.seed") as refused:
        write_ensemble(tmp_path / "ens", [*members, odd], rule=RULE)
    assert "\n" not in str(refused.value) and not (tmp_path / "ens").exists()
    with pytest.raises(ContractError, match="train.seed 0 is also that of"):
        write_ensemble(tmp_path / "ens", [members[0], members[0]], rule=RULE)
    with pytest.raises(ContractError, match="1 to 32 members"):
        write_ensemble(tmp_path / "ens", [], rule=RULE)


def test_only_what_scoliotune_wrote_is_replaced_or_removed(members, tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(ContractError, match="not a scoliotune checkpoint or ensemble.*nothing was deleted"):
        write_ensemble(users, members, rule=RULE)
    assert sorted(p.name for p in users.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]  # no temporary sibling left

    # An ensemble someone added a file to is no longer ours: not replaced, not removed.
    ours = write_ensemble(tmp_path / "ens", members, rule=RULE)
    (ours / "extra.txt").write_text("mine")
    with pytest.raises(ContractError, match="it holds extra.txt"):
        clear_for_copy(ours)
    assert not remove_checkpoint(ours) and (ours / "extra.txt").exists()
    (ours / "extra.txt").unlink()
    (ours / ENSEMBLE_MARKER).write_bytes(b"someone else's\n")
    assert not remove_checkpoint(ours) and ours.exists()

    # Ours: clear_for_copy and remove_checkpoint take it; prune_checkpoints removes checkpoints only.
    clean = write_ensemble(tmp_path / "parent" / "ens", members, rule=RULE)
    assert prune_checkpoints(clean.parent, keep=()) == [] and clean.exists()
    clear_for_copy(clean)
    assert not clean.exists()
    assert remove_checkpoint(write_ensemble(clean, members[:1], rule=RULE)) and not clean.exists()


def test_the_ensemble_is_one_look(members, tmp_path):
    from scolio_core.data.resolve import resolve_split
    from scolio_core.evaluation.contract import check_contract
    from scolio_core.evaluation.lockbox import evaluate_test_once
    from scolio_core.evaluation.looks import FileLedger

    ensemble = read_model(write_ensemble(tmp_path / "ens", members, rule=RULE))
    config = ensemble.config
    split = resolve_split(config)
    with pytest.raises(ContractError, match=r"member-0: input\.sigma.*member-2: input\.sigma"):
        check_contract(ensemble, config.replace(**{"input.sigma": 3.0}), split.test, "test")
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    result = evaluate_test_once(ensemble, config, split, ledger, bootstrap_resamples=20)
    assert result.look == 1 and not result.reopened and len(result.predictions) == len(split.test)
    rows = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert [(row["state"], row["look"]) for row in rows] == [("opened", 1), ("completed", 1)]
    opened = rows[0]
    assert opened["checkpoint_hash"] == model_hash(ensemble.directory) and opened["rule"] == RULE
    assert opened["members"] == {f"member-{k}": checkpoint_hash(path) for k, path in enumerate(members)}
    assert len(ledger.looks(result.test_set.key)) == 1
    # A study's re-run reuses its look and says which model that look tested: the sweep refuses to register
    # another model under its numbers (scolio_sweep/stages/finish.py open_test), e.g. the first seed alone.
    again = evaluate_test_once(ensemble, config, split, ledger, study="s", bootstrap_resamples=20,
                               reopen=True)  # a study's first look (REOPENED: the standalone look came first)
    single = read_checkpoint(members[0])
    reused = evaluate_test_once(single, config, split, ledger, study="s", bootstrap_resamples=20)
    assert reused.reused and reused.look == again.look and reused.model_hash == model_hash(ensemble.directory)
    assert reused.model_hash != checkpoint_hash(members[0])


def test_the_registered_ensemble_predicts_what_scolio_predict_prints(synth_root, members, tmp_path, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    from scolio_core.cli.main import main
    from scolio_core.data.release import index_release, load_pose
    from scolio_core.tracking.registry import load_registered_model, register_study_model

    ensemble_dir = write_ensemble(tmp_path / "ens", members, rule=RULE)
    config = read_model(ensemble_dir).config
    index = index_release(config.data.modality_root("skeleton"))
    files = [str(index[i].path) for i in sorted(index)[:4]]
    assert main(["predict", "--checkpoint", str(ensemble_dir), *files, "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment(names.DEFAULT_EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment, run_name="unit", tags={names.TAG_SWEEP: "unit",
                                                                  names.TAG_ROLE: names.ROLE_PARENT})
    client.set_terminated(parent.info.run_id, status="FINISHED")
    registered = register_study_model(uri, parent_run_id=parent.info.run_id, checkpoint_dir=ensemble_dir,
                                      study="unit", experiment=names.DEFAULT_EXPERIMENT,
                                      test_metrics={"test/macro_f1": 0.5}, test_set_key="k" * 64, look=1,
                                      reopened=False)
    version = client.get_model_version_by_alias(registered.name, names.MODEL_ALIAS)
    assert version.tags[names.TAG_CHECKPOINT_HASH] == model_hash(ensemble_dir)

    previous = mlflow.get_tracking_uri()
    try:
        checked = load_registered_model(registered.uri, uri)
        mlflow.set_tracking_uri(uri)
        plain = mlflow.pyfunc.load_model(registered.uri)
    finally:
        mlflow.set_tracking_uri(previous)
    inputs = {f: load_pose(f) for f in files}
    for model in (checked, plain):
        frame = model.predict(inputs)
        assert list(frame.index) == files
        assert frame["class"].tolist() == [printed[f]["class"] for f in files]
        for name in ("negative", "neutral", "positive"):
            assert frame[name].tolist() == pytest.approx([printed[f]["probabilities"][name] for f in files],
                                                         abs=1e-6)
