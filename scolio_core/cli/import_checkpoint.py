"""Convert an OpenGait or DRF-author checkpoint into a scoliotune checkpoint.

    scolio import-checkpoint --format opengait ScoNet-20000.pt runs/imported/sconet \
        --alignment opengait --representation silhouette --partition Scoliosis1K_112.json

A foreign file carries weights but not the preprocessing they expect, so the user states the render
preset (representation, alignment, sigma) and the partition; these become the checkpoint's contract and
later evaluations are checked against it. The file is read with `torch.load(weights_only=True)` only,
after the bounded reader has checked that it is a regular file of at most 512 MiB; a refusal is one line
naming what was refused (never torch's advice to retry with weights_only=False).
OUT_DIR must be new, empty, or a checkpoint scoliotune wrote: it carries scoliotune's marker file and its
hashes verify (then it is replaced atomically). Any other existing path, such as a look-alike folder with a
`hashes.json` and a `weights.pt` of its own, is refused and left untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scolio_core.config import ALIGNMENTS, REPRESENTATIONS

FORMATS = ("opengait", "drf-author")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, required=True,
                        help="opengait: OpenGait ScoNet; drf-author: the DRF authors' checkpoint")
    parser.add_argument("input", metavar="IN", help="foreign checkpoint file (.pt)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="scoliotune checkpoint directory to write")
    parser.add_argument("--alignment", choices=ALIGNMENTS, required=True,
                        help="skeleton-map crop the weights were trained with")
    parser.add_argument("--representation", choices=REPRESENTATIONS, required=True,
                        help="input representation the weights were trained with")
    parser.add_argument("--partition", required=True, metavar="FILE.json",
                        help="partition JSON the weights were trained on")
    parser.add_argument("--sigma", type=float, default=None,
                        help="skeleton-map Gaussian sigma in canvas px (default 8.0, as InputConfig)")
    parser.add_argument("--width", type=int, default=64, help="backbone stem width of the weights (default 64)")


def run(args: argparse.Namespace) -> int:
    from scolio_core.config import ExperimentConfig
    from scolio_core.data.splits import load_partition
    from scolio_core.errors import ContractError
    from scolio_core.models import create_model
    from scolio_core.models.foreign import (
        convert_drf_author_state,
        convert_opengait_state,
        load_foreign_state,
    )
    from scolio_core.training.checkpoint import ensure_replaceable, load_tensors, write_checkpoint

    source = Path(args.input)
    ensure_replaceable(args.out_dir)  # refuse a user's directory before any work (write_checkpoint checks again)
    partition_path = Path(args.partition).resolve()
    partition = load_partition(partition_path)
    values = {
        "data.partition": str(partition_path),
        "input.representation": args.representation,
        "input.alignment": args.alignment,
        "model.name": "drf" if args.format == "drf-author" else "sconet",
        "model.width": args.width,
    }
    if args.sigma is not None:
        values["input.sigma"] = args.sigma
    config = ExperimentConfig.from_dict(values)

    # The bounded, weights-only load first: its refusal of a hostile file is one clean line. load_foreign_state
    # (models/foreign.py) then reads the file again to pick the state dict out of it.
    load_tensors(source, follow_symlinks=True)
    foreign, iteration = load_foreign_state(source)
    convert = convert_drf_author_state if args.format == "drf-author" else convert_opengait_state
    state = convert(foreign)
    # The weights fix the input channels and width; they must agree with what the user stated.
    expected = create_model(config.model, config.input.in_channels).state_dict()
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ContractError(
                f"{source}: {key} has shape {list(state[key].shape)} but --representation "
                f"{args.representation} (in_channels {config.input.in_channels}) and --width {args.width} "
                f"need {list(tensor.shape)}")
    out = write_checkpoint(Path(args.out_dir), config=config, model_state=state, split=None, pav_stats=None,
                           iteration=iteration,
                           provenance={"imported_from": str(source.resolve()), "format": args.format,
                                       "partition": partition.name})
    print(f"imported {source} ({args.format}, iteration {iteration}) -> {out}")
    print(f"contract: representation={args.representation} alignment={args.alignment} "
          f"sigma={config.input.sigma} partition={partition.name} model={config.model.name}")
    return 0
