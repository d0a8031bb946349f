"""A seed ensemble: several checkpoints of one configuration (differing only in `train.seed`) as ONE model.

Its logits are the mean of its members' logits (scolio_core/evaluation/predict.py), each member normalising
PAVs with its own statistics. Everything that takes a checkpoint directory for evaluation or serving
(`scolio eval`, `scolio predict`, the lockbox, the registry's pyfunc) takes an ensemble directory too, through
`read_model` and `model_hash`.

An ensemble is a directory:
- `member-0/`, `member-1/`, ...  whole copies of the member checkpoints (each verified by `read_checkpoint`)
- `ensemble.json`                the manifest: format version, combine rule, the selection rule's text, and per
                                 member its folder, `checkpoint_hash` and train.seed
- `SCOLIOTUNE_ENSEMBLE`          the marker: scoliotune wrote this directory (and may replace or remove it)

The manifest is content only (no time, no source paths), so the same members and rule always give the same
`model_hash`: the sha256 of the manifest's bytes, which names every member's checkpoint hash, which covers
every member's weights. Reading checks each member against the manifest and re-checks that the members share
one configuration. Writing follows checkpoint.py: a temporary sibling renamed in, and only an absent or empty
target, a scoliotune checkpoint or a scoliotune ensemble is ever replaced (`ensemble_not_ours_reason`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scolio_core.config import MAX_ENSEMBLE_MEMBERS, ExperimentConfig
from scolio_core.data.bounded import parse_json_bounded, read_bounded
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ContractError, one_line

# The write protocol (staged_write) and its file helpers are checkpoint.py's: one for both kinds.
from scolio_core.training.checkpoint import (
    HASHES,
    MARKER,
    MARKER_TEXT,
    Checkpoint,
    _fsync_dir,
    _settle,
    _verified_bytes,
    _write_file,
    checkpoint_hash,
    hashes_digest,
    not_ours_reason,
    read_checkpoint,
    register_owned_kind,
    staged_write,
)

ENSEMBLE_MANIFEST = "ensemble.json"
ENSEMBLE_MARKER = "SCOLIOTUNE_ENSEMBLE"  # not a dot file: copies (Ray, MLflow artifacts) must keep it
ENSEMBLE_MARKER_TEXT = b"scoliotune ensemble: written by scoliotune, which may replace or remove this directory\n"
ENSEMBLE_FORMAT_VERSION = 1
COMBINE = "mean_logits"  # the only combination there is; recorded so a reader never guesses
MAX_MEMBERS = MAX_ENSEMBLE_MEMBERS  # scolio_core/config.py says why
MAX_RULE_CHARS = 1000
MAX_MANIFEST_BYTES = 64 << 10
_MEMBER = re.compile(r"member-(0|[1-9][0-9]{0,3})")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Contract entries each checkpoint has its own of, whatever its configuration; everything else must agree.
_PER_CHECKPOINT = frozenset({"config", "iteration", "metrics", "provenance", "package_version", "torch_version",
                             "git_commit", "created_at"})


@dataclass(frozen=True)
class Ensemble:
    """A read, verified ensemble; `.config`, `.contract` and `.split` are its first member's (they all agree
    but for train.seed), so code that reads those of a checkpoint reads them of an ensemble."""

    directory: Path
    members: tuple[Checkpoint, ...]
    seeds: tuple[int, ...]
    rule: str

    @property
    def config(self) -> ExperimentConfig:
        return self.members[0].config

    @property
    def contract(self) -> dict[str, Any]:
        return self.members[0].contract

    @property
    def split(self) -> TrainValSplit | None:
        return self.members[0].split


# ---- same configuration ------------------------------------------------------------------------------------


def _shared_fields(checkpoint: Checkpoint) -> dict[str, Any]:
    """What the members of an ensemble must agree on, by dotted name: the config but train.seed, and the
    contract but what is per checkpoint; of the provenance, the study's ledger (a look at the ensemble is
    recorded in its first member's ledger, so that must be every member's)."""
    fields: dict[str, Any] = {k: v for k, v in checkpoint.config.to_flat().items() if k != "train.seed"}
    fields.update({k: v for k, v in checkpoint.contract.items() if k not in _PER_CHECKPOINT})
    provenance = checkpoint.contract.get("provenance")
    fields["provenance.ledger"] = provenance.get("ledger") if isinstance(provenance, dict) else None
    return fields


def _shown(value: object) -> str:
    text = repr(value)
    return one_line(text[:60] + ("..." if len(text) > 60 else ""))


def check_same_configuration(members: Sequence[Checkpoint]) -> None:
    """ContractError naming the member and the first field where a member's configuration differs from the
    first member's, or two members sharing a train.seed."""
    first = _shared_fields(members[0])
    seeds: dict[int, Path] = {}
    for member in members:
        fields = _shared_fields(member)
        for key in sorted(set(first) | set(fields)):
            if first.get(key) != fields.get(key):
                raise ContractError(
                    f"{one_line(str(member.directory))}: {key} is {_shown(fields.get(key))}, but "
                    f"{one_line(str(members[0].directory))} has {_shown(first.get(key))}; an ensemble's members "
                    "share one configuration and differ only in train.seed")
        seed = int(member.config.train.seed)
        if seed in seeds:
            raise ContractError(f"{one_line(str(member.directory))}: train.seed {seed} is also that of "
                                f"{one_line(str(seeds[seed]))}; a seed ensemble's members differ in train.seed")
        seeds[seed] = member.directory


