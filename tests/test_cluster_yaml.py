"""cluster.yaml and cluster-local.yaml pass the checks `ray up` itself runs, offline.

Each file is validated against the JSON schema shipped inside the installed ray package, then put
through Ray's own `prepare_config` + `validate_config` (via `sweeps/ray_private.py`) (what `ray up` does before touching a cloud);
the on-prem file also goes through the local provider's bootstrap. No network: a fixture makes any
socket connection fail, so nothing here can reach AWS. Broken copies must fail, so the checks can fail.

Run: pytest tests/test_cluster_yaml.py
"""

from __future__ import annotations

import copy
import json
import re
import socket
from pathlib import Path
from typing import Any, Callable

import pytest
import tomllib
import yaml

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test extra: pip install -e .[test]")
pytest.importorskip("ray.autoscaler", reason="ray[default] is needed for the cluster launcher checks")

import ray.autoscaler  # noqa: E402

from sweeps.ray_private import prepare_cluster_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AWS, LOCAL = "cluster.yaml", "cluster-local.yaml"
CONFIGS = [AWS, LOCAL]
PLACEHOLDER = "CHANGE_ME"

# GPUs per instance type, to catch a declared {"GPU": n} that the machine does not have (trials would
# then be scheduled onto GPUs that do not exist). Add a row when cluster.yaml uses a new type.
INSTANCE_GPUS = {"g5.12xlarge": 4, "g5.48xlarge": 8, "g6.12xlarge": 4, "g6.48xlarge": 8, "p4d.24xlarge": 8,
                 "p3.8xlarge": 4, "p3.16xlarge": 8, "g4dn.12xlarge": 4, "p5.48xlarge": 8}
INSTANCE_VCPUS = {"g5.12xlarge": 48, "g5.48xlarge": 192, "g6.12xlarge": 48, "g6.48xlarge": 192,
                  "p4d.24xlarge": 96, "p3.8xlarge": 32, "p3.16xlarge": 64, "g4dn.12xlarge": 48,
                  "p5.48xlarge": 192, "m6i.2xlarge": 8}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"cluster config checks must stay offline, tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def commands(config: dict, *keys: str) -> str:
    return "\n".join(cmd for key in keys for cmd in config.get(key, []))


@pytest.mark.parametrize("name", CONFIGS)
def test_file_matches_rays_schema(name: str, schema: dict) -> None:
    jsonschema.validate(load(name), schema)


@pytest.mark.parametrize("name", CONFIGS)
def test_prepared_config_passes_rays_validation(name: str) -> None:
    raw = load(name)
    prepared = prepare_cluster_config(copy.deepcopy(raw))
    # prepare_config merged the common setup commands in front of the head/worker ones.
    assert prepared["head_setup_commands"][:len(raw["setup_commands"])] == raw["setup_commands"]
    assert prepared["worker_setup_commands"][:len(raw["setup_commands"])] == raw["setup_commands"]
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_local_config_bootstraps_like_ray_up() -> None:
    from ray.autoscaler.sdk import bootstrap_config

    raw = load(LOCAL)
    config = bootstrap_config(copy.deepcopy(raw), no_config_cache=True)
    (node_type,) = config["available_node_types"].values()
    workers = len(raw["provider"]["worker_ips"])
    assert node_type["min_workers"] == node_type["max_workers"] == workers == raw["max_workers"]


def test_aws_node_types_declare_a_gpu_layout() -> None:
    config = load(AWS)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head.get("max_workers", 0) == 0
    assert 0 < head["resources"]["CPU"] <= INSTANCE_VCPUS[head["node_config"]["InstanceType"]]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu_counts = set()
    for name, node_type in workers.items():
        instance = node_type["node_config"]["InstanceType"]
        assert instance in INSTANCE_GPUS, f"{name}: add {instance} to INSTANCE_GPUS/INSTANCE_VCPUS"
        resources = node_type["resources"]
        assert resources["GPU"] == INSTANCE_GPUS[instance], f"{name}: GPU count does not match {instance}"
        assert 0 < resources["CPU"] <= INSTANCE_VCPUS[instance], f"{name}: CPU count does not match {instance}"
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]
        assert node_type["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name
        assert "Arn" in node_type["node_config"]["IamInstanceProfile"], f"{name} needs S3 access"
        gpu_counts.add(resources["GPU"])
    assert {4, 8} <= gpu_counts
    assert config["idle_timeout_minutes"] > 0 and config["max_workers"] >= 1


@pytest.mark.parametrize("name", CONFIGS)
def test_install_commands_pin_the_projects_ray_and_torch(name: str) -> None:
    from packaging.requirements import Requirement

    deps = {r.name: r for r in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())
                                   ["project"]["dependencies"])}
    config = load(name)
    installs = commands(config, "setup_commands", "head_setup_commands", "worker_setup_commands")
    ray_installs = [Requirement(spec) for spec in re.findall(r'"(ray\[[^"]*)"', installs)]
    assert ray_installs, f"{name} installs no pinned ray"
    for req in ray_installs:  # same extras and the same == pin as pyproject.toml, so the two cannot drift
        assert (req.extras, req.specifier) == (deps["ray"].extras, deps["ray"].specifier), str(req)
    assert "-e ~/scoliotune" in installs  # the project itself, from the file mount
    assert config["file_mounts"]["~/scoliotune"] == "."
    for torch_pin in re.findall(r'"torch==([^"]+)"', installs) or pytest.fail(f"{name} pins no torch"):
        assert deps["torch"].specifier.contains(torch_pin), f"torch=={torch_pin} violates pyproject"


