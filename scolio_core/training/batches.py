"""Training and evaluation data: in-memory train/val sequences, P×K batches, model-ready frames.

Everything a trial needs is loaded once into compact arrays (`SequenceSet`); the loop never reads disk.
Skeleton maps are rendered per batch on the model's device, so render parameters are sweepable without
re-exporting files. This module only ever receives a `TrainValSplit`: it has no way to name a test id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scolio_core.config import ExperimentConfig, InputConfig
from scolio_core.data.release import SequenceSet, index_release, load_sequences
from scolio_core.data.splits import TrainValSplit
from scolio_core.render.impute import impute_missing
from scolio_core.render.pav import compute_pav
from scolio_core.render.skeleton import render_skeleton_maps


@dataclass
class TrainValData:
    """Train and val sequences of one modality (poses already imputed), plus raw PAVs for DRF."""

    split: TrainValSplit
    train: SequenceSet
    val: SequenceSet
    train_pav: np.ndarray | None  # (n_train, 8, 3), un-normalised
    val_pav: np.ndarray | None


def load_sequence_set(config: ExperimentConfig, ids: list[str] | tuple[str, ...]) -> tuple[SequenceSet, np.ndarray | None]:
    """Load `ids` for the config's modality; poses are imputed once here (not per batch)."""
    modality = config.input.modality
    root = config.data.modality_root(modality)
    index = index_release(root)
    transform = None
    if modality == "skeleton":
        k = config.input.impute_neighbors
        transform = lambda poses: impute_missing(poses, k=k)  # noqa: E731
    sequences = load_sequences(root, list(ids), modality, index=index, transform=transform)
    pav = None
    if config.model.needs_pav:
        pav = np.stack([compute_pav(sequences.sequence(i)) for i in range(len(sequences))]).astype(np.float32)
    return sequences, pav


def load_trainval(config: ExperimentConfig, split: TrainValSplit) -> TrainValData:
    train, train_pav = load_sequence_set(config, split.train)
    val, val_pav = load_sequence_set(config, split.val)
    return TrainValData(split=split, train=train, val=val, train_pav=train_pav, val_pav=val_pav)


def frames_to_model_input(frames: torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """Raw frames (poses (N, 17, 3) or silhouettes (N, 64, 64) uint8) -> model input (N, C, H, W) float."""
    if cfg.modality == "skeleton":
        return render_skeleton_maps(frames, cfg)
    crop = cfg.side_crop
    sil = frames.float().div_(255.0)
    if sil.shape[-1] != cfg.map_size or sil.shape[-2] != cfg.map_size:
        sil = torch.nn.functional.interpolate(sil.unsqueeze(1), size=(cfg.map_size, cfg.map_size),
                                              mode="area").squeeze(1)
    return sil[..., :, crop:cfg.map_size - crop].unsqueeze(1).contiguous()


class BatchSampler:
    """P×K batches: P sequence ids × K draws of `frames` unordered frames each.

    With one sequence per id (Scoliosis1K) the K samples of an id are different frame draws of the same
    sequence; the triplet loss uses the sequence index as identity. `balanced` draws the P ids class-balanced.
    All randomness comes from one numpy Generator whose state is saved in checkpoints (bit-exact resume).
    """

    def __init__(self, sequences: SequenceSet, batch_ids: int, batch_samples: int, frames: int,
                 balanced: bool, seed: int) -> None:
        self.sequences = sequences
        self.batch_ids = min(batch_ids, len(sequences))
        self.batch_samples = batch_samples
        self.frames = frames
        self.balanced = balanced
        self.rng = np.random.default_rng(seed)
        self.by_class = [np.flatnonzero(sequences.labels == c) for c in range(3)]

    def _choose_ids(self) -> np.ndarray:
        if not self.balanced:
            return self.rng.choice(len(self.sequences), size=self.batch_ids, replace=False)
        present = [members for members in self.by_class if len(members)]
        classes = self.rng.integers(0, len(present), size=self.batch_ids)
        chosen: list[int] = []
        for c in range(len(present)):
            want = int((classes == c).sum())
            if want:
                pool = present[c]
                chosen.extend(self.rng.choice(pool, size=want, replace=want > len(pool)).tolist())
        return np.asarray(chosen)

    def _frame_indices(self, length: int) -> np.ndarray:
        # Without replacement when the sequence is long enough, as OpenGait's fixed unordered sampler.
        return self.rng.choice(length, size=self.frames, replace=length < self.frames)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (frames (B*frames, ...), labels (B,), seq_index (B,)) with B = P*K."""
        seq_index = np.repeat(self._choose_ids(), self.batch_samples)
        offsets = self.sequences.offsets
        rows = np.concatenate([offsets[i] + self._frame_indices(int(offsets[i + 1] - offsets[i]))
                               for i in seq_index])
        return self.sequences.frames[rows], self.sequences.labels[seq_index], seq_index

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def eval_frame_indices(length: int, cap: int) -> np.ndarray:
    """All frames in order, or `cap` evenly spaced ordered frames for long sequences (deterministic)."""
    if length <= cap:
        return np.arange(length)
    return np.linspace(0, length - 1, cap).round().astype(np.int64)


def iter_eval_batches(sequences: SequenceSet, batch_size: int, cap: int):
    """Yield (start, frames (sum T, ...), lengths (n,)) packed ragged batches in sequence order."""
    for start in range(0, len(sequences), batch_size):
        stop = min(start + batch_size, len(sequences))
        chunks = [sequences.sequence(i)[eval_frame_indices(sequences.num_frames(i), cap)]
                  for i in range(start, stop)]
        yield start, np.concatenate(chunks), np.asarray([len(c) for c in chunks], dtype=np.int64)
