"""The cluster path on one machine: a simulated multi-node Ray cluster (`ray.cluster_utils.Cluster`: a head and
worker "nodes", each its own raylet and object store), the real sweep script attached to it as a subprocess
(`RAY_ADDRESS`, which `scolio_sweep.engine.tuner.connect_ray` honours), and a worker node lost while its trial runs.

1. Trials spread over the worker nodes (the head declares 0 CPUs, as `cluster.yaml`'s head declares 0 GPUs: no
   trial runs there), the data set is read by the sweep driver alone (once for the pre-compute check, once into
   the object store) and by no trial on any node, and the storage check refuses a node-local `--storage-path`
   (exit 2, before any trial) and accepts it when `SCOLIO_SHARED_STORAGE=1` vouches that it is shared (every
   simulated node shares this machine's file system).
2. Spot preemption: a worker node vanishes while its trial runs (its worker processes frozen, then its raylet,
   object store and agents SIGKILLed, then the frozen processes: nothing on it reports or writes again). The sweep completes; the lost trial resumes on a remaining node from its last
   checkpoint (its first step afterwards is that checkpoint's step + 1, read from result.json rows as in
   tests/test_reliability_sweep.py); MLflow has one child run per trial, none RUNNING, the restart counted.

Which node ran a trial comes from Ray's public state API (`ray.util.state.list_actors`, dead actors included):
each trial's actor pid (its result.json rows carry the pid) maps to the actor's node id. Every process this test
starts inherits a unique marker variable and is ended by pid (`ray stop` would end every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from _processes import free_ports, stop_marked
from conftest import access_log_reads, read_log_env, tune_result_rows

ROOT = Path(__file__).resolve().parents[1]
SWEEP_SCRIPT = ROOT / "sweeps" / "representation.py"
MARKER = "SCOLIO_MULTINODE_TEST"
WORKERS = 2
DRIVER_TIMEOUT_S = 300
# A node is declared dead after this many missed health checks 1 s apart (Ray's defaults: 5 checks 3 s apart, so
# ~15-25 s). 5 s still tolerates a raylet stalled for seconds on a loaded 2-core machine.
HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                 "health_check_failure_threshold": 5}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to find our processes"),
]




def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1]
    except OSError:
        return False
    return not state.startswith("Z")




class SimCluster:
    """A head (0 CPUs: the driver's node) and 1-CPU worker nodes, all started from this process."""

    def __init__(self, work: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.temp_dir = tempfile.mkdtemp(prefix="smn")  # short: Ray's socket paths are length-limited
        Path(self.temp_dir, "ray").mkdir()  # where RAY_TMPDIR (below) puts Cluster's address file
        self.access_log = work / "reads.tsv"
        self.cluster = None

    @contextlib.contextmanager
    def env(self) -> Iterator[None]:
        """What every node process (and so every trial worker) inherits. RAY_TMPDIR keeps the address file
        Cluster writes (and deletes at shutdown) out of the machine-wide /tmp/ray."""
        values = {MARKER: self.marker, **read_log_env(self.access_log), "OMP_NUM_THREADS": "1",
                  "RAY_TMPDIR": self.temp_dir}
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def start(self) -> None:
        from ray.cluster_utils import Cluster

        dashboard, agent = free_ports(2)  # Ray's fixed defaults (8265, 52365) may be held by another Ray here
        with self.env():
            self.cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "temp_dir": self.temp_dir, "include_dashboard": True, "dashboard_port": dashboard,
                "dashboard_agent_listen_port": agent, "_system_config": HEALTH_CHECKS})
        for _ in range(WORKERS):
            self.add_worker()

    def add_worker(self):
        with self.env():
            node = self.cluster.add_node(num_cpus=1, temp_dir=self.temp_dir)
        self.cluster.wait_for_nodes()
        return node

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def head_id(self) -> str:
        return self.cluster.head_node.node_id

    def worker_ids(self) -> set[str]:
        return {node.node_id for node in self.cluster.worker_nodes}

    def actor_nodes(self, pids: set[int]) -> dict[int, str]:
        """pid -> node id of the Ray actors with these pids (alive or dead), from Ray's state API."""
        from ray.util.state import list_actors

        actors = list_actors(address=self.address, detail=True, limit=10_000, raise_on_missing_output=False)
        return {actor.pid: actor.node_id for actor in actors if actor.pid in pids}

    def remove_worker(self, node_id: str) -> list[int]:
        """Take a worker node away at once, as a reclaimed spot instance: its Ray worker processes are frozen
        (SIGSTOP: from now on none reports or writes a checkpoint, as on a vanished machine; killed first, the
        raylet would report their deaths itself, which is the worker-crash path), then its raylet, object store
        and agents are SIGKILLed (no graceful drain), then the frozen processes. Returns their pids."""
        from ray.util.state import list_workers

        workers = list_workers(address=self.address, filters=[("node_id", "=", node_id)], limit=10_000,
                               raise_on_missing_output=False)
        pids = [worker.pid for worker in workers if worker.is_alive and worker.pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        (node,) = [node for node in self.cluster.worker_nodes if node.node_id == node_id]
        self.cluster.remove_node(node, allow_graceful=False)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def staged_rows(self, name: str) -> dict[str, list[dict]]:
        """Result rows as the driver writes them (its staging folder; storage gets a periodic copy)."""
        return tune_result_rows(list(Path(self.temp_dir).glob(
            f"session_*/artifacts/*/{name}/driver_artifacts/*/result.json")))

    def shutdown(self) -> list[int]:
        try:
            if self.cluster is not None:
                with self.env():
                    self.cluster.shutdown()
        finally:
            left = stop_marked(MARKER, self.marker)
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left


@pytest.fixture(scope="module")
def sim_cluster(tmp_path_factory) -> Iterator[SimCluster]:
    cluster = SimCluster(tmp_path_factory.mktemp("multinode"))
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.shutdown()
    assert not left, f"processes of the simulated cluster still alive: {left}"


class Sweep:
    """The smoke sweep, frozen and shrunk into `directory`, run by the real script attached to the cluster."""

    def __init__(self, cluster: SimCluster, directory: Path, name: str, data_root: Path, *, iterations: int,
                 num_samples: int) -> None:
        self.cluster, self.dir, self.name, self.iterations = cluster, directory, name, iterations
        self.num_samples = num_samples
        directory.mkdir(parents=True, exist_ok=True)
        self.db = directory / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"
        profile = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
        # eval_every 1: every step is a report with a checkpoint, so result.json lists the steps a trial ran;
        # ASHA's grace = the whole budget, so the scheduler never stops a trial (a lost one must run to its end).
        profile["fixed"].update({"train.iterations": iterations, "train.eval_every": 1,
                                 "train.milestones": [max(1, iterations * 2 // 3)]})
        profile["asha"] = {"grace_period": iterations, "reduction_factor": 2}
        profile["budget"] = {"num_samples": num_samples, "max_concurrent_trials": 2}
        # No confirmation stage: these tests place and lose search trials; confirmation trials take the same
        # run_trials path (tests/test_sweep_e2e.py and the reliability chain run it).
        profile["confirm"] = {"candidates": 0, "seeds": 1}
        self.profile = directory / "profile.yaml"
        self.profile.write_text(yaml.safe_dump(profile, sort_keys=False))
        self.data_root = data_root
        self.log = directory / "driver.log"

    def start(self, storage: Path, *, shared: bool) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "SCOLIO_SHARED_STORAGE")}
        env.update({"RAY_ADDRESS": self.cluster.address, MARKER: self.cluster.marker, "OMP_NUM_THREADS": "1",
                    **read_log_env(self.cluster.access_log), "RAY_TMPDIR": self.cluster.temp_dir})
        if shared:
            env["SCOLIO_SHARED_STORAGE"] = "1"
        self.storage = storage
        with open(self.log, "wb") as handle:
            return subprocess.Popen(
                [sys.executable, str(SWEEP_SCRIPT), "--profile", str(self.profile), "--name", self.name,
                 "--data-root", str(self.data_root), "--partition", str(self.data_root / "Scoliosis1K_112.json"),
                 "--tracking-uri", self.uri, "--storage-path", str(storage),
                 "--results-dir", str(self.dir / "results")],
                env=env, cwd=self.dir, stdout=handle, stderr=subprocess.STDOUT)

    def finish(self, driver: subprocess.Popen) -> tuple[int, str]:
        try:
            code = driver.wait(timeout=DRIVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            driver.kill()
            pytest.fail(f"the sweep driver did not finish in {DRIVER_TIMEOUT_S} s:\n{self.output()[-4000:]}")
        return code, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, driver: subprocess.Popen, what: str, probe: Callable[[], object], timeout: float = 240):
        deadline = time.monotonic() + timeout
        while not (found := probe()):
            assert driver.poll() is None, f"driver exited ({driver.returncode}) before {what}:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{self.output()[-4000:]}"
            time.sleep(0.1)
        return found

    def trial_dirs(self) -> list[Path]:
        return sorted((self.storage / self.name).glob("train_baseline_*"))

    def rows(self) -> dict[str, list[dict]]:
        return tune_result_rows([d / "result.json" for d in self.trial_dirs()])

    def mlflow_record(self) -> tuple[object, dict[str, object]]:
        """The parent run (FINISHED) and the child run of every trial (none RUNNING), every step logged once."""
        from mlflow import MlflowClient

        client = MlflowClient(self.uri)
        experiment_id = client.get_experiment_by_name("scoliotune").experiment_id
        parents = client.search_runs([experiment_id], "tags.`scolio.role` = 'parent'")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED", [p.info.status for p in parents]
        children = client.search_runs([experiment_id], "tags.`scolio.role` = 'trial'")
        assert sorted(f"train_baseline_{c.data.tags['ray.trial_id']}" for c in children) == \
            [d.name for d in self.trial_dirs()], [(c.info.run_name, c.info.status) for c in children]
        for child in children:
            assert child.info.status in ("FINISHED", "KILLED"), (child.info.run_name, child.info.status)
            assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/macro_f1")]
            assert steps == list(range(1, self.iterations + 1)), (child.info.run_name, steps)
        return parents[0], {c.data.tags["ray.trial_id"]: c for c in children}


def test_trials_spread_over_nodes_read_no_data_and_storage_must_be_shared(sim_cluster, synth_root, tmp_path):
    started = time.monotonic()
    assert len(sim_cluster.worker_ids()) >= 2
    sweep = Sweep(sim_cluster, tmp_path, "multinode", synth_root, iterations=4, num_samples=3)

    # A node-local storage path on a cluster of several nodes: refused before any trial (and before MLflow).
    local = tmp_path / "node-local" / "ray_results"
    code, output = sweep.finish(sweep.start(local, shared=False))
    assert code == 2, output[-4000:]
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "storage_path" in errors[0] and "alive nodes" in errors[0], errors
    assert "SCOLIO_SHARED_STORAGE=1" in errors[0] and "Traceback" not in output
    assert not sweep.trial_dirs() and not list(local.parent.rglob("result.json"))

    # The same path vouched for as shared: the sweep runs across the worker nodes.
    reads_before = len(access_log_reads(sim_cluster.access_log))
    shared = tmp_path / "shared" / "ray_results"
    driver = sweep.start(shared, shared=True)
    code, output = sweep.finish(driver)
    assert code == 0, output[-4000:]
    assert "sweep multinode: winner" in output and "loaded once" in output

    rows = sweep.rows()
    assert len(rows) == 3 and all(r[-1]["training_iteration"] == 4 for r in rows.values()), rows
    trial_pids = {row["pid"] for trial in rows.values() for row in trial}
    nodes = sim_cluster.actor_nodes(trial_pids)
    assert set(nodes) == trial_pids, f"state API knows no actor for pids {trial_pids - set(nodes)}"
    used = set(nodes.values())
    assert len(used) >= 2 and used <= sim_cluster.worker_ids(), (used, sim_cluster.worker_ids())

    # Data: only the driver (on the head) read files; trials on every node mapped the object store's copy.
    reads = access_log_reads(sim_cluster.access_log, reads_before)
    assert reads and {pid for pid, _ in reads} == {driver.pid}, {pid for pid, _ in reads}

    parent, children = sweep.mlflow_record()
    assert len(children) == 3
    print(f"\ntrials on {len(used)} worker nodes: "
          + ", ".join(f"{trial}@{nodes[r[0]['pid']][:8]}" for trial, r in sorted(rows.items()))
          + f"; {len(reads)} reads, all by the driver; {time.monotonic() - started:.0f} s")


def test_a_lost_worker_node_resumes_its_trial_from_its_checkpoint_elsewhere(sim_cluster, synth_root, tmp_path):
    started = time.monotonic()
    iterations = 16
    sim_cluster.add_worker()  # a spare, so the lost trial can restart at once (and later tests keep two workers)
    sweep = Sweep(sim_cluster, tmp_path, "node-loss", synth_root, iterations=iterations, num_samples=2)
    storage = tmp_path / "shared" / "ray_results"
    driver = sweep.start(storage, shared=True)

    def running_trial_with_a_checkpoint():
        # At least two reports (each with a checkpoint) and well before its end, in a process still alive.
        for rows in sim_cluster.staged_rows(sweep.name).values():
            last = rows[-1]
            if not last.get("done") and 2 <= last["training_iteration"] <= iterations - 6 and _alive(last["pid"]):
                return last
        return None

    victim = sweep.wait_for(driver, "a running trial with a checkpoint", running_trial_with_a_checkpoint)
    (victim_node,) = sim_cluster.actor_nodes({victim["pid"]}).values()
    assert victim_node in sim_cluster.worker_ids()
    frozen = sim_cluster.remove_worker(victim_node)
    lost_at = time.monotonic()
    assert victim["pid"] in frozen, (victim, frozen)
    trial_dir = storage / sweep.name / f"train_baseline_{victim['trial_id']}"
    # The checkpoints on shared storage at the loss, with the step each holds (a resumed run prunes old ones).
    saved = {}
    for path in trial_dir.glob("checkpoint_*/contract.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):  # a copy the loss cut short was never reported
            saved[path.parent.name] = int(json.loads(path.read_text())["iteration"])
    assert saved, f"no checkpoint of {victim['trial_id']} on the shared storage"
    deadline = time.monotonic() + 30
    while _alive(victim["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(victim["pid"]), "the lost node's trial process is still alive"

    resumed = sweep.wait_for(driver, "the lost trial's next report", lambda: [
        row for row in sim_cluster.staged_rows(sweep.name).get(victim["trial_id"], []) if row["pid"] != victim["pid"]])
    detected = time.monotonic() - lost_at
    code, output = sweep.finish(driver)
    assert code == 0, output[-4000:]
    assert "sweep node-loss: winner" in output

    rows = sweep.rows()
    assert len(rows) == 2, list(rows)
    old = [row for row in rows[victim["trial_id"]] if row["pid"] == victim["pid"]]
    new = [row for row in rows[victim["trial_id"]] if row["pid"] != victim["pid"]]
    last, first = old[-1], new[0]
    step = saved[last["checkpoint_dir_name"]]
    assert step == last["iteration"], (step, last)
    # Resumed, not restarted: the first step after the loss is the checkpoint's step + 1, then each step once.
    assert first["iteration"] == step + 1 and first["iterations_since_restore"] == 1, first
    assert first["training_iteration"] == last["training_iteration"] + 1, first
    assert [r["iteration"] for r in rows[victim["trial_id"]]] == list(range(1, iterations + 1))
    assert len({r["pid"] for r in new}) == 1
    nodes = sim_cluster.actor_nodes({victim["pid"], first["pid"]})
    assert nodes[victim["pid"]] == victim_node and nodes[first["pid"]] != victim_node, nodes
    assert nodes[first["pid"]] in sim_cluster.worker_ids()  # a node still alive
    (other,) = [trial for trial in rows if trial != victim["trial_id"]]
    assert len({r["pid"] for r in rows[other]}) == 1  # the trial on a surviving node was not disturbed
    assert [r["iteration"] for r in rows[other]] == list(range(1, iterations + 1))

    parent, children = sweep.mlflow_record()
    lost = children[victim["trial_id"]].data.tags
    assert lost.get("scolio.restarts") == "1" and lost.get("scolio.error"), lost
    assert "scolio.restarts" not in children[other].data.tags
    cause = [line.strip() for line in lost["scolio.error"].splitlines() if line.strip()][-2:]
    print(f"\nnode {victim_node[:8]} lost at step {last['iteration']} of trial {victim['trial_id']}; resumed at step "
          f"{first['iteration']} on node {nodes[first['pid']][:8]} {detected:.1f} s later "
          f"(first resumed report {resumed[0]['iteration']}); {time.monotonic() - started:.0f} s; recorded cause: "
          f"{' / '.join(cause)}")
