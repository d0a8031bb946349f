"""What a test look is, and where looks are kept: the evaluated set's identity (`TestSet`, `test_set_key`),
the scored (id, class) pairs a look records and how looks touch each other's ids (`ids_of`, `touched`,
`family_of`), the hash that chains looks, and the JSON-lines `FileLedger`. The lockbox
(`scolio_core.evaluation.lockbox`) decides and runs looks with these; `scolio_core.tracking.ledger` keeps them
in MLflow.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scolio_core import CLASS_NAMES, names
from scolio_core.config import ExperimentConfig
from scolio_core.data.release import index_release
from scolio_core.errors import DataError

OPENED, COMPLETED = "opened", "completed"
# What makes a synthetic stand-in another data set: the generator's settings (same settings, same sequences).
SYNTH_IDENTITY = ("generator_version", "num_sequences", "frames", "train_ratio", "seed", "severity_thresholds",
                  "label_noise")
TABLE_FAMILY_PREFIX = "table:"  # a table's family lives in its own namespace: no study can be named into it


@dataclass(frozen=True)
class TestSet:
    """A set of labelled ids as the ledger knows it: `key` is its identity."""

    __test__ = False  # not a pytest class

    key: str
    ids: tuple[str, ...]
    modality: str
    class_counts: dict[str, int]
    pairs: tuple[tuple[str, str], ...] = ()  # (id, class name), sorted: what a look at this set scores


def test_set_key(ids: Sequence[str], labels: dict[str, int], modality: str) -> str:
    """sha256 over the sorted (id, class) pairs and the modality: the same test set under any partition
    file name, sweep or checkpoint gets the same key; another class assignment or modality another one."""
    pairs = sorted((seq_id, CLASS_NAMES[int(labels[seq_id])]) for seq_id in ids)
    text = json.dumps({"modality": modality, "sequences": pairs}, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


test_set_key.__test__ = False  # not a pytest test


def resolve_test_set(config: ExperimentConfig, ids: Sequence[str]) -> TestSet:
    """The ledger identity of `ids` under `config`'s data (classes from the release layout; no file read)."""
    modality = config.input.modality
    index = index_release(config.data.modality_root(modality))
    missing = sorted(set(ids) - set(index))
    if missing:
        raise DataError(f"{config.data.modality_root(modality)}: {len(missing)} evaluated id(s) are absent "
                        f"(e.g. {', '.join(missing[:5])})")
    labels = {seq_id: index[seq_id].label for seq_id in ids}
    counts = Counter(CLASS_NAMES[label] for label in labels.values())
    pairs = tuple(sorted((seq_id, CLASS_NAMES[int(label)]) for seq_id, label in labels.items()))
    return TestSet(test_set_key(ids, labels, modality), tuple(sorted(ids)), modality,
                   {name: counts.get(name, 0) for name in CLASS_NAMES}, pairs)


# ------------------------------------------------------------------------------------ looks as id sets
def ids_of(look: Mapping) -> frozenset[str] | None:
    """The ids a recorded look scored; None for a look recorded without them (older records, a torn line)."""
    pairs = look.get("pairs")
    if pairs is None:
        return None
    return frozenset(str(pair[0]) for pair in pairs)


def dataset_identity(root: str | Path) -> str:
    """Which data set a data root holds, as far as ids are concerned: a synthetic stand-in is identified by its
    generator settings (`synth_meta.json`: two stand-ins share id names, not sequences), anything else is the
    release (its ids name the same sequences wherever a copy lives)."""
    from scolio_core.data.synth import read_synth_meta

    values = read_synth_meta(root)  # None: no readable stand-in record, so the ids are the release's
    if values is None:
        return "release"
    # The parsed generator settings, not the file's bytes: a space added to the file is the same stand-in.
    settings = {key: values.get(key) for key in SYNTH_IDENTITY}
    if not all(settings.get(key) is not None for key in SYNTH_IDENTITY):
        return "release"
    return "synth:" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def touched(look: Mapping, ids: frozenset[str], key: str | None = None, dataset: str | None = None) -> int:
    """How many of `ids` `look` scored. A look recorded without its ids counts by its test-set key: all of
    `ids` when it looked at exactly the set `key` names, none otherwise (what the ledger knew before). A look
    on another data set (`dataset_identity`: another synthetic stand-in) shares id names, not sequences: 0."""
    if dataset and look.get("dataset") and look["dataset"] != dataset:
        return 0
    scored = ids_of(look)
    if scored is None:
        return len(ids) if key is not None and look.get("key") == key else 0
    return len(scored & ids)


def family_of(look: Mapping) -> str:
    """A look's family: recorded with it; for a table partition's look recorded without one, its table (the
    partitions' studies are `<table>-p<token>`, sweeps/table.py); else its study."""
    if look.get("family"):
        return str(look["family"])
    study = str(look.get("study") or "")
    if look.get("entry_point") == "sweeps/table.py" and "-p" in study:
        return TABLE_FAMILY_PREFIX + study.rsplit("-p", 1)[0]
    return study


def kind_of(look: Mapping) -> str:
    return str(look.get("kind") or names.LOOK_KIND_TEST)


