"""Predict classes for pose/silhouette pkl files with a checkpoint.

    scolio predict --checkpoint DIR seq1.pkl seq2.pkl --json

DIR is a checkpoint directory or a seed ensemble directory (scolio_core/training/ensemble.py: the mean of its
members' logits).
"""

from __future__ import annotations

import argparse
import json

from scolio_core import CLASS_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint directory, or a seed ensemble directory")
    parser.add_argument("files", nargs="+", metavar="FILE.pkl",
                        help="pose (T, 17, 3) or silhouette (T, 64, 64) pkl files, matching the checkpoint's modality")
    parser.add_argument("--json", action="store_true", help="print predictions as JSON")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto uses CUDA when present (default auto)")


def run(args: argparse.Namespace) -> int:
    from scolio_core.evaluation.predict import class_probabilities, load_files, predict_loaded
    from scolio_core.training.ensemble import read_model

    checkpoint = read_model(args.checkpoint)
    config = checkpoint.config.replace(**{"train.device": args.device})
    predictions = predict_loaded(checkpoint, config, *load_files(config, args.files))
    probs = class_probabilities(predictions, config)
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
