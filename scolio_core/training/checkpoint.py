"""Checkpoints that carry their data contract.

A checkpoint is a directory:
- `weights.pt`         model state dict (tensors only; loaded with `torch.load(weights_only=True)`)
- `training_state.pt`  optimiser, scheduler, sampler/torch RNG states, iteration (optional, for resume)
- `contract.json`      the full ExperimentConfig, class order, modality, split (partition name, fingerprint,
                       train/val ids), PAV normalisation stats, iteration, metrics, version, git commit
- `SCOLIOTUNE_CHECKPOINT` the marker: scoliotune wrote this directory (and may replace or remove it)
- `hashes.json`        sha256 of the files above, keyed by plain file name; a mismatch (tampering,
                       truncation) is refused

Reading: every name in `hashes.json` must be a plain file name inside the directory (no `/`, `..` or
absolute path); every listed file must be a regular file (a symlink, FIFO or device is refused before it is
opened) no larger than its cap (`_cap`: JSON files 4 MiB, tensor files 512 MiB, checked before reading) whose
bytes match; and each file that is loaded is loaded from the very bytes that were hashed, so it cannot be
swapped in between. JSON is parsed with `parse_json_bounded` (depth, value count, number length, duplicate
keys). `training_state.pt` is loaded only when it is listed.

Writing never deletes or overwrites what it did not write. What decides is content, not names: a directory
is scoliotune's only when it holds the marker, nothing but checkpoint files, and hashes that verify
(`not_ours_reason`). Any other existing target is refused; `remove_checkpoint` / `prune_checkpoints` remove
only checkpoints that pass the same test. A new checkpoint is written to a temporary sibling; replacing an old
one renames the old aside, renames the new in, then removes the old. A crash at any point leaves the old or
the new checkpoint whole; if it leaves only the aside copy (crash between the two renames), readers and the
next writer rename it back.

A seed ensemble directory (scolio_core/training/ensemble.py) is written the same way, and is replaced or
removed here only when it passes that module's test of ownership (`ensemble_not_ours_reason`);
`prune_checkpoints` removes checkpoints only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import torch

from scolio_core import CLASS_NAMES, __version__
from scolio_core.config import ExperimentConfig
from scolio_core.data.bounded import file_kind, parse_json_bounded, read_bounded
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ConfigError, ContractError, one_line
from scolio_core.provenance import git_commit

WEIGHTS = "weights.pt"
TRAINING_STATE = "training_state.pt"
CONTRACT = "contract.json"
HASHES = "hashes.json"
MARKER = "SCOLIOTUNE_CHECKPOINT"  # not a dot file: copies (Ray, MLflow artifacts) must keep it
MARKER_TEXT = b"scoliotune checkpoint: written by scoliotune, which may replace or remove this directory\n"
FORMAT_VERSION = 1
# Everything a checkpoint directory may hold; a directory with anything else is not ours to replace.
CHECKPOINT_FILES = frozenset({WEIGHTS, TRAINING_STATE, CONTRACT, HASHES, MARKER})
# Caps checked with stat before a file is read. A hash list is a few hundred bytes and a contract a few KB (20 KB
# with the release's ids); the models' weights and optimiser state are a few MB.
MAX_HASHES_BYTES = 1 << 20
MAX_JSON_BYTES = 4 << 20
MAX_JSON_VALUES = 200_000
MAX_TENSOR_BYTES = 512 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ASIDE, _TMP = ".old-", ".tmp-"  # sibling names: f".{name}{_ASIDE}..." (old copy), f".{name}{_TMP}..." (new)


def sha256_file(path: Path) -> str:
    """sha256 of a regular file (a symlink, FIFO, device or oversized file is refused with ContractError, unread)."""
    return hashlib.sha256(_read(Path(path))).hexdigest()


def _cap(name: str) -> int:
    if name == HASHES:
        return MAX_HASHES_BYTES
    if name == MARKER:
        return len(MARKER_TEXT)
    return MAX_JSON_BYTES if name.endswith(".json") else MAX_TENSOR_BYTES


def _read(path: Path) -> bytes:
    """A checkpoint file's bytes: a regular file, not a symlink, within its cap; else ContractError naming it.

    Checked with lstat before opening (a FIFO or device is never opened) and again on the descriptor opened
    with O_NOFOLLOW (a file swapped for a symlink in between is refused too).
    """
    return read_bounded(path, _cap(path.name), follow_symlinks=False, error=ContractError)


def _parse_json(data: bytes, path: Path) -> Any:
    return parse_json_bounded(data, str(path), max_values=MAX_JSON_VALUES, error=ContractError)


def load_hashes(directory: str | Path) -> dict[str, str]:
    """The validated hash list of a checkpoint: plain file names inside it -> sha256 hex digests."""
    path = Path(directory) / HASHES
    if not os.path.lexists(path):
        raise ContractError(f"{directory}: not a scoliotune checkpoint (no {HASHES})")
    hashes = _parse_json(_read(path), path)
    if not isinstance(hashes, dict):
        raise ContractError(f"{path}: unreadable hash list (not a JSON object)")
    for name, digest in hashes.items():
        shown = one_line(repr(name)[:80])
        if not _plain_name(name):
            raise ContractError(f"{path}: entry {shown} is not a plain file name inside the checkpoint; refused")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ContractError(f"{path}: entry {shown} has no sha256 hex digest; refused")
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
    return hashes_digest(load_hashes(directory))


def hashes_digest(hashes: Mapping[str, str]) -> str:
    """`checkpoint_hash` of a checkpoint whose (validated) hash list is `hashes`."""
    return hashlib.sha256(json.dumps(dict(hashes), sort_keys=True).encode()).hexdigest()


def _verified_bytes(directory: Path, name: str, hashes: Mapping[str, str]) -> bytes:
    """A listed file's bytes, checked against its recorded sha256; callers load from these very bytes."""
    if name not in hashes:
        raise ContractError(f"{directory / name}: not listed in {HASHES}; refusing to load it")
    data = _read(directory / name)
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
    with staged_write(directory) as tmp:
        _write_file(tmp / MARKER, lambda h: h.write(MARKER_TEXT))
        _write_file(tmp / WEIGHTS, lambda h: torch.save({k: v.detach().cpu() for k, v in model_state.items()}, h))
        files = [MARKER, WEIGHTS, CONTRACT]
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
    return directory


