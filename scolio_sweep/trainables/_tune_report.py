"""The one adapter between the training loop's `report` callable and Ray Tune's report API.

Ray's reporting API changed three times across versions; only this file knows the current one.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from ray import tune

from scolio_sweep.trainables.system_metrics import SystemMetricsSampler


def tune_reporter(extra: dict | None = None,
                  system_metrics: SystemMetricsSampler | None = None) -> Callable[[dict, "Path | None"], None]:
    """A `report(metrics, checkpoint_dir)` that forwards to `tune.report` (Tune persists the directory), adding
    `extra` and the system metrics sampled since the previous report."""

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        payload = {**metrics, **(extra or {}), **(system_metrics.take() if system_metrics else {})}
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report(payload, checkpoint=checkpoint)

    return report


@contextlib.contextmanager
def resume_directory() -> Iterator[Path | None]:
    """The directory of the checkpoint Tune restored this trial from (None on a fresh start)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as path:
        yield Path(path)


def local_workdir() -> Path:
    """Node-local scratch for checkpoints before Tune persists them to the run's storage."""
    return Path(tempfile.mkdtemp(prefix="scolio-trial-"))
