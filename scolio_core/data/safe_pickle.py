"""Restricted unpickling for data files: numeric numpy arrays and plain containers, bounded in time and memory.

Scoliosis1K ships its poses and silhouettes as pickles. `pickle.load` on a file from elsewhere runs
whatever callable the file names, and even a pickle that names only harmless callables can exhaust memory
(a 40-byte `bytearray(300_000_000)`, a shape claim of 2^44, an object array filled with 40 M `None`s) or
CPU (`_codecs.encode(text, "punycode")` is quadratic), or crash the interpreter (deeply nested objects). So:

- the file must be a regular file (no device, FIFO or directory; checked with `stat` before opening),
  resolve inside the data root when one is given, and be at most `max_file_bytes` long;
- it is interpreted by the pure-Python unpickler with its dispatch table trimmed: globals resolve only to
  checked stand-ins for what numpy's own pickles call (`_reconstruct`, `_frombuffer`, `scalar`, `dtype`,
  latin1 `_codecs.encode`) plus `set` / `frozenset` / `OrderedDict` / empty `bytes`; dtypes are numeric only
  (object dtypes are refused); every array's declared size (shape x itemsize) is checked against
  `max_array_bytes` before anything is allocated; `BUILD` is allowed only on the dtypes and arrays those
  stand-ins made; dict and set keys must be flat scalars (hashing a deeply nested tuple overflows the C
  stack); at most `max_opcodes` opcodes run, which bounds the number of objects a small file can create;
- one load allocates at most `max_total_bytes` (array data and byte strings made by the stand-ins) and
  `max_total_elements` (container items), counted across every object it constructs. The per-array cap alone
  is not enough: a 1 MiB string kept in the pickle memo and handed to `_codecs.encode` 2,500 times is a 1 MB
  file that allocates 2.5 GB, and `set()` of one memoised list 250 times multiplies a list the same way.

A refused global raises `UnsafePickleError` before anything it names is called; every other refusal, a
corrupt stream, `MemoryError` and `RecursionError` raise a one-line `DataError` naming the file.
The caps are fields of `PickleLimits`; `DEFAULT_LIMITS` holds the defaults, and every loader takes a
`limits=` keyword to change them.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from scolio_core.data.bounded import format_size as _size
from scolio_core.data.bounded import read_bounded
from scolio_core.errors import DataError, UnsafePickleError
from scolio_core.errors import one_line as _one_line

_MiB = 1 << 20


@dataclass(frozen=True)
class PickleLimits:
    """Resource caps for one data pickle (defaults far above the release: a 1,000-frame silhouette file is 4 MiB).

    64 MiB keeps a load's peak under 1 GB whatever a file holds: the file's bytes, the loader's copy, the
    array, and the float32 copy a float16 pose array becomes (an adversarial try at 256 MiB peaked at 1.36 GB).
    """

    max_file_bytes: int = 64 * _MiB  # checked with stat before the file is opened for reading
    max_array_bytes: int = 64 * _MiB  # shape x itemsize of each array, checked before it is allocated
    max_opcodes: int = 1_000_000  # a numpy array pickles in ~40 opcodes; each opcode makes at most one object
    # Across one load: declared array bytes plus byte strings the stand-ins make (the stream's own bytes are
    # bounded by max_file_bytes). A protocol-2 array costs twice its size here (its latin1 copy, then the array).
    max_total_bytes: int = 128 * _MiB
    # Across one load: items of every list, dict and set built (a memoised list fed to set() counts each time).
    max_total_elements: int = 2_000_000


DEFAULT_LIMITS = PickleLimits()

# Numeric dtype codes as numpy pickles them (`dtype("f4", False, True)`); byte order arrives by BUILD.
_DTYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"})
_BYTE_ORDERS = frozenset({"<", ">", "|", "="})
_MAX_DIMS = 32
_MAX_KEY_TUPLE = 32
_SHOWN = 60  # characters of a refused value quoted in a message


class _NdarrayToken:
    """What `numpy.ndarray` resolves to: numpy's pickles only pass it to `_reconstruct`, never call it."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayToken()


