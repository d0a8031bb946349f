"""Test support: log every data-file read of the processes tests start (sweep drivers, Ray workers).

Production code reads no environment variable for this; it has `scolio_core.data.release.set_read_hook`.
Tests put this directory on PYTHONPATH (`conftest.read_log_env`) so that Python runs this file at startup in
every process they start, and in those processes' children; when SCOLIO_TEST_READ_LOG names a file, the hook
appends `<pid>\\t<seq_id>\\t<path>` to it for each read. In the test process itself, call `install(path)`.
"""

from __future__ import annotations

import os

ENV = "SCOLIO_TEST_READ_LOG"


def install(path: str | os.PathLike) -> None:
    """Log this process's data-file reads to `path`."""
    from scolio_core.data.release import set_read_hook

    def log(seq_id: str, file: os.PathLike) -> None:
        # Append per read (not a held handle) so concurrent processes interleave whole lines.
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\t{seq_id}\t{file}\n")

    set_read_hook(log)


if os.environ.get(ENV):
    try:
        install(os.environ[ENV])
    except ImportError:  # a process that cannot import scolio_core reads no data files
        pass
