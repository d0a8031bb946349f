"""Whole-sequence inference: packed ragged batches of all (capped) frames, one prediction per sequence.

Shared by the training loop's validation and, through scolio_core/evaluation/predict.py, `scolio eval`,
`scolio predict`, the test lockbox and a finetune's warm-start score, so every number comes from one code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scolio_core.config import ExperimentConfig
from scolio_core.data.release import SequenceSet
from scolio_core.training.batches import frames_to_model_input, iter_eval_batches
from scolio_core.training.metrics import classification_metrics


@dataclass
class Predictions:
    ids: list[str]
    labels: np.ndarray  # (n,) true labels
    logits: np.ndarray  # (n, 3) part-mean cosine logits

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def metrics(self) -> dict:
        return classification_metrics(self.labels, self.predicted)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@torch.no_grad()
def predict_sequences(model: torch.nn.Module, sequences: SequenceSet, config: ExperimentConfig,
                      device: torch.device, pav: np.ndarray | None = None) -> Predictions:
    """Part-mean logits for every sequence; `pav` is the already-normalised (n, 8, 3) array for DRF."""
    was_training = model.training
    model.eval()
    logits: list[np.ndarray] = []
    use_amp = device.type == "cuda" and config.train.amp
    for start, frames, lengths in iter_eval_batches(sequences, config.train.eval_batch_size,
                                                     config.train.max_eval_frames):
        x = frames_to_model_input(torch.from_numpy(frames).to(device), config.input)
        batch_pav = None if pav is None else torch.from_numpy(pav[start:start + len(lengths)]).to(device)
        with torch.autocast(device.type, enabled=use_amp):
            out = model(x, torch.from_numpy(lengths).to(device), batch_pav)
        logits.append(out["logits"].float().mean(dim=2).cpu().numpy())
    model.train(was_training)
    return Predictions(ids=list(sequences.ids), labels=np.asarray(sequences.labels),
                       logits=np.concatenate(logits) if logits else np.zeros((0, 3), np.float32))


def load_model(checkpoint, device: torch.device) -> torch.nn.Module:
    """Build the checkpoint's model and load its weights (strict)."""
    from scolio_core.models import create_model

    cfg = checkpoint.config
    model = create_model(cfg.model, cfg.input.in_channels)
    model.load_state_dict(checkpoint.model_state, strict=True)
    return model.to(device).eval()


def checkpoint_pav(checkpoint, raw_pav: np.ndarray | None) -> np.ndarray | None:
    """Normalise raw PAVs with the statistics fitted on the checkpoint's training ids."""
    if raw_pav is None:
        return None
    if not checkpoint.contract.get("pav_stats"):
        from scolio_core.errors import ContractError

        raise ContractError(f"{checkpoint.directory}: a DRF checkpoint without PAV normalisation statistics "
                            "(imported?); its contract must carry the stats fitted on its training ids")
    from scolio_core.render.pav import PAVNormalizer

    return PAVNormalizer.from_dict(checkpoint.contract["pav_stats"]).transform(raw_pav).astype(np.float32)
