"""The training loop: one plain function, no Ray inside.

`run_training` trains on `data.train`, evaluates on `data.val` every `train.eval_every` iterations, writes a
contract-carrying checkpoint and hands (metrics, checkpoint_dir) to `report` — the only way results leave
the loop. Tune trainables and `scolio train` are thin adapters around it. Resuming from one of its own
checkpoints restores model, optimiser, scheduler, sampler RNG and iteration, so an interrupted CPU run ends
bit-identical to an uninterrupted one.

Data-parallel training (`parallel=DataParallel(...)`, torch.distributed already initialised by the caller,
e.g. a Ray Train worker): the model is wrapped in DistributedDataParallel, each rank draws its own share of
the P×K batch from its own sampler stream, and only rank 0 evaluates on val and writes checkpoints; every
rank still calls `report` at each evaluation (the other ranks with train metrics and no checkpoint), since
data-parallel reporting APIs expect all workers to report the same number of times.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from scolio_core.config import ExperimentConfig, TrainConfig
from scolio_core.errors import ConfigError, ContractError
from scolio_core.models import create_model
from scolio_core.models.losses import ScoNetLoss, class_weights_for
from scolio_core.render.pav import PAVNormalizer
from scolio_core.training.batches import (
    BatchSampler,
    TrainValData,
    frames_to_model_input,
)
from scolio_core.training.checkpoint import read_checkpoint, write_checkpoint
from scolio_core.training.inference import pick_device, predict_sequences
from scolio_core.training.metrics import flatten_metrics

Report = Callable[[dict, "Path | None"], None]
SELECTION_METRIC = "val/macro_f1"  # model selection uses validation metrics only


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run; `device` is the one the launcher assigned to it."""

    rank: int
    world_size: int
    device: torch.device | None = None

    def batch_ids(self, total: int) -> int:
        """This rank's share of the P ids of a batch (the remainder goes to the lowest ranks)."""
        return total // self.world_size + (self.rank < total % self.world_size)


@dataclass
class TrainResult:
    iterations: int
    best_metrics: dict = field(default_factory=dict)
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, iteration: int) -> float:
    """Multiplier of cfg.lr at `iteration` (0-based step about to run)."""
    if cfg.warmup_iterations and iteration < cfg.warmup_iterations:
        return (iteration + 1) / cfg.warmup_iterations
    if cfg.scheduler == "multistep":
        return cfg.gamma ** sum(iteration >= m for m in cfg.milestones)
    span = max(1, cfg.iterations - cfg.warmup_iterations)
    progress = min(1.0, (iteration - cfg.warmup_iterations) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.scheduler == "multistep" and not cfg.warmup_iterations:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step))


