"""The storage-path guard: node-local paths are refused on multi-node clusters, shared ones pass.

Run: pytest tests/test_storage.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from scolio_core.errors import ConfigError
from scolio_sweep.engine.ray_private import local_temp_dir_kwargs
from scolio_sweep.engine.storage import SHARED_ENV_VAR, check_storage_path, count_alive_nodes, mount_fstype, read_mounts

MOUNTS = """\
overlay / overlay rw,relatime 0 0
/dev/nvme0n1p1 /home ext4 rw,relatime 0 0
fs-1234.efs.us-west-2.amazonaws.com:/ /mnt/efs nfs4 rw,vers=4.1 0 0
//nas/share /mnt/smb cifs rw 0 0
10.0.0.5@tcp:/lustre /lustre lustre rw 0 0
s3fs /mnt/bucket fuse.s3fs rw,nosuid 0 0
fuse-overlayfs /mnt/rootless fuse.fuse-overlayfs rw 0 0
/dev/sdb1 /mnt/efs/scratch ext4 rw 0 0
server:/export /mnt/with\\040space nfs rw 0 0
"""


@pytest.fixture
def mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(SHARED_ENV_VAR, raising=False)
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return path


@pytest.mark.parametrize("uri, expected", [
    ("s3://bucket/scoliotune/", "s3://bucket/scoliotune"),
    ("S3://bucket/a/b", "s3://bucket/a/b"),
    ("gs://bucket", "gs://bucket"),
    ("s3://bucket/x?region=eu-west-1", "s3://bucket/x?region=eu-west-1"),
    ("  gcs://bucket/runs  ", "gcs://bucket/runs"),
])
def test_remote_uris_pass_on_any_cluster_size(uri: str, expected: str, mounts: Path) -> None:
    assert check_storage_path(uri, 1, mounts_file=mounts) == expected
    assert check_storage_path(uri, 16, mounts_file=mounts) == expected


def test_single_node_accepts_and_normalises_local_paths(tmp_path: Path, mounts: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_storage_path("ray_results", 1, mounts_file=mounts) == str(tmp_path.resolve() / "ray_results")
    assert check_storage_path(f"file://{tmp_path}/runs", 1, mounts_file=mounts) == str(tmp_path.resolve() / "runs")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_storage_path("~/r", 1, mounts_file=mounts) == str(tmp_path.resolve() / "r")


@pytest.mark.parametrize("path", ["/home/me/ray_results", "file:///home/me/ray_results", "/tmp/x",
                                  "/mnt/rootless/x", "/mnt/efs/scratch/runs"])
def test_multi_node_refuses_node_local_paths(path: str, mounts: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_storage_path(path, 3, mounts_file=mounts)
    message = str(info.value)
    assert path in message and "3 alive nodes" in message
    assert "s3://" in message and "NFS" in message and SHARED_ENV_VAR in message


@pytest.mark.parametrize("path, fstype", [
    ("/mnt/efs/scoliotune", "nfs4"),  # AWS EFS is NFSv4
    ("/mnt/smb/runs", "cifs"),
    ("/lustre/project/runs", "lustre"),
    ("/mnt/bucket/runs", "fuse.s3fs"),
    ("/mnt/with space/runs", "nfs"),  # \040-escaped mount point
    ("/mnt/efs", "nfs4"),  # the mount point itself
])
def test_multi_node_accepts_network_mounts(path: str, fstype: str, mounts: Path) -> None:
    assert mount_fstype(Path(path), read_mounts(mounts)) == fstype
    assert check_storage_path(path, 4, mounts_file=mounts) == str(Path(path).resolve())


def test_symlink_into_a_network_mount_is_judged_by_its_target(tmp_path: Path, mounts: Path) -> None:
    target = tmp_path / "nfs"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    fake = tmp_path / "mounts_with_tmp"
    fake.write_text(mounts.read_text() + f"srv:/x {target} nfs rw 0 0\n")
    assert check_storage_path(str(link / "runs"), 2, mounts_file=fake) == str(target.resolve() / "runs")


def test_env_var_marks_a_path_shared(mounts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_ENV_VAR, "0")
    with pytest.raises(ConfigError):
        check_storage_path("/home/me/runs", 2, mounts_file=mounts)
    monkeypatch.setenv(SHARED_ENV_VAR, "1")
    assert check_storage_path("/home/me/runs", 2, mounts_file=mounts) == str(Path("/home/me/runs").resolve())


def test_unreadable_mount_table_means_not_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_ENV_VAR, raising=False)
    assert read_mounts(tmp_path / "missing") == []
    with pytest.raises(ConfigError, match="cannot identify"):
        check_storage_path("/mnt/efs/x", 2, mounts_file=tmp_path / "missing")


@pytest.mark.parametrize("path, num_nodes, match", [
    ("", 1, "non-empty"),
    ("s3://", 1, "names no bucket"),
    ("s3:///prefix", 2, "names no bucket"),
    ("http://host/x", 1, "unsupported scheme"),
    ("file://otherhost/x", 1, "remote host"),
    ("/tmp/x", 0, "positive integer"),
    ("/tmp/x", True, "positive integer"),
])
def test_bad_input_raises_config_error_naming_it(path: str, num_nodes: int, match: str, mounts: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        check_storage_path(path, num_nodes, mounts_file=mounts)


def test_count_alive_nodes_on_a_local_ray_instance() -> None:
    ray = pytest.importorskip("ray")
    with pytest.raises(RuntimeError, match="ray.init"):
        count_alive_nodes()
    # address="local" starts a private instance even if someone else's cluster runs on this machine; a
    # short private temp dir keeps Ray's unix socket paths under the OS length limit.
    temp_dir = tempfile.mkdtemp(prefix="scolio-ray-", dir="/tmp")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             **local_temp_dir_kwargs(temp_dir))
    try:
        assert count_alive_nodes() == 1
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
