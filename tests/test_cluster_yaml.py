"""cluster.yaml and cluster-local.yaml pass the checks `ray up` itself runs, offline, and keep the cluster secure.

Each file is validated against the JSON schema shipped inside the installed ray package, then put
through Ray's own `prepare_config` + `validate_config` (via `scolio_sweep/engine/ray_private.py`) (what `ray up` does before touching a cloud);
the on-prem file also goes through the local provider's bootstrap. No network: a fixture makes any
socket connection fail, so nothing here can reach AWS. Broken copies must fail, so the checks can fail.

Security (issue 16): both files and every command in docs/cluster.md and the README's Cluster section must run
MLflow's basic-auth app bound to a non-wildcard (the head's private) address, start every Ray head in token mode,
put no secret or password on a command line, install nothing through an unpinned installer, and keep MLflow
(5000), the dashboard/job API (8265) and the GCS (6379) inside the cluster (an AWS security group that admits only
SSH and the group itself; ufw on premises). `security_problems` lists what a config gets wrong; broken copies
prove each rule can fail.

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

from scolio_sweep.engine.ray_private import prepare_cluster_config  # noqa: E402

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
    # the head's MLflow runs the basic-auth app (the `auth` extra) at the version docs/cluster.md describes
    head = commands(config, "setup_commands", "head_setup_commands")
    mlflow_pins = [Requirement(spec) for spec in re.findall(r'"(mlflow[^"]*)"', head)]
    assert any("auth" in req.extras for req in mlflow_pins), f"{name}: the head installs no mlflow[auth]"
    for req in [Requirement(spec) for spec in re.findall(r'"(mlflow[^"]*)"', installs)]:
        (pin,) = req.specifier
        assert pin.operator == "==" and deps["mlflow"].specifier.contains(pin.version), str(req)


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
    assert "--backend-store-uri postgresql:" in mlflow and "--app-name basic-auth" in mlflow
    assert "--artifacts-destination" in mlflow and "sqlite" not in mlflow
    # MLflow and Ray advertise the same private address, the one the workers and the job reach
    assert '--host "$HEAD_IP"' in mlflow and "HEAD_IP=$(cat ~/.scoliotune/head-ip)" in head
    assert '--node-ip-address="$(cat ~/.scoliotune/head-ip)"' in head
    worker = commands(config, "worker_start_ray_commands")
    assert re.search(r"RAY_AUTH_MODE=token;.*ray start --address=\$RAY_HEAD_IP:6379", worker)
    assert "~/.ray/auth_token" in config["cluster_synced_files"]  # workers need the head's token
    assert "~/.mlflow/credentials" in config["cluster_synced_files"]  # and the trials MLflow's credentials
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
    if name == LOCAL:
        must_change.append(re.search(r"ufw allow from (\S+)", commands(config, "setup_commands"))[1])
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


# --- security (issue 16) ---------------------------------------------------------------------------------------

COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")
CLUSTER_PORTS = {5000: "MLflow", 8265: "Ray dashboard/job API", 6379: "Ray GCS"}
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", "*", ""}
# NAME=value where NAME ends in PASSWORD/TOKEN/SECRET_KEY and the value is a literal, not "$(cat file)", "$VAR" or
# a printf "%s" slot filled from a file: a secret written into the command itself (RAY_AUTH_TOKEN_PATH is fine).
SECRET_ASSIGNMENT = re.compile(r"\b\w*(?:PASSWORD|TOKEN|SECRET_KEY|PGPASS)=(?![\"']?(?:\$|%s))", re.IGNORECASE)
URI_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@:'\"]+:[^\s/@'\"]+@", re.IGNORECASE)
PASSWORD_FLAG = re.compile(r"--password\b|\s-p\s*\S*pass", re.IGNORECASE)
PIPED_INSTALLER = re.compile(r"\b(?:curl|wget)\b[^|;&]*\|\s*(?:sudo\s+)?(?:\w*sh|python3?)\b")
PRIVATE_CIDR = re.compile(r"^(?:10\.|192\.168\.|172\.(?:1[6-9]|2\d|3[01])\.)")


def mlflow_servers(text: str) -> list[str]:
    """The argument strings of every `mlflow server` invocation in `text` (backslash continuations joined)."""
    return re.findall(r"mlflow server\b(.*)", text.replace("\\\n", " "))


def command_problems(text: str, where: str) -> list[str]:
    """What is wrong in shell text (commands of a YAML file or a documented block) with respect to issue 16."""
    text = text.replace("\\\n", " ")
    problems = []
    for args in mlflow_servers(text):
        if "--app-name basic-auth" not in args:
            problems.append(f"{where}: mlflow server without --app-name basic-auth (no authentication)")
        host = re.search(r"--host[ =](\S*)", args)
        if host is None or host[1].strip("\"'") in WILDCARD_HOSTS:
            problems.append(f"{where}: mlflow server must bind one private address, not {host and host[1]!r}")
    for line in text.splitlines():
        for match in re.finditer(r"ray start\b[^;&|]*", line):
            before = text[:text.index(line)] + line[:match.start()]
            if "RAY_AUTH_MODE=token" not in before:
                problems.append(f"{where}: `{match[0][:40]}...` without RAY_AUTH_MODE=token before it")
        if "ray job submit" in line and "RAY_AUTH_MODE=token" not in text[:text.index(line)] + line:
            problems.append(f"{where}: `ray job submit` without RAY_AUTH_MODE=token")
        for pattern, what in ((SECRET_ASSIGNMENT, "a literal secret"), (URI_WITH_PASSWORD, "a URI with a password"),
                              (PASSWORD_FLAG, "a password flag"), (PIPED_INSTALLER, "an installer piped into a shell")):
            if pattern.search(line):
                problems.append(f"{where}: {what} on a command line: {line.strip()[:80]}")
        if re.search(r"\b(?:curl|wget)\b", line) and "sha256sum -c" not in line:
            problems.append(f"{where}: a download whose checksum is not verified: {line.strip()[:80]}")
        for spec in re.findall(r"pip install[^;&|]*", line):
            for req in re.findall(r'"([A-Za-z][^"\s]*)"', spec):
                if "==" not in req:
                    problems.append(f"{where}: unpinned package {req!r}")
    return problems


def security_problems(name: str, config: dict) -> list[str]:
    """Everything in a cluster config (parsed) that breaks the issue-16 rules; empty when it is secure."""
    problems = [problem for key in COMMAND_KEYS for problem in command_problems(commands(config, key), f"{name}:{key}")]
    head, setup = commands(config, "head_setup_commands", "head_start_ray_commands"), commands(
        config, "setup_commands", "head_setup_commands")
    if len(mlflow_servers(head)) != 1:
        problems.append(f"{name}: the head must start exactly one MLflow server")
    if "ray get-auth-token --generate" not in head or "chmod 600 ~/.ray/auth_token" not in head:
        problems.append(f"{name}: the head must create its Ray token and make it readable by its owner only")
    # MLflow's secrets: generated into a mode-600 file, loaded into the server's environment, never arguments
    env_file = re.search(r"(?s)umask 077.*?printf '([^']*)'.*?> ~/.scoliotune/mlflow-server\.env", setup)
    if env_file is None:
        problems.append(f"{name}: MLflow's secrets must be generated into ~/.scoliotune/mlflow-server.env, umask 077")
    else:
        for var in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
            if f"{var}=%s" not in env_file[1]:
                problems.append(f"{name}: the MLflow environment file must set {var} from a generated value")
    if not re.search(r"set -a; \. ~/.scoliotune/mlflow-server\.env; set \+a;.*mlflow server", head):
        problems.append(f"{name}: the MLflow server must load its secrets from ~/.scoliotune/mlflow-server.env")
    ini = re.search(r"printf '(\[mlflow\][^']*)' > ~/.scoliotune/basic_auth\.ini", setup)
    if ini is None or not re.search(r"default_permission = (NO_PERMISSIONS|READ)\\n", ini[1]) or (
            "admin_password" in ini[1]):
        problems.append(f"{name}: basic_auth.ini must grant at most READ by default and hold no admin password")
    if "umask 077" not in setup or "> ~/.mlflow/credentials" not in setup:
        problems.append(f"{name}: MLflow's client credentials must be written with umask 077")
    problems += port_problems(name, config)
    return problems


def port_problems(name: str, config: dict) -> list[str]:
    """Ports 5000/8265/6379 must be unreachable from outside the cluster."""
    if config["provider"]["type"] == "aws":
        group = config["provider"].get("security_group", {})
        problems = []
        if not group.get("GroupName") or group["GroupName"] == f"ray-autoscaler-{config['cluster_name']}":
            problems.append(f"{name}: name a fresh security group (the launcher reuses an existing group's rules)")
        for rule in group.get("IpPermissions", []):
            low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
            opened = [port for port in CLUSTER_PORTS if low == -1 or low <= port <= high]
            public = [r["CidrIp"] for r in rule.get("IpRanges", []) if not PRIVATE_CIDR.match(r["CidrIp"])]
            public += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
            if opened and public:
                problems.append(f"{name}: security group opens {opened} to {public}")
        for type_name, node_type in config["available_node_types"].items():
            if "SecurityGroupIds" in node_type["node_config"]:
                problems.append(f"{name}: {type_name} bypasses the cluster's security group (SecurityGroupIds)")
        return problems
    setup = commands(config, "setup_commands")
    order = [setup.find(step) for step in ("ufw allow 22/tcp", "ufw allow from ", "ufw default deny incoming",
                                           "ufw --force enable")]
    problems = [] if -1 not in order and order == sorted(order) else [
        f"{name}: every machine needs ufw: allow SSH, allow the cluster subnet, deny the rest, enable (in that order)"]
    for port, what in CLUSTER_PORTS.items():
        if re.search(rf"ufw allow (?:in )?(?:to any port )?{port}\b", setup):
            problems.append(f"{name}: ufw opens {port} ({what}) to everyone")
    return problems


def doc_blocks() -> list[tuple[str, str]]:
    """Every fenced shell block of docs/cluster.md, and the README's Cluster section, with where it is."""
    doc = (ROOT / "docs" / "cluster.md").read_text()
    blocks = [(f"docs/cluster.md block {i}", block)
              for i, block in enumerate(re.findall(r"```(?:bash|sh|console)\n(.*?)```", doc, re.S), 1)]
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"(?ms)^## Cluster\n(.*?)^## ", readme)
    assert section, "README.md lost its Cluster section"
    return blocks + [("README.md Cluster", " ".join(re.findall(r"`([^`]+)`", section[1])))]


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_is_secure(name: str) -> None:
    assert security_problems(name, load(name)) == []