def look_hash(opened: Mapping, pairs: Sequence | None) -> str:
    """The hash of a look: sha256 over its opened record (which holds the previous look's hash, `prev_hash`)
    and the (id, class) pairs it scored. The MLflow ledger stores it with the look (names.TAG_LOOK_HASH)."""
    text = json.dumps({"record": dict(opened), "pairs": None if pairs is None else [list(p) for p in pairs]},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _look_brief(look: Mapping, ids: frozenset[str] | None = None, key: str | None = None) -> str:
    text = (f"study {look.get('study', '?')!r}: look {look.get('look')} by "
            f"{look.get('entry_point', 'an unknown entry point')} at {look.get('time', '?')}, checkpoint "
            f"{str(look.get('checkpoint_hash'))[:12]}")
    if kind_of(look) == names.LOOK_KIND_USE:
        text += ", trained/validated on them"
    if ids is not None:
        text += f", {touched(look, ids, key)} of these ids"
    return text


def looks_text(looks: Sequence[Mapping], ids: frozenset[str] | None = None, key: str | None = None) -> str:
    shown = "; ".join(_look_brief(look, ids, key) for look in looks[:3])
    return shown + (f"; and {len(looks) - 3} more" if len(looks) > 3 else "")


class Ledger(Protocol):
    """Looks at test sets. `claim` must be atomic: of two processes claiming the same look number of the
    same key, exactly one gets True."""

    def looks(self, key: str) -> list[dict]: ...

    def all_looks(self) -> list[dict]: ...  # every look in the ledger, any key, with the pairs it scored

    def next_look(self, key: str, every: list[dict]) -> int: ...  # the number the next look at `key` claims

    def claim(self, key: str, look: int, record: dict) -> bool: ...

    def complete(self, key: str, look: int, record: dict) -> None: ...


class FileLedger:
    """JSON-lines ledger for work without MLflow. One exclusive lock spans read, check and append, so a claim
    is atomic between processes on one machine (or a file system with working `flock`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)  # always given (`scolio eval --ledger FILE`): no default a setting could move

    def _rows(self, data: bytes) -> list[dict]:
        rows = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                # A torn line (a crash mid-append). It may have been a claim, so it stays a look of unknown
                # outcome for whichever key it names, reported in one line.
                print(f"lockbox: {self.path}:{number}: torn ledger line (a crash while writing?); counted as a "
                      "look of unknown outcome", file=sys.stderr)
                row = {"torn": True, "raw": line[:300], "state": OPENED, "line": number}
            rows.append(row)
        return rows

    @staticmethod
    def _for_key(rows: list[dict], key: str) -> list[dict]:
        return _merge([r for r in rows if r.get("key") == key or (r.get("torn") and key[:16] in r.get("raw", ""))])

    def _read(self) -> bytes:
        if not self.path.exists():
            return b""
        with open(self.path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            return handle.read()

    def looks(self, key: str) -> list[dict]:
        data = self._read()
        return self._for_key(self._rows(data), key) if data else []

    _TORN_KEY = re.compile(r'"key": "([0-9a-f]{64})"')

    def all_looks(self) -> list[dict]:
        """Every look in the file, one dict per look (numbered per test-set key, as this ledger claims them)."""
        data = self._read()
        if not data:
            return []
        rows = self._rows(data)
        keys = []
        for row in rows:
            found = self._TORN_KEY.search(row.get("raw", "")) if row.get("torn") else None
            keys.append(found.group(1) if found else row.get("key"))
        every = []
        for key in dict.fromkeys(k for k in keys if k):
            every.extend({**look, "key": key} for look in self._for_key(rows, key))
        return every

    @staticmethod
    def next_look(key: str, every: list[dict]) -> int:
        return max([int(look["look"]) for look in every if look.get("key") == key and "look" in look], default=0) + 1

    def integrity(self) -> list[str]:
        """Lines whose chain hash (sha256 of every byte before the line) does not match: a line was removed,
        edited or inserted before them. Deleting the newest lines leaves no trace here (documented)."""
        data = self._read()
        problems, offset = [], 0
        for number, line in enumerate(data.split(b"\n"), start=1):
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and "prev_sha256" in row \
                    and row["prev_sha256"] != hashlib.sha256(data[:offset]).hexdigest():
                problems.append(f"{self.path}:{number}: the ledger before this line is not what it was when the line "
                                "was written (a line was removed or edited)")
            offset += len(line) + 1
        return problems

    def _locked_append(self, key: str, look: int, row: dict, *, claim: bool) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            data = handle.read()
            if claim and any(int(r["look"]) >= look for r in self._for_key(self._rows(data), key) if "look" in r):
                return False
            prefix = b"\n" if data and not data.endswith(b"\n") else b""  # never glue onto a torn last line
            chained = {**row, "key": key, "look": look, "prev_sha256": hashlib.sha256(data + prefix).hexdigest()}
            handle.write(prefix + json.dumps(chained, sort_keys=True).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            return True

    def claim(self, key: str, look: int, record: dict) -> bool:
        return self._locked_append(key, look, {**record, "state": OPENED}, claim=True)

    def complete(self, key: str, look: int, record: dict) -> None:
        self._locked_append(key, look, {**record, "state": COMPLETED}, claim=False)


def _merge(rows: list[dict]) -> list[dict]:
    """One dict per look (its opened record updated by its completed record), in look order; torn lines
    count as looks of unknown outcome."""
    by_look: dict[int, dict] = {}
    torn = []
    for row in rows:
        if row.get("torn"):
            torn.append(row)
            continue
        merged = by_look.setdefault(int(row["look"]), {})
        merged.update(row)
        if row.get("state") == COMPLETED:
            merged["state"] = COMPLETED
    looks = [by_look[n] for n in sorted(by_look)]
    last = max(by_look, default=0)
    # A torn line gets the next number, so a later claim never reuses the number it may have taken.
    return looks + [{**row, "look": last + i} for i, row in enumerate(torn, start=1)]
