"""Release-layout reader: layout and case variants, every bad input named, SequenceSet, access log, inspect."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from scolio_core import CLASS_INDEX
from scolio_core.cli.main import main as cli_main
from scolio_core.data.release import (
    SequenceSet,
    frame_statistics,
    index_release,
    load_pose,
    load_sequences,
    load_silhouette,
    resolve_modality_root,
    validate_release,
)
from scolio_core.errors import DataError, UnsafePickleError


def _write(root: Path, seq_id: str, class_folder: str, value: object, view: str = "000_180") -> Path:
    path = root / seq_id / class_folder / view / f"{view}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(value, protocol=4))
    return path


def _pose(frames: int, seed: int = 0, dtype: object = np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = rng.uniform(0, 100, size=(frames, 17, 3)).astype(dtype)
    poses[:, 3, :] = 0  # a missing joint comes as zeros and is valid
    return poses


def _sil(frames: int) -> np.ndarray:
    return np.full((frames, 64, 64), 7, dtype=np.uint8)


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    root = tmp_path / "pose"
    for k, (seq_id, folder) in enumerate([("00000", "positive"), ("00001", "Negative"), ("00002", "NEUTRAL"),
                                          ("00003", "negative")]):
        _write(root, seq_id, folder, _pose(3 + k, seed=k))
    (root / "partition.json").write_text("{}")  # stray files at the root are ignored
    return root


def test_index_reads_layout_in_any_letter_case(release: Path) -> None:
    index = index_release(release)
    assert sorted(index) == ["00000", "00001", "00002", "00003"]
    assert [index[i].class_name for i in sorted(index)] == ["positive", "negative", "neutral", "negative"]
    assert index["00002"].label == CLASS_INDEX["neutral"] == 1
    assert index["00001"].path == release / "00001" / "Negative" / "000_180" / "000_180.pkl"


def test_load_sequences_concatenates_in_given_order(release: Path) -> None:
    calls: list[int] = []

    def transform(seq: np.ndarray) -> np.ndarray:
        calls.append(len(seq))
        return seq + 1.0

    seqs = load_sequences(release, ["00003", "00000"], "skeleton", transform=transform)
    assert isinstance(seqs, SequenceSet) and len(seqs) == 2
    assert seqs.ids == ["00003", "00000"] and seqs.labels.tolist() == [0, 2] and seqs.labels.dtype == np.int64
    assert seqs.frames.dtype == np.float32 and seqs.frames.shape == (9, 17, 3)
    assert seqs.offsets.tolist() == [0, 6, 9] and seqs.num_frames(0) == 6 and calls == [6, 3]
    np.testing.assert_allclose(seqs.sequence(1), _pose(3, seed=0).astype(np.float32) + 1.0)
    assert frame_statistics(seqs) == {"sequences": 2, "min_frames": 3, "median_frames": 4.5, "max_frames": 6,
                                      "total_frames": 9}


def test_silhouettes_load_as_uint8(tmp_path: Path) -> None:
    root = tmp_path / "sil"
    _write(root, "00010", "Positive", _sil(4))
    seqs = load_sequences(root, ["00010"], "silhouette")
    assert seqs.frames.dtype == np.uint8 and seqs.frames.shape == (4, 64, 64) and seqs.labels.tolist() == [2]


@pytest.mark.parametrize("value, message", [
    (np.zeros((3, 17, 2)), r"shape \(T, 17, 3\)"),
    (np.zeros((3, 17, 3), dtype=np.int32), "must be a float array"),
    (np.zeros((0, 17, 3)), "empty sequence"),
    ([[0.0]], "expected a numpy array"),
])
def test_bad_pose_files_are_named(tmp_path: Path, value: object, message: str) -> None:
    path = _write(tmp_path, "00000", "positive", value)
    with pytest.raises(DataError, match=message) as info:
        load_pose(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_poses_are_named(tmp_path: Path, bad: float, kind: str) -> None:
    poses = _pose(4)
    poses[2, 5, 1] = bad
    path = _write(tmp_path, "00000", "positive", poses)
    with pytest.raises(DataError, match=f"{kind} \\(first at frame 2\\)") as info:
        load_pose(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("value, message", [
    (np.zeros((3, 64, 64), dtype=np.float32), "must be uint8"),
    (np.zeros((3, 64, 44), dtype=np.uint8), r"shape \(T, 64, 64\)"),
    (np.zeros((0, 64, 64), dtype=np.uint8), "empty sequence"),
])
def test_bad_silhouette_files_are_named(tmp_path: Path, value: object, message: str) -> None:
    path = _write(tmp_path, "00000", "positive", value)
    with pytest.raises(DataError, match=message) as info:
        load_silhouette(path)
    assert str(path) in str(info.value)


def test_truncated_and_malicious_pkls_are_named(release: Path, tmp_path: Path) -> None:
    path = release / "00001" / "Negative" / "000_180" / "000_180.pkl"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="corrupt or truncated") as info:
        load_sequences(release, ["00001"], "skeleton")
    assert str(path) in str(info.value)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    evil = _write(release, "00000", "positive", [Payload()])
    with pytest.raises(UnsafePickleError, match="refused to load global") as info:
        load_pose(evil)
    assert str(evil) in str(info.value) and not (tmp_path / "ran").exists()


def test_validate_release_reports_every_bad_file(release: Path) -> None:
    validate_release(release, ["00000", "00001", "00002", "00003"], "skeleton")
    _write(release, "00001", "Negative", np.zeros((2, 17, 2)))
    _write(release, "00003", "negative", np.zeros((0, 17, 3)))
    with pytest.raises(DataError, match="2 of 4 skeleton file") as info:
        validate_release(release, ["00000", "00001", "00002", "00003"], "skeleton")
    assert "00001" in str(info.value) and "00003" in str(info.value)


def test_unknown_and_legacy_class_folders(tmp_path: Path) -> None:
    _write(tmp_path, "00000", "severe", _pose(2))
    with pytest.raises(DataError, match="unknown class folder 'severe'") as info:
        index_release(tmp_path)
    assert str(tmp_path / "00000" / "severe") in str(info.value)
    other = tmp_path / "legacy"
    _write(other, "00005", "Critical", _pose(2))
    with pytest.raises(DataError, match="renamed 'neutral'") as info:
        index_release(other)
    assert str(other / "00005" / "Critical") in str(info.value)


def test_id_under_two_classes_names_both_paths(tmp_path: Path) -> None:
    _write(tmp_path, "00007", "positive", _pose(2))
    _write(tmp_path, "00007", "Neutral", _pose(2))
    with pytest.raises(DataError, match="more than one class") as info:
        index_release(tmp_path)
    assert str(tmp_path / "00007" / "positive") in str(info.value)
    assert str(tmp_path / "00007" / "Neutral") in str(info.value)


def test_bad_id_folders_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "a", "0042", "positive", _pose(2))
    with pytest.raises(DataError, match="five-digit") as info:
        index_release(tmp_path / "a")
    assert "0042" in str(info.value)
    (tmp_path / "b" / "00042" / "positive" / "000_180").mkdir(parents=True)
    with pytest.raises(DataError, match="no <class>/<view>/<file>.pkl") as info:
        index_release(tmp_path / "b")
    assert "00042" in str(info.value)


def test_listed_id_absent_on_disk_names_id_and_root(release: Path) -> None:
    with pytest.raises(DataError, match="not found on disk: 00999") as info:
        load_sequences(release, ["00000", "00999"], "skeleton")
    assert str(release) in str(info.value)
    with pytest.raises(DataError, match="00999"):
        validate_release(release, ["00999"], "skeleton")


def test_the_read_hook_sees_every_read(release: Path) -> None:
    from scolio_core.data.release import read_hook, set_read_hook

    reads: list[tuple[str, Path]] = []
    with read_hook(lambda seq_id, path: reads.append((seq_id, path))):
        load_sequences(release, ["00002", "00000"], "skeleton")
        load_pose(release / "00003" / "negative" / "000_180" / "000_180.pkl")
    assert [seq_id for seq_id, _ in reads] == ["00002", "00000", "00003"]
    assert reads[0][1] == release / "00002" / "NEUTRAL" / "000_180" / "000_180.pkl"
    load_sequences(release, ["00001"], "skeleton")  # the hook is gone after the block
    assert len(reads) == 3 and set_read_hook(None) is None


def test_resolve_modality_root(tmp_path: Path, release: Path) -> None:
    data_root = tmp_path / "data"
    _write(data_root / "Scoliosis1K-sil-pkl", "00000", "positive", _sil(2))
    assert resolve_modality_root(data_root, "silhouette") == data_root / "Scoliosis1K-sil-pkl"
    assert resolve_modality_root(release, "skeleton") == release
    with pytest.raises(DataError, match="Scoliosis1K-pose-pkl"):
        resolve_modality_root(data_root, "skeleton")


def test_inspect_prints_counts_and_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_root = tmp_path / "data"
    pose_root = data_root / "Scoliosis1K-pose-pkl"
    classes = ["negative"] * 8 + ["neutral"] * 4 + ["positive"] * 4
    ids = [f"{i:05d}" for i in range(len(classes))]
    for k, (seq_id, folder) in enumerate(zip(ids, classes)):
        _write(pose_root, seq_id, folder, _pose(2 + k % 3, seed=k))
    test_ids = ids[:2] + ids[8:9] + ids[12:13]
    (data_root / "part.json").write_text(json.dumps(
        {"TRAIN_SET": [i for i in ids if i not in test_ids], "TEST_SET": test_ids}))
    assert cli_main(["inspect", str(data_root), "--partition", "part.json", "--val-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "all 16 listed sequences load and validate" in out
    counts_table, frames_table = out.split("frames per sequence")
    rows = {line.split()[0]: line.split()[1:] for line in counts_table.splitlines() if line.split()[:1] in
            (["train"], ["val"], ["test"], ["all"])}
    # negative, neutral, positive, total; val is 25 % of 12 train ids, stratified.
    assert rows["test"][:4] == ["2", "1", "1", "4"]
    assert rows["val"][:4] == ["1", "1", "1", "3"] and rows["train"][:4] == ["5", "2", "2", "9"]
    frame_rows = {line.split()[0]: line.split()[1:] for line in frames_table.splitlines() if line.strip()}
    # sequences, min, median, max, total over all 16 ids (lengths cycle 2, 3, 4).
    assert frame_rows["all"] == ["16", "2", "3", "4", str(sum(2 + k % 3 for k in range(16)))]

    _write(pose_root, "00003", "negative", np.zeros((2, 17, 3), dtype=np.int16))
    assert cli_main(["inspect", str(data_root), "--partition", str(data_root / "part.json")]) == 2
    assert "00003" in capsys.readouterr().err