def test_documented_commands_are_secure() -> None:
    blocks = doc_blocks()
    problems = [problem for where, block in blocks for problem in command_problems(block, where)]
    assert problems == []
    text = "\n".join(block for _, block in blocks)
    assert mlflow_servers(text) and "ray start --head" in text and "ray job submit" in text  # the checks saw them
    doc = (ROOT / "docs" / "cluster.md").read_text()
    assert not PIPED_INSTALLER.search(doc) and "--host 0.0.0.0" not in doc and not URI_WITH_PASSWORD.search(doc)
    # the trust boundary of restore and the credential walk-through are stated
    for phrase in ("only writer", "storage_path", "unpickle", "~/.pgpass", "RAY_AUTH_TOKEN_PATH",
                   "MLFLOW_TRACKING_USERNAME", "MLFLOW_AUTH_CONFIG_PATH"):
        assert phrase in doc, f"docs/cluster.md no longer mentions {phrase!r}"


def _mlflow_on_wildcard(config: dict) -> None:
    _edit(config, "head_start_ray_commands", '--host "$HEAD_IP"', "--host 0.0.0.0")


def _mlflow_without_auth(config: dict) -> None:
    _edit(config, "head_start_ray_commands", "--app-name basic-auth ", "")


def _head_without_token(config: dict) -> None:
    _edit(config, "head_start_ray_commands", "export RAY_AUTH_MODE=token; ", "")


