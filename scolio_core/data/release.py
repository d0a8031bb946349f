"""Scoliosis1K release-layout reader and compact in-memory sequence sets.

Layout (pose and silhouette roots alike): `<root>/<id>/<class>/<view>/<file>.pkl`, e.g.
`00000/positive/000_180/000_180.pkl`. Ids are five-digit strings; the class is the folder name, in any
letter case. Poses are `(T, 17, 3)` float (x, y, confidence in image pixels, COCO-17 order); silhouettes
are `(T, 64, 64)` uint8. Every pkl goes through `safe_pickle` (read by `bounded.read_bounded`: regular files
only, size-capped; arrays numeric and size-capped: `PickleLimits`); files loaded through a release root must
resolve inside it. `set_read_hook` (or the `read_hook` context manager) installs a callable told of every
pkl read, which is how tests prove that trials never read test ids; production code installs none, and
nothing in the read path depends on the environment.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from scolio_core import CLASS_INDEX
from scolio_core.config import DataConfig
from scolio_core.data.safe_pickle import DEFAULT_LIMITS, PickleLimits, safe_load
from scolio_core.errors import DataError

MODALITIES = ("skeleton", "silhouette")
POSE_FRAME_SHAPE = (17, 3)
SILHOUETTE_FRAME_SHAPE = (64, 64)
_ID_PATTERN = re.compile(r"[0-9]{5}")  # ASCII: "\d" also takes fullwidth and other Unicode digits
# Class folder names used by earlier releases, with what they are called now.
_RENAMED_CLASSES = {"critical": "neutral"}
_MAX_LISTED = 5  # how many offending ids/files an error message spells out


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence of the release: its id, class (index into CLASS_NAMES and name) and pkl file."""

    seq_id: str
    label: int
    class_name: str
    path: Path