# ---- the manifest ------------------------------------------------------------------------------------------


def _load_manifest(directory: Path) -> tuple[dict[str, Any], bytes]:
    """The validated manifest and its bytes (a regular file within MAX_MANIFEST_BYTES; bounded JSON)."""
    path = directory / ENSEMBLE_MANIFEST
    data = read_bounded(path, MAX_MANIFEST_BYTES, follow_symlinks=False, error=ContractError,
                        cap_name="ensemble.MAX_MANIFEST_BYTES")
    manifest = parse_json_bounded(data, str(path), max_values=20 * MAX_MEMBERS, error=ContractError)
    where = one_line(str(path))
    if not isinstance(manifest, dict) or set(manifest) != {"format_version", "combine", "rule", "members"}:
        raise ContractError(f"{where}: not an ensemble manifest (an object with format_version, combine, rule "
                            "and members)")
    if manifest["format_version"] != ENSEMBLE_FORMAT_VERSION or manifest["combine"] != COMBINE:
        raise ContractError(f"{where}: unsupported format_version {_shown(manifest['format_version'])} or combine "
                            f"{_shown(manifest['combine'])} (this scoliotune reads {ENSEMBLE_FORMAT_VERSION}, "
                            f"{COMBINE!r})")
    rule = manifest["rule"]
    if not isinstance(rule, str) or not rule.strip() or len(rule) > MAX_RULE_CHARS:
        raise ContractError(f"{where}: rule must be a non-empty text of at most {MAX_RULE_CHARS} characters")
    members = manifest["members"]
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
        raise ContractError(f"{where}: members must list 1 to {MAX_MEMBERS} checkpoints")
    for k, entry in enumerate(members):
        # Exactly member-<k> at position k: a name is never a path (no `..`, no absolute path, no nesting).
        if not isinstance(entry, dict) or set(entry) != {"dir", "checkpoint_hash", "seed"} \
                or entry["dir"] != f"member-{k}" or not isinstance(entry["checkpoint_hash"], str) \
                or not _SHA256.fullmatch(entry["checkpoint_hash"]) \
                or not isinstance(entry["seed"], int) or isinstance(entry["seed"], bool):
            raise ContractError(f"{where}: members[{k}] must be {{dir: 'member-{k}', checkpoint_hash: <sha256>, "
                                f"seed: <int>}}, got {_shown(entry)}")
    return manifest, data


