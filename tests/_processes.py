"""Finding and stopping the processes a test started, by a marker variable in their environment.

`ray stop` would kill every Ray instance on the machine (other people's too); instead each test starts
its drivers/heads with a unique `VARIABLE=value` and stops exactly the processes that inherited it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def marked_pids(variable: str, value: str) -> list[int]:
    """Processes whose environment carries `variable=value` (a driver and every Ray process it started)."""
    needle = f"{variable}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return pids


def stop_marked(variable: str, value: str, graceful_seconds: float = 0.0, timeout: float = 30.0) -> list[int]:
    """SIGTERM (when `graceful_seconds`), then SIGKILL the marked processes until none is left (a dying
    parent may still spawn one); returns the pids still alive after `timeout`."""
    steps = ([(signal.SIGTERM, graceful_seconds)] if graceful_seconds else []) + [(signal.SIGKILL, timeout)]
    for sig, wait in steps:
        deadline = time.monotonic() + wait
        while (pids := marked_pids(variable, value)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
    return marked_pids(variable, value)


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all sockets held open while choosing, so none is handed out twice)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
