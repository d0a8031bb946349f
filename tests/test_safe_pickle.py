"""Restricted unpickling: numpy arrays load under every protocol, code-running pickles never run."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from scolio_core.data.safe_pickle import safe_load, safe_loads
from scolio_core.errors import DataError, UnsafePickleError


class _WritesFileWithOsSystem:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _WritesFileWithOpen:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


class _CallsEval:
    def __reduce__(self):
        return (builtins.eval, ("1 + 1",))


@pytest.mark.parametrize("payload_cls", [_WritesFileWithOsSystem, _WritesFileWithOpen])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, payload_cls: type) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    # Nested inside an ordinary container, as a tampered data file would hide it.
    path.write_bytes(pickle.dumps({"poses": np.zeros((2, 17, 3)), "x": payload_cls(target)}))
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert str(path) in str(info.value)
    assert ("system" in str(info.value)) or ("open" in str(info.value))
    assert not target.exists()


@pytest.mark.parametrize("obj", [_CallsEval(), getattr, os.getcwd, Path("/tmp")])
def test_non_data_globals_are_refused(obj: object) -> None:
    data = pickle.dumps(obj)
    with pytest.raises(UnsafePickleError, match="mem.pkl: refused to load global"):
        safe_loads(data, "mem.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64, np.bool_, ">i4"])
def test_numpy_arrays_round_trip(protocol: int, dtype: object) -> None:
    array = (np.arange(2 * 17 * 3).reshape(2, 17, 3) % 7).astype(dtype)
    data = pickle.dumps(array, protocol=protocol)
    loaded = safe_loads(data, "a.pkl")
    assert isinstance(loaded, np.ndarray)
    # Same dtype as an unrestricted load (numpy itself normalises byte order for protocols < 5).
    assert loaded.dtype == pickle.loads(data).dtype
    assert loaded.dtype.kind == np.dtype(dtype).kind and loaded.dtype.itemsize == np.dtype(dtype).itemsize
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_containers_scalars_and_noncontiguous_arrays(protocol: int) -> None:
    value = {"a": [1, 2.5, "s", None, (True, b"xy")], "s": {1, 2}, "f": np.float32(3.5),
             "t": np.arange(12, dtype=np.int16).reshape(3, 4).T}
    loaded = safe_loads(pickle.dumps(value, protocol=protocol), "c.pkl")
    assert loaded["a"] == value["a"] and loaded["s"] == {1, 2}
    assert loaded["f"] == np.float32(3.5) and loaded["f"].dtype == np.float32
    np.testing.assert_array_equal(loaded["t"], value["t"])


def test_truncated_and_garbage_pickles_raise_data_error(tmp_path: Path) -> None:
    data = pickle.dumps(np.ones((5, 64, 64), np.uint8), protocol=4)
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.pkl: corrupt or truncated") as info:
        safe_load(truncated)
    assert not isinstance(info.value, UnsafePickleError)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="garbage.pkl"):
        safe_load(garbage)
    with pytest.raises(DataError, match="missing.pkl: cannot read"):
        safe_load(tmp_path / "missing.pkl")