def _piped_installer(config: dict) -> None:
    config["setup_commands"].insert(0, "curl -LsSf https://astral.sh/uv/install.sh | sh")


def _password_in_uri(config: dict) -> None:
    _edit(config, "head_start_ray_commands", "postgresql:///mlflow", "postgresql://mlflow:hunter2@db:5432/mlflow")


def _literal_secret(config: dict) -> None:
    _edit(config, "head_start_ray_commands", "nohup ", "MLFLOW_AUTH_ADMIN_PASSWORD=hunter2hunter2 nohup ")


def _unpinned_package(config: dict) -> None:
    _edit(config, "head_setup_commands", '"psycopg2-binary==2.9.13"', '"psycopg2-binary>=2.9"')


def _admin_password_in_ini(config: dict) -> None:
    _edit(config, "head_setup_commands", "admin_username = admin\\n", "admin_username = admin\\nadmin_password = x\\n")


def _dashboard_open_to_the_world(config: dict) -> None:
    config["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def _own_security_group(config: dict) -> None:
    config["available_node_types"]["ray.head.cpu"]["node_config"]["SecurityGroupIds"] = ["sg-0123"]


def _no_host_firewall(config: dict) -> None:
    _edit(config, "setup_commands", "sudo ufw default deny incoming && ", "")


def _edit(config: dict, key: str, old: str, new: str) -> None:
    hits = [i for i, command in enumerate(config[key]) if old in command]
    assert hits, f"{old!r} not in {key}: update this broken copy"
    config[key][hits[0]] = config[key][hits[0]].replace(old, new)


@pytest.mark.parametrize("name, break_it, complaint", [
    (AWS, _mlflow_on_wildcard, "bind one private address"),
    (LOCAL, _mlflow_on_wildcard, "bind one private address"),
    (AWS, _mlflow_without_auth, "basic-auth"),
    (AWS, _head_without_token, "RAY_AUTH_MODE=token"),
    (LOCAL, _head_without_token, "RAY_AUTH_MODE=token"),
    (AWS, _piped_installer, "piped into a shell"),
    (LOCAL, _piped_installer, "piped into a shell"),
    (AWS, _password_in_uri, "URI with a password"),
    (AWS, _literal_secret, "literal secret"),
    (AWS, _unpinned_package, "unpinned package"),
    (AWS, _admin_password_in_ini, "basic_auth.ini"),
    (AWS, _dashboard_open_to_the_world, "opens [8265]"),
    (AWS, _own_security_group, "bypasses"),
    (LOCAL, _no_host_firewall, "ufw"),
])
def test_insecure_copies_are_caught(name: str, break_it: Callable[[dict], None], complaint: str) -> None:
    config = load(name)
    break_it(config)
    problems = security_problems(name, config)
    assert any(complaint in problem for problem in problems), problems


@pytest.mark.parametrize("text, complaint", [
    ("ray start --head --port=6379 --dashboard-host=0.0.0.0", "RAY_AUTH_MODE=token"),
    ("mlflow server --backend-store-uri postgresql:///mlflow --host 0.0.0.0", "basic-auth"),
    ("ray job submit --address http://127.0.0.1:8265 -- python x.py", "RAY_AUTH_MODE=token"),
    ("export MLFLOW_TRACKING_PASSWORD=hunter2hunter2", "literal secret"),
    ("curl -fsSL https://example.invalid/install.sh -o i.sh", "checksum"),
])
def test_insecure_documented_commands_are_caught(text: str, complaint: str) -> None:
    assert any(complaint in problem for problem in command_problems(text, "doc"))
