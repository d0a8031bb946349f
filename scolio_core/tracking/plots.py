"""Plots for results/<sweep>/: val macro-F1 by searched parameter, learning curves, the one-shot test
confusion matrix, a partition table's scores by seed, and skeleton-map previews that show what a
representation / sigma setting draws.

Figures are built with the object-oriented `matplotlib.figure.Figure` API and written as PNG through the
Agg canvas, so nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scolio_core import CLASS_NAMES
from scolio_core.config import InputConfig
from scolio_core.errors import ConfigError, DataError

LIMB_RGB = np.array([0.0, 0.85, 1.0])
JOINT_RGB = np.array([1.0, 0.15, 0.1])
STATUS_COLOURS = {"FINISHED": "tab:blue", "KILLED": "tab:orange", "FAILED": "tab:red", "RUNNING": "tab:grey"}


@dataclass(frozen=True)
class Curve:
    """One trial's validation history: x = optimiser iterations (or Tune steps), y = val macro-F1."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    killed: bool = False


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def _status_colour(status: str) -> str:
    return STATUS_COLOURS.get(str(status).split()[0], "tab:grey")


def _is_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    if present.empty or present.map(lambda v: isinstance(v, bool)).any():
        return False
    return bool(pd.to_numeric(present, errors="coerce").notna().all())


