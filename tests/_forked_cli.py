"""Runs many hostile CLI cases cheaply and measures each one alone.

One checker process: an address-space cap (a regression raises MemoryError instead of eating the machine),
the command modules imported once (scikit-learn and torch alone take seconds), then per case a fork that
runs the real entry point `scolio_core.cli.main.main(argv)` with stdout/stderr in files and exits with its
exit code. The parent reaps each fork with os.wait4, which gives that process's own peak RSS and CPU time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECKER = """
import json, os, resource, signal, sys, time, traceback
limit_bytes, kill_after = int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
for module in sys.argv[4:]:
    __import__(module)
from scolio_core.cli.main import main

results = {}
for name, workdir, argv in json.loads(sys.argv[1]):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(os.path.join(workdir, stream), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        signal.alarm(kill_after)  # a hang (a FIFO opened for reading, /dev/zero) is killed and reported
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    results[name] = {"code": os.waitstatus_to_exitcode(status), "peak_bytes": usage.ru_maxrss * 1024,
                     "seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime}
print(json.dumps(results))
"""


def run_forked(jobs: list[tuple[str, str, list[str]]], modules: list[str], *, cwd: Path, env: dict[str, str],
               limit_bytes: int, kill_after_seconds: int, timeout: float) -> dict[str, dict]:
    """Each job (name, its output folder, argv) run in its own fork of one checker; per name: code,
    peak_bytes, seconds, cpu_seconds and the stderr it wrote."""
    done = subprocess.run([sys.executable, "-c", CHECKER, json.dumps(jobs), str(limit_bytes),
                           str(kill_after_seconds), *modules], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    for name, workdir, _ in jobs:
        results[name]["stderr"] = (Path(workdir) / "stderr").read_text(errors="replace")
    return results
