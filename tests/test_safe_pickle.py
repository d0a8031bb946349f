"""Restricted unpickling: numpy arrays load under every protocol, code-running pickles never run, and
resource abuse (size claims, object arrays, decoders, deep nesting, opcode floods, links) is refused.

The end-to-end hostile-file cases (through `scolio inspect`, with memory and time measured) are in
tests/test_hostile_data.py; these check the individual guards in-process."""

from __future__ import annotations

import builtins
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from _pickle_ops import NUMPY_CORE, PROTO2
from _pickle_ops import global_ as _global
from _pickle_ops import int_ as _int
from _pickle_ops import text as _text

from scolio_core.data.safe_pickle import DEFAULT_LIMITS, PickleLimits, safe_load, safe_loads
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


# ------------------------------------------------------------------------------------------ resource abuse








def _dtype(code: str, flags: int = 0) -> bytes:
    # numpy.dtype(code, False, True) and BUILD with numpy's own state layout
    return (_global("numpy", "dtype") + _text(code) + pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3
            + pickle.REDUCE + pickle.MARK + _int(3) + _text("<") + pickle.NONE * 3 + _int(-1) + _int(-1)
            + _int(flags) + pickle.TUPLE + pickle.BUILD)


def _empty_array() -> bytes:
    return (_global(f"{NUMPY_CORE}.multiarray", "_reconstruct") + _global("numpy", "ndarray") + _int(0)
            + pickle.TUPLE1 + _text("b") + pickle.TUPLE3 + pickle.REDUCE)


