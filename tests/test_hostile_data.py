"""Hostile data files cost bounded time and memory: each is planted in a copy of the synthetic release and
checked by `scolio inspect` in a process of its own.

Each case must exit 2 with one stderr line naming the planted file and the reason, no traceback; the
checking process must peak under 1 GB resident (and within 100 MB of a clean check: the file is refused
before anything it declares is allocated) and the check must finish in under 10 s. One checker subprocess
imports the CLI once (scikit-learn alone takes seconds on a loaded machine), then forks one process per
case that runs the CLI's `main(["inspect", ROOT, ...])`; `os.wait4` gives that process's own peak RSS and
the checker times it. The hostile pickles are assembled here from pickle opcodes;
`test_the_hostile_pickles_are_live` proves each does what it claims when plain `pickle` loads a small one.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _forked_cli import run_forked
from _pickle_ops import NUMPY_CORE, PROTO2
from _pickle_ops import global_ as _global
from _pickle_ops import int_ as _int
from _pickle_ops import text as _text

ROOT = Path(__file__).resolve().parents[1]
POSE = "Scoliosis1K-pose-pkl"
PARTITION = "Scoliosis1K_112.json"
MAX_PEAK_BYTES = 1 << 30
MAX_OVER_CLEAN_BYTES = 100 << 20
MAX_CHECK_SECONDS = 10.0
KILL_AFTER_SECONDS = 60  # a hung check (the /dev/zero regression) is killed, and its case then fails

# Each case runs the real `main(["inspect", ...])` in its own fork of one checker (tests/_forked_cli.py).



# ----------------------------------------------------------------------------- pickles built from opcodes






def _memo(op: bytes, index: int) -> bytes:
    return op + bytes([index])




def bytearray_claim(size: int) -> bytes:
    """`bytearray(size)`: a few bytes that allocate `size`."""
    return PROTO2 + _global("builtins", "bytearray") + _int(size) + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP


def _reconstruct(length: int, dtype_code: str) -> bytes:
    # numpy's own first step, `_reconstruct(ndarray, shape, code)`, with a claimed shape instead of (0,).
    return (PROTO2 + _global(f"{NUMPY_CORE}.multiarray", "_reconstruct") + _global("numpy", "ndarray")
            + _int(length) + pickle.TUPLE1 + _text(dtype_code) + pickle.TUPLE3 + pickle.REDUCE + pickle.STOP)


def bytearray8_claim(size: int) -> bytes:
    """A BYTEARRAY8 opcode claiming `size` bytes: stock unpicklers allocate the claim before reading."""
    return pickle.PROTO + b"\x05" + pickle.BYTEARRAY8 + struct.pack("<Q", size) + pickle.STOP


def object_array(length: int) -> bytes:
    """An object-dtype array of `length` elements, each filled with None on creation."""
    return _reconstruct(length, "O")


def shape_claim(length: int) -> bytes:
    """An int8 array that claims `length` elements."""
    return _reconstruct(length, "b")


def punycode(text: str) -> bytes:
    """`_codecs.encode(text, "punycode")`: quadratic in the number of distinct non-ASCII characters."""
    return (PROTO2 + _global("_codecs", "encode") + _text(text) + _text("punycode") + pickle.TUPLE2
            + pickle.REDUCE + pickle.STOP)


def nested_object_arrays(depth: int) -> bytes:
    """A chain of 1-element object arrays `depth` deep around None, ~33 bytes per level."""
    head = (PROTO2 + _global(f"{NUMPY_CORE}.multiarray", "_reconstruct") + _memo(pickle.BINPUT, 0) + pickle.POP
            + _global("numpy", "ndarray") + _memo(pickle.BINPUT, 1) + pickle.POP
            # dtype("O8") with numpy's own state for it (flags 63), kept in memo 2
            + _global("numpy", "dtype") + _text("O8") + pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3
            + pickle.REDUCE + pickle.MARK + _int(3) + _text("|") + pickle.NONE * 3 + _int(-1) + _int(-1)
            + _int(63) + pickle.TUPLE + pickle.BUILD + _memo(pickle.BINPUT, 2) + pickle.POP
            + pickle.NONE)
    # stack: previous level -> memo 3; an empty array built to shape (1,) holding [previous level]
    level = (_memo(pickle.BINPUT, 3) + pickle.POP + _memo(pickle.BINGET, 0) + _memo(pickle.BINGET, 1)
             + _int(0) + pickle.TUPLE1 + _text("b") + pickle.TUPLE3 + pickle.REDUCE
             + pickle.MARK + _int(1) + _int(1) + pickle.TUPLE1 + _memo(pickle.BINGET, 2) + pickle.NEWFALSE
             + pickle.EMPTY_LIST + _memo(pickle.BINGET, 3) + pickle.APPEND + pickle.TUPLE + pickle.BUILD)
    return head + level * depth + pickle.STOP


def test_the_hostile_pickles_are_live() -> None:
    # Small versions through plain pickle: each builder really makes what its case claims at full size.
    assert pickle.loads(bytearray_claim(10)) == bytearray(10)
    tracemalloc.start()
    try:
        with pytest.raises(pickle.UnpicklingError):  # the claim is allocated before the data is found missing
            pickle.loads(bytearray8_claim(50_000_000))
        assert tracemalloc.get_traced_memory()[1] >= 50_000_000
    finally:
        tracemalloc.stop()
    objects = pickle.loads(object_array(10))
    assert objects.dtype == object and objects.shape == (10,) and all(item is None for item in objects)
    assert pickle.loads(shape_claim(16)).shape == (16,)
    text = "".join(chr(0x4E00 + i) for i in range(50))
    assert pickle.loads(punycode(text)) == text.encode("punycode")
    chain = pickle.loads(nested_object_arrays(3))
    for _ in range(3):
        assert chain.dtype == object and chain.shape == (1,)
        chain = chain[0]
    assert chain is None
    assert len(nested_object_arrays(56_000)) > 1_800_000  # the size the issue measured a segfault at


# --------------------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    name: str
    expect: str  # the reason the error line must give
    planted: Path | None = None
    root: Path | None = None
    result: dict = field(default_factory=dict)


def _plant(case: Case, synth_root: Path, base: Path) -> None:
    root = base / case.name / "data"
    shutil.copytree(synth_root, root)
    (path,) = (root / POSE / _train_id(synth_root)).glob("*/*/*.pkl")
    outside = base / case.name / "outside" / "stolen.pkl"
    outside.parent.mkdir(parents=True)
    shutil.copyfile(path, outside)  # a valid pose file: only its location is wrong
    if case.name != "clean":
        path.unlink()
    payloads = {
        "bytearray-claim": lambda: bytearray_claim(300_000_000),
        "bytearray8-opcode-claim": lambda: bytearray8_claim(2_000_000_000),
        "object-array": lambda: object_array(40_000_000),
        "nested-object-arrays": lambda: nested_object_arrays(60_000),
        "punycode": lambda: punycode("".join(chr(0x4E00 + i) for i in range(17_700))),
        "shape-2^44": lambda: shape_claim(1 << 44),
    }
    if case.name in payloads:
        path.write_bytes(payloads[case.name]())
    elif case.name == "symlink-dev-zero":
        path.symlink_to("/dev/zero")
    elif case.name == "symlink-out-of-root":
        path.symlink_to(outside)
    elif case.name == "fifo":
        os.mkfifo(path)
    case.planted, case.root = path, root


def _train_id(synth_root: Path) -> str:
    return json.loads((synth_root / PARTITION).read_text())["TRAIN_SET"][0]


def _inspect_all(cases: dict[str, Case], base: Path) -> None:
    """Run `scolio inspect` on every case's root; record exit code, stderr, peak RSS and seconds."""
    jobs = [(case.name, str(base / case.name), ["inspect", str(case.root), "--partition", PARTITION,
                                                "--modality", "skeleton"]) for case in cases.values()]
    env = {k: v for k, v in os.environ.items() if k != "SCOLIO_TEST_READ_LOG"}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    results = run_forked(jobs, ["scolio_core.cli.inspect"], cwd=base, env=env, limit_bytes=4 << 30,
                         kill_after_seconds=KILL_AFTER_SECONDS, timeout=KILL_AFTER_SECONDS * 3)
    for name, result in results.items():
        cases[name].result = result


