"""Guard for Ray Tune's `storage_path`: on a multi-node cluster it must be storage every node shares.

Tune writes trial checkpoints from the node a trial runs on and the driver restores from that same
path. A node-local directory (`/home/me/ray_results`, `file:///tmp/x`) works on one machine, but on a
cluster each node writes its own disconnected copy: resume and best-checkpoint lookup then silently
miss trials. So a sweep calls `check_storage_path(path, count_alive_nodes())` right after `ray.init`.

Shared means: a cloud URI (`s3://`, `gs://`, ...), a path under a network mount listed in
/proc/mounts (NFS, CIFS/SMB, Lustre, a FUSE bucket mount, ...), or a path the user vouches for with
`SCOLIO_SHARED_STORAGE=1` (for mounts this check cannot recognise).

    from scolio_sweep.engine.storage import check_storage_path, count_alive_nodes
    storage_path = check_storage_path(args.storage_path, count_alive_nodes())

It also says which local folders scoliotune owns: those it creates carry OWNED_MARKER, and only those are ever
rewritten (`check_replaceable` before compute, `claim_folder` when writing); a folder holding anything else is
refused. (A checkpoint directory carries its own marker: scolio_core.training.checkpoint.ensure_replaceable.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from scolio_core.errors import ConfigError, WorkdirError
from scolio_core.safe_yaml import cut

SHARED_ENV_VAR = "SCOLIO_SHARED_STORAGE"
PROC_MOUNTS = Path("/proc/mounts")

# URI schemes pyarrow.fs (which Tune uses for storage) reads from every node alike.
REMOTE_SCHEMES = frozenset({"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"})

# Filesystem types (the third column of /proc/mounts) that are shared between machines.
NETWORK_FS_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "ceph", "glusterfs", "gpfs", "beegfs",
    "wekafs", "panfs", "ocfs2", "gfs2",
})
# FUSE mounts ("fuse.<subtype>") are mostly network/bucket mounts (s3fs, gcsfuse, mountpoint-s3, sshfs,
# juicefs, ceph-fuse...); these subtypes are machine-local and must not count as shared.
LOCAL_FUSE_SUBTYPES = frozenset({
    "fuse-overlayfs", "lxcfs", "gvfsd-fuse", "portal", "squashfuse", "appimagelauncherfs", "snapfuse",
})
_TRUE = frozenset({"1", "true", "yes", "on"})


def _is_network_fs(fstype: str) -> bool:
    if fstype in NETWORK_FS_TYPES:
        return True
    if fstype.startswith("fuse."):
        return fstype[len("fuse."):] not in LOCAL_FUSE_SUBTYPES
    return False


def _unescape_mount_field(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as octal escapes (\040 ...).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mounts_file: str | Path = PROC_MOUNTS) -> list[tuple[Path, str]]:
    """(mount point, filesystem type) pairs from a /proc/mounts-format file; [] where it is unreadable
    (e.g. macOS has no /proc), in which case only `SCOLIO_SHARED_STORAGE=1` can mark a path shared."""
    try:
        text = Path(mounts_file).read_text()
    except OSError:
        return []
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append((Path(_unescape_mount_field(parts[1])), parts[2]))
    return mounts


def mount_fstype(path: Path, mounts: list[tuple[Path, str]]) -> str | None:
    """Filesystem type of the mount holding `path` (the longest mount point that contains it).
    A later entry for the same mount point wins: it is mounted on top of the earlier one."""
    best: tuple[int, str] | None = None
    for mount_point, fstype in mounts:
        if path == mount_point or mount_point in path.parents:
            depth = len(mount_point.parts)
            if best is None or depth >= best[0]:
                best = (depth, fstype)
    return None if best is None else best[1]


def _normalise_remote(storage_path: str, scheme: str) -> str:
    parts = urlsplit(storage_path)
    if not parts.netloc:
        raise ConfigError(f"storage_path {storage_path!r} names no bucket; use e.g. {scheme}://my-bucket/scoliotune")
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""  # pyarrow reads options such as ?region=... from it
    return f"{scheme}://{parts.netloc}{path}{query}"


def _local_path(storage_path: str) -> Path:
    if storage_path.lower().startswith("file://"):
        parts = urlsplit(storage_path)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"storage_path {storage_path!r}: file:// URIs cannot name a remote host "
                              f"({parts.netloc!r}); mount it and give the mount path, or use s3:// / gs://")
        storage_path = parts.path
    # resolve() follows symlinks, so a local link into an NFS mount is judged by where it points.
    return Path(storage_path).expanduser().resolve()


def check_storage_path(storage_path: str, num_nodes: int, *,
                       mounts_file: str | Path = PROC_MOUNTS) -> str:
    """Return the normalised storage path/URI for Tune, or raise `ConfigError` if it is node-local on a
    cluster of more than one node.

    Remote URIs come back as `scheme://bucket/prefix` (no trailing slash); local paths and `file://` URIs
    come back as an absolute, symlink-resolved path.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"num_nodes must be a positive integer (alive Ray nodes), got {num_nodes!r}")
    if not isinstance(storage_path, str) or not storage_path.strip():
        raise ConfigError(f"storage_path must be a non-empty path or URI, got {storage_path!r}")
    storage_path = storage_path.strip()

    scheme = urlsplit(storage_path).scheme.lower()
    if scheme in REMOTE_SCHEMES:
        return _normalise_remote(storage_path, scheme)
    if scheme not in ("", "file"):
        raise ConfigError(f"storage_path {storage_path!r}: unsupported scheme {scheme + '://'!r}; use a "
                          f"filesystem path or one of {', '.join(s + '://' for s in sorted(REMOTE_SCHEMES))}")

    path = _local_path(storage_path)
    if num_nodes == 1:
        return str(path)
    if os.environ.get(SHARED_ENV_VAR, "").strip().lower() in _TRUE:
        return str(path)
    fstype = mount_fstype(path, read_mounts(mounts_file))
    if fstype is not None and _is_network_fs(fstype):
        return str(path)
    where = f"a {fstype!r} filesystem" if fstype else "a filesystem this check cannot identify"
    raise ConfigError(
        f"storage_path {storage_path!r} resolves to {path}, on {where} local to one machine, but the Ray "
        f"cluster has {num_nodes} alive nodes: each node would write its own checkpoints and resume/"
        f"best-checkpoint lookup would miss trials. Use shared storage: an s3:// or gs:// URI "
        f"(e.g. --storage-path s3://my-bucket/scoliotune), a path on an NFS/CIFS/Lustre/FUSE mount, or, if "
        f"this path is shared by a mount this check does not recognise, set {SHARED_ENV_VAR}=1.")