def val_f1_by_param(frame: pd.DataFrame, params: Sequence[str], path: str | Path, metric: str = "macro_f1",
                    status: str = "status") -> Path:
    """One panel per searched parameter: scatter for numbers (log axis when they span > 1 decade),
    box plot plus jittered points for categories. Points are coloured by trial status."""
    if not params:
        raise ConfigError("val_f1_by_param needs at least one parameter column")
    cols = min(len(params), 3)
    rows = -(-len(params) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    score = pd.to_numeric(frame[metric], errors="coerce")
    colours = frame[status].map(_status_colour) if status in frame else ["tab:blue"] * len(frame)
    rng = np.random.default_rng(0)  # fixed jitter so reruns give identical files
    for ax, name in zip(axes, params):
        values = frame[name]
        if _is_numeric(values):
            x = pd.to_numeric(values, errors="coerce")
            ax.scatter(x, score, c=list(colours), edgecolors="black", linewidths=0.5, zorder=3)
            positive = x[x > 0].dropna()
            if len(positive) == len(x.dropna()) and len(positive) > 1 and positive.max() / positive.min() > 10:
                ax.set_xscale("log")
        else:
            labels = sorted(values.dropna().astype(str).unique())
            groups = [score[values.astype(str) == label].dropna().to_numpy() for label in labels]
            ax.boxplot(groups, tick_labels=labels, widths=0.5, showfliers=False)
            for i, label in enumerate(labels, start=1):
                mask = (values.astype(str) == label).to_numpy()
                jitter = rng.uniform(-0.12, 0.12, size=int(mask.sum()))
                ax.scatter(i + jitter, score[mask], c=list(np.asarray(colours)[mask]), edgecolors="black",
                           linewidths=0.5, zorder=3)
            ax.tick_params(axis="x", labelrotation=20)
        ax.set_xlabel(name)
        ax.set_ylabel("best val macro-F1")
        ax.grid(alpha=0.3)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    handles = [axes[0].scatter([], [], c=c, edgecolors="black", linewidths=0.5, label=s)
               for s, c in STATUS_COLOURS.items() if s in {str(v).split()[0] for v in frame.get(status, [])}]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    return _save(fig, path)


def learning_curves(curves: Sequence[Curve], path: str | Path, xlabel: str = "iteration") -> Path:
    """Val macro-F1 against training progress, one line per trial; trials stopped early are dashed."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for curve in curves:
        ax.plot(curve.x, curve.y, linestyle="--" if curve.killed else "-", marker="o", markersize=3,
                label=curve.label + (" (stopped early)" if curve.killed else ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val macro-F1")
    ax.grid(alpha=0.3)
    if curves and len(curves) <= 12:
        ax.legend(fontsize="small")
    return _save(fig, path)


def confusion_matrix_plot(matrix: Sequence[Sequence[float]], path: str | Path, title: str) -> Path:
    """The 3x3 confusion matrix (rows = truth) with the class names of scolio_core.CLASS_NAMES."""
    from sklearn.metrics import ConfusionMatrixDisplay

    counts = np.asarray(matrix)
    if counts.shape != (len(CLASS_NAMES), len(CLASS_NAMES)):
        raise DataError(f"confusion matrix must be {len(CLASS_NAMES)}x{len(CLASS_NAMES)}, got shape {counts.shape}")
    fig = Figure(figsize=(4.8, 4.2), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.rint(counts).astype(int), display_labels=list(CLASS_NAMES)).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title)
    return _save(fig, path)


def partition_table_plot(per_seed: pd.DataFrame, path: str | Path, title: str,
                         metrics: Sequence[tuple[str, str]] = (("macro_f1", "test macro-F1"),
                                                               ("accuracy", "test accuracy"))) -> Path:
    """One panel per metric: every seed's test score per partition (dots) and their mean (bar), partitions in
    the order given; `per_seed` has columns partition, seed and the metric names."""
    partitions = list(dict.fromkeys(per_seed["partition"].astype(str)))
    fig = Figure(figsize=(4.0 * len(metrics), 3.6))
    for k, (column, label) in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        for x, partition in enumerate(partitions):
            values = per_seed.loc[per_seed["partition"].astype(str) == partition, column].to_numpy(dtype=float)
            ax.bar(x, values.mean(), width=0.6, color="tab:blue", alpha=0.35)
            offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(x + offsets, values, color="tab:blue", s=18, zorder=3)
        ax.set_xticks(range(len(partitions)), [f"1:1:{p[2:]}" if p.startswith("11") else p for p in partitions])
        ax.set_ylim(0, 1)
        ax.set_xlabel("partition (train pos:neu:neg)")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title + " (dots: seeds, bars: mean)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def skeleton_preview(poses: np.ndarray, configs: Sequence[tuple[str, InputConfig]], path: str | Path,
                     frames: int = 6) -> Path:
    """A strip of `frames` evenly spaced frames per (label, InputConfig): limbs cyan, joints red.

    `poses` is one (T, 17, 3) sequence in image pixels; missing joints (0) are imputed as training does.
    """
    import torch

    from scolio_core.render.impute import impute_missing
    from scolio_core.render.skeleton import render_skeleton_maps

    poses = np.asarray(poses, dtype=np.float32)
    if poses.ndim != 3 or poses.shape[1:] != (17, 3) or len(poses) == 0:
        raise DataError(f"skeleton_preview needs poses of shape (T, 17, 3), got {poses.shape}")
    if not configs:
        raise ConfigError("skeleton_preview needs at least one (label, InputConfig)")
    for label, cfg in configs:
        if cfg.modality != "skeleton":
            raise ConfigError(f"preview {label!r}: input.representation {cfg.representation!r} draws no skeleton map")
    picks = np.linspace(0, len(poses) - 1, num=min(frames, len(poses))).round().astype(int)
    fig = Figure(figsize=(1.3 * len(picks) + 1.6, 1.9 * len(configs)), layout="constrained")
    axes = fig.subplots(len(configs), len(picks), squeeze=False)
    for row, (label, cfg) in enumerate(configs):
        imputed = impute_missing(poses, k=cfg.impute_neighbors)[picks]
        maps = render_skeleton_maps(torch.from_numpy(imputed), cfg).cpu().numpy()  # (F, 2, H, W)
        limbs, joints = maps[:, 0], maps[:, 1]
        # Joints composited over limbs (alpha = joint map), so joints stay red where they meet limbs.
        alpha = np.clip(joints, 0.0, 1.0)[..., None]
        rgb = (1.0 - alpha) * np.clip(limbs, 0.0, 1.0)[..., None] * LIMB_RGB + alpha * JOINT_RGB  # (F, H, W, 3)
        for col, frame in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(rgb[col], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"frame {frame}", fontsize="small")
        axes[row, 0].set_ylabel(f"{label}\n{cfg.representation}, sigma={cfg.sigma:.3g}", fontsize="small")
    fig.suptitle("skeleton maps: limbs cyan, joints red", fontsize="medium")
    return _save(fig, path)
