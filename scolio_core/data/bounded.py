"""The one reader for files that come from outside: data pickles, partitions, split manifests, checkpoint
files, id lists. Reading a path a user or a download chose costs at most what the caller allows:

- the path is stat-ed before it is opened, and only a regular file is opened (opening a FIFO blocks until a
  writer comes; a device such as /dev/zero never ends);
- with `root`, the fully resolved path must lie inside the resolved root (a link out of a data root);
- with `follow_symlinks=False` (files inside a checkpoint directory) a symlink is refused outright;
- the size is checked against `max_bytes` before reading, and at most `max_bytes + 1` bytes are read;
- the descriptor is opened with O_NOFOLLOW | O_NONBLOCK and re-checked with fstat, so a path swapped for a
  FIFO or a link after the stat is still refused.

`load_json_bounded` adds what `json.loads` lacks for hostile input: a cap on the number of values (counted
before parsing), on nesting depth, on the length of a number (Python refuses ints over 4,300 digits with a
ValueError, and parsing one is quadratic below that), and a refusal of duplicate keys (json keeps the last one
silently). Every refusal is one line naming the file, raised as the caller's `ScolioError` subclass.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from scolio_core.errors import DataError, ScolioError, one_line

_MiB = 1 << 20
_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def format_size(nbytes: int) -> str:
    """A byte count for messages: exact below 1 MiB, then MiB or TiB."""
    if nbytes >= 1 << 64:
        return "more than 2^64 bytes"
    if nbytes < _MiB:
        return f"{nbytes:,} byte" + ("" if nbytes == 1 else "s")
    return f"{nbytes / _MiB:,.1f} MiB" if nbytes < 1 << 40 else f"{nbytes / (1 << 40):,.1f} TiB"


def file_kind(mode: int) -> str:
    """What a stat mode describes, as a message phrase ('a FIFO', 'a character device', ...)."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def read_bounded(path: str | Path, max_bytes: int, *, root: str | Path | None = None,
                 follow_symlinks: bool = True, error: type[ScolioError] = DataError,
                 cap_name: str = "") -> bytes:
    """The bytes of `path`, which must be a regular file of at most `max_bytes` (inside `root` when given).

    Anything else raises `error` naming the file, before the file is opened where that can be known. With
    `follow_symlinks=False` the path itself must not be a symlink. `cap_name` names the setting that holds
    `max_bytes` in the size message.
    """
    path = Path(path)
    shown = one_line(str(path))
    # The two modes phrase a refusal as their callers always have: data files "cannot read: a FIFO, ...",
    # checkpoint files "a FIFO, not a regular file; refusing to read it".
    lead, tail = ("cannot read: ", "") if follow_symlinks else ("", "; refusing to read it")
    try:
        target = path.resolve(strict=True) if follow_symlinks else path
        info = os.stat(target) if follow_symlinks else os.lstat(target)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise error(f"{shown}: cannot read ({one_line(getattr(exc, 'strerror', None) or str(exc))})") from None
    if not stat.S_ISREG(info.st_mode):
        via = ""
        if follow_symlinks and target != Path(os.path.abspath(path)):
            via = f" (a link to {one_line(str(target))})"
        raise error(f"{shown}: {lead}{file_kind(info.st_mode)}{via}, not a regular file{tail}")
    if root is not None:
        base = Path(root).resolve()
        resolved = path.resolve()
        if not resolved.is_relative_to(base):
            raise error(f"{shown}: cannot read: it resolves to {one_line(str(resolved))}, outside the data root "
                        f"{one_line(str(base))} (links out of the data root are refused)")
    hint = f" ({cap_name})" if cap_name else ""
    if info.st_size > max_bytes:
        raise error(f"{shown}: refused: {format_size(info.st_size)}, over the {format_size(max_bytes)} file-size "
                    f"cap{hint}")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        raise error(f"{shown}: cannot read ({one_line(exc.strerror or str(exc))}){tail}") from None
    try:
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if not stat.S_ISREG(opened.st_mode):
                raise error(f"{shown}: {lead}{file_kind(opened.st_mode)}, not a regular file{tail}")
            data = handle.read(max_bytes + 1)  # +1: a file that grew past the cap since the stat is seen
    except OSError as exc:
        raise error(f"{shown}: cannot read ({one_line(exc.strerror or str(exc))})") from None
    except MemoryError:
        raise error(f"{shown}: refused: ran out of memory while reading") from None
    if len(data) > max_bytes:
        raise error(f"{shown}: refused: grew past the {format_size(max_bytes)} file-size cap while being read{hint}")
    return data


# ---- JSON -----------------------------------------------------------------------------------------------------

MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 1_000_000
MAX_NUMBER_CHARS = 40  # a float's repr is at most 24 characters, a 64-bit int 20


def parse_json_bounded(data: bytes, source: str, *, max_depth: int = MAX_JSON_DEPTH,
                       max_values: int = MAX_JSON_VALUES, max_number_chars: int = MAX_NUMBER_CHARS,
                       error: type[ScolioError] = DataError) -> Any:
    """Parse JSON `data` (read from `source`, named in errors) within the caps; duplicate keys are refused."""
    shown = one_line(source)
    # Each value after the first starts after a comma or an opening bracket, so this bounds the number of
    # values (and so the objects json.loads would make) before any is made. Brackets and commas inside strings
    # only over-count.
    values = 1 + data.count(b",") + data.count(b"[") + data.count(b"{")
    if values > max_values:
        raise error(f"{shown}: refused: up to {values:,} JSON values, over the cap of {max_values:,}")

    def number(text: str, kind: type) -> object:
        if len(text) > max_number_chars:
            raise error(f"{shown}: refused: a number of {len(text):,} characters (at most {max_number_chars})")
        return kind(text)

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
            raise error(f"{shown}: key {one_line(repr(duplicate)[:60])} appears more than once in one object "
                        "(refused rather than keeping only the last)")
        return result

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=unique,
                           parse_int=lambda text: number(text, int), parse_float=lambda text: number(text, float))
    except UnicodeDecodeError as exc:
        raise error(f"{shown}: not valid JSON (not UTF-8 at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{shown}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise error(f"{shown}: refused: JSON nested more than {max_depth} levels deep") from None
    _check_depth(value, max_depth, shown, error)
    return value


def _check_depth(value: Any, max_depth: int, shown: str, error: type[ScolioError]) -> None:
    # Iterative, so the check itself cannot overflow the stack.
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise error(f"{shown}: refused: JSON nested more than {max_depth} levels deep")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def load_json_bounded(path: str | Path, max_bytes: int, *, max_depth: int = MAX_JSON_DEPTH,
                      max_values: int = MAX_JSON_VALUES, max_number_chars: int = MAX_NUMBER_CHARS,
                      root: str | Path | None = None, follow_symlinks: bool = True,
                      error: type[ScolioError] = DataError) -> Any:
    """Read `path` with `read_bounded` and parse it with `parse_json_bounded`; errors name the file."""
    data = read_bounded(path, max_bytes, root=root, follow_symlinks=follow_symlinks, error=error)
    return parse_json_bounded(data, str(path), max_depth=max_depth, max_values=max_values,
                              max_number_chars=max_number_chars, error=error)


__all__ = ["file_kind", "format_size", "load_json_bounded", "parse_json_bounded", "read_bounded"]
