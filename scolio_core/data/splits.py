"""Partitions (OpenGait's TRAIN_SET / TEST_SET JSON) and the validation carve.

The validation set is carved from TRAIN_SET only, stratified by class, deterministically for a seed.
A `Split` knows all three id sets; `Split.trainval()` drops the test ids and gives the `TrainValSplit`
that is the only split object a trial ever sees (it has no test field, and its JSON refuses one).
Fingerprints are sha256 of the partition name and the sorted id lists, so a checkpoint can prove which
ids it was trained and selected on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from scolio_core import CLASS_NAMES
from scolio_core.data.bounded import load_json_bounded
from scolio_core.errors import ConfigError, DataError

_ID_PATTERN = re.compile(r"\d{5}")
_MAX_LISTED = 5
# Partition files and split manifests list ~1,500 ids (~30 KB, 2 levels deep); these bound a hostile one at
# ~70x the release, so that 16 MiB of `[[],[],...]` (5.6 M lists, 1 GB) is refused before it is parsed.
MAX_JSON_BYTES = 2 * 1024 * 1024
MAX_JSON_VALUES = 200_000
MAX_JSON_DEPTH = 4


def _few(items: Iterable[object]) -> str:
    items = sorted(items)
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    return shown + (f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def _fingerprint(**parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _set_fingerprint(split: object, source: str, **parts: Any) -> None:
    expected = _fingerprint(**parts)
    given = getattr(split, "fingerprint")
    if given and given != expected:
        raise DataError(f"{source}: fingerprint {given!r} does not match its ids ({expected}); "
                        "the ids were edited after the split was made")
    object.__setattr__(split, "fingerprint", expected)


def _check_ids(source: str, key: str, ids: object) -> tuple[str, ...]:
    """Validate one id list (strings, five digits, no duplicates) and return it sorted."""
    if not isinstance(ids, (list, tuple)):
        raise DataError(f"{source}: {key} must be a list of five-digit id strings, got {type(ids).__name__}")
    bad = [repr(i) for i in ids if not (isinstance(i, str) and _ID_PATTERN.fullmatch(i))]
    if bad:
        raise DataError(f"{source}: {key} holds id(s) that are not five-digit strings: {_few(bad)}")
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise DataError(f"{source}: {key} lists id(s) more than once: {_few(duplicates)}")
    return tuple(sorted(ids))


def _check_disjoint(source: str, **sets: tuple[str, ...]) -> None:
    names = list(sets)
    for a_pos, a in enumerate(names):
        for b in names[a_pos + 1:]:
            shared = set(sets[a]) & set(sets[b])
            if shared:
                raise DataError(f"{source}: {len(shared)} id(s) are in both {a} and {b}: {_few(shared)}")


@dataclass(frozen=True)
class Partition:
    """An official train/test partition; `name` is the file stem (e.g. Scoliosis1K_118)."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        source = f"partition {self.name}"
        object.__setattr__(self, "train", _check_ids(source, "TRAIN_SET", self.train))
        object.__setattr__(self, "test", _check_ids(source, "TEST_SET", self.test))
        _check_disjoint(source, TRAIN_SET=self.train, TEST_SET=self.test)


def _read_json_object(path: Path, what: str, expected: str) -> dict:
    """A JSON object from `path` (size, value count, depth, number length capped; duplicate keys refused, so a
    second TEST_SET cannot silently replace the first); every failure is a DataError naming the file."""
    values = load_json_bounded(path, MAX_JSON_BYTES, max_values=MAX_JSON_VALUES, max_depth=MAX_JSON_DEPTH)
    if not isinstance(values, dict):
        raise DataError(f"{path}: {what} must hold {expected}")
    return values


def load_partition(path: str | Path) -> Partition:
    """Read `{"TRAIN_SET": [...], "TEST_SET": [...]}`; every error names the file."""
    path = Path(path)
    values = _read_json_object(path, "partition file", "a JSON object with TRAIN_SET and TEST_SET")
    missing = [key for key in ("TRAIN_SET", "TEST_SET") if key not in values]
    if missing:
        raise DataError(f"{path}: partition file lacks key(s) {', '.join(missing)}")
    train = _check_ids(str(path), "TRAIN_SET", values["TRAIN_SET"])
    test = _check_ids(str(path), "TEST_SET", values["TEST_SET"])
    if not train:
        raise DataError(f"{path}: TRAIN_SET is empty")
    _check_disjoint(str(path), TRAIN_SET=train, TEST_SET=test)
    return Partition(path.stem, train, test)