HOSTILE = {
    # name: (pickle, substring of the refusal)
    "bytes(n)": (PROTO2 + _global("builtins", "bytes") + _int(300_000_000) + pickle.TUPLE1 + pickle.REDUCE,
                 "bytes() with arguments"),
    "bytearray(n)": (PROTO2 + _global("__builtin__", "bytearray") + _int(300_000_000) + pickle.TUPLE1
                     + pickle.REDUCE, "refused to load global __builtin__.bytearray"),
    "ndarray(shape) called": (PROTO2 + _global("numpy", "ndarray") + _int(1 << 40) + pickle.TUPLE1
                              + pickle.TUPLE1 + pickle.REDUCE, "REDUCE of non-callable"),
    "object dtype via BUILD": (PROTO2 + _empty_array() + pickle.MARK + _int(1) + _int(40_000_000)
                               + pickle.TUPLE1 + _dtype("O8", 63) + pickle.NEWFALSE + pickle.EMPTY_LIST
                               + pickle.TUPLE + pickle.BUILD, "object dtype"),
    "float dtype flagged as objects": (PROTO2 + _dtype("f8", 63), "dtype state"),
    "shape claim via BUILD": (PROTO2 + _empty_array() + pickle.MARK + _int(1) + _int(1 << 44) + pickle.TUPLE1
                              + _dtype("u1") + pickle.NEWFALSE + pickle.EMPTY_LIST + pickle.TUPLE
                              + pickle.BUILD, "16.0 TiB, over the 64.0 MiB cap"),
    "shape claim via _frombuffer": (pickle.PROTO + b"\x05" + _global(f"{NUMPY_CORE}.numeric", "_frombuffer")
                                    + pickle.MARK + pickle.BYTEARRAY8 + struct.pack("<Q", 0) + _dtype("f4")
                                    + _int(1 << 62) + _int(1 << 62) + pickle.TUPLE2 + _text("C") + pickle.TUPLE
                                    + pickle.REDUCE, "more than 2^64 bytes"),
    "data shorter than its shape": (pickle.PROTO + b"\x05" + _global(f"{NUMPY_CORE}.numeric", "_frombuffer")
                                    + pickle.MARK + pickle.BYTEARRAY8 + struct.pack("<Q", 3) + b"abc"
                                    + _dtype("f4") + _int(2) + pickle.TUPLE1 + _text("C") + pickle.TUPLE
                                    + pickle.REDUCE, "holds 3 bytes but its shape and dtype need 8"),
    "negative dimension": (PROTO2 + _global(f"{NUMPY_CORE}.multiarray", "_reconstruct") + _global("numpy", "ndarray")
                           + _int(-5) + pickle.TUPLE1 + _text("b") + pickle.TUPLE3 + pickle.REDUCE,
                           "dimensions must be non-negative ints"),
    "unicode codec": (PROTO2 + _global("_codecs", "encode") + _text("x") + _text("utf-16") + pickle.TUPLE2
                      + pickle.REDUCE, "codec 'utf-16'"),
    "latin1 with errors=": (PROTO2 + _global("_codecs", "encode") + _text("x") + _text("latin1")
                            + _text("surrogateescape") + pickle.TUPLE3 + pickle.REDUCE, "codec 'latin1'"),
    # hashing a tuple nested 300k deep overflows the C stack (a segfault, not a RecursionError)
    "deeply nested dict key": (PROTO2 + pickle.EMPTY_DICT + pickle.NONE + pickle.TUPLE1 * 400_000 + pickle.NONE
                               + pickle.SETITEM, "key that is not a flat scalar"),
    "deeply nested set item": (pickle.PROTO + b"\x04" + pickle.EMPTY_SET + pickle.MARK + pickle.NONE
                               + pickle.TUPLE1 * 400_000 + pickle.ADDITEMS, "key that is not a flat scalar"),
    "opcode flood": (PROTO2 + pickle.NONE * 1_000_001, "more than 1,000,000 pickle opcodes"),
    "BYTEARRAY8 claim": (pickle.PROTO + b"\x05" + pickle.BYTEARRAY8 + struct.pack("<Q", 1000) + b"abc",
                         "BYTEARRAY8 claims 1,000 bytes but only 4 bytes follow"),
    "set(array)": (PROTO2 + _global("builtins", "set") + _empty_array() + pickle.TUPLE1 + pickle.REDUCE,
                   "set of ndarray"),
    "f(*array)": (PROTO2 + _global("numpy", "dtype") + _empty_array() + pickle.REDUCE, "REDUCE with ndarray"),
    "BUILD on a dict": (PROTO2 + pickle.EMPTY_DICT + pickle.EMPTY_DICT + pickle.BUILD, "BUILD on dict"),
    "NEWOBJ": (PROTO2 + _global("builtins", "set") + pickle.EMPTY_TUPLE + pickle.NEWOBJ, "opcode NEWOBJ"),
    "SETITEM on an array": (PROTO2 + _empty_array() + _int(0) + _int(1) + pickle.SETITEM, "SETITEM on ndarray"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_resource_abuse_is_refused_before_it_costs(name: str) -> None:
    data, reason = HOSTILE[name]
    with pytest.raises(DataError) as info:
        safe_loads(data + pickle.STOP, "hostile.pkl")
    message = str(info.value)
    assert message.startswith("hostile.pkl: ") and reason in message, message
    assert "\n" not in message


def test_a_huge_memo_index_costs_nothing() -> None:
    # The C unpickler sizes its memo array by the largest index; the restricted one keeps a dict.
    data = PROTO2 + pickle.NONE + pickle.LONG_BINPUT + struct.pack("<I", 0xFFFFFFFF) + pickle.STOP
    assert safe_loads(data, "memo.pkl") is None


def test_the_opcode_budget_bounds_object_count() -> None:
    data = pickle.dumps(list(range(100)), protocol=4)
    assert safe_loads(data, "l.pkl") == list(range(100))
    with pytest.raises(DataError, match="l.pkl: refused: more than 50 pickle opcodes"):
        safe_loads(data, "l.pkl", limits=PickleLimits(max_opcodes=50))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_array_and_file_caps_are_configurable(tmp_path: Path, protocol: int) -> None:
    array = np.ones((10, 17, 3))  # 4,080 bytes
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps(array, protocol=protocol))
    np.testing.assert_array_equal(safe_load(path, limits=PickleLimits(max_array_bytes=4080)), array)
    # protocol 2 meets the cap at the latin1 text that carries the data, the others at the array's shape
    with pytest.raises(DataError, match=r"a.pkl: refused: .*4,080 .*over the 4,079 bytes cap"):
        safe_load(path, limits=PickleLimits(max_array_bytes=4079))
    size = path.stat().st_size
    with pytest.raises(DataError, match=f"a.pkl: refused: {size:,} bytes, over the 100 bytes file-size cap"):
        safe_load(path, limits=PickleLimits(max_file_bytes=100))
    with pytest.raises(DataError, match="over the 100 bytes file-size cap"):
        safe_loads(path.read_bytes(), "a.pkl", limits=PickleLimits(max_file_bytes=100))
    # the defaults sit far above a long real sequence (1,000 silhouette frames are 4 MiB) and keep a load's
    # peak under 1 GB (64 MiB of file, its copy, the array and a float32 copy of a float16 one)
    assert DEFAULT_LIMITS.max_array_bytes >= 16 * 1000 * 64 * 64 and DEFAULT_LIMITS.max_file_bytes >= 16 * 4096000
    assert DEFAULT_LIMITS.max_file_bytes <= 64 << 20


def test_non_contiguous_and_fortran_arrays_round_trip_under_protocol_5() -> None:
    # numpy 2 pickles a permuted array with order "K" and an axis order; Fortran arrays with order "F".
    for array in (np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(1, 0, 2),
                  np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.zeros((0, 17, 3)), np.ones((4, 64, 64), np.uint8)):
        for protocol in (2, 3, 4, 5):
            loaded = safe_loads(pickle.dumps(array, protocol=protocol), "a.pkl")
            assert loaded.shape == array.shape and loaded.dtype == array.dtype
            np.testing.assert_array_equal(loaded, array)


def test_loading_a_big_endian_array_leaves_numpys_shared_dtypes_alone() -> None:
    before = (np.dtype("i4").byteorder, np.dtype("f8").byteorder)
    safe_loads(pickle.dumps(np.arange(3, dtype=">i4"), protocol=2), "be.pkl")
    safe_loads(pickle.dumps(np.arange(3, dtype=">f8"), protocol=4), "be.pkl")
    assert (np.dtype("i4").byteorder, np.dtype("f8").byteorder) == before == ("=", "=")


def test_only_regular_files_inside_the_root_are_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "view").mkdir(parents=True)
    real = root / "real.pkl"
    real.write_bytes(pickle.dumps(np.ones((2, 17, 3))))
    (root / "view" / "inside.pkl").symlink_to(real)  # a link that stays inside the root is followed
    assert safe_load(root / "view" / "inside.pkl", root=root).shape == (2, 17, 3)
    (tmp_path / "root-link").symlink_to(root)  # so is a data root that is itself a link
    assert safe_load(tmp_path / "root-link" / "real.pkl", root=tmp_path / "root-link").shape == (2, 17, 3)

    outside = tmp_path / "outside.pkl"
    outside.write_bytes(real.read_bytes())
    (root / "out.pkl").symlink_to(outside)
    with pytest.raises(DataError, match="out.pkl: cannot read: it resolves to .*outside.pkl, outside the data root"):
        safe_load(root / "out.pkl", root=root)
    assert safe_load(root / "out.pkl").shape == (2, 17, 3)  # no root given: no containment asked for

    (root / "zero.pkl").symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"zero.pkl: cannot read: a character device \(a link to /dev/zero\)"):
        safe_load(root / "zero.pkl")
    os.mkfifo(root / "fifo.pkl")  # opening it for reading would block until a writer came
    with pytest.raises(DataError, match="fifo.pkl: cannot read: a FIFO, not a regular file"):
        safe_load(root / "fifo.pkl", root=root)
    (root / "loop.pkl").symlink_to(root / "loop.pkl")
    with pytest.raises(DataError, match="loop.pkl: cannot read"):
        safe_load(root / "loop.pkl", root=root)


def test_a_newline_in_a_file_name_cannot_split_the_error_line(tmp_path: Path) -> None:
    path = tmp_path / "evil\nscolio: fake second line.pkl"
    path.write_bytes(b"garbage")
    with pytest.raises(DataError) as info:
        safe_load(path)
    assert "\n" not in str(info.value) and "evil\\x0ascolio" in str(info.value)
