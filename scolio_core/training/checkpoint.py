"""Checkpoints that carry their data contract.

A checkpoint is a directory:
- `weights.pt`         model state dict (tensors only; loaded with `torch.load(weights_only=True)`)
- `training_state.pt`  optimiser, scheduler, sampler/torch RNG states, iteration (optional, for resume)
- `contract.json`      the full ExperimentConfig, class order, modality, split (partition name, fingerprint,
                       train/val ids), PAV normalisation stats, iteration, metrics, version, git commit
- `hashes.json`        sha256 of the files above, keyed by plain file name; a mismatch (tampering,
                       truncation) is refused

Reading: every name in `hashes.json` must be a plain file name inside the directory (no `/`, `..` or
absolute path); every listed file must be a regular file (a symlink, FIFO or device is refused before it is
opened) whose bytes match; and each file that is loaded is loaded from the very bytes that were hashed, so
it cannot be swapped in between. `training_state.pt` is loaded only when it is listed.

Writing never deletes what it did not write: an existing target that is not a scoliotune checkpoint is
refused. A new checkpoint is written to a temporary sibling; replacing an old one renames the old aside,
renames the new in, then removes the old. A crash at any point leaves the old or the new checkpoint whole;
if it leaves only the aside copy (crash between the two renames), readers and the next writer rename it back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

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
# Everything a checkpoint directory may hold; a directory with anything else is not ours to replace.
CHECKPOINT_FILES = frozenset({WEIGHTS, TRAINING_STATE, CONTRACT, HASHES})
MAX_HASHES_BYTES = 1 << 20  # a hash list is a few hundred bytes; a cap keeps a hostile one from filling memory
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ASIDE, _TMP = ".old-", ".tmp-"  # sibling names: f".{name}{_ASIDE}..." (old copy), f".{name}{_TMP}..." (new)


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
    """sha256 of a regular file (a symlink, FIFO or device is refused with ContractError, unread)."""
    return hashlib.sha256(read_regular_file(Path(path))).hexdigest()


def read_regular_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of `path` if it is a regular file, not a symlink; otherwise ContractError naming it.

    The type is checked with lstat before opening (so a FIFO or device is never opened) and again on the open
    descriptor with O_NOFOLLOW (so a file swapped for a symlink in between is refused too).
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise ContractError(f"{path}: missing from checkpoint") from None
    if not stat.S_ISREG(mode):
        raise ContractError(f"{path}: {_kind(mode)}, not a regular file; refusing to read it")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ContractError(f"{path}: cannot open as a regular file ({exc.strerror}); refusing to read it") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ContractError(f"{path}: {_kind(info.st_mode)}, not a regular file; refusing to read it")
        if limit is not None and info.st_size > limit:
            raise ContractError(f"{path}: {info.st_size} bytes, more than the {limit} a checkpoint file may have")
        return handle.read() if limit is None else handle.read(limit + 1)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def load_hashes(directory: str | Path) -> dict[str, str]:
    """The validated hash list of a checkpoint: plain file names inside it -> sha256 hex digests."""
    path = Path(directory) / HASHES
    if not os.path.lexists(path):
        raise ContractError(f"{directory}: not a scoliotune checkpoint (no {HASHES})")
    try:
        hashes = json.loads(read_regular_file(path, limit=MAX_HASHES_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ContractError(f"{path}: unreadable hash list") from None
    if not isinstance(hashes, dict):
        raise ContractError(f"{path}: unreadable hash list (not a JSON object)")
    for name, digest in hashes.items():
        if not _plain_name(name):
            raise ContractError(f"{path}: entry {name!r} is not a plain file name inside the checkpoint; refused")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ContractError(f"{path}: entry {name!r} has no sha256 hex digest; refused")
    for required in (WEIGHTS, CONTRACT):
        if required not in hashes:
            raise ContractError(f"{path}: no hash recorded for {required}")
    return hashes


def _plain_name(name: object) -> bool:
    # One path component naming an entry of the directory itself: nothing absolute, nested or parent.
    return (isinstance(name, str) and name not in ("", ".", "..") and not os.path.isabs(name)
            and not any(c in name for c in ("/", "\\", "\0")))


def checkpoint_hash(directory: str | Path) -> str:
    """One hash identifying a checkpoint: sha256 over its recorded file hashes."""
    hashes = load_hashes(directory)
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def _verified_bytes(directory: Path, name: str, hashes: Mapping[str, str]) -> bytes:
    """A listed file's bytes, checked against its recorded sha256; callers load from these very bytes."""
    if name not in hashes:
        raise ContractError(f"{directory / name}: not listed in {HASHES}; refusing to load it")
    data = read_regular_file(directory / name)
    if hashlib.sha256(data).hexdigest() != hashes[name]:
        raise ContractError(f"{directory / name}: sha256 does not match {HASHES} (file modified or corrupt); "
                            "refusing to load")
    return data