def _short(value: object) -> str:
    """A bounded rendering of a value from the stream (never repr a big or nested object: that is unbounded)."""
    if type(value) in (str, bytes):
        text = repr(value[:_SHOWN])
        return text + ("..." if len(value) > _SHOWN else "")
    if type(value) is int:
        return repr(value) if value.bit_length() <= 128 else f"<int of {value.bit_length()} bits>"
    if type(value) in (float, bool, type(None)) or value is _NDARRAY:
        return repr(value)
    if type(value) is tuple and len(value) <= 8:
        return "(" + ", ".join(_short(item) for item in value) + ("," if len(value) == 1 else "") + ")"
    return f"<{type(value).__name__}>"


def _flat_key(key: object) -> bool:
    # Scalars hash in bounded time; a tuple key may hold up to _MAX_KEY_TUPLE scalars, nothing nested.
    def scalar(value: object) -> bool:
        if type(value) is int:
            return value.bit_length() <= 64  # int hashes are not cached: a 100 MB int would rehash per use
        return type(value) in (str, bytes, float, bool, type(None)) or isinstance(value, (np.number, np.bool_))

    if type(key) is tuple:
        return len(key) <= _MAX_KEY_TUPLE and all(scalar(item) for item in key)
    return scalar(key)


# The globals a data pickle may name, each resolved to a checked stand-in method of the unpickler (never to
# the real numpy function): what numpy's own pickles call, in the numpy 1.x `numpy.core` and 2.x `numpy._core`
# spellings (release files were written by either), the containers protocols 2-3 build by call (protocol 2
# spells builtins the Python 2 way), and protocol 2's `_codecs.encode` for raw bytes. `numpy.ndarray` is only
# ever an argument of `_reconstruct`, so it resolves to an inert token.
_STAND_INS: dict[tuple[str, str], str] = {
    ("numpy", "ndarray"): "",
    ("numpy", "dtype"): "_dtype",
    ("_codecs", "encode"): "_latin1_encode",
    ("collections", "OrderedDict"): "_ordered_dict",
    **{(f"{core}.{module}", name): stand_in for core in ("numpy.core", "numpy._core")
       for module, name, stand_in in (("multiarray", "_reconstruct", "_reconstruct"),
                                      ("multiarray", "scalar", "_scalar"), ("numeric", "_frombuffer", "_frombuffer"))},
    **{(builtins, name): stand_in for builtins in ("builtins", "__builtin__")
       for name, stand_in in (("set", "_set"), ("frozenset", "_frozenset"), ("bytes", "_empty_bytes"))},
}
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(_STAND_INS)

# The pure-Python unpickler that CPython ships beside the C one (`pickle._Unpickler`) is used because its
# opcode table can be replaced per class: every opcode is counted, and the ones that call, build, index or
# hash arbitrary objects are swapped for checked versions below. Its memo is a dict, so a memo index claim
# of 2^32 costs nothing (the C unpickler sizes an array by it).
_BASE = pickle._Unpickler  # noqa: SLF001 - see above
_REFUSED_OPCODES = {
    pickle.NEWOBJ: "NEWOBJ", pickle.NEWOBJ_EX: "NEWOBJ_EX", pickle.OBJ: "OBJ", pickle.INST: "INST",
    pickle.EXT1: "EXT1", pickle.EXT2: "EXT2", pickle.EXT4: "EXT4", pickle.PERSID: "PERSID",
    pickle.BINPERSID: "BINPERSID", pickle.NEXT_BUFFER: "NEXT_BUFFER", pickle.READONLY_BUFFER: "READONLY_BUFFER",
}


