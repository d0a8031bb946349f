"""Pickle streams built opcode by opcode, for the tests that feed hostile pickles to the restricted unpickler."""

from __future__ import annotations

import pickle
import struct

import numpy as np

NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
PROTO2 = pickle.PROTO + b"\x02"


def global_(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def int_(value: int) -> bytes:
    if 0 <= value < 256:
        return pickle.BININT1 + bytes([value])
    if -(1 << 31) <= value < 1 << 31:
        return pickle.BININT + struct.pack("<i", value)
    encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(encoded)]) + encoded


def text(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(encoded)) + encoded