def verify_hashes(directory: Path) -> dict[str, str]:
    """Check every file `hashes.json` lists; returns the validated hash list."""
    hashes = load_hashes(directory)
    for name in hashes:
        _verified_bytes(directory, name, hashes)
    return hashes


# ---- writing -------------------------------------------------------------------------------------------------


def write_checkpoint(directory: str | Path, *, config: ExperimentConfig, model_state: Mapping[str, torch.Tensor],
                     split: TrainValSplit | None, pav_stats: dict | None, iteration: int,
                     training_state: dict | None = None, provenance: dict | None = None,
                     metrics: dict | None = None) -> Path:
    """Write a checkpoint directory (replacing an older scoliotune checkpoint atomically); return its path.

    Raises ContractError, before writing anything, when `directory` exists and is not a scoliotune checkpoint.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _settle(directory)
    ensure_replaceable(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}{_TMP}", dir=directory.parent))
    try:
        _write_file(tmp / WEIGHTS, lambda h: torch.save({k: v.detach().cpu() for k, v in model_state.items()}, h))
        files = [WEIGHTS, CONTRACT]
        if training_state is not None:
            _write_file(tmp / TRAINING_STATE, lambda h: torch.save(training_state, h))
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
        _write_file(tmp / CONTRACT, lambda h: h.write(json.dumps(contract, indent=2, sort_keys=True).encode()))
        hashes = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in files}
        _write_file(tmp / HASHES, lambda h: h.write(json.dumps(hashes, indent=2).encode()))
        _fsync_dir(tmp)
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an interrupted write leaves no half-checkpoint behind
        raise
    return directory


def ensure_replaceable(directory: str | Path) -> None:
    """ContractError unless `directory` is absent, empty, or a scoliotune checkpoint (which a write replaces)."""
    directory = Path(directory)
    try:
        mode = os.lstat(directory).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise ContractError(f"{directory}: a parent of it is not a directory; cannot write a checkpoint there") from None
    if not stat.S_ISDIR(mode):
        raise ContractError(f"{directory}: exists and is {_kind(mode)}, not a scoliotune checkpoint directory; "
                            "refusing to replace it (nothing was deleted)")
    names = set(os.listdir(directory))
    if names and not (HASHES in names and _only_checkpoint_files(directory)):
        foreign = sorted(names - CHECKPOINT_FILES)[:3]
        held = f"it holds {', '.join(foreign)}" if foreign else (
            f"no {HASHES}" if HASHES not in names else "an entry that is not a regular file")
        raise ContractError(f"{directory}: exists and is not a scoliotune checkpoint ({held}); refusing to "
                            "replace it (nothing was deleted); choose a new directory")


def _only_checkpoint_files(directory: Path) -> bool:
    # Regular files with checkpoint names only: a nested directory (which rmtree would recurse into) is not ours.
    with os.scandir(directory) as entries:
        return all(e.name in CHECKPOINT_FILES and e.is_file(follow_symlinks=False) for e in entries)


def _swap_in(tmp: Path, directory: Path) -> None:
    if not os.path.lexists(directory):
        os.rename(tmp, directory)  # fails rather than overwrite if a non-empty directory appeared meanwhile
        _fsync_dir(directory.parent)
        return
    ensure_replaceable(directory)  # again, right before the swap
    aside = directory.with_name(f".{directory.name}{_ASIDE}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(directory, aside)
    try:
        os.rename(tmp, directory)
    except BaseException:
        os.rename(aside, directory)  # put the old one back; the caller removes tmp
        raise
    _fsync_dir(directory.parent)  # the new checkpoint is durable under its name before the old one goes
    shutil.rmtree(aside, ignore_errors=True)


def _settle(directory: Path) -> Path | None:
    """Finish what a write that crashed left beside `directory`; return an aside copy that could not be moved back.

    With `directory` missing, an aside copy is the old checkpoint of a write that crashed between its two renames:
    it is renamed back. With `directory` present, aside copies are leftovers of a write that completed: removed.
    """
    asides = _asides(directory)
    if not asides:
        return None
    if os.path.lexists(directory):
        for aside in asides:
            if _only_checkpoint_files(aside):
                shutil.rmtree(aside, ignore_errors=True)
        return None
    whole = [a for a in asides if HASHES in os.listdir(a)]
    if not whole:
        return None
    latest = max(whole, key=lambda a: os.lstat(a).st_mtime_ns)
    try:
        os.rename(latest, directory)
    except OSError:
        return latest  # e.g. read-only storage: a reader still reads the copy where it is
    return None


def _asides(directory: Path) -> list[Path]:
    prefix = f".{directory.name}{_ASIDE}"
    try:
        entries = list(os.scandir(directory.parent))
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]


def _write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    with open(path, "xb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes renames and new entries durable; not every platform can open a directory, and that is not an error.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading -------------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    directory: Path
    config: ExperimentConfig
    contract: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def split(self) -> TrainValSplit | None:
        info = self.contract.get("split")
        if not info:
            return None
        return TrainValSplit(partition=info["partition"], train=tuple(info["train_ids"]),
                             val=tuple(info["val_ids"]), fingerprint=info["fingerprint"])

    def training_state(self) -> dict | None:
        """The resume state, None when the checkpoint has none.

        A `training_state.pt` that `hashes.json` does not list is refused (ContractError), not ignored: it was
        not written with this checkpoint, and ignoring it would only turn into a vaguer refusal at resume.
        """
        if TRAINING_STATE not in self.hashes:
            if os.path.lexists(self.directory / TRAINING_STATE):
                raise ContractError(f"{self.directory / TRAINING_STATE}: not listed in {HASHES}; "
                                    "refusing to load it")
            return None
        path = self.directory / TRAINING_STATE
        return _load_tensor_bytes(_verified_bytes(self.directory, TRAINING_STATE, self.hashes), path)


def load_tensors(path: Path) -> dict:
    """torch.load restricted to tensors and plain containers; anything else is refused naming the file."""
    return _load_tensor_bytes(read_regular_file(Path(path)), Path(path))


def _load_tensor_bytes(data: bytes, path: Path) -> dict:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ContractError(f"{path}: not a plain tensor file, refused by weights_only loading "
                            f"({str(exc).splitlines()[0][:200]})") from None


def read_checkpoint(directory: str | Path) -> Checkpoint:
    """Load a checkpoint after verifying its hashes; weights are loaded with weights_only=True."""
    directory = Path(directory)
    if not os.path.lexists(directory):
        directory = _settle(directory) or directory  # a write that crashed mid-swap left the old copy aside
    if not directory.is_dir():
        raise ContractError(f"{directory}: checkpoint directory does not exist")
    hashes = load_hashes(directory)
    # Every listed file is checked; the two loaded here are loaded from the bytes that were checked.
    blobs = {name: _verified_bytes(directory, name, hashes) for name in hashes}
    blobs.pop(TRAINING_STATE, None)  # re-read and re-checked only when a resume asks for it
    try:
        contract = json.loads(blobs[CONTRACT])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ContractError(f"{directory / CONTRACT}: not valid JSON") from None
    if not isinstance(contract, dict):
        raise ContractError(f"{directory / CONTRACT}: not a JSON object")
    if contract.get("format_version") != FORMAT_VERSION:
        raise ContractError(f"{directory / CONTRACT}: unsupported format_version {contract.get('format_version')}")
    if tuple(contract.get("class_names", ())) != CLASS_NAMES:
        raise ContractError(f"{directory / CONTRACT}: class order {contract.get('class_names')} "
                            f"differs from {list(CLASS_NAMES)}; re-import the checkpoint to remap it")
    config = ExperimentConfig.from_dict(contract["config"])
    model_state = _load_tensor_bytes(blobs[WEIGHTS], directory / WEIGHTS)
    return Checkpoint(directory=directory, config=config, contract=contract, model_state=model_state,
                      hashes=hashes)