class _RestrictedUnpickler(_BASE):
    def __init__(self, data: bytes, source: str, limits: PickleLimits) -> None:
        super().__init__(io.BytesIO(data))
        self._source = source
        self._limits = limits
        self._opcodes = 0
        self._bytes = 0  # allocated so far by this load (see PickleLimits.max_total_bytes)
        self._elements = 0  # container items made so far (PickleLimits.max_total_elements)
        # Objects our stand-ins created that may still receive one BUILD (id -> object, kept alive here).
        self._unbuilt: dict[int, object] = {}

    # ------------------------------------------------------------------------------------------ helpers
    def _refuse(self, why: str) -> DataError:
        return DataError(f"{self._source}: refused: {why}")

    def _charge(self, nbytes: int = 0, elements: int = 0) -> None:
        """Count an allocation against the whole load's budget before it is made."""
        self._bytes += nbytes
        self._elements += elements
        if self._bytes > self._limits.max_total_bytes:
            raise self._refuse(f"the file would allocate more than {_size(self._limits.max_total_bytes)} in total "
                               "(PickleLimits.max_total_bytes; objects reused from the pickle memo count each time)")
        if self._elements > self._limits.max_total_elements:
            raise self._refuse(f"the file would build more than {self._limits.max_total_elements:,} container "
                               "items in total (PickleLimits.max_total_elements; objects reused from the pickle "
                               "memo count each time)")

    def _numeric_dtype(self, value: object) -> np.dtype:
        if not isinstance(value, np.dtype):
            raise self._refuse(f"expected a numpy dtype, got {type(value).__name__}")
        if value.hasobject or value.kind not in "biufc" or value.fields is not None or value.subdtype is not None:
            raise self._refuse(f"dtype {value} (only numeric dtypes are allowed in data pickles)")
        return value

    def _dtype_from_code(self, code: object) -> np.dtype:
        if isinstance(code, bytes):
            code = code.decode("latin1")
        if type(code) is str and (code == "b" or code in _DTYPE_CODES):
            return np.dtype(code)
        if isinstance(code, str) and code[:1] == "O":
            raise self._refuse(f"object dtype {code!r} (object arrays can hold anything; data files hold numbers)")
        raise self._refuse(f"dtype {_short(code)} (only numeric dtypes are allowed in data pickles)")

    def _checked_shape(self, shape: object, dtype: np.dtype) -> tuple[tuple[int, ...], int]:
        """The shape and its size in bytes, refused over the cap before anything is allocated."""
        cap = self._limits.max_array_bytes
        if type(shape) is not tuple or len(shape) > _MAX_DIMS:
            raise self._refuse(f"array shape {_short(shape)} (expected a tuple of at most {_MAX_DIMS} ints)")
        nbytes = dtype.itemsize
        for dim in shape:
            if type(dim) is not int or dim < 0:
                raise self._refuse(f"array shape {_short(shape)} (dimensions must be non-negative ints)")
            nbytes *= min(dim, cap + 1)  # clamped so the product stays a small int; any clamp exceeds the cap
        if nbytes > cap:
            huge = any(dim.bit_length() > 64 for dim in shape)  # keep the arithmetic for the message small
            declared = _size(1 << 64 if huge else dtype.itemsize * math.prod(shape))
            raise self._refuse(f"array of shape {_short(shape)} and dtype {dtype} declares {declared}, over the "
                               f"{_size(cap)} cap (PickleLimits.max_array_bytes)")
        return shape, nbytes

    def _raw_bytes(self, data: object, nbytes: int, what: str) -> bytes | bytearray:
        if isinstance(data, str):  # protocol 2 written by Python 2: raw bytes as a latin1 str
            self._charge(len(data))
            data = data.encode("latin1")
        if type(data) not in (bytes, bytearray):
            raise self._refuse(f"{what} data is {type(data).__name__} (expected bytes)")
        if len(data) != nbytes:
            raise self._refuse(f"{what} holds {len(data)} bytes but its shape and dtype need {nbytes}")
        return data

    # --------------------------------------------------------------------- stand-ins for allowed globals
    def _dtype(self, code: object, align: object = False, copy: object = True) -> np.dtype:
        if type(align) is not bool or type(copy) is not bool:
            raise self._refuse("numpy.dtype called with non-bool align/copy")
        # Always a fresh copy: BUILD then sets its byte order, which must never touch numpy's shared dtypes.
        dtype = np.dtype(self._dtype_from_code(code), copy=True)
        self._unbuilt[id(dtype)] = dtype
        return dtype

    def _reconstruct(self, subtype: object, shape: object, code: object) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise self._refuse(f"_reconstruct of {_short(subtype)} (only numpy.ndarray)")
        dtype = self._dtype_from_code(code)
        shape, nbytes = self._checked_shape(shape, dtype)
        self._charge(nbytes)  # numpy's own pickles declare (0,) here; a claimed shape is allocated now
        array = np.zeros(shape, dtype)  # numpy writes (0,): the data arrives by BUILD
        self._unbuilt[id(array)] = array
        return array

    def _frombuffer(self, buf: object, dtype: object, shape: object, order: object,
                    axis_order: object = None) -> np.ndarray:
        # Protocol 5: numpy's `_frombuffer` is frombuffer + reshape (+ transpose for order "K").
        dtype = self._numeric_dtype(dtype)
        shape, nbytes = self._checked_shape(shape, dtype)
        self._charge(nbytes)  # a view of `buf`, but every array handed out may be copied by its reader
        if order not in ("C", "F", "K"):
            raise self._refuse(f"array order {_short(order)}")
        if axis_order is not None and (type(axis_order) is not tuple
                                       or sorted(axis_order) != list(range(len(shape)))):
            raise self._refuse(f"axis order {_short(axis_order)} is not a permutation of the array's axes")
        array = np.frombuffer(self._raw_bytes(buf, nbytes, "array"), dtype=dtype)
        if order == "K" and axis_order is not None:
            return array.reshape(shape, order="C").transpose(axis_order)
        return array.reshape(shape, order=order)

    def _scalar(self, dtype: object, data: object) -> np.generic:
        dtype = self._numeric_dtype(dtype)
        return np.frombuffer(self._raw_bytes(data, dtype.itemsize, "scalar"), dtype=dtype)[0]

    def _latin1_encode(self, text: object, encoding: object = "utf-8", errors: object = "strict") -> bytes:
        # Protocol 2 stores bytes as _codecs.encode(str, "latin1"); any other codec is refused (punycode and
        # friends are quadratic), and so is text longer than the largest array it could carry.
        if encoding not in ("latin1", "latin-1") or errors != "strict":
            raise self._refuse(f"_codecs.encode with codec {_short(encoding)} (only latin1, which numpy's "
                               "protocol-2 pickles use)")
        if type(text) is not str:
            raise self._refuse(f"_codecs.encode of {type(text).__name__} (expected str)")
        if len(text) > self._limits.max_array_bytes:
            raise self._refuse(f"_codecs.encode of {len(text):,} characters, over the "
                               f"{_size(self._limits.max_array_bytes)} cap (PickleLimits.max_array_bytes)")
        self._charge(len(text))  # a new bytes object per call, even for the same memoised text
        return text.encode("latin1")

    def _items(self, items: object, what: str) -> list | tuple:
        if type(items) not in (list, tuple):
            raise self._refuse(f"{what} of {type(items).__name__} (expected a list)")
        self._charge(elements=len(items))  # before the key check, whose time is linear in the items too
        if not all(_flat_key(item) for item in items):
            raise self._refuse(f"{what} element that is not a flat scalar")
        return items

    def _set(self, items: object = ()) -> set:
        return set(self._items(items, "set"))

    def _frozenset(self, items: object = ()) -> frozenset:
        return frozenset(self._items(items, "frozenset"))

    def _ordered_dict(self) -> OrderedDict:
        return OrderedDict()  # its items arrive by SETITEMS

    def _empty_bytes(self, *args: object) -> bytes:
        if args:  # protocol 2 writes b"" as bytes(); bytes(n) would allocate n
            raise self._refuse("bytes() with arguments (only the empty bytes() of protocol 2 is allowed)")
        return b""

    def find_class(self, module: str, name: str) -> object:
        stand_in = _STAND_INS.get((module, name))
        if stand_in is None:
            raise UnsafePickleError(
                f"{self._source}: refused to load global {_one_line(str(module)[:_SHOWN])}."
                f"{_one_line(str(name)[:_SHOWN])} (only numpy arrays and plain containers are allowed in data "
                "pickles; the file was not executed)")
        return getattr(self, stand_in) if stand_in else _NDARRAY

    # ----------------------------------------------------------------------------- replaced opcodes
    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if type(args) is not tuple:  # f(*x) on a big array would make one object per element
            raise self._refuse(f"REDUCE with {type(args).__name__} arguments")
        if not callable(func):
            raise self._refuse(f"REDUCE of non-callable {type(func).__name__}")
        self.stack[-1] = func(*args)

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if self._unbuilt.pop(id(inst), None) is not inst:
            raise self._refuse(f"BUILD on {type(inst).__name__} (only on dtypes and arrays just made)")
        if isinstance(inst, np.dtype):
            # numpy's state for a numeric dtype is (3, byteorder, None, None, None, -1, -1, 0); the flags
            # slot could otherwise mark a float dtype as holding object pointers.
            if (type(state) is not tuple or len(state) != 8 or state[0] != 3 or state[1] not in _BYTE_ORDERS
                    or state[2:] != (None, None, None, -1, -1, 0)):
                raise self._refuse(f"dtype state {_short(state)}")
            inst.__setstate__((3, state[1], None, None, None, -1, -1, 0))
            return
        # ndarray: (version, shape, dtype, is_fortran, rawdata), version 1, or without the version (0).
        if type(state) is not tuple or len(state) not in (4, 5):
            raise self._refuse(f"array state of {type(state).__name__}")
        shape, dtype, fortran, raw = state[-4:]
        dtype = self._numeric_dtype(dtype)
        shape, nbytes = self._checked_shape(shape, dtype)
        if type(fortran) is not bool and fortran not in (0, 1):
            raise self._refuse("array state with a non-bool Fortran flag")
        raw = self._raw_bytes(raw, nbytes, "array")
        if type(raw) is not bytes:
            raise self._refuse("array state with bytearray data")
        self._charge(nbytes)  # the array gets its own copy of `raw`, which may be one memoised object reused
        inst.__setstate__((*state[:-4], shape, dtype, bool(fortran), raw))

    def _load_bytearray8(self) -> None:
        # The stock loader allocates the claimed length before reading; read first, so a claim costs at most
        # the bytes the file really holds.
        (size,) = struct.unpack("<Q", self.read(8))
        data = self.read(min(size, self._limits.max_file_bytes + 1))
        if len(data) != size:
            raise self._refuse(f"BYTEARRAY8 claims {_size(size)} but only {_size(len(data))} follow")
        self.append(bytearray(data))

    def _target(self, kinds: tuple[type, ...], opcode: str) -> object:
        target = self.stack[-1]
        if type(target) not in kinds:
            raise self._refuse(f"{opcode} on {type(target).__name__}")
        return target

    def _check_keys(self, keys: list | tuple) -> None:
        if not all(_flat_key(key) for key in keys):
            raise self._refuse("dict or set key that is not a flat scalar")

    def _load_dict(self) -> None:
        items = self.pop_mark()
        self._charge(elements=len(items) // 2)
        self._check_keys(items[::2])
        self.append(dict(zip(items[::2], items[1::2])))

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._charge(elements=1)
        self._check_keys((key,))
        self._target((dict, OrderedDict), "SETITEM")[key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        self._charge(elements=len(items) // 2)
        self._check_keys(items[::2])
        self._target((dict, OrderedDict), "SETITEMS").update(zip(items[::2], items[1::2]))

    def _load_additems(self) -> None:
        items = self.pop_mark()
        self._charge(elements=len(items))
        self._check_keys(items)
        self._target((set,), "ADDITEMS").update(items)

    def _load_frozenset(self) -> None:
        items = self.pop_mark()
        self._charge(elements=len(items))
        self._check_keys(items)
        self.append(frozenset(items))

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._charge(elements=1)
        self._target((list,), "APPEND").append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._charge(elements=len(items))
        self._target((list,), "APPENDS").extend(items)


def _counted(handler: Callable[[_RestrictedUnpickler], None]) -> Callable[[_RestrictedUnpickler], None]:
    def run(self: _RestrictedUnpickler) -> None:
        self._opcodes += 1
        if self._opcodes > self._limits.max_opcodes:
            raise self._refuse(f"more than {self._limits.max_opcodes:,} pickle opcodes "
                               "(PickleLimits.max_opcodes; a numpy array needs about 40)")
        handler(self)
    return run


def _refused_opcode(name: str) -> Callable[[_RestrictedUnpickler], None]:
    def run(self: _RestrictedUnpickler) -> None:
        raise self._refuse(f"pickle opcode {name} (not used by numpy arrays or plain containers)")
    return run


def _dispatch() -> dict[int, Callable[[_RestrictedUnpickler], None]]:
    table = dict(_BASE.dispatch)
    replaced = {pickle.REDUCE: "_load_reduce", pickle.BUILD: "_load_build", pickle.DICT: "_load_dict",
                pickle.SETITEM: "_load_setitem", pickle.SETITEMS: "_load_setitems",
                pickle.ADDITEMS: "_load_additems", pickle.FROZENSET: "_load_frozenset",
                pickle.APPEND: "_load_append", pickle.APPENDS: "_load_appends",
                pickle.BYTEARRAY8: "_load_bytearray8"}
    for opcode, method in replaced.items():
        table[opcode[0]] = getattr(_RestrictedUnpickler, method)
    for opcode, name in _REFUSED_OPCODES.items():
        table[opcode[0]] = _refused_opcode(name)
    return {code: _counted(handler) for code, handler in table.items()}


_RestrictedUnpickler.dispatch = _dispatch()

# Corrupt or truncated streams surface as any of these from the unpickler; MemoryError and RecursionError
# are caught too so that no data file can end the process with a traceback.
_CORRUPT_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                   KeyError, struct.error, OverflowError, UnicodeError, BufferError)


def safe_loads(data: bytes, source: str, *, limits: PickleLimits = DEFAULT_LIMITS) -> object:
    """Unpickle `data` with the allow-list and `limits`; `source` names the origin in error messages."""
    source = _one_line(source)
    if len(data) > limits.max_file_bytes:
        raise DataError(f"{source}: refused: {_size(len(data))}, over the {_size(limits.max_file_bytes)} "
                        "file-size cap (PickleLimits.max_file_bytes)")
    try:
        return _RestrictedUnpickler(data, source, limits).load()
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{source}: refused: ran out of memory while unpickling") from None
    except RecursionError:
        raise DataError(f"{source}: refused: objects nested too deeply") from None
    except _CORRUPT_ERRORS as exc:
        raise DataError(f"{source}: corrupt or truncated pickle "
                        f"({type(exc).__name__}: {_one_line(_short(str(exc)))})") from None


def safe_load(path: str | Path, *, root: str | Path | None = None, limits: PickleLimits = DEFAULT_LIMITS) -> object:
    """Read and unpickle one data file with the allow-list and `limits`; errors name the file.

    The file must be a regular file no larger than `limits.max_file_bytes`; with `root`, its fully resolved
    path must also lie inside the resolved `root` (a link out of the data root is refused).
    """
    data = read_bounded(path, limits.max_file_bytes, root=root, cap_name="PickleLimits.max_file_bytes")
    return safe_loads(data, str(path), limits=limits)


__all__ = ["ALLOWED_GLOBALS", "DEFAULT_LIMITS", "PickleLimits", "safe_load", "safe_loads"]
