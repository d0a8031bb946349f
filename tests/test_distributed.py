"""Data-parallel trials: `run_training` as ranks of a gloo group, and a Tune trial that trains on two Ray Train
workers (scolio_sweep/trainables/distributed.py) with its reports, checkpoints and val metrics reaching Tune and MLflow,
and no test id read by any process but the test's own."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import read_log_env, tiny_config

from scolio_core import names
from scolio_core.data.resolve import resolve_split

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


class Interrupt(Exception):
    pass


def _rank_main(rank: int, root: str, out: str) -> None:
    """One rank: an uninterrupted run, then a run cut after its first report and resumed from it."""
    import torch.distributed as dist

    from scolio_core.training.batches import load_trainval
    from scolio_core.training.loop import run_training
    from scolio_core.training.parallel import DataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=WORLD)
    config = tiny_config(Path(root), **{"train.iterations": 8, "train.eval_every": 4})
    data = load_trainval(config, resolve_split(config).trainval())
    parallel = DataParallel(rank=rank, world_size=WORLD)
    reports: list = []
    full = run_training(config, data, Path(out) / f"full{rank}",
                        lambda m, c: reports.append({"metrics": m, "checkpoint": str(c) if c else None}),
                        parallel=parallel)

    def stop(metrics, checkpoint_dir):
        raise Interrupt(str(checkpoint_dir))

    with pytest.raises(Interrupt) as cut:
        run_training(config, data, Path(out) / f"cut{rank}", stop, parallel=parallel)
    # Every rank resumes from rank 0's checkpoint (a shared directory here, Tune's storage in a sweep).
    resume_from = [str(cut.value)]
    dist.broadcast_object_list(resume_from, src=0)
    resumed = run_training(config, data, Path(out) / f"cut{rank}", lambda m, c: None,
                           resume_from=resume_from[0], parallel=parallel)
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "reports": reports, "full": str(full.last_checkpoint), "resumed": str(resumed.last_checkpoint)}))
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes
def test_ranks_split_the_batch_rank0_checkpoints_and_resume_is_exact(synth_root, tmp_path):
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.parallel import DataParallel

    assert [DataParallel(r, 3).batch_ids(8) for r in range(3)] == [3, 3, 2]  # one P×K batch per step in all
    torch.multiprocessing.spawn(_rank_main, args=(str(synth_root), str(tmp_path)), nprocs=WORLD, join=True)
    lead, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD))
    assert [r["metrics"]["iteration"] for r in lead["reports"]] == [4, 8]
    assert [r["metrics"]["iteration"] for r in other["reports"]] == [4, 8]  # every rank reports each time
    assert all(r["checkpoint"] for r in lead["reports"]) and not any(r["checkpoint"] for r in other["reports"])
    assert all("val/macro_f1" in r["metrics"] for r in lead["reports"])
    assert not any(k.startswith("val/") for r in other["reports"] for k in r["metrics"])  # only rank 0 evaluates
    # The loss both ranks report is the mean over ranks.
    assert [r["metrics"]["train/loss"] for r in lead["reports"]] == \
           [r["metrics"]["train/loss"] for r in other["reports"]]
    a, b = read_checkpoint(lead["full"]), read_checkpoint(lead["resumed"])
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)  # per-rank streams restored
    assert len(a.training_state()["rank_states"]) == WORLD


@pytest.mark.slow
def test_two_worker_trial_reports_checkpoints_to_tune_and_mlflow_without_test_ids(synth_root, tmp_path,
                                                                               monkeypatch):
    import ray
    from mlflow.tracking import MlflowClient
    from ray import tune

    from scolio_core.training.batches import load_trainval
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.loop import run_training
    from scolio_sweep.engine.callbacks import MLflowLifecycle
    from scolio_sweep.engine.tuner import connect_ray, run_or_restore
    from scolio_sweep.trainables.distributed import data_parallel_trainable, driver_resources

    torch.set_num_threads(1)
    config = tiny_config(synth_root, **{"train.iterations": 24, "train.eval_every": 8, "train.lr": 0.05,
                                        "train.milestones": [1000]})
    split = resolve_split(config)
    single: list[dict] = []
    run_training(config, load_trainval(config, split.trainval()), tmp_path / "single", lambda m, c: single.append(m))

    log = tmp_path / "access.log"
    for key, value in read_log_env(log).items():  # before Ray starts: its workers inherit it (and ROOT)
        monkeypatch.setenv(key, value)
    # Ray Train's controller collects the workers' reports every 2 s by default: 0.5 s (the trial's wall time
    # is mostly that waiting, not training).
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    if ray.is_initialized():
        ray.shutdown()
    connect_ray(num_cpus=WORLD + 1, temp_dir=tempfile.mkdtemp(prefix="sdp"), include_dashboard=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        lifecycle = MLflowLifecycle(uri, "dp", "dp-sweep", metric="val/macro_f1", mode="max", params={},
                                    budget=3)
        space = config.for_trial().to_flat()  # the trial never sees the partition
        grid = run_or_restore(tune.with_parameters(data_parallel_trainable(WORLD), split=split.trainval(),
                                                   system_metrics_interval_s=0.5),
                              name="dp", storage_path=str(tmp_path / "ray"), param_space=space,
                              tune_config=tune.TuneConfig(metric="val/macro_f1", mode="max"),
                              run_config_kwargs={"verbose": 0}, callbacks=[lifecycle], resources=driver_resources())
    finally:
        ray.shutdown()

    result = grid[0]
    assert result.error is None, result.error
    history = result.metrics_dataframe
    assert list(history["iteration"]) == [m["iteration"] for m in single] == [8, 16, 24]
    assert history["train/loss"].iloc[-1] < history["train/loss"].iloc[0]  # same shape as one process
    assert single[-1]["train/loss"] < single[0]["train/loss"]
    assert history["val/macro_f1"].notna().all()
    assert len(result.best_checkpoints) == 3
    for checkpoint, _ in result.best_checkpoints:
        contract = read_checkpoint(checkpoint.path)
        assert contract.contract["split"]["fingerprint"] == split.trainval().fingerprint
        assert contract.contract["provenance"]["workers"] == WORLD
    # The Train run's own copies were handed to Tune and removed.
    assert not list(Path(result.path).glob("ddp-*"))

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("dp").experiment_id],
                              filter_string="tags.`scolio.role` = 'trial'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "val/macro_f1")] == [1, 2, 3]
    assert runs[0].data.tags.get("scolio.best_checkpoint")
    # Rank 0 sampled system metrics; they rode its relayed reports into the trial's run (MLflow's names).
    cpu = client.get_metric_history(runs[0].info.run_id, names.METRIC_SYSTEM_CPU)
    assert cpu and {m.step for m in cpu} <= {1, 2, 3} and all(0 <= m.value <= 100 for m in cpu)

    reads = [line.split("\t") for line in log.read_text().splitlines()]
    others = [(int(pid), seq) for pid, seq, _ in reads if int(pid) != os.getpid()]
    assert len({pid for pid, _ in others}) >= WORLD  # both Train workers loaded their data
    assert {seq for _, seq in others} <= set(split.train) | set(split.val)
    assert not {seq for _, seq in others} & set(split.test)