def _few(items: Iterable[object]) -> str:
    items = list(items)
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    return shown + (f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def _class_of(folder: Path) -> tuple[int, str]:
    name = folder.name.lower()
    if name in CLASS_INDEX:
        return CLASS_INDEX[name], name
    if name in _RENAMED_CLASSES:
        raise DataError(f"{folder}: class folder {folder.name!r} is a legacy name; it was renamed "
                        f"{_RENAMED_CLASSES[name]!r} in the release (rename the folder)")
    raise DataError(f"{folder}: unknown class folder {folder.name!r}; expected one of "
                    f"{', '.join(CLASS_INDEX)} (any letter case)")


def index_release(root: str | Path) -> dict[str, SequenceRecord]:
    """Scan a modality root and map each sequence id to its record.

    Files and hidden entries directly under `root` are ignored (partition files, `.DS_Store`);
    every other entry must be a five-digit id folder holding exactly one class folder with one pkl.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root is not a directory")
    index: dict[str, SequenceRecord] = {}
    for id_dir in sorted(root.iterdir()):
        if id_dir.name.startswith(".") or not id_dir.is_dir():
            continue
        if not _ID_PATTERN.fullmatch(id_dir.name):
            raise DataError(f"{id_dir}: sequence folder names must be five-digit ids like 00042")
        if id_dir.is_symlink():  # an alias would let one sequence be scored under two ids (the lockbox counts ids)
            raise DataError(f"{id_dir}: a sequence folder may not be a link (link the whole root instead)")
        found: list[tuple[int, str, Path]] = []
        for class_dir in sorted(p for p in id_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            label, class_name = _class_of(class_dir)
            for pkl in sorted(class_dir.glob("*/*.pkl")):
                found.append((label, class_name, pkl))
        if not found:
            raise DataError(f"{id_dir}: no <class>/<view>/<file>.pkl inside sequence folder")
        classes = {pkl.parents[1] for _, _, pkl in found}
        if len(classes) > 1:
            raise DataError(f"sequence {id_dir.name} appears under more than one class: "
                            f"{' and '.join(str(c) for c in sorted(classes))}")
        if len(found) > 1:
            raise DataError(f"{id_dir}: more than one pkl for one sequence ({_few(p for *_, p in found)}); "
                            "expected one view file")
        label, class_name, pkl = found[0]
        index[id_dir.name] = SequenceRecord(id_dir.name, label, class_name, pkl)
    return index


def _seq_id_from_path(path: Path) -> str:
    # <root>/<id>/<class>/<view>/<file>.pkl -> <id>; files outside the layout log as "-".
    parts = path.parts
    return parts[-4] if len(parts) >= 4 and _ID_PATTERN.fullmatch(parts[-4]) else "-"


ReadHook = Callable[[str, Path], None]
_read_hook: ReadHook | None = None


def set_read_hook(hook: ReadHook | None) -> ReadHook | None:
    """Call `hook(seq_id, path)` before every data-file read of this process (None removes it); returns the
    hook it replaces. The sequence id is "-" for a file outside the release layout."""
    global _read_hook
    previous, _read_hook = _read_hook, hook
    return previous


@contextlib.contextmanager
def read_hook(hook: ReadHook) -> Iterator[None]:
    """`set_read_hook(hook)` for the duration of a `with` block, then the previous hook again."""
    previous = set_read_hook(hook)
    try:
        yield
    finally:
        set_read_hook(previous)


def _read(path: Path, seq_id: str | None, root: str | Path | None, limits: PickleLimits) -> object:
    if _read_hook is not None:
        _read_hook(seq_id or _seq_id_from_path(path), path)
    return safe_load(path, root=root, limits=limits)


def _check_array(path: Path, value: object, frame_shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise DataError(f"{path}: expected a numpy array of {what}, got {type(value).__name__}")
    if value.ndim != 1 + len(frame_shape) or value.shape[1:] != frame_shape:
        expected = "(T, " + ", ".join(str(d) for d in frame_shape) + ")"
        raise DataError(f"{path}: {what} must have shape {expected}, got {value.shape}")
    if value.shape[0] == 0:
        raise DataError(f"{path}: empty sequence (0 frames)")
    return value


def load_pose(path: str | Path, seq_id: str | None = None, *, root: str | Path | None = None,
              limits: PickleLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read a `(T, 17, 3)` pose pkl (any float dtype) and return it as float32.

    With `root` (the modality root it was indexed from) the file must resolve inside it.
    """
    path = Path(path)
    poses = _check_array(path, _read(path, seq_id, root, limits), POSE_FRAME_SHAPE, "poses")
    if not np.issubdtype(poses.dtype, np.floating):
        raise DataError(f"{path}: poses must be a float array, got dtype {poses.dtype}")
    bad = ~np.isfinite(poses)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        kind = "NaN" if np.isnan(poses).any() else "inf"
        raise DataError(f"{path}: poses contain {kind} (first at frame {frame}); "
                        "missing joints must be stored as 0")
    return poses.astype(np.float32, copy=False)


def load_silhouette(path: str | Path, seq_id: str | None = None, *, root: str | Path | None = None,
                    limits: PickleLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read a `(T, 64, 64)` uint8 silhouette pkl; with `root` the file must resolve inside it."""
    path = Path(path)
    sil = _check_array(path, _read(path, seq_id, root, limits), SILHOUETTE_FRAME_SHAPE, "silhouettes")
    if sil.dtype != np.uint8:
        raise DataError(f"{path}: silhouettes must be uint8, got dtype {sil.dtype}")
    return sil


_LOADERS: dict[str, Callable[..., np.ndarray]] = {"skeleton": load_pose, "silhouette": load_silhouette}


def _loader(modality: str) -> Callable[..., np.ndarray]:
    if modality not in _LOADERS:
        raise DataError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return _LOADERS[modality]


@dataclass
class SequenceSet:
    """A whole id set in memory: all frames concatenated along T, sequence i is frames[offsets[i]:offsets[i+1]].

    One array instead of one per sequence keeps the ~450k-frame release compact and lets batches slice views.
    """

    ids: list[str]
    labels: np.ndarray  # (n,) int64
    frames: np.ndarray  # (sum T, ...) float32 poses or uint8 silhouettes
    offsets: np.ndarray  # (n + 1,) int64

    def __len__(self) -> int:
        return len(self.ids)

    def sequence(self, i: int) -> np.ndarray:
        return self.frames[self.offsets[i]:self.offsets[i + 1]]

    def num_frames(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _records(root: Path, ids: Sequence[str], index: Mapping[str, SequenceRecord] | None) -> list[SequenceRecord]:
    index = index_release(root) if index is None else index
    missing = [seq_id for seq_id in ids if seq_id not in index]
    if missing:
        raise DataError(f"{root}: {len(missing)} listed id(s) not found on disk: {_few(missing)}")
    return [index[seq_id] for seq_id in ids]


def load_sequences(root: str | Path, ids: Sequence[str], modality: str,
                   index: Mapping[str, SequenceRecord] | None = None,
                   transform: Callable[[np.ndarray], np.ndarray] | None = None,
                   limits: PickleLimits = DEFAULT_LIMITS) -> SequenceSet:
    """Load the listed ids of one modality root into a SequenceSet (in the order given).

    `transform` is applied to each validated sequence array (e.g. pose imputation at load time) and
    must keep its shape. Files must resolve inside `root`; `limits` caps each file (see `safe_pickle`).
    """
    root = Path(root)
    load = _loader(modality)
    records = _records(root, ids, index)
    arrays: list[np.ndarray] = []
    for record in records:
        array = load(record.path, record.seq_id, root=root, limits=limits)
        if transform is not None:
            out = transform(array)
            if not isinstance(out, np.ndarray) or out.shape != array.shape:
                raise DataError(f"{record.path}: transform changed sequence {record.seq_id} from shape "
                                f"{array.shape} to {getattr(out, 'shape', type(out).__name__)}")
            array = out.astype(array.dtype, copy=False)
        arrays.append(array)
    frame_shape = POSE_FRAME_SHAPE if modality == "skeleton" else SILHOUETTE_FRAME_SHAPE
    dtype = np.float32 if modality == "skeleton" else np.uint8
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.concatenate(arrays) if arrays else np.empty((0, *frame_shape), dtype=dtype)
    labels = np.array([r.label for r in records], dtype=np.int64)
    return SequenceSet(ids=[r.seq_id for r in records], labels=labels, frames=frames, offsets=offsets)


def sequence_lengths(root: str | Path, ids: Sequence[str], modality: str,
                     index: Mapping[str, SequenceRecord] | None = None,
                     limits: PickleLimits = DEFAULT_LIMITS) -> dict[str, int]:
    """Load and check every listed file without keeping it; return frames per id.

    All bad files are collected into one single-line `DataError` (one `;`-separated entry per bad file) so a
    broken release is reported in one pass. Files must resolve inside `root` and stay within `limits`.
    """
    root = Path(root)
    load = _loader(modality)
    records = _records(root, ids, index)
    lengths: dict[str, int] = {}
    problems: list[str] = []
    for record in records:
        try:
            lengths[record.seq_id] = len(load(record.path, record.seq_id, root=root, limits=limits))
        except DataError as exc:
            problems.append(" ".join(str(exc).splitlines()))  # one line whatever a message holds
    if problems:
        detail = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise DataError(f"{root}: {len(problems)} of {len(records)} {modality} file(s) failed validation: "
                        f"{detail}{more}")
    return lengths


def validate_release(root: str | Path, ids: Sequence[str], modality: str,
                     index: Mapping[str, SequenceRecord] | None = None,
                     limits: PickleLimits = DEFAULT_LIMITS) -> None:
    """Load and check every listed file before any compute is spent; raises one DataError listing failures."""
    sequence_lengths(root, ids, modality, index, limits)


def frame_statistics(sequences: SequenceSet | Sequence[int] | np.ndarray) -> dict[str, float]:
    """Frames per sequence (min / median / max) and total frames of a SequenceSet or a list of lengths."""
    lengths = np.asarray(sequences.lengths if isinstance(sequences, SequenceSet) else sequences, dtype=np.int64)
    if lengths.size == 0:
        return {"sequences": 0, "min_frames": 0, "median_frames": 0.0, "max_frames": 0, "total_frames": 0}
    return {
        "sequences": int(lengths.size),
        "min_frames": int(lengths.min()),
        "median_frames": float(np.median(lengths)),
        "max_frames": int(lengths.max()),
        "total_frames": int(lengths.sum()),
    }


def resolve_modality_root(root: str | Path, modality: str, data: DataConfig | None = None) -> Path:
    """The modality root under a data root (`DataConfig.pose_dir` / `silhouette_dir`), or `root` itself
    when it already is a modality root (holds five-digit id folders)."""
    _loader(modality)
    root = Path(root)
    data = data or DataConfig()
    sub = Path(data.pose_dir if modality == "skeleton" else data.silhouette_dir)
    candidate = sub if sub.is_absolute() else root / sub
    if candidate.is_dir():
        return candidate
    if root.is_dir() and any(p.is_dir() and _ID_PATTERN.fullmatch(p.name) for p in root.iterdir()):
        return root
    raise DataError(f"{root}: neither holds {sub} nor is a {modality} root with five-digit id folders")
