"""The training loop: one plain function, no Ray inside.

`run_training` trains on `data.train`, evaluates on `data.val` every `train.eval_every` iterations, writes a
contract-carrying checkpoint and hands (metrics, checkpoint_dir) to `report` — the only way results leave
the loop. Tune trainables and `scolio train` are thin adapters around it. Resuming from one of its own
checkpoints restores model, optimiser, scheduler, sampler RNG and iteration, so an interrupted CPU run ends
bit-identical to an uninterrupted one.

Data-parallel training (`parallel=DataParallel(...)`): the loop is the same; where the ranks differ (batch
share, per-rank RNG streams, DDP wrapping, loss averaging, rank 0 alone evaluating and checkpointing) is
scolio_core/training/parallel.py, called through a few hooks that are no-ops for a single process.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scolio_core import names
from scolio_core.config import ExperimentConfig, TrainConfig
from scolio_core.errors import ContractError
from scolio_core.models import create_model
from scolio_core.models.losses import ScoNetLoss, class_weights_for
from scolio_core.render.pav import PAVNormalizer
from scolio_core.training.batches import (
    BatchSampler,
    TrainValData,
    frames_to_model_input,
)
from scolio_core.training.checkpoint import prune_checkpoints, read_checkpoint, write_checkpoint
from scolio_core.training.inference import pick_device, predict_sequences
from scolio_core.training.metrics import flatten_metrics
from scolio_core.training.parallel import DataParallel, SingleProcess

Report = Callable[[dict, "Path | None"], None]


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
                 provenance: dict | None = None, parallel: DataParallel | None = None,
                 select_metric: str = names.DEFAULT_METRIC) -> TrainResult:
    """Train `config` on `data`; see the module docstring. `initial_model_state` warm-starts (finetune);
    `parallel` makes this process one rank of a data-parallel run (scolio_core/training/parallel.py).
    `select_metric` picks the best checkpoint (`TrainResult.best_*`, kept on disk beside the latest): one of
    `names.SELECTABLE_METRICS`, validation scores only, higher is better; a sweep passes its profile's metric."""
    names.check_metric_name(select_metric)  # before any work: a typo would otherwise fail at the first evaluation
    cfg = config.train
    workdir = Path(workdir)
    ranks = parallel or SingleProcess()
    batch_ids = ranks.batch_ids(cfg.batch_ids)  # this process's share of the P ids; checked before any work
    device = ranks.device or pick_device(cfg.device)
    seed_everything(cfg.seed)
    model = create_model(config.model, config.input.in_channels).to(device)
    if initial_model_state is not None:
        model.load_state_dict(initial_model_state, strict=True)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp)
    sampler = BatchSampler(data.train, batch_ids, cfg.batch_samples, cfg.frames,
                           balanced=cfg.sampler == "balanced", seed=ranks.sampler_seed(cfg.seed))
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
        start = _resume(resume_from, model, optimizer, scheduler, scaler, sampler, ranks, result)
    train_model = ranks.wrap(model, device)  # after any state is loaded
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
        train_metrics = {names.split_metric(names.SPLIT_TRAIN, k): v / steps_since_eval
                         for k, v in ranks.mean(running, device).items()}
        step_seconds = step_time / steps_since_eval
        running = dict.fromkeys(running, 0.0)
        steps_since_eval, step_time = 0, 0.0
        rank_state = ranks.gather_state(sampler)  # a collective in data-parallel runs: every rank calls it
        result.iterations = done
        if not ranks.lead:  # another rank evaluates and checkpoints; this one reports its train metrics
            report(train_metrics | {names.METRIC_ITERATION: done}, None)
            continue

        predictions = predict_sequences(model, data.val, config, device, val_pav)
        metrics = flatten_metrics(predictions.metrics(), names.SPLIT_VAL)
        metrics.update(train_metrics)
        metrics.update({names.METRIC_ITERATION: done, names.METRIC_LR: optimizer.param_groups[0]["lr"],
                        names.METRIC_TRAIN_STEP_SECONDS: step_seconds})
        ckpt_dir = workdir / "checkpoints" / f"iter_{done:07d}"
        if metrics[select_metric] > result.best_metrics.get(select_metric, -1.0):
            result.best_metrics, result.best_checkpoint = dict(metrics), ckpt_dir
        training_state = {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "sampler": sampler.state_dict(),
            "torch_rng": torch.get_rng_state(), "iteration": done,
            "best_metrics": result.best_metrics,
            "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else "",
        } | rank_state
        write_checkpoint(ckpt_dir, config=config, model_state=model.state_dict(), split=data.split,
                         pav_stats=pav_stats, iteration=done, training_state=training_state,
                         provenance=provenance, metrics=metrics)
        result.last_checkpoint = ckpt_dir
        report(metrics, ckpt_dir)
        # Keep only the best and the latest checkpoint on local disk; only folders scoliotune wrote are removed.
        prune_checkpoints(ckpt_dir.parent, keep=(ckpt_dir, result.best_checkpoint))
    result.iterations = max(result.iterations, start)
    return result


def _resume(resume_from: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, sampler: BatchSampler,
            ranks: SingleProcess | DataParallel, result: TrainResult) -> int:
    """Restore everything a checkpoint's training state holds (best-so-far into `result`); returns its iteration."""
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
    ranks.restore(state, sampler)  # data-parallel: this rank's own streams
    result.best_metrics = dict(state.get("best_metrics", {}))
    best_path = state.get("best_checkpoint")
    result.best_checkpoint = Path(best_path) if best_path else None
    return int(state["iteration"])
