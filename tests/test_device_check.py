"""`python benchmarks/device_check.py --dry-run`: the GPU check's code paths (train_step's measurement, two
fractional Tune trials at once, a 2-worker data-parallel trial) at tiny sizes on CPU, so CI keeps them working
where no GPU is lent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _processes import stop_marked

ROOT = Path(__file__).resolve().parents[1]
MARKER = "SCOLIO_DEVICE_CHECK_TEST"


@pytest.mark.slow  # starts a local Ray
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to end our Ray processes")
def test_device_check_dry_run_runs_every_check_and_ends_with_a_summary(tmp_path):
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SCOLIO_TEST_READ_LOG")}
    env.update({MARKER: marker, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    try:
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--dry-run"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        left = stop_marked(MARKER, marker)
    assert not left, f"processes of the dry run still alive: {left}"
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("SUMMARY device_check (dry-run): "), lines[-5:]
    summary = lines[-1]
    assert re.search(r"step \d+ ms, render \d+\.\d %", summary), summary
    assert "peak GPU n/a (CPU)" in summary
    overlap = re.search(r"2 trials x 0\.5 CPU overlap (\d+) %", summary)
    assert overlap and int(overlap.group(1)) > 0, summary  # both fractional trials ran at the same time
    assert re.search(r"ddp gloo 2 workers \d+ ms/step", summary), summary
    assert "FAILED" not in done.stdout
