"""Checkpoint (or seed ensemble) → predictions: the one load-and-predict path behind `scolio eval`, `scolio
predict`, the test lockbox, the registered MLflow model and a finetune's warm-start score.

The device is `config.train.device`; PAVs are normalised with the statistics the checkpoint fitted on its own
training ids. An ensemble's logits are the mean of its members' logits, each member normalising PAVs with its
own statistics (scolio_core/training/ensemble.py). Contract checks are the caller's job
(scolio_core/evaluation/contract.py), before this runs.
"""

from __future__ import annotations

import numpy as np

from scolio_core.config import ExperimentConfig
from scolio_core.data.release import SequenceSet, load_pose, load_silhouette
from scolio_core.render.impute import impute_missing
from scolio_core.render.pav import compute_pav
from scolio_core.training.batches import load_sequence_set
from scolio_core.training.checkpoint import Checkpoint
from scolio_core.training.ensemble import Ensemble
from scolio_core.training.inference import (
    Predictions,
    checkpoint_pav,
    load_model,
    pick_device,
    predict_sequences,
)


def predict_checkpoint(checkpoint: Checkpoint | Ensemble, config: ExperimentConfig,
                       ids: list[str] | tuple[str, ...]) -> Predictions:
    """Load the sequences `ids` from `config.data` and predict them with `checkpoint` (or an ensemble)."""
    sequences, raw_pav = load_sequence_set(config, ids)
    return predict_loaded(checkpoint, config, sequences, raw_pav)


def predict_loaded(model: Checkpoint | Ensemble, config: ExperimentConfig, sequences: SequenceSet,
                   raw_pav: np.ndarray | None) -> Predictions:
    """Predict already-loaded `sequences` (`raw_pav`: their un-normalised PAVs, None for a model without)."""
    device = pick_device(config.train.device)
    # One member's network at a time: an ensemble costs its members' time, not their memory at once.
    runs = [predict_sequences(load_model(member, device), sequences, config, device, checkpoint_pav(member, raw_pav))
            for member in (model.members if isinstance(model, Ensemble) else (model,))]
    if isinstance(model, Checkpoint):
        return runs[0]
    logits = np.stack([run.logits for run in runs]).mean(axis=0, dtype=np.float64).astype(np.float32)
    return Predictions(ids=runs[0].ids, labels=runs[0].labels, logits=logits)


def load_files(config: ExperimentConfig, paths: list[str]) -> tuple[SequenceSet, np.ndarray | None]:
    """Unlabelled pose or silhouette pkl files (the checkpoint's modality) as a SequenceSet with raw PAVs;
    ids are the paths. Every file is read and checked before any inference runs."""
    loader = load_pose if config.input.modality == "skeleton" else load_silhouette
    return sequences_from_arrays(config, [loader(path) for path in paths], list(paths))


def sequences_from_arrays(config: ExperimentConfig, arrays: list[np.ndarray],
                          ids: list[str]) -> tuple[SequenceSet, np.ndarray | None]:
    """Checked, unlabelled pose (float32) or silhouette (uint8) arrays of the checkpoint's modality as a
    SequenceSet with raw PAVs: the preprocessing every input gets before inference (missing joints imputed
    for poses, PAVs computed for a model that takes them). Shared by `scolio predict` and the MLflow model."""
    if config.input.modality == "skeleton":
        arrays = [impute_missing(a, k=config.input.impute_neighbors) for a in arrays]
    lengths = np.asarray([len(a) for a in arrays])
    sequences = SequenceSet(ids=list(ids),
                            labels=np.zeros(len(arrays), dtype=np.int64), frames=np.concatenate(arrays),
                            offsets=np.concatenate([[0], np.cumsum(lengths)]))
    raw_pav = np.stack([compute_pav(a) for a in arrays]) if config.model.needs_pav else None
    return sequences, raw_pav


def class_probabilities(predictions: Predictions, config: ExperimentConfig) -> np.ndarray:
    """(n, 3) class probabilities: softmax of the cosine logits at the loss's scale (what training optimised)."""
    import torch

    return torch.softmax(torch.from_numpy(predictions.logits) * config.loss.scale, dim=1).numpy()