@dataclass(frozen=True)
class TrainValSplit:
    """Train and validation ids of one partition; deliberately holds no test ids."""

    partition: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    # Computed from the ids; pass one (e.g. read back from a checkpoint) to have it verified.
    fingerprint: str = ""

    def __post_init__(self) -> None:
        source = f"split of {self.partition}"
        object.__setattr__(self, "train", _check_ids(source, "train", self.train))
        object.__setattr__(self, "val", _check_ids(source, "val", self.val))
        _check_disjoint(source, train=self.train, val=self.val)
        _set_fingerprint(self, source, partition=self.partition, train=self.train, val=self.val)

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "train": list(self.train), "val": list(self.val),
                "fingerprint": self.fingerprint}

    def to_json(self) -> str:
        """The manifest text `save` writes and `load` reads."""
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TrainValSplit":
        """Read a saved manifest; refuses test ids, unknown keys, overlaps and a fingerprint that does not match."""
        path = Path(path)
        values = _read_json_object(path, "split manifest", "a JSON object")
        test_keys = [key for key in values if "test" in key.lower()]
        if test_keys:
            raise DataError(f"{path}: a train/val manifest must not carry test ids (found key(s) "
                            f"{', '.join(test_keys)})")
        unknown = sorted(set(values) - {"partition", "train", "val", "fingerprint"})
        missing = [key for key in ("partition", "train", "val") if key not in values]
        if unknown or missing:
            raise DataError(f"{path}: split manifest has unknown key(s) {unknown} / lacks {missing}")
        if not isinstance(values["partition"], str) or not isinstance(values.get("fingerprint", ""), str):
            raise DataError(f"{path}: 'partition' and 'fingerprint' must be strings")
        try:
            return cls(values["partition"], values["train"], values["val"], values.get("fingerprint", ""))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Split:
    """Train, validation and test ids of one partition (all sorted) and their fingerprint."""

    partition: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    fingerprint: str = ""  # computed; a given one is verified

    def __post_init__(self) -> None:
        source = f"split of {self.partition}"
        for key in ("train", "val", "test"):
            object.__setattr__(self, key, _check_ids(source, key, getattr(self, key)))
        _check_disjoint(source, train=self.train, val=self.val, test=self.test)
        _set_fingerprint(self, source, partition=self.partition, train=self.train, val=self.val, test=self.test)

    def trainval(self) -> TrainValSplit:
        return TrainValSplit(self.partition, self.train, self.val)


def carve_split(partition: Partition, labels: Mapping[str, int], val_fraction: float, seed: int) -> Split:
    """Carve a class-stratified validation set out of TRAIN_SET; the same seed gives the same split."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    train_ids = list(partition.train)  # sorted, so the carve does not depend on file order
    missing = [i for i in train_ids if i not in labels]
    if missing:
        raise DataError(f"partition {partition.name}: {len(missing)} TRAIN_SET id(s) have no label "
                        f"(not found in the data root): {_few(missing)}")
    y = np.array([int(labels[i]) for i in train_ids], dtype=np.int64)
    try:
        from sklearn.model_selection import train_test_split  # only a carve pays sklearn's import

        train, val = train_test_split(train_ids, test_size=val_fraction, stratify=y, random_state=seed,
                                      shuffle=True)
    except ValueError as exc:
        counts = {CLASS_NAMES[c] if 0 <= c < len(CLASS_NAMES) else str(c): int(n)
                  for c, n in zip(*np.unique(y, return_counts=True))}
        raise DataError(f"partition {partition.name}: cannot carve a stratified val_fraction={val_fraction} "
                        f"from TRAIN_SET with class counts {counts} ({exc})") from None
    return Split(partition.name, tuple(train), tuple(val), partition.test)