def _member_dir(directory: Path, name: str) -> Path:
    """A member folder: a real directory inside the ensemble (a symlink could point at any checkpoint)."""
    path = directory / name
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise ContractError(f"{one_line(str(path))}: a member the manifest lists is missing") from None
    if not stat.S_ISDIR(mode):
        raise ContractError(f"{one_line(str(path))}: a member must be a directory inside the ensemble, not a "
                            "link or a file; refused")
    return path


def is_ensemble(directory: str | Path) -> bool:
    """Whether `directory` is an ensemble directory (it has a manifest), as opposed to a checkpoint."""
    return os.path.lexists(Path(directory) / ENSEMBLE_MANIFEST)


# ---- reading -----------------------------------------------------------------------------------------------


def read_model(directory: str | Path) -> Checkpoint | Ensemble:
    """A checkpoint directory -> `read_checkpoint`; an ensemble directory -> every member read and verified
    against the manifest, then checked to share one configuration. Anything else: read_checkpoint's error."""
    directory = Path(directory)
    if not os.path.lexists(directory):
        directory = _settle(directory) or directory  # a write that crashed mid-swap left the old copy aside
    if not (directory.is_dir() and is_ensemble(directory)):
        return read_checkpoint(directory)
    manifest, _ = _load_manifest(directory)
    members = []
    for entry in manifest["members"]:
        member = read_checkpoint(_member_dir(directory, entry["dir"]))
        # From the hashes read_checkpoint verified the loaded files against: what is loaded is what is named.
        if hashes_digest(member.hashes) != entry["checkpoint_hash"]:
            raise ContractError(f"{one_line(str(member.directory))}: checkpoint hash is not the one "
                                f"{ENSEMBLE_MANIFEST} records (member replaced or modified); refusing to load")
        if int(member.config.train.seed) != entry["seed"]:
            raise ContractError(f"{one_line(str(member.directory))}: train.seed {member.config.train.seed} is not "
                                f"the {entry['seed']} {ENSEMBLE_MANIFEST} records; refusing to load")
        members.append(member)
    check_same_configuration(members)
    return Ensemble(directory=directory, members=tuple(members), seeds=tuple(e["seed"] for e in manifest["members"]),
                    rule=manifest["rule"])


def model_hash(directory: str | Path) -> str:
    """One hash identifying a model: `checkpoint_hash` for a checkpoint; for an ensemble the sha256 of its
    manifest, after checking every member's checkpoint hash against it (so it vouches for every member)."""
    directory = Path(directory)
    if not is_ensemble(directory):
        return checkpoint_hash(directory)
    manifest, data = _load_manifest(directory)
    for entry in manifest["members"]:
        if checkpoint_hash(_member_dir(directory, entry["dir"])) != entry["checkpoint_hash"]:
            raise ContractError(f"{one_line(str(directory / entry['dir']))}: checkpoint hash is not the one "
                                f"{ENSEMBLE_MANIFEST} records (member replaced or modified)")
    return hashlib.sha256(data).hexdigest()


# ---- writing -----------------------------------------------------------------------------------------------


