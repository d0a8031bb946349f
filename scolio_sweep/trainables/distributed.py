"""Ray Tune function trainable whose trial trains data-parallel over N workers with Ray Train.

Ray 2.60 runs Train V2, where a `TorchTrainer` cannot be handed to `tune.Tuner`. Instead each Tune trial
runs a small driver function that builds and fits a `TorchTrainer`; a Train callback (running in the Train
controller) relays every report, with its checkpoint, through a Ray queue back to the trial, which passes it
on to `tune.report` — so ASHA, the MLflow lifecycle callback and winner selection see a multi-worker trial
exactly like a single-process one.

    trainable = data_parallel_trainable(workers=2, cpus_per_worker=1, gpus_per_worker=1)
    tune.Tuner(tune.with_resources(tune.with_parameters(trainable, split=split.trainval()),
                                   driver_resources()), ...)

Resources: the Tune trial holds only the driver's bundle (`driver_resources()`); Train reserves the worker
bundles in a placement group of its own (Train V2 schedules its workers into that group, so bundles for the
workers in the trial's group would be held twice and never used). `max_concurrent_trials` therefore bounds
how many worker groups are asked for at once.

Each worker runs `scolio_core.training.loop.run_training` with a `DataParallel` context
(scolio_core/training/parallel.py; gloo on CPU, nccl on GPU):
DistributedDataParallel model, its own share of the P×K batch, evaluation and checkpoints on rank 0 only.
Workers get the config (partition stripped) and the `TrainValSplit`: no test ids reach any process. With the
sweep driver's `shared` refs (scolio_sweep/trainables/shared_data.py) workers map the train/val arrays from the object store.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from typing import Any

import ray
from ray import tune

from scolio_core import names
from scolio_core.data.splits import TrainValSplit
from scolio_sweep.trainables.baseline import trial_experiment_config
from scolio_sweep.trainables.shared_data import SharedData

DRIVER_CPUS = 1.0  # the trial's own process: starts the Train run, relays reports and checkpoints
_POLL_SECONDS = 1.0


def driver_resources() -> tune.PlacementGroupFactory:
    """The Tune trial's request: the driver's bundle only (Train reserves the workers' bundles)."""
    return tune.PlacementGroupFactory([{"CPU": DRIVER_CPUS}])


def worker_resources(cpus_per_worker: float, gpus_per_worker: float) -> dict[str, float]:
    resources = {"CPU": float(cpus_per_worker)}
    if gpus_per_worker:
        resources["GPU"] = float(gpus_per_worker)
    return resources


def train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: `run_training` as rank `world_rank` of the data-parallel group."""
    import ray.train
    import ray.train.torch
    import torch

    from scolio_core.training.loop import run_training
    from scolio_core.training.parallel import DataParallel
    from scolio_sweep.trainables._tune_report import local_workdir
    from scolio_sweep.trainables.shared_data import trial_data
    from scolio_sweep.trainables.system_metrics import SystemMetricsSampler

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    experiment = trial_experiment_config(loop_config["config"])
    device = torch.device("cpu") if experiment.train.device == "cpu" else ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # nccl collectives (all_gather_object) use the current device
    # Only rank 0's reports reach Tune (RelayToTune), so only rank 0 samples: its node holds its device.
    with SystemMetricsSampler(loop_config.get("system_metrics_interval_s") if rank == 0 else None) as sampler:
        data = trial_data(experiment, loop_config["split"], loop_config.get("shared"))

        def report(metrics: dict, checkpoint_dir) -> None:
            # Every rank reports at every evaluation (Ray Train's report is a barrier); only rank 0 has a checkpoint.
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
            ray.train.report({**metrics, **sampler.take()}, checkpoint=checkpoint)

        restored = ray.train.get_checkpoint()
        workdir = local_workdir()
        try:
            with (restored.as_directory() if restored is not None else contextlib.nullcontext()) as resume_from:
                run_training(experiment, data, workdir, report, resume_from=resume_from,
                             provenance={"trainable": "data_parallel", "workers": world_size, **(loop_config.get("ledger") or {})},
                             parallel=DataParallel(rank=rank, world_size=world_size, device=device),
                             select_metric=loop_config.get("select_metric", names.DEFAULT_METRIC))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


class RelayToTune(ray.train.UserCallback):
    """Train callback (runs in the Train controller): hands rank 0's metrics and the persisted checkpoint
    to the Tune trial through a queue of size one, so Train waits while the trial forwards a report."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        self.queue.put((dict(metrics[0]), checkpoint))


def _forward(metrics: dict, checkpoint) -> None:
    """`tune.report` one relayed result; the checkpoint moves from the Train run into the trial's storage."""
    if checkpoint is None:
        tune.report(metrics)
        return
    local = tempfile.mkdtemp(prefix="scolio-relay-")
    try:
        checkpoint.to_directory(local)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(local))  # copied before it returns
    finally:
        shutil.rmtree(local, ignore_errors=True)
        # Tune now owns a copy; the Train run's copy would only double the storage.
        with contextlib.suppress(Exception):
            checkpoint.filesystem.delete_dir(checkpoint.path)


