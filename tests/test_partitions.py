"""Partitions and the val carve: bad files named, stratified/deterministic/disjoint carve, real partition files."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from scolio_core.data.splits import (
    Partition,
    Split,
    TrainValSplit,
    carve_split,
    load_partition,
)
from scolio_core.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL = SHARED / "scoliosis1k_partitions"
OFFICIAL_SIZES = {"Scoliosis1K_112": (745, 748), "Scoliosis1K_114": (745, 748),
                  "Scoliosis1K_118": (744, 749), "Scoliosis1K_1116": (745, 748)}


def _ids(start: int, stop: int) -> list[str]:
    return [f"{i:05d}" for i in range(start, stop)]


def _toy(n_neg: int = 60, n_neu: int = 20, n_pos: int = 20) -> tuple[Partition, dict[str, int]]:
    train = _ids(0, n_neg + n_neu + n_pos)
    labels = {i: 0 if k < n_neg else 1 if k < n_neg + n_neu else 2 for k, i in enumerate(train)}
    test = _ids(500, 510)
    return Partition("toy", tuple(reversed(train)), tuple(test)), labels


def _write(tmp_path: Path, content: object, name: str = "p.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_partition_sorts_and_names(tmp_path: Path) -> None:
    part = load_partition(_write(tmp_path, {"TRAIN_SET": ["00003", "00001"], "TEST_SET": ["00002"]}, "Mine.json"))
    assert part == Partition("Mine", ("00001", "00003"), ("00002",))


@pytest.mark.parametrize("content, message", [
    ('{"TRAIN_SET": ["00001"], ', "not valid JSON"),
    ({"TRAIN_SET": ["00001"]}, "lacks key.*TEST_SET"),
    (["00001"], "JSON object"),
    ({"TRAIN_SET": ["1"], "TEST_SET": []}, "not five-digit.*'1'"),
    ({"TRAIN_SET": [1], "TEST_SET": []}, "not five-digit"),
    ({"TRAIN_SET": ["00001", "00002", "00001"], "TEST_SET": []}, "more than once: 00001"),
    ({"TRAIN_SET": ["00001", "00002", "00003"], "TEST_SET": ["00003", "00002"]},
     "2 id.*both TRAIN_SET and TEST_SET: 00002, 00003"),
])
def test_bad_partition_files_are_named(tmp_path: Path, content: object, message: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(DataError, match=message) as info:
        load_partition(path)
    assert str(path) in str(info.value)


def test_carve_is_stratified_disjoint_and_deterministic() -> None:
    part, labels = _toy()
    split = carve_split(part, labels, 0.2, seed=3)
    assert len(split.val) == 20 and len(split.train) == 80
    assert set(split.train) | set(split.val) == set(part.train)
    assert not set(split.train) & set(split.val) and not (set(split.val) | set(split.train)) & set(split.test)
    assert split.test == part.test and list(split.val) == sorted(split.val)
    val_counts = Counter(labels[i] for i in split.val)
    for label, expected in {0: 12, 1: 4, 2: 4}.items():
        assert abs(val_counts[label] - expected) <= 1
    again = carve_split(part, labels, 0.2, seed=3)
    assert again == split and again.fingerprint == split.fingerprint
    other = carve_split(part, labels, 0.2, seed=4)
    assert other.val != split.val and other.fingerprint != split.fingerprint
    # Input order does not matter: the carve starts from the sorted TRAIN_SET.
    shuffled = Partition("toy", tuple(sorted(part.train)), part.test)
    assert carve_split(shuffled, labels, 0.2, seed=3) == split


def test_carve_errors() -> None:
    part, labels = _toy()
    del labels["00007"]
    with pytest.raises(DataError, match="no label.*00007"):
        carve_split(part, labels, 0.2, seed=0)
    part, labels = _toy()
    with pytest.raises(ConfigError, match="val_fraction"):
        carve_split(part, labels, 1.0, seed=0)
    part, labels = _toy(n_neg=6, n_neu=1, n_pos=3)
    with pytest.raises(DataError, match="class counts"):
        carve_split(part, labels, 0.3, seed=0)


def test_trainval_drops_test_and_round_trips(tmp_path: Path) -> None:
    part, labels = _toy()
    split = carve_split(part, labels, 0.15, seed=0)
    trainval = split.trainval()
    assert not hasattr(trainval, "test") and (trainval.train, trainval.val) == (split.train, split.val)
    assert trainval.fingerprint != split.fingerprint
    path = trainval.save(tmp_path / "m" / "split.json")
    assert "test" not in path.read_text().lower().replace('"partition"', "")
    assert TrainValSplit.load(path) == trainval


def test_trainval_load_refusals(tmp_path: Path) -> None:
    good = {"partition": "toy", "train": ["00001", "00002"], "val": ["00003"]}
    cases = [
        ({**good, "test": ["00004"]}, "must not carry test ids"),
        ({**good, "TEST_SET": []}, "must not carry test ids"),
        ({**good, "val": ["00002"]}, "both train and val: 00002"),
        ({**good, "fingerprint": "0" * 64}, "fingerprint"),
        ({**good, "extra": 1}, "unknown key"),
        ("[", "not valid JSON"),
    ]
    for k, (content, message) in enumerate(cases):
        path = _write(tmp_path, content, f"m{k}.json")
        with pytest.raises(DataError, match=message) as info:
            TrainValSplit.load(path)
        assert str(path) in str(info.value)
    assert TrainValSplit.load(_write(tmp_path, good, "ok.json")).val == ("00003",)


def test_split_refuses_overlap_and_wrong_fingerprint() -> None:
    with pytest.raises(DataError, match="both val and test"):
        Split("toy", ("00001",), ("00002",), ("00002",))
    split = Split("toy", ("00003", "00001"), ("00002",), ("00004",))
    assert Split("toy", ("00001", "00003"), ("00002",), ("00004",), split.fingerprint) == split
    trainval = split.trainval()
    # What a checkpoint contract does: rebuild from stored ids and the stored fingerprint.
    assert TrainValSplit("toy", ("00001", "00003"), ("00002",), trainval.fingerprint) == trainval
    with pytest.raises(DataError, match="does not match its ids"):
        TrainValSplit("toy", ("00001",), ("00002", "00003"), trainval.fingerprint)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason=f"official partition files not found at {OFFICIAL}")
@pytest.mark.parametrize("name", sorted(OFFICIAL_SIZES))
def test_official_partitions(name: str) -> None:
    part = load_partition(OFFICIAL / f"{name}.json")
    assert part.name == name
    assert (len(part.train), len(part.test)) == OFFICIAL_SIZES[name]
    assert set(part.train) | set(part.test) == set(_ids(0, 1493))
    # The files carry no labels; any labelling exercises the carve at real scale.
    labels = {i: int(i) % 3 for i in part.train}
    split = carve_split(part, labels, 0.15, seed=0)
    assert not (set(split.train) | set(split.val)) & set(split.test)
    assert len(split.val) == math.ceil(0.15 * len(part.train))  # scikit-learn rounds the held-out part up
    assert set(split.train) | set(split.val) == set(part.train)


def test_a_partition_file_that_is_a_device_or_huge_is_refused_unread(tmp_path):
    import os

    link = tmp_path / "zero.json"
    os.symlink("/dev/zero", link)
    with pytest.raises(DataError, match="character device"):
        load_partition(link)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: costs no disk
    with pytest.raises(DataError, match="file-size cap"):
        load_partition(huge)