def count_alive_nodes() -> int:
    """Number of alive nodes in the connected Ray cluster (head included). Call after `ray.init`."""
    import ray  # deferred: the path logic above must stay importable without starting Ray

    if not ray.is_initialized():
        raise RuntimeError("count_alive_nodes() needs a connected Ray cluster: call ray.init() first")
    return sum(1 for node in ray.nodes() if node.get("Alive"))


# ----------------------------------------------------------------------------------- folders scoliotune owns
OWNED_MARKER = ".scoliotune-owned"
_MARKER_TEXT = ("scoliotune wrote this folder ({what}) and may rewrite it; "
                "it rewrites no folder without this file\n")


def _owned(folder: Path) -> bool:
    marker = folder / OWNED_MARKER
    return marker.is_file() and not marker.is_symlink()


def check_replaceable(folder: str | Path, what: str) -> None:
    """Refuse, before compute, a folder scoliotune would rewrite or delete but did not create: it may be
    absent, empty, or carry OWNED_MARKER; anything else is a WorkdirError and nothing in it is touched."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        existing = next(parent for parent in folder.absolute().parents if os.path.lexists(parent))
        if not existing.is_dir():  # e.g. --results-dir names a file: writing under it would fail after compute
            raise WorkdirError(f"{existing} ({what}: {folder}) is not a folder; nothing was changed")
        return
    if folder.is_symlink() or not folder.is_dir():
        raise WorkdirError(f"{folder} ({what}) exists and is not a folder scoliotune wrote; nothing was changed: "
                           "move it away or choose another --name")
    if _owned(folder):
        return
    with os.scandir(folder) as entries:
        held = [entry.name for _, entry in zip(range(4), entries)]  # a few names, however many there are
    if held:
        shown = ", ".join(cut(name, 40) for name in held[:3]) + (", ..." if len(held) > 3 else "")
        raise WorkdirError(f"{folder} ({what}) holds files scoliotune did not write ({shown}; no {OWNED_MARKER}); "
                           "nothing was changed: move them away or choose another --name")


def claim_folder(folder: str | Path, what: str) -> Path:
    """`folder` created (or re-used when it is empty or already scoliotune's) and marked as scoliotune's."""
    folder = Path(folder)
    check_replaceable(folder, what)
    folder.mkdir(parents=True, exist_ok=True)
    if not _owned(folder):
        (folder / OWNED_MARKER).write_text(_MARKER_TEXT.format(what=what))
    return folder