def data_parallel_trainable(workers: int, cpus_per_worker: float = 1.0,
                            gpus_per_worker: float = 0.0) -> Callable[..., None]:
    """A Tune function trainable `(config, split, shared=None, system_metrics_interval_s=None)` whose trials train
    on `workers` Ray Train workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    def train_data_parallel(config: dict, split: TrainValSplit, shared: SharedData | None = None,
                            system_metrics_interval_s: float | None = None,
                            select_metric: str = names.DEFAULT_METRIC, ledger: dict | None = None) -> None:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
        from ray.util.queue import Empty, Queue

        experiment = trial_experiment_config(config)
        on_gpu = bool(gpus_per_worker) and experiment.train.device != "cpu"
        queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        storage = tune.get_context().get_storage()
        restored = tune.get_checkpoint()
        # A fresh Train run name per attempt: Tune owns resume (from its checkpoint), never Train.
        run_name = f"ddp-{uuid.uuid4().hex[:8]}"
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"config": experiment.to_flat(), "split": split, "shared": shared,
                               "system_metrics_interval_s": system_metrics_interval_s,
                               "select_metric": select_metric, "ledger": ledger},
            torch_config=TorchConfig(backend="nccl" if on_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=on_gpu,
                                         resources_per_worker=worker_resources(cpus_per_worker,
                                                                               gpus_per_worker if on_gpu else 0)),
            run_config=RunConfig(name=run_name, storage_path=storage.trial_fs_path,
                                 storage_filesystem=storage.storage_filesystem,
                                 callbacks=[RelayToTune(queue)], failure_config=FailureConfig(max_failures=0),
                                 checkpoint_config=CheckpointConfig()),
            resume_from_checkpoint=None if restored is None else ray.train.Checkpoint(
                path=restored.path, filesystem=restored.filesystem))

        outcome: dict[str, BaseException] = {}

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the trial's thread below
                outcome["error"] = exc

        runner = threading.Thread(target=fit, name="scolio-train-fit", daemon=True)
        runner.start()
        try:
            # The callback's put returns before fit() can, so once the runner is gone the queue holds
            # everything still to forward.
            while runner.is_alive() or not queue.empty():
                try:
                    metrics, checkpoint = queue.get(timeout=_POLL_SECONDS)
                except Empty:
                    continue
                _forward(metrics, checkpoint)
            runner.join()
            if "error" in outcome:
                raise outcome["error"]
        finally:
            with contextlib.suppress(Exception):
                storage.storage_filesystem.delete_dir(f"{storage.trial_fs_path}/{run_name}")
            with contextlib.suppress(Exception):
                queue.shutdown()

    train_data_parallel.__qualname__ = train_data_parallel.__name__
    return train_data_parallel
