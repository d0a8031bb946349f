"""Tests for the synthetic Scoliosis1K stand-in (scolio_core/data/synth.py) and `scolio synth`.

    python -m pytest -q tests/test_synth.py
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from scolio_core import CLASS_NAMES
from scolio_core.cli.main import main as cli_main
from scolio_core.data.release import index_release, load_sequences
from scolio_core.data.synth import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    MIN_SEQUENCES,
    SEVERITY_THRESHOLDS,
    crop_and_centre,
    parse_ratio,
    partition_filename,
    plan_counts,
    synthesize,
)
from scolio_core.errors import ConfigError, DataError

POSE, SIL = "Scoliosis1K-pose-pkl", "Scoliosis1K-sil-pkl"
N, T = 60, 10


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth")
    return out, synthesize(out, num_sequences=N, frames=T, seed=3, progress=False)


def _read(path: Path) -> np.ndarray:
    with path.open("rb") as handle:
        return pickle.load(handle)


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_partition(release) -> None:
    out, summary = release
    split = json.loads((out / "Scoliosis1K_118.json").read_text())
    assert summary.partition_path == out / "Scoliosis1K_118.json"
    train, test = set(split["TRAIN_SET"]), set(split["TEST_SET"])
    assert not train & test
    assert train | test == {f"{i:05d}" for i in range(N)}
    for root in (out / POSE, out / SIL):
        ids = sorted(p.name for p in root.iterdir())
        assert ids == sorted(train | test)
        for seq_id in ids:
            (class_dir,) = list((root / seq_id).iterdir())
            assert class_dir.name in CLASS_NAMES
            assert [p.relative_to(class_dir).as_posix() for p in class_dir.rglob("*.pkl")] == ["000_180/000_180.pkl"]
    # The same id has the same class in both modalities, and the summary counts what is on disk.
    on_disk = {side: {c: 0 for c in CLASS_NAMES} for side in ("train", "test")}
    for seq_id in train | test:
        (pose_class,) = [p.name for p in (out / POSE / seq_id).iterdir()]
        (sil_class,) = [p.name for p in (out / SIL / seq_id).iterdir()]
        assert pose_class == sil_class
        on_disk["train" if seq_id in train else "test"][pose_class] += 1
    assert on_disk == summary.counts
    assert summary.total_frames == N * T


def test_shapes_dtypes_and_dropped_keypoints(release) -> None:
    out, _ = release
    poses = np.stack([_read(p) for p in sorted((out / POSE).rglob("*.pkl"))])
    sils = np.stack([_read(p) for p in sorted((out / SIL).rglob("*.pkl"))])
    assert poses.shape == (N, T, 17, 3) and poses.dtype == np.float32
    assert sils.shape == (N, T, 64, 64) and sils.dtype == np.uint8
    assert set(np.unique(sils)) == {0, 255}
    dropped = poses[..., 2] == 0
    assert 0 < dropped.mean() < 0.05
    assert np.all(poses[dropped][:, :2] == 0.0)  # missing joints are exact zeros, as estimators emit
    kept = poses[~dropped]
    assert kept[:, 0].min() >= 1 and kept[:, 0].max() <= IMAGE_WIDTH - 1
    assert kept[:, 1].min() >= 1 and kept[:, 1].max() <= IMAGE_HEIGHT - 1
    assert 0 < kept[:, 2].min() and kept[:, 2].max() < 1
    # Face points are less confident than shoulders (and much less when walking away).
    assert kept[:, 2].mean() > 0.6
    assert poses[..., 0:3, 2][~dropped[..., 0:3]].mean() < poses[..., 5:7, 2][~dropped[..., 5:7]].mean()


def test_silhouettes_are_centred(release) -> None:
    out, _ = release
    sils = np.concatenate([_read(p) for p in sorted((out / SIL).rglob("*.pkl"))]).astype(float)
    columns = np.arange(64)
    centroid = (sils.sum(axis=1) * columns).sum(axis=1) / sils.sum(axis=(1, 2))
    assert np.all(np.abs(centroid - 32) < 3), centroid.min()
    # Cropped to the person's height: the top and bottom rows are occupied, the outer columns are not.
    assert np.all(sils[:, 0].max(axis=1) > 0) and np.all(sils[:, -1].max(axis=1) > 0)
    assert sils[:, :, :8].sum() == 0 and sils[:, :, -8:].sum() == 0


def test_crop_and_centre_moves_an_offset_person() -> None:
    mask = np.zeros((300, 500), np.uint8)
    mask[50:250, 380:440] = 255  # a 200 x 60 block at the right edge
    out = crop_and_centre(mask)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    cols = np.flatnonzero(out.any(axis=0))
    assert out.any(axis=1).all()  # resized to the full height
    assert abs(len(cols) - 19) <= 1 and abs((cols[0] + cols[-1]) / 2 - 31.5) <= 1


def test_severity_separates_classes_on_average(release) -> None:
    out, summary = release
    asymmetry: dict[str, list[float]] = {c: [] for c in CLASS_NAMES}
    for path in (out / POSE).rglob("*.pkl"):
        pose = _read(path)
        ok = (pose[:, [0, 5, 6, 15, 16], 2] > 0).all(axis=1)
        height = (pose[ok, 15, 1] + pose[ok, 16, 1]) / 2 - pose[ok, 0, 1]
        asymmetry[path.parts[-3]].append(float(np.mean(np.abs(pose[ok, 5, 1] - pose[ok, 6, 1]) / height)))
    means = {c: np.mean(v) for c, v in asymmetry.items()}
    assert means["positive"] > means["neutral"] > means["negative"], means
    # The oracle classifies test ids by the noiseless severity: good but not perfect (labels are noisy).
    meta = json.loads(summary.meta_path.read_text())
    test = [m for m in meta["sequences"].values() if m["side"] == "test"]
    y_true = [CLASS_NAMES.index(m["class"]) for m in test]
    y_oracle = np.digitize([m["severity"] for m in test], SEVERITY_THRESHOLDS)
    expected = f1_score(y_true, y_oracle, labels=[0, 1, 2], average="macro", zero_division=0)
    assert summary.oracle_macro_f1 == pytest.approx(expected, abs=1e-6)
    assert 0.4 < summary.oracle_macro_f1 < 1.0
    # The same ceiling for any id set (what a sweep prints beside val and beside test): the same on test ids.
    from scolio_core.data.synth import oracle_macro_f1

    test_ids = [i for i, m in meta["sequences"].items() if m["side"] == "test"]
    assert oracle_macro_f1(out, test_ids) == pytest.approx(summary.oracle_macro_f1, abs=1e-6)
    assert oracle_macro_f1(out, test_ids + ["99999"]) is None and oracle_macro_f1(out / POSE, test_ids) is None


def test_deterministic_for_a_seed(tmp_path: Path, release) -> None:
    out, _ = release
    again = synthesize(tmp_path / "again", num_sequences=N, frames=T, seed=3, progress=False)
    first, second = _files(out), _files(again.out_dir)
    assert first.keys() == second.keys()
    assert all(first[k].read_bytes() == second[k].read_bytes() for k in first)
    other = synthesize(tmp_path / "other", num_sequences=N, frames=T, seed=4, progress=False)
    assert _files(other.out_dir)["Scoliosis1K_118.json"].read_text() != first["Scoliosis1K_118.json"].read_text()


def test_class_counts_follow_the_release_shape() -> None:
    full = plan_counts(1493, (1, 1, 8))  # the real 1:1:8 split: train 596/74/74, test 204/126/419 (neg/neu/pos)
    for side, real in (("train", (596, 74, 74)), ("test", (204, 126, 419))):
        assert all(abs(full[side][c] - n) <= 1 for c, n in zip(CLASS_NAMES, real)), full
    default = plan_counts(300, (1, 1, 8))
    assert default["train"]["negative"] / default["train"]["positive"] == pytest.approx(8, abs=0.5)
    assert default["train"]["neutral"] == default["train"]["positive"]
    assert default["test"]["positive"] > default["test"]["negative"] > default["test"]["neutral"]
    two = plan_counts(300, (1, 1, 2))
    assert two["train"]["negative"] / two["train"]["positive"] == pytest.approx(2, abs=0.1)
    for n in (MIN_SEQUENCES, 40, 301):
        counts = plan_counts(n, (1, 1, 16))
        assert sum(counts["train"].values()) + sum(counts["test"].values()) == n
        assert min(counts["train"].values()) >= 6 and min(counts["test"].values()) >= 3
    with pytest.raises(ConfigError, match=str(MIN_SEQUENCES - 1)):
        plan_counts(MIN_SEQUENCES - 1)


def test_ratio_parsing_and_names() -> None:
    assert parse_ratio("1:1:16") == (1, 1, 16)
    assert partition_filename((1, 1, 16)) == "Scoliosis1K_1116.json"
    for bad in ("1:1", "1:0:8", "a:b:c", "1:1:8:2"):
        with pytest.raises(ConfigError, match=bad):
            parse_ratio(bad)


def test_refuses_to_mix_data_sets(tmp_path: Path) -> None:
    synthesize(tmp_path, num_sequences=MIN_SEQUENCES, frames=2, seed=0, progress=False)
    with pytest.raises(DataError, match=POSE):
        synthesize(tmp_path, num_sequences=MIN_SEQUENCES, frames=2, seed=1, progress=False)
    summary = synthesize(tmp_path, num_sequences=MIN_SEQUENCES + 1, frames=2, seed=1, progress=False,
                         overwrite=True)
    assert len(list((tmp_path / POSE).iterdir())) == MIN_SEQUENCES + 1 == summary.num_sequences


def test_cli_refuses_non_empty_dir_then_writes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    argv = ["synth", str(tmp_path), "--num-sequences", str(MIN_SEQUENCES), "--frames", "2", "--quiet"]
    assert cli_main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written, nothing lost
    assert cli_main(argv + ["--force", "--train-ratio", "1:1:2", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    assert "oracle macro-F1" in printed and "Scoliosis1K_112.json" in printed
    assert keep.read_text() == "mine" and (tmp_path / "Scoliosis1K_112.json").is_file()
    # Forcing again replaces the earlier synthetic data set, including its now stale partition file.
    assert cli_main(argv + ["--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [POSE, SIL, "Scoliosis1K_118.json", "notes.txt",
                                                          "synth_meta.json"]
    assert cli_main(["synth", str(tmp_path / "fresh"), "--train-ratio", "1:x:2"]) == 2
    assert "1:x:2" in capsys.readouterr().err


def test_data_layer_reads_the_output(release) -> None:
    out, summary = release
    split = json.loads(summary.partition_path.read_text())
    for modality, root in (("skeleton", out / POSE), ("silhouette", out / SIL)):
        index = index_release(root)
        assert sorted(index) == sorted(split["TRAIN_SET"] + split["TEST_SET"])
        train_labels = [index[i].label for i in split["TRAIN_SET"]]
        assert np.bincount(train_labels, minlength=3).tolist() == [summary.counts["train"][c] for c in CLASS_NAMES]
        sequences = load_sequences(root, split["TEST_SET"], modality)
        assert len(sequences) == len(split["TEST_SET"]) and sequences.frames.shape[0] == len(split["TEST_SET"]) * T


def test_overwrite_replaces_only_an_earlier_synthesis(tmp_path: Path) -> None:
    # A pose root someone else put there (no synth_meta.json: no marker of a synthesis) survives overwrite.
    user = tmp_path / POSE / "00001"
    user.mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="overwrite replaces only an earlier synthesis"):
        synthesize(tmp_path, num_sequences=MIN_SEQUENCES, frames=2, seed=0, progress=False, overwrite=True)
    assert (user / "notes.txt").read_text() == "mine" and not (tmp_path / SIL).exists()
