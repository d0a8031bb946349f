"""What code produced a result: the git commit and the versions of the packages a result depends on. One
lookup for checkpoints (`contract.json`), the lockbox's look records and the MLflow parent run's tags."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

# Packages whose versions change what a run computes or how it is recorded.
RECORDED_PACKAGES = ("ray", "mlflow", "optuna", "torch", "numpy", "scoliotune")


@cache
def git_commit() -> str:
    """The commit of the running code: `$SCOLIO_GIT_COMMIT` where the code runs outside a checkout (an uploaded
    `ray job` working dir has no .git), else `git rev-parse HEAD` beside this file, else 'unknown'.
    Cached: the code cannot change commit under a running process."""
    recorded = os.environ.get("SCOLIO_GIT_COMMIT")
    if recorded:
        return recorded
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Python's and each recorded package's version (packages that are not installed are left out)."""
    versions = {"python": sys.version.split()[0]}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions
