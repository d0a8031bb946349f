"""Where a sweep reads and writes, as typed settings (the command line fills them in `scolio_sweep.cli`; the
driver reads only this, never argparse)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scolio_core.errors import ConfigError
from scolio_core.names import DEFAULT_EXPERIMENT
from scolio_core.safe_yaml import brief

# A sweep, table or study name becomes a folder (<storage>/<name>, results/<name>), an MLflow run name and part
# of a registered model's name: one safe path component, never '..', '/', or a name no filesystem takes.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_LENGTH = 64  # what a user gives; stages append suffixes (-finetune, -table-p1116)
MAX_DERIVED_NAME_LENGTH = 128
DEFAULT_STORAGE_DIR = "ray_results"  # under the working directory


def check_name(value: Any, what: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """`value` when it is a safe name: 1-`max_length` letters, digits, '.', '_' or '-', starting with a letter
    or digit, no '..'; else a one-line ConfigError naming `what`. Every script checks its names here."""
    if (not isinstance(value, str) or len(value) > max_length or not NAME_PATTERN.fullmatch(value)
            or ".." in value):
        raise ConfigError(f"{what} {brief(value, 60)}: a name must be 1-{max_length} letters, digits, '.', '_' or "
                          "'-', start with a letter or digit and hold no '..' (it names folders and MLflow records)")
    return value


def local_dir(path: str) -> Path | None:
    """Where a local path or file:// URI points (None for remote storage such as s3://)."""
    parts = urlsplit(path)
    if parts.scheme.lower() == "file":
        path = parts.path
    elif len(parts.scheme) > 1:  # a one-letter scheme is a Windows drive
        return None
    return Path(path).expanduser().resolve()


def check_output_dirs(storage_path: str, results_dir: str) -> None:
    """Refuse a results folder that is, holds or lies inside the Tune storage: results are uploaded to MLflow
    and rewritten on every run, storage holds pickles, checkpoints and whatever else is there."""
    storage, results = local_dir(storage_path), local_dir(results_dir)
    if storage is None or results is None:
        return
    if storage == results or storage in results.parents or results in storage.parents:
        raise ConfigError(f"--results-dir {results} and --storage-path {storage} overlap; give them separate "
                          "folders (results are uploaded to MLflow, storage holds Tune's pickles and checkpoints)")


@dataclass(frozen=True)
class SweepSettings:
    """Where a sweep reads and writes, as the command line gave it (the profile says what it trains)."""

    name: str | None = None  # default: the profile's name; re-using a name resumes that sweep
    data_root: str | None = None  # default: synthesise the stand-in into the cache
    partition: str | None = None
    tracking_uri: str | None = None  # default: scolio_core.tracking.store.resolve_tracking_uri
    experiment: str = DEFAULT_EXPERIMENT
    storage_path: str | None = None  # default: ./ray_results
    results_dir: str = "results"
    cache_dir: str | None = None
    reopen_test: bool = False
    shared_data: bool = True  # train/val held once per node in Ray's object store (no effect on results)

    def storage_root(self) -> str:
        return self.storage_path or str(Path.cwd() / DEFAULT_STORAGE_DIR)