def test_gpu_nodes_get_the_cuda_torch_build_and_the_head_the_cpu_one() -> None:
    config = load(AWS)
    head, workers = commands(config, "head_setup_commands"), commands(config, "worker_setup_commands")
    assert "download.pytorch.org/whl/cpu" in head
    assert "whl/cpu" not in workers and "torch.cuda.is_available()" in workers


@pytest.mark.parametrize("name", CONFIGS)
def test_start_commands_run_ray_with_token_auth_and_mlflow_on_a_database(name: str) -> None:
    config = load(name)
    head = commands(config, "head_start_ray_commands")
    assert re.search(r"RAY_AUTH_MODE=token;.*ray start --head .*--include-dashboard=true", head)
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray get-auth-token --generate" in head
    mlflow = re.search(r"mlflow server (.*)", head).group(1)
    assert "--backend-store-uri postgresql:" in mlflow and "--host 0.0.0.0" in mlflow
    assert "--artifacts-destination" in mlflow and "sqlite" not in mlflow
    worker = commands(config, "worker_start_ray_commands")
    assert re.search(r"RAY_AUTH_MODE=token;.*ray start --address=\$RAY_HEAD_IP:6379", worker)
    assert "~/.ray/auth_token" in config["cluster_synced_files"]  # workers need the head's token
    assert ".gitignore" in config["rsync_filter"]  # keep .venv and caches out of the file mount


@pytest.mark.parametrize("name", CONFIGS)
def test_every_placeholder_is_marked_change(name: str) -> None:
    text = (ROOT / name).read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if PLACEHOLDER in line and not line.lstrip().startswith("#"):
            assert "# CHANGE:" in line, f"{name}:{number}: placeholder without a '# CHANGE:' comment"
    config = load(name)
    must_change = ([config["provider"]["head_ip"], *config["provider"]["worker_ips"]] if name == LOCAL else
                   [config["provider"]["region"]] + [
                       str(t["node_config"].get(key)) for t in config["available_node_types"].values()
                       for key in ("ImageId", "KeyName", "SubnetIds")])
    must_change += [config["auth"]["ssh_private_key"], re.search(r"--artifacts-destination (\S+)",
                                                                 commands(config, "head_start_ray_commands"))[1]]
    for value in must_change:
        assert PLACEHOLDER in value, f"{name}: {value!r} looks like a real value; keep a CHANGE_ME placeholder"


def _rename_top_level(config: dict) -> None:
    config["max_worker"] = config.pop("max_workers")


def _misspell_setup(config: dict) -> None:
    config["setup_command"] = config.pop("setup_commands")


def _misspell_node_resources(config: dict) -> None:
    node_type = config["available_node_types"]["ray.worker.gpu4.spot"]
    node_type["resource"] = node_type.pop("resources")


def _fractional_gpu(config: dict) -> None:
    config["available_node_types"]["ray.worker.gpu4.spot"]["resources"]["GPU"] = 0.5


def _unknown_head_type(config: dict) -> None:
    config["head_node_type"] = "ray.head.missing"


def _min_workers_above_cap(config: dict) -> None:
    config["available_node_types"]["ray.worker.gpu4.spot"]["min_workers"] = config["max_workers"] + 1


@pytest.mark.parametrize("name, break_it, error", [
    (AWS, _rename_top_level, jsonschema.ValidationError),
    (AWS, _misspell_node_resources, jsonschema.ValidationError),
    (AWS, _fractional_gpu, jsonschema.ValidationError),
    (AWS, _unknown_head_type, ValueError),
    (AWS, _min_workers_above_cap, ValueError),
    (LOCAL, _misspell_setup, jsonschema.ValidationError),
])
def test_broken_copies_fail_validation(name: str, break_it: Callable[[dict], None], error: type,
                                       schema: dict) -> None:
    config = load(name)
    break_it(config)
    if error is jsonschema.ValidationError:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(config, schema)
    with pytest.raises(error):
        prepare_cluster_config(copy.deepcopy(config))