def write_ensemble(directory: str | Path, member_dirs: Sequence[str | Path], *, rule: str) -> Path:
    """Copy the checkpoints `member_dirs` into a new ensemble directory (replacing an older scoliotune
    checkpoint or ensemble there atomically); `rule` says how the members were chosen. Returns its path.

    Raises ContractError, before writing anything, when a member does not read, the members differ in more than
    train.seed, or `directory` exists and is not scoliotune's.
    """
    directory = Path(directory)
    if not 1 <= len(member_dirs) <= MAX_MEMBERS:
        raise ContractError(f"{one_line(str(directory))}: an ensemble has 1 to {MAX_MEMBERS} members, "
                            f"got {len(member_dirs)}")
    if not isinstance(rule, str) or not rule.strip() or len(rule) > MAX_RULE_CHARS:
        raise ContractError(f"{one_line(str(directory))}: the rule must be a non-empty text of at most "
                            f"{MAX_RULE_CHARS} characters")
    members = [read_checkpoint(path) for path in member_dirs]
    check_same_configuration(members)
    for member in members:
        # The swap would turn a checkpoint the caller named as a member into the ensemble holding its copy.
        if directory.resolve() == member.directory.resolve():
            raise ContractError(f"{one_line(str(directory))}: would replace its own member "
                                f"{one_line(str(member.directory))}; write the ensemble elsewhere")
    with staged_write(directory) as tmp:
        entries = []
        for k, member in enumerate(members):
            _copy_member(member, tmp / f"member-{k}")
            entries.append({"dir": f"member-{k}", "checkpoint_hash": hashes_digest(member.hashes),
                            "seed": int(member.config.train.seed)})
        manifest = {"format_version": ENSEMBLE_FORMAT_VERSION, "combine": COMBINE, "rule": rule,
                    "members": entries}
        _write_file(tmp / ENSEMBLE_MANIFEST, lambda h: h.write(json.dumps(manifest, indent=2).encode()))
        _write_file(tmp / ENSEMBLE_MARKER, lambda h: h.write(ENSEMBLE_MARKER_TEXT))
        read_model(tmp)  # the copy reads back as the ensemble it is meant to be, before it takes the name
    return directory


def _copy_member(member: Checkpoint, destination: Path) -> None:
    """A byte copy of a checkpoint's listed files, each re-checked against the hash list read_checkpoint
    verified (so the copy is the checkpoint that was read, with the same `checkpoint_hash`)."""
    destination.mkdir()
    for name in member.hashes:
        data = _verified_bytes(member.directory, name, member.hashes)
        _write_file(destination / name, lambda h, data=data: h.write(data))
    _write_file(destination / HASHES, lambda h: h.write(json.dumps(member.hashes, indent=2).encode()))
    if MARKER not in member.hashes:  # an older checkpoint that did not list its marker: the copy is ours
        _write_file(destination / MARKER, lambda h: h.write(MARKER_TEXT))
    _fsync_dir(destination)


# ---- ownership ---------------------------------------------------------------------------------------------


def ensemble_not_ours_reason(directory: str | Path) -> str | None:
    """None when `directory` is an ensemble scoliotune wrote and may replace or remove; otherwise why not.

    Ours means: the marker with scoliotune's exact text, a manifest that reads, and no entry but the member
    folders it lists, each a checkpoint scoliotune wrote (`checkpoint.not_ours_reason`).
    """
    directory = Path(directory)
    try:
        names = set(os.listdir(directory))
    except OSError as exc:
        return f"cannot list it ({one_line(exc.strerror or str(exc))})"
    foreign = sorted(n for n in names if n not in (ENSEMBLE_MARKER, ENSEMBLE_MANIFEST) and not _MEMBER.fullmatch(n))
    if foreign:
        return "it holds " + ", ".join(one_line(name) for name in foreign[:3])
    try:
        marker = read_bounded(directory / ENSEMBLE_MARKER, len(ENSEMBLE_MARKER_TEXT), follow_symlinks=False,
                              error=ContractError)
    except (ContractError, OSError):
        marker = None
    if marker != ENSEMBLE_MARKER_TEXT:
        return f"no scoliotune marker file {ENSEMBLE_MARKER}"
    try:
        manifest, _ = _load_manifest(directory)
    except (ContractError, OSError) as exc:
        return f"its manifest does not read: {exc}"
    listed = {entry["dir"] for entry in manifest["members"]}
    present = names - {ENSEMBLE_MARKER, ENSEMBLE_MANIFEST}
    if present != listed:
        return f"its member folders are not the ones {ENSEMBLE_MANIFEST} lists"
    for name in sorted(present):
        path = directory / name
        if path.is_symlink() or not path.is_dir():
            return f"{name} is not a directory"
        reason = not_ours_reason(path)
        if reason:
            return f"{name}: {reason}"
    return None


# checkpoint.py's ensure_replaceable / clear_for_copy / remove_checkpoint accept an ensemble through this.
register_owned_kind((ENSEMBLE_MARKER, ENSEMBLE_MANIFEST), ensemble_not_ours_reason)