@contextlib.contextmanager
def staged_write(directory: Path) -> Iterator[Path]:
    """The one write protocol of checkpoints and ensembles: refuse a target scoliotune did not write
    (`ensure_replaceable`), hand out a fresh temporary sibling to fill, then fsync it and swap it in under the
    name. An interrupted write removes only that sibling, which this call made."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    _settle(directory)
    ensure_replaceable(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}{_TMP}", dir=directory.parent))
    try:
        yield tmp
        _fsync_dir(tmp)
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # an interrupted write leaves no half-written directory behind
        raise


def ensure_replaceable(directory: str | Path) -> None:
    """ContractError unless `directory` is absent, empty, or a scoliotune checkpoint or ensemble (which a write
    replaces)."""
    directory = Path(directory)
    try:
        mode = os.lstat(directory).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise ContractError(f"{directory}: a parent of it is not a directory; cannot write a checkpoint there") from None
    if not stat.S_ISDIR(mode):
        raise ContractError(f"{directory}: exists and is {file_kind(mode)}, not a scoliotune checkpoint directory; "
                            "refusing to replace it (nothing was deleted)")
    if not os.listdir(directory):
        return
    reason = _not_ours(directory)
    if reason:
        raise ContractError(f"{directory}: exists and is not a scoliotune checkpoint or ensemble ({reason}); "
                            "refusing to replace it (nothing was deleted); choose a new directory")


def clear_for_copy(directory: str | Path) -> None:
    """Make room at `directory` for a copy of a checkpoint (Ray's `Checkpoint.to_directory`): ContractError,
    nothing deleted, unless it is absent, empty or a checkpoint or ensemble scoliotune wrote (`ensure_replaceable`)."""
    ensure_replaceable(directory)
    shutil.rmtree(directory, ignore_errors=True)


def not_ours_reason(directory: str | Path) -> str | None:
    """None when `directory` is a checkpoint scoliotune wrote and may replace or remove; otherwise why not.

    Ours means: the marker file with scoliotune's exact text, no entry but regular checkpoint files, and every
    file `hashes.json` lists matching its hash. File names alone prove nothing (a user's folder may hold a
    `hashes.json` and a `weights.pt` of their own).
    """
    directory = Path(directory)
    try:
        names = set(os.listdir(directory))
    except OSError as exc:
        return f"cannot list it ({one_line(exc.strerror or str(exc))})"
    foreign = sorted(names - CHECKPOINT_FILES)
    if foreign:
        return "it holds " + ", ".join(one_line(name) for name in foreign[:3])
    if not _only_checkpoint_files(directory):
        return "an entry that is not a regular file"
    if MARKER not in names or _read_marker(directory / MARKER) != MARKER_TEXT:
        return f"no scoliotune marker file {MARKER}"
    if HASHES not in names:
        return f"no {HASHES}"
    try:
        verify_hashes(directory)
    except ContractError as exc:
        return f"its hashes do not verify: {exc}"
    return None


# Other directory kinds scoliotune writes out of checkpoints register here how to tell one it wrote
# (scolio_core/training/ensemble.py does on import: it builds on this module, which must not import it). A
# directory holding one of a kind's sentinel names is judged by that kind's test; with the kind not
# registered it is judged as a checkpoint, which refuses it: nothing is deleted.
_OWNED_KINDS: list[tuple[frozenset[str], Callable[[Path], str | None]]] = []


def register_owned_kind(sentinels: Iterable[str], not_ours: Callable[[Path], str | None]) -> None:
    """Let `ensure_replaceable`, `clear_for_copy` and `remove_checkpoint` accept a directory kind built from
    checkpoints: one holding any of `sentinels` is ours when `not_ours(directory)` is None."""
    entry = (frozenset(sentinels), not_ours)
    if entry not in _OWNED_KINDS:
        _OWNED_KINDS.append(entry)


def _kind_sentinels() -> frozenset[str]:
    return frozenset().union(*(sentinels for sentinels, _ in _OWNED_KINDS))


def _not_ours(directory: str | Path) -> str | None:
    """`not_ours_reason`, or for a directory of a registered kind (e.g. an ensemble), that kind's test."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return not_ours_reason(directory)
    for sentinels, not_ours in _OWNED_KINDS:
        if sentinels & names:
            return not_ours(Path(directory))
    return not_ours_reason(directory)


def _read_marker(path: Path) -> bytes | None:
    try:
        return _read(path)
    except ContractError:
        return None


def remove_checkpoint(directory: str | Path) -> bool:
    """Remove `directory` if it is a scoliotune checkpoint or ensemble (`not_ours_reason` or
    `ensemble_not_ours_reason` is None); return whether it was."""
    if _not_ours(directory) is not None:
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def prune_checkpoints(parent: str | Path, keep: Iterable[str | Path | None]) -> list[Path]:
    """Remove every scoliotune checkpoint directly under `parent` except those in `keep`; anything else there
    (a user's folder, a checkpoint whose hashes fail) is left alone. Returns what was removed."""
    kept = {Path(k).resolve() for k in keep if k is not None}
    removed = []
    for entry in sorted(Path(parent).iterdir()):
        if entry.is_dir() and not entry.is_symlink() and entry.resolve() not in kept \
                and not_ours_reason(entry) is None:  # a checkpoint: an ensemble found there is left alone
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


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
    _remove_aside(aside)


def _remove_aside(aside: Path) -> None:
    # The old copy passed ensure_replaceable just before it was renamed; check its entries once more (cheaply)
    # so that nothing which arrived in between is deleted with it.
    if not os.listdir(aside):
        os.rmdir(aside)
    elif _only_checkpoint_files(aside) and _read_marker(aside / MARKER) == MARKER_TEXT:
        shutil.rmtree(aside, ignore_errors=True)
    else:
        remove_checkpoint(aside)  # an ensemble: removed only when all of it is still scoliotune's


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
            remove_checkpoint(aside)  # only a whole scoliotune checkpoint; anything else stays
        return None
    whole = [a for a in asides if ({HASHES} | _kind_sentinels()) & set(os.listdir(a))]
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


def load_tensors(path: str | Path, *, follow_symlinks: bool = False) -> dict:
    """torch.load restricted to tensors and plain containers, from a regular file of at most MAX_TENSOR_BYTES;
    anything else is refused naming the file. `follow_symlinks=True` is for a file the user named (a foreign
    checkpoint); files inside a checkpoint directory are never read through a link."""
    path = Path(path)
    data = read_bounded(path, MAX_TENSOR_BYTES, follow_symlinks=follow_symlinks, error=ContractError,
                        cap_name="checkpoint.MAX_TENSOR_BYTES")
    return _load_tensor_bytes(data, path)


def _load_tensor_bytes(data: bytes, path: Path) -> dict:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ContractError(f"{one_line(str(path))}: not a plain tensor file, refused by weights-only loading "
                            f"({_torch_reason(exc)}); nothing in it was executed") from None


def _torch_reason(exc: BaseException) -> str:
    """The one line of a torch.load error that says what was refused.

    torch's message for a refused global spans several paragraphs and opens by suggesting a re-run with
    `weights_only=False`, which would execute the file; that advice, and the documentation pointers, are dropped.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if "weights_only" not in line and "documentation" not in line.lower()]
    reason = reasons[0] if reasons else type(exc).__name__
    return one_line(reason[:200])


def _quoted(value: object) -> str:
    # A value from the file, bounded and on one line (a contract may hold anything its hashes agree with).
    text = repr(value)
    return one_line(text[:80] + ("..." if len(text) > 80 else ""))


def _check_split(split: object, path: Path) -> None:
    """The contract's split, if any, has the fields `Checkpoint.split` reads (checked here, once, at the boundary)."""
    if split is None:
        return
    fields = {"partition": str, "fingerprint": str, "train_ids": list, "val_ids": list}
    if not isinstance(split, dict) or any(not isinstance(split.get(k), t) for k, t in fields.items()):
        raise ContractError(f"{path}: 'split' must be null or an object with {', '.join(fields)}")


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
    contract = _parse_json(blobs[CONTRACT], directory / CONTRACT)
    if not isinstance(contract, dict) or not isinstance(contract.get("config"), dict):
        raise ContractError(f"{directory / CONTRACT}: not a JSON object with a 'config' object")
    if contract.get("format_version") != FORMAT_VERSION:
        raise ContractError(f"{directory / CONTRACT}: unsupported format_version "
                            f"{_quoted(contract.get('format_version'))}")
    if contract.get("class_names") != list(CLASS_NAMES):
        raise ContractError(f"{directory / CONTRACT}: class order {_quoted(contract.get('class_names'))} "
                            f"differs from {list(CLASS_NAMES)}; re-import the checkpoint to remap it")
    _check_split(contract.get("split"), directory / CONTRACT)
    try:
        config = ExperimentConfig.from_dict(contract["config"])
    except ConfigError as exc:  # a bad value in a contract names the file it came from
        raise ContractError(f"{directory / CONTRACT}: config: {exc}") from None
    model_state = _load_tensor_bytes(blobs[WEIGHTS], directory / WEIGHTS)
    return Checkpoint(directory=directory, config=config, contract=contract, model_state=model_state,
                      hashes=hashes)