CASES = {
    "symlink-dev-zero": "a character device",
    "symlink-out-of-root": "outside the data root",
    "fifo": "a FIFO",
    "bytearray-claim": "refused to load global builtins.bytearray",
    "bytearray8-opcode-claim": "BYTEARRAY8 claims 1,907.3 MiB",
    "object-array": "object dtype",
    "nested-object-arrays": "object dtype",
    "punycode": "codec 'punycode'",
    "shape-2^44": "over the 64.0 MiB cap",
}


@pytest.fixture(scope="module")
def hostile(synth_root, tmp_path_factory) -> dict[str, Case]:
    base = tmp_path_factory.mktemp("hostile")
    cases = {name: Case(name, expect) for name, expect in {"clean": "", **CASES}.items()}
    for case in cases.values():
        _plant(case, synth_root, base)
    _inspect_all(cases, base)
    return cases


def _summary(case: Case) -> str:
    out = case.result
    return (f"{case.name}: exit {out['code']}, peak {out['peak_bytes'] / 2**20:.0f} MiB, "
            f"{out['seconds']:.2f} s ({out['cpu_seconds']:.2f} s CPU)\nstderr: {out['stderr'][-3000:]}")


def test_the_clean_release_passes_the_same_harness(hostile) -> None:
    clean = hostile["clean"]
    print(_summary(clean))
    assert clean.result["code"] == 0, _summary(clean)
    assert clean.result["seconds"] < MAX_CHECK_SECONDS


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_is_refused_in_one_line_with_bounded_time_and_memory(hostile, name) -> None:
    case, clean = hostile[name], hostile["clean"]
    out, detail = case.result, _summary(case)
    print(detail.splitlines()[0])
    assert out["code"] == 2, detail
    assert "Traceback" not in out["stderr"], detail
    lines = [line for line in out["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("scolio inspect: error:"), detail
    assert str(case.planted) in lines[0] and case.expect in lines[0], detail
    assert "1 of 60 skeleton file(s) failed validation" in lines[0], detail  # the one pass went on to the end
    assert out["peak_bytes"] < MAX_PEAK_BYTES, detail
    assert out["peak_bytes"] < clean.result["peak_bytes"] + MAX_OVER_CLEAN_BYTES, detail
    assert out["seconds"] < MAX_CHECK_SECONDS, detail


def test_the_release_check_reports_every_hostile_file_in_one_line(synth_root, tmp_path) -> None:
    # One pass over the listed files: each bad file is one `;`-separated entry of a single-line error.
    from scolio_core.data.release import validate_release
    from scolio_core.errors import DataError

    root = tmp_path / POSE
    shutil.copytree(synth_root / POSE, root)
    ids = json.loads((synth_root / PARTITION).read_text())["TRAIN_SET"][:4]
    paths = [next((root / seq_id).glob("*/*/*.pkl")) for seq_id in ids[:3]]
    paths[0].unlink()
    paths[0].symlink_to("/dev/zero")
    paths[1].write_bytes(object_array(40_000_000))
    paths[2].write_bytes(shape_claim(1 << 44))
    with pytest.raises(DataError) as info:
        validate_release(root, ids, "skeleton")
    message = str(info.value)
    assert "\n" not in message and "3 of 4 skeleton file(s) failed validation" in message, message
    assert all(str(path) in message for path in paths), message
