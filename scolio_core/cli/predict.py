"""Predict classes for pose/silhouette pkl files with a checkpoint.

    scolio predict --checkpoint DIR seq1.pkl seq2.pkl --json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from scolio_core import CLASS_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    parser.add_argument("files", nargs="+", metavar="FILE.pkl",
                        help="pose (T, 17, 3) or silhouette (T, 64, 64) pkl files, matching the checkpoint's modality")
    parser.add_argument("--json", action="store_true", help="print predictions as JSON")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto uses CUDA when present (default auto)")


def run(args: argparse.Namespace) -> int:
    import torch

    from scolio_core.data.release import SequenceSet, load_pose, load_silhouette
    from scolio_core.render.impute import impute_missing
    from scolio_core.render.pav import compute_pav
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.inference import (
        checkpoint_pav,
        load_model,
        pick_device,
        predict_sequences,
    )

    checkpoint = read_checkpoint(args.checkpoint)
    config = checkpoint.config.replace(**{"train.device": args.device})
    skeleton = config.input.modality == "skeleton"
    arrays = []
    for path in args.files:  # every file is checked before any inference runs
        if skeleton:
            arrays.append(impute_missing(load_pose(path), k=config.input.impute_neighbors))
        else:
            arrays.append(load_silhouette(path))
    lengths = np.asarray([len(a) for a in arrays])
    sequences = SequenceSet(ids=list(args.files), labels=np.zeros(len(arrays), dtype=np.int64),
                            frames=np.concatenate(arrays), offsets=np.concatenate([[0], np.cumsum(lengths)]))
    raw_pav = np.stack([compute_pav(a) for a in arrays]) if config.model.needs_pav else None
    device = pick_device(args.device)
    predictions = predict_sequences(load_model(checkpoint, device), sequences, config, device,
                                    checkpoint_pav(checkpoint, raw_pav))
    probs = torch.softmax(torch.from_numpy(predictions.logits) * config.loss.scale, dim=1).numpy()
    out = {path: {"class": CLASS_NAMES[int(k)],
                  "logits": dict(zip(CLASS_NAMES, map(float, logit))),
                  "probabilities": dict(zip(CLASS_NAMES, map(float, prob)))}
           for path, k, logit, prob in zip(args.files, predictions.predicted, predictions.logits, probs)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for path, row in out.items():
            p = "  ".join(f"{n} {row['probabilities'][n]:.3f}" for n in CLASS_NAMES)
            print(f"{path}: {row['class']}  ({p})")
    return 0
