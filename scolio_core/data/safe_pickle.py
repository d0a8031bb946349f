"""Restricted unpickling for data files: numpy arrays and plain containers, nothing that can run code.

Scoliosis1K ships its poses and silhouettes as pickles. `pickle.load` on a file from elsewhere runs
whatever callable the file names, so every pkl this project reads goes through `safe_load`, whose
unpickler resolves only the handful of globals that rebuilding numpy arrays needs (both the numpy 1.x
`numpy.core` and the numpy 2.x `numpy._core` spellings, since release files were written by either).
A refused global raises `UnsafePickleError` before anything it names is called.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

from scolio_core.errors import DataError, UnsafePickleError

# (module, name) pairs a data pickle may reference. Pickle stores numpy arrays as a reduce call on
# `_reconstruct` (protocols 2-4) or `_frombuffer` (protocol 5), scalars via `scalar`; protocol 2 wraps
# raw bytes in `_codecs.encode`. The builtins are pure value constructors with no side effects.
_NUMPY_CORE_FUNCTIONS = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {(f"numpy.{core}.{module}", name) for core in ("core", "_core") for module, name in _NUMPY_CORE_FUNCTIONS}
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
    # Protocol 2 spells builtins the Python 2 way (`__builtin__`); the unpickler maps them back.
    | {(module, name) for module in ("builtins", "__builtin__")
       for name in ("set", "frozenset", "bytearray", "complex", "slice")}
)

# Corrupt or truncated streams surface as any of these from the C unpickler.
_CORRUPT_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                   KeyError, struct.error, OverflowError, UnicodeDecodeError, RecursionError)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BufferedIOBase, source: str) -> None:
        super().__init__(stream)
        self._source = source

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refused to load global {module}.{name} (only numpy arrays and plain "
                "containers are allowed in data pickles; the file was not executed)")
        return super().find_class(module, name)


def safe_loads(data: bytes, source: str) -> object:
    """Unpickle `data` with the allow-list; `source` names the origin in error messages."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except _CORRUPT_ERRORS as exc:
        raise DataError(f"{source}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from None


def safe_load(path: str | Path) -> object:
    """Read and unpickle one file with the allow-list; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return safe_loads(data, str(path))


__all__ = ["ALLOWED_GLOBALS", "safe_load", "safe_loads"]
