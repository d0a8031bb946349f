"""Checkpoints that carry their data contract.

A checkpoint is a directory:
- `weights.pt`         model state dict (tensors only; loaded with `torch.load(weights_only=True)`)
- `training_state.pt`  optimiser, scheduler, sampler/torch RNG states, iteration (optional, for resume)
- `contract.json`      the full ExperimentConfig, class order, modality, split (partition name, fingerprint,
                       train/val ids), PAV normalisation stats, iteration, metrics, version, git commit
- `hashes.json`        sha256 of the three files above; a mismatch (tampering, truncation) is refused

Directories are written to a temporary sibling and renamed into place, so a crash never leaves a
half-written checkpoint under the final name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from scolio_core import CLASS_NAMES, __version__
from scolio_core.config import ExperimentConfig
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ContractError

WEIGHTS = "weights.pt"
TRAINING_STATE = "training_state.pt"
CONTRACT = "contract.json"
HASHES = "hashes.json"
FORMAT_VERSION = 1


def git_commit() -> str:
    """The commit of the code that is running ('unknown' outside a git checkout)."""
    env = os.environ.get("SCOLIO_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_hash(directory: str | Path) -> str:
    """One hash identifying a checkpoint: sha256 over its recorded file hashes."""
    hashes = json.loads((Path(directory) / HASHES).read_text())
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def write_checkpoint(directory: str | Path, *, config: ExperimentConfig, model_state: Mapping[str, torch.Tensor],
                     split: TrainValSplit | None, pav_stats: dict | None, iteration: int,
                     training_state: dict | None = None, provenance: dict | None = None,
                     metrics: dict | None = None) -> Path:
    """Write a checkpoint directory atomically and return its path."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({k: v.detach().cpu() for k, v in model_state.items()}, tmp / WEIGHTS)
    files = [WEIGHTS, CONTRACT]
    if training_state is not None:
        torch.save(training_state, tmp / TRAINING_STATE)
        files.append(TRAINING_STATE)
    contract = {
        "format_version": FORMAT_VERSION,
        "class_names": list(CLASS_NAMES),
        "modality": config.input.modality,
        "config": config.to_dict(),
        "split": None if split is None else {
            "partition": split.partition, "fingerprint": split.fingerprint,
            "train_ids": list(split.train), "val_ids": list(split.val)},
        "pav_stats": pav_stats,
        "iteration": int(iteration),
        "metrics": metrics or {},
        "provenance": provenance or {},
        "package_version": __version__,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (tmp / CONTRACT).write_text(json.dumps(contract, indent=2, sort_keys=True))
    (tmp / HASHES).write_text(json.dumps({name: sha256_file(tmp / name) for name in files}, indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, directory)
    return directory


@dataclass
class Checkpoint:
    directory: Path
    config: ExperimentConfig
    contract: dict[str, Any]
    model_state: dict[str, torch.Tensor]

    @property
    def split(self) -> TrainValSplit | None:
        info = self.contract.get("split")
        if not info:
            return None
        return TrainValSplit(partition=info["partition"], train=tuple(info["train_ids"]),
                             val=tuple(info["val_ids"]), fingerprint=info["fingerprint"])

    def training_state(self) -> dict | None:
        path = self.directory / TRAINING_STATE
        if not path.exists():
            return None
        return load_tensors(path)


def load_tensors(path: Path) -> dict:
    """torch.load restricted to tensors and plain containers; anything else is refused naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ContractError(f"{path}: not a plain tensor file, refused by weights_only loading "
                            f"({str(exc).splitlines()[0][:200]})") from None


def verify_hashes(directory: Path) -> None:
    hashes_path = directory / HASHES
    if not hashes_path.exists():
        raise ContractError(f"{directory}: not a scoliotune checkpoint (no {HASHES})")
    try:
        hashes = json.loads(hashes_path.read_text())
    except json.JSONDecodeError:
        raise ContractError(f"{hashes_path}: unreadable hash list") from None
    for required in (WEIGHTS, CONTRACT):
        if required not in hashes:
            raise ContractError(f"{hashes_path}: no hash recorded for {required}")
    for name, expected in hashes.items():
        path = directory / name
        if not path.exists():
            raise ContractError(f"{path}: missing from checkpoint")
        if sha256_file(path) != expected:
            raise ContractError(f"{path}: sha256 does not match {HASHES} (file modified or corrupt); refusing to load")


def read_checkpoint(directory: str | Path) -> Checkpoint:
    """Load a checkpoint after verifying its hashes; weights are loaded with weights_only=True."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ContractError(f"{directory}: checkpoint directory does not exist")
    verify_hashes(directory)
    contract = json.loads((directory / CONTRACT).read_text())
    if contract.get("format_version") != FORMAT_VERSION:
        raise ContractError(f"{directory / CONTRACT}: unsupported format_version {contract.get('format_version')}")
    if tuple(contract.get("class_names", ())) != CLASS_NAMES:
        raise ContractError(f"{directory / CONTRACT}: class order {contract.get('class_names')} "
                            f"differs from {list(CLASS_NAMES)}; re-import the checkpoint to remap it")
    config = ExperimentConfig.from_dict(contract["config"])
    model_state = load_tensors(directory / WEIGHTS)
    return Checkpoint(directory=directory, config=config, contract=contract, model_state=model_state)
