"""Where a training run's processes differ: the one place `run_training` learns about data parallelism.

`run_training` calls a few hooks on a *ranks* object; `SingleProcess` (the default) makes every hook a no-op,
`DataParallel` makes this process one rank of a data-parallel run (torch.distributed already initialised by
the caller, e.g. a Ray Train worker):

- `batch_ids` / `sampler_seed`: each rank draws its own share of the P×K batch from its own sampler stream;
- `restore`: a resume continues each rank's sampler and torch RNG stream;
- `wrap`: the model is wrapped in DistributedDataParallel (after any state is loaded);
- `mean`: the running loss sums are averaged over the ranks at each evaluation;
- `gather_state`: every rank's streams go into rank 0's checkpoint;
- `lead`: only rank 0 evaluates on val and writes checkpoints. The other ranks still report (train metrics,
  no checkpoint) at every evaluation, since data-parallel reporting APIs expect every worker to report the
  same number of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scolio_core.errors import ConfigError
from scolio_core.training.batches import BatchSampler


class SingleProcess:
    """The default: one process trains, evaluates and checkpoints; every hook leaves things as they are."""

    device: torch.device | None = None  # None: the loop picks one from train.device
    lead = True

    def batch_ids(self, total: int) -> int:
        return total

    def sampler_seed(self, seed: int) -> int:
        return seed

    def restore(self, state: dict, sampler: BatchSampler) -> None:
        pass

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        return model

    def mean(self, sums: dict[str, float], device: torch.device) -> dict[str, float]:
        return sums

    def gather_state(self, sampler: BatchSampler) -> dict:
        return {}


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run; `device` is the one the launcher assigned to it."""

    rank: int
    world_size: int
    device: torch.device | None = None

    @property
    def lead(self) -> bool:
        """Rank 0 evaluates, checkpoints and reports val metrics."""
        return self.rank == 0

    def batch_ids(self, total: int) -> int:
        """This rank's share of the P ids of a batch (the remainder goes to the lowest ranks)."""
        if total < self.world_size:
            raise ConfigError(f"train.batch_ids={total} cannot be split over {self.world_size} "
                              "data-parallel workers (each needs at least one id)")
        return total // self.world_size + (self.rank < total % self.world_size)

    def sampler_seed(self, seed: int) -> list[int]:
        return [seed, self.rank]  # each rank its own stream: together one P×K batch per step

    def restore(self, state: dict, sampler: BatchSampler) -> None:
        """Continue this rank's sampler and torch RNG streams from a checkpoint's `rank_states`."""
        ranks = state.get("rank_states") or []
        if len(ranks) != self.world_size:
            # Resumed with another world size (or from a single-process checkpoint): fresh, distinct streams.
            sampler.rng = np.random.default_rng([int(state["iteration"]), self.rank, 1])
            return
        sampler.load_state_dict(ranks[self.rank]["sampler"])
        torch.set_rng_state(ranks[self.rank]["torch_rng"])

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        # DDP broadcasts rank 0's parameters and buffers when it wraps, so any state must be loaded before.
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index or 0] if device.type == "cuda" else None)

    def mean(self, sums: dict[str, float], device: torch.device) -> dict[str, float]:
        """Running loss sums averaged over the ranks, so every rank reports the loss of the whole batch."""
        import torch.distributed as dist

        values = torch.tensor(list(sums.values()), dtype=torch.float64, device=device)
        dist.all_reduce(values)
        return dict(zip(sums, (values / self.world_size).tolist()))

    def gather_state(self, sampler: BatchSampler) -> dict:
        """Every rank's sampler and torch RNG state (rank order), for rank 0's checkpoint; a collective."""
        import torch.distributed as dist

        states: list = [None] * self.world_size
        dist.all_gather_object(states, {"sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state()})
        return {"rank_states": states}
