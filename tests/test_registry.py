"""The registered model without a sweep: a tiny checkpoint logged from code, registered, aliased; versions per
look; its input contract; the names a runs table shows. (After a real smoke study: tests/test_sweep_e2e.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config

from scolio_core import names
from scolio_core.errors import DataError


@pytest.fixture
def store(tmp_path):
    """A sqlite store with the parent run of a (trial-less) sweep `unit`."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment(names.DEFAULT_EXPERIMENT,
                                          artifact_location=(tmp_path / "mlartifacts").as_uri())
    parent = client.create_run(experiment, run_name="unit", tags={
        names.TAG_SWEEP: "unit", names.TAG_ROLE: names.ROLE_PARENT, names.TAG_PROFILE: "smoke",
        names.TAG_TRAINVAL_FINGERPRINT: "f" * 64})
    client.set_terminated(parent.info.run_id, status="FINISHED")
    return uri, parent.info.run_id


def _checkpoint(root, directory, seed):
    import torch

    from scolio_core.data.resolve import resolve_split
    from scolio_core.models import create_model
    from scolio_core.training.checkpoint import write_checkpoint

    config = tiny_config(root)
    torch.manual_seed(seed)
    model = create_model(config.model, config.input.in_channels)
    return write_checkpoint(directory, config=config, model_state=model.state_dict(),
                            split=resolve_split(config).trainval(), pav_stats=None, iteration=3)


def test_register_alias_versions_per_look_and_prediction(synth_root, store, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from scolio_core.data.release import index_release, load_pose
    from scolio_core.evaluation.predict import class_probabilities, load_files, predict_loaded
    from scolio_core.tracking.registry import register_study_model
    from scolio_core.training.checkpoint import read_checkpoint

    uri, parent = store
    first = _checkpoint(synth_root, tmp_path / "first", seed=0)
    look = dict(parent_run_id=parent, study="unit", experiment=names.DEFAULT_EXPERIMENT,
                test_metrics={"test/macro_f1": 0.5, "test/accuracy": 0.625}, test_set_key="k" * 64)
    registered = register_study_model(uri, checkpoint_dir=first, look=1, reopened=False, **look)
    assert (registered.name, registered.version, registered.new) == ("scoliotune-unit", "1", True)
    assert registered.uri == "models:/scoliotune-unit@champion"
    client = MlflowClient(uri)
    assert client.get_run(parent).data.tags[names.TAG_MODEL_URI] == registered.uri
    assert client.get_run(parent).info.status == "FINISHED"  # logging on it did not leave it RUNNING
    version = client.get_model_version_by_alias("scoliotune-unit", "champion")
    assert str(version.version) == "1" and version.run_id == parent
    assert version.tags[names.TAG_TEST_MACRO_F1] == "0.500000"
    # A sweep record without trials or a look is not clean, and the version says so.
    assert version.tags[names.TAG_AUDIT_CLEAN] == "false" and "PROBLEM" in version.tags[names.TAG_AUDIT_VERDICT]
    assert version.tags[names.TAG_TRAINVAL_FINGERPRINT] == "f" * 64

    # Re-registering the same look is a no-op; a second look (another checkpoint) is version 2 and the alias moves.
    assert register_study_model(uri, checkpoint_dir=first, look=1, reopened=False, **look).new is False
    second = _checkpoint(synth_root, tmp_path / "second", seed=1)
    again = register_study_model(uri, checkpoint_dir=second, look=2, reopened=True, **look)
    assert again.version == "2"
    moved = client.get_model_version_by_alias("scoliotune-unit", "champion")
    assert str(moved.version) == "2" and moved.tags[names.TAG_TEST_REOPENED] == "true"

    # The loaded model predicts what the checkpoint predicts through scolio predict's code path.
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(registered.uri)
    checkpoint = read_checkpoint(second)
    config = checkpoint.config.replace(**{"train.device": "cpu"})
    index = index_release(config.data.modality_root("skeleton"))
    files = [str(index[i].path) for i in sorted(index)[:4]]
    expected = predict_loaded(checkpoint, config, *load_files(config, files))
    frame = model.predict({f: load_pose(f) for f in files})
    assert list(frame.index) == files and list(frame.columns) == ["class", "negative", "neutral", "positive"]
    assert frame["class"].tolist() == [("negative", "neutral", "positive")[k] for k in expected.predicted]
    assert frame[["negative", "neutral", "positive"]].to_numpy() == pytest.approx(
        class_probabilities(expected, config), abs=1e-5)


@pytest.mark.parametrize("modality, array, message", [
    ("skeleton", np.zeros((5, 64, 64), np.uint8), r"shape \(5, 64, 64\) \(that is silhouette input\), but this "
                                                  r"model's contract says skeleton"),
    ("silhouette", np.zeros((5, 17, 3), np.float32), "contract says silhouette"),
    ("skeleton", np.zeros((0, 17, 3), np.float32), "empty sequence"),
    ("skeleton", np.full((3, 17, 3), np.nan, np.float32), "NaN or inf"),
    ("skeleton", np.zeros((3, 17, 3), np.int64), "must be a float array"),
    ("silhouette", np.zeros((3, 64, 64), np.float32), "must be uint8"),
    ("skeleton", [[0.0]], "expected a numpy array"),
])
def test_model_input_is_checked_against_the_contract_in_one_line(modality, array, message):
    from scolio_core.tracking.pyfunc_model import _checked

    with pytest.raises(DataError, match=message) as refused:
        _checked(modality, "0", array)
    assert "\n" not in str(refused.value)


def test_input_forms_and_names():
    from scolio_core.tracking.pyfunc_model import _sequences
    from scolio_sweep.engine.callbacks import trial_label

    one = np.zeros((4, 17, 3), np.float32)
    assert _sequences(one)[0] == ["0"] and _sequences([one, one])[0] == ["0", "1"]
    assert _sequences({"a": one})[0] == ["a"]
    with pytest.raises(DataError, match="non-empty list"):
        _sequences([])
    searched = ["input.representation", "input.sigma", "input.joint_weight", "loss.class_weighting", "train.lr",
                "train.warmup"]
    config = {"input.representation": "body-only", "input.sigma": 3.14, "input.joint_weight": 1.0,
              "loss.class_weighting": "weighted", "train.lr": 0.18, "train.warmup": 12}
    assert trial_label(config, searched) == "body-only σ3.1 jw1 weighted lr0.18 warmup=12"
    assert trial_label({"input": {"representation": "silhouette"}, "train": {"lr": 0.05}}, searched) == \
        "silhouette lr0.05"
    assert names.registered_model_name("scoliotune", "a/b:c") == "scoliotune-a-b-c"
    assert names.dataset_digest("0123456789" * 7) == ("0123456789" * 4)[:36]
