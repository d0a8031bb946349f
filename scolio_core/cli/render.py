"""Export skeleton maps as (T, 2, 64, 64) uint8 pkl files in OpenGait's heatmap layout.

Run: scolio render /data/Scoliosis1K/Scoliosis1K-pose-pkl /data/maps --alignment opengait \\
         --representation full-body --ids-from Scoliosis1K_118.json

Writes OUT/<id>/<class>/<view>/<view>.pkl (channel 0 limbs, channel 1 joints) with the same renderer that
training uses on the fly, and OUT/render_config.json with every parameter used. Uses CUDA when present.
Every listed pose file is checked before anything is written. Every file read is bounded: pose files must
resolve inside ROOT_POSE (`load_pose(..., root=)`), and the
`--ids-from` list is read with `load_json_bounded` (a regular file, size and value count capped), so a link
out of the root, /dev/zero or a FIFO is a one-line error rather than a render, 3 GB or a hang.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
from pathlib import Path

import torch
from tqdm import tqdm

from scolio_core import __version__
from scolio_core.config import ALIGNMENTS, SKELETON_REPRESENTATIONS, InputConfig
from scolio_core.data.bounded import load_json_bounded
from scolio_core.data.release import index_release, load_pose, sequence_lengths
from scolio_core.errors import ConfigError, DataError
from scolio_core.render.impute import impute_missing
from scolio_core.render.skeleton import render_skeleton_maps

# InputConfig fields that change exported files (side_crop and dtype only shape the model input).
EXPORT_FIELDS = ("representation", "sigma", "joint_weight", "confidence_weighting", "min_confidence",
                 "impute_neighbors", "canvas_size", "alignment", "map_size")
# An id list is a partition or a plain list (~1,500 ids, ~30 KB); these are ~70x that.
MAX_ID_LIST_BYTES = 2 * 1024 * 1024
MAX_ID_LIST_VALUES = 200_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = InputConfig()
    parser.add_argument("root", type=Path, metavar="ROOT_POSE", help="pose root: <id>/<class>/<view>/<file>.pkl")
    parser.add_argument("out", type=Path, metavar="OUT", help="output root for the map pkl files")
    parser.add_argument("--representation", choices=SKELETON_REPRESENTATIONS, default=d.representation,
                        help="which joints and limbs are drawn (%(default)s)")
    parser.add_argument("--sigma", type=float, default=d.sigma, help="Gaussian width in canvas pixels (%(default)s)")
    parser.add_argument("--joint-weight", type=float, default=d.joint_weight,
                        help="joint-channel peak relative to limbs (%(default)s)")
    parser.add_argument("--confidence-weighting", action=argparse.BooleanOptionalAction,
                        default=d.confidence_weighting, help="scale Gaussians by keypoint confidence")
    parser.add_argument("--min-confidence", type=float, default=d.min_confidence,
                        help="joints below this confidence are not drawn (%(default)s)")
    parser.add_argument("--impute-neighbors", type=int, default=d.impute_neighbors,
                        help="k of the kNN imputation of missing keypoints (%(default)s)")
    parser.add_argument("--canvas-size", type=int, default=d.canvas_size, help="drawing canvas (%(default)s)")
    parser.add_argument("--alignment", choices=ALIGNMENTS, default=d.alignment,
                        help="aligned: one crop box; opengait: per-channel crops as OpenGait (%(default)s)")
    parser.add_argument("--map-size", type=int, default=d.map_size, help="exported map side (%(default)s)")
    parser.add_argument("--ids-from", type=Path, metavar="P.json",
                        help="only these ids: a JSON list, or an object of id lists (e.g. a partition)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to render; auto uses CUDA when present (auto)")


def _ids_from(path: Path) -> list[str]:
    values = load_json_bounded(path, MAX_ID_LIST_BYTES, max_values=MAX_ID_LIST_VALUES, max_depth=2)
    lists = values.values() if isinstance(values, dict) else [values]
    ids: list[str] = []
    for item in lists:
        if not isinstance(item, list) or not all(isinstance(i, str) for i in item):
            raise DataError(f"{path}: expected a list of id strings or an object whose values are such lists")
        ids.extend(item)
    return sorted(set(ids))


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda given but CUDA is not available")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def run(args: argparse.Namespace) -> int:
    cfg = InputConfig(**{name: getattr(args, name) for name in EXPORT_FIELDS})
    cfg.validate()
    device = _device(args.device)
    index = index_release(args.root)
    ids = sorted(index)
    if args.ids_from is not None:
        wanted = _ids_from(args.ids_from)
        missing = [i for i in wanted if i not in index]
        if missing:
            raise DataError(f"{args.ids_from}: {len(missing)} id(s) not under {args.root}, "
                            f"e.g. {', '.join(missing[:5])}")
        ids = wanted
    # Every listed pose file is read and checked before anything is written: a bad one is a one-line error
    # naming every bad file, not a traceback halfway through the export.
    sequence_lengths(args.root, ids, "skeleton", index)

    args.out.mkdir(parents=True, exist_ok=True)
    frames = 0
    for seq_id in tqdm(ids, desc="render", unit="seq"):
        record = index[seq_id]
        poses = impute_missing(load_pose(record.path, seq_id, root=args.root), k=cfg.impute_neighbors)
        maps = render_skeleton_maps(torch.from_numpy(poses).to(device), cfg, output="export").cpu().numpy()
        view = record.path.parent.name
        target = args.out / seq_id / record.class_name / view / f"{view}.pkl"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            pickle.dump(maps, handle, protocol=pickle.HIGHEST_PROTOCOL)
        frames += len(maps)

    record_file = args.out / "render_config.json"
    record_file.write_text(json.dumps({
        "input": dataclasses.asdict(cfg), "export_fields": list(EXPORT_FIELDS), "layout": "<id>/<class>/<view>/<view>.pkl",
        "array": "(T, 2, map_size, map_size) uint8; channel 0 limbs, channel 1 joints",
        "source": str(args.root.resolve()), "ids_from": None if args.ids_from is None else str(args.ids_from),
        "sequences": len(ids), "frames": frames, "device": device.type, "scoliotune_version": __version__,
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(ids)} sequences ({frames} frames) to {args.out}")
    return 0