def run_training(config: ExperimentConfig, data: TrainValData, workdir: str | Path, report: Report,
                 resume_from: str | Path | None = None,
                 initial_model_state: dict[str, torch.Tensor] | None = None,
                 provenance: dict | None = None, parallel: DataParallel | None = None) -> TrainResult:
    """Train `config` on `data`; see the module docstring. `initial_model_state` warm-starts (finetune);
    `parallel` makes this process one rank of a data-parallel run."""
    cfg = config.train
    workdir = Path(workdir)
    if parallel is not None and cfg.batch_ids < parallel.world_size:
        raise ConfigError(f"train.batch_ids={cfg.batch_ids} cannot be split over {parallel.world_size} "
                          "data-parallel workers (each needs at least one id)")
    device = parallel.device if parallel is not None and parallel.device is not None else pick_device(cfg.device)
    lead = parallel is None or parallel.rank == 0  # the process that evaluates and checkpoints
    seed_everything(cfg.seed)
    model = create_model(config.model, config.input.in_channels).to(device)
    if initial_model_state is not None:
        model.load_state_dict(initial_model_state, strict=True)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp)
    if parallel is None:
        sampler = BatchSampler(data.train, cfg.batch_ids, cfg.batch_samples, cfg.frames,
                               balanced=cfg.sampler == "balanced", seed=cfg.seed)
    else:  # each rank its own stream and its share of the P ids: together one P×K batch per step
        sampler = BatchSampler(data.train, parallel.batch_ids(cfg.batch_ids), cfg.batch_samples, cfg.frames,
                               balanced=cfg.sampler == "balanced", seed=[cfg.seed, parallel.rank])
    weights = class_weights_for(config.loss, data.train.labels)
    loss_fn = ScoNetLoss(config.loss, None if weights is None else weights.to(device))

    pav_stats, train_pav, val_pav = None, None, None
    if data.train_pav is not None:
        normalizer = PAVNormalizer().fit(data.train_pav)  # fitted on training ids only
        pav_stats = normalizer.to_dict()
        train_pav = torch.from_numpy(normalizer.transform(data.train_pav)).float().to(device)
        val_pav = normalizer.transform(data.val_pav).astype(np.float32)

    start, result = 0, TrainResult(iterations=0)
    if resume_from is not None:
        checkpoint = read_checkpoint(resume_from)
        state = checkpoint.training_state()
        if state is None:
            raise ContractError(f"{resume_from}: has no training state to resume from")
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if parallel is not None:
            _restore_rank_state(state, sampler, parallel)
        start = int(state["iteration"])
        result.best_metrics = dict(state.get("best_metrics", {}))
        best_path = state.get("best_checkpoint")
        result.best_checkpoint = Path(best_path) if best_path else None

    train_model = model
    if parallel is not None:
        # After any state is loaded: DDP broadcasts rank 0's parameters and buffers when it wraps.
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    model.train()
    running = {"loss": 0.0, "ce": 0.0, "triplet": 0.0, "triplet_nonzero": 0.0}
    steps_since_eval, step_time = 0, 0.0
    use_amp = device.type == "cuda" and cfg.amp
    for iteration in range(start, cfg.iterations):
        tick = time.perf_counter()
        frames, labels, seq_index = sampler.next_batch()
        n = len(labels)
        x = frames_to_model_input(torch.from_numpy(frames).to(device, non_blocking=True), config.input)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        lengths = torch.full((n,), cfg.frames, dtype=torch.long, device=device)
        batch_pav = None if train_pav is None else train_pav[torch.from_numpy(seq_index).to(device)]
        with torch.autocast(device.type, enabled=use_amp):
            outputs = train_model(x, lengths, batch_pav)
        loss, parts = loss_fn({k: v.float() for k, v in outputs.items()},
                              torch.from_numpy(labels).to(device), torch.from_numpy(seq_index).to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        running["loss"] += float(loss.detach())
        for key in ("ce", "triplet", "triplet_nonzero"):
            running[key] += float(parts[key])
        steps_since_eval += 1
        step_time += time.perf_counter() - tick

        done = iteration + 1
        if done % cfg.eval_every and done != cfg.iterations:
            continue
        if parallel is not None:
            running = _mean_over_ranks(running, parallel.world_size, device)
            rank_states = _gather_rank_states(sampler, parallel.world_size)
            if not lead:
                report({f"train/{k}": v / steps_since_eval for k, v in running.items()} | {"iteration": done},
                       None)
                running = dict.fromkeys(running, 0.0)
                steps_since_eval, step_time = 0, 0.0
                result.iterations = done
                continue
        predictions = predict_sequences(model, data.val, config, device, val_pav)
        metrics = flatten_metrics(predictions.metrics(), "val")
        metrics.update({f"train/{k}": v / steps_since_eval for k, v in running.items()})
        metrics.update({"iteration": done, "lr": optimizer.param_groups[0]["lr"],
                        "train/step_seconds": step_time / steps_since_eval})
        running = dict.fromkeys(running, 0.0)
        steps_since_eval, step_time = 0, 0.0

        is_best = metrics[SELECTION_METRIC] > result.best_metrics.get(SELECTION_METRIC, -1.0)
        ckpt_dir = workdir / "checkpoints" / f"iter_{done:07d}"
        if is_best:
            result.best_metrics, result.best_checkpoint = dict(metrics), ckpt_dir
        training_state = {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "sampler": sampler.state_dict(),
            "torch_rng": torch.get_rng_state(), "iteration": done,
            "best_metrics": result.best_metrics,
            "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else "",
        }
        if parallel is not None:
            training_state["rank_states"] = rank_states
        write_checkpoint(ckpt_dir, config=config, model_state=model.state_dict(), split=data.split,
                         pav_stats=pav_stats, iteration=done, training_state=training_state,
                         provenance=provenance, metrics=metrics)
        result.last_checkpoint, result.iterations = ckpt_dir, done
        report(metrics, ckpt_dir)
        # Keep only the best and the latest checkpoint on local disk.
        for old in ckpt_dir.parent.glob("iter_*"):
            if old not in (ckpt_dir, result.best_checkpoint):
                shutil.rmtree(old, ignore_errors=True)
    result.iterations = max(result.iterations, start)
    return result


def _mean_over_ranks(running: dict[str, float], world_size: int, device: torch.device) -> dict[str, float]:
    """Running loss sums averaged over the ranks, so rank 0 reports the loss of the whole batch."""
    import torch.distributed as dist

    values = torch.tensor(list(running.values()), dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return dict(zip(running, (values / world_size).tolist()))


def _gather_rank_states(sampler: BatchSampler, world_size: int) -> list[dict]:
    """Every rank's sampler and torch RNG state (rank order), so a resume continues each rank's stream."""
    import torch.distributed as dist

    states: list = [None] * world_size
    dist.all_gather_object(states, {"sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state()})
    return states


def _restore_rank_state(state: dict, sampler: BatchSampler, parallel: DataParallel) -> None:
    ranks = state.get("rank_states") or []
    if len(ranks) != parallel.world_size:
        # Resumed with another world size (or from a single-process checkpoint): fresh, distinct streams.
        sampler.rng = np.random.default_rng([int(state["iteration"]), parallel.rank, 1])
        return
    sampler.load_state_dict(ranks[parallel.rank]["sampler"])
    torch.set_rng_state(ranks[parallel.rank]["torch_rng"])
