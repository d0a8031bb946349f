"""The fused numba CPU renderer (scolio_core/render/numba_cpu.py) against the torch renderer it replaces on CPU:
same maps for every InputConfig knob, the SCOLIO_RENDER_BACKEND switch, threads, and the no-cache
fallback. (tests/test_render.py checks both against slow references; it runs the numba path on CPU.)"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from scolio_core.config import InputConfig
from scolio_core.errors import ConfigError
from scolio_core.render import constants, numba_cpu
from scolio_core.render import skeleton as render
from scolio_core.render.skeleton import render_skeleton_maps

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(not numba_cpu.available(), reason="numba is not installed")

STANDING = np.array([[250, 100], [254, 96], [246, 96], [259, 99], [241, 99], [266, 122], [234, 122],
                     [272, 150], [228, 150], [275, 176], [225, 176], [260, 182], [240, 182],
                     [262, 212], [238, 212], [263, 238], [237, 240]], dtype=np.float64)


def awkward_poses(frames: int = 24, seed: int = 0) -> torch.Tensor:
    """Walking-ish poses plus the cases that take special paths in both renderers."""
    rng = np.random.default_rng(seed)
    xy = STANDING[None] + rng.normal(0, 4, (frames, 17, 2)) + rng.uniform(-60, 60, (frames, 1, 2))
    conf = rng.uniform(0.05, 1.0, (frames, 17))
    conf[0, 3] = 0.0  # an undetected ear
    xy[1, 1] = xy[1, 0] + 0.3  # a limb shorter than 1 px: drawn as its start joint
    conf[2, 0:5] = 0.0  # no face: head-lite draws no head
    conf[3] = 0.0  # nothing drawn at all
    xy[4, :, 1] = 150.0  # joints span no height: the frame cannot be scaled
    xy[5, 9:11, 0] += 500  # wrists far off the canvas
    conf[6, 5:11] = 1.6  # confidences above 1: peaks above 1 (limb levels saturate, joints clamp)
    conf[7, 11:17] = 5e-4  # legs below min_confidence
    xy[8] = xy[8] * 0.3 + 100  # a small person far from the others
    return torch.from_numpy(np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32))


BASE = InputConfig()
CONFIGS = [
    BASE,
    dataclasses.replace(BASE, representation="full-body", alignment="opengait"),  # OpenGait's defaults
    dataclasses.replace(BASE, representation="head-lite", alignment="opengait", sigma=3.5, joint_weight=0.5,
                        dtype="float32"),
    dataclasses.replace(BASE, representation="full-body", sigma=12.0, joint_weight=2.0, dtype="float32"),
    dataclasses.replace(BASE, alignment="opengait", confidence_weighting=False, min_confidence=0.5),
    dataclasses.replace(BASE, representation="head-lite", canvas_size=64, map_size=32, side_crop=5, sigma=4.0),
    # canvas smaller than the map: OpenCV's enlarging rule instead of area averaging
    dataclasses.replace(BASE, representation="full-body", alignment="opengait", canvas_size=48, side_crop=0,
                        sigma=2.0),
    dataclasses.replace(BASE, canvas_size=96, map_size=48, side_crop=8, sigma=6.0, dtype="float32"),
    dataclasses.replace(BASE, representation="full-body", alignment="opengait", joint_weight=0.0),
    dataclasses.replace(BASE, representation="full-body", sigma=0.7),
]


def _render(poses: torch.Tensor, cfg: InputConfig, output: str, backend: str, monkeypatch) -> torch.Tensor:
    monkeypatch.setenv(render.BACKEND_ENV, backend)
    return render_skeleton_maps(poses, cfg, output)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"c{i}" for i in range(len(CONFIGS))])
def test_numba_matches_torch(cfg: InputConfig, monkeypatch) -> None:
    poses = awkward_poses(seed=len(cfg.representation) + int(cfg.sigma))
    for output in ("model", "export"):
        want = _render(poses, cfg, output, "torch", monkeypatch)
        got = _render(poses, cfg, output, "numba", monkeypatch)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert want.float().amax() > 0  # something was drawn
        if output == "export" or cfg.dtype == "uint8":
            scale = 1 if output == "export" else 255
            diff = (got.float() - want.float()).abs() * scale
            # Levels agree except where a value sits within float rounding of a level boundary.
            assert diff.max() <= 1 + 1e-4 and (diff > 0.5).float().mean() < 1e-3, diff.max()
        else:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # The awkward frames: nothing drawn, and a frame that cannot be scaled, render as zeros.
    assert got[3].abs().max() == 0 and got[4].abs().max() == 0


def test_backend_switch(monkeypatch) -> None:
    poses = awkward_poses(10)[:4]
    calls = []
    real = numba_cpu.render_frames
    monkeypatch.setattr(numba_cpu, "render_frames", lambda *a, **k: calls.append(1) or real(*a, **k))
    for backend, used in (("torch", 0), ("auto", 1), ("numba", 2), ("", 3)):
        monkeypatch.setenv(render.BACKEND_ENV, backend)
        render_skeleton_maps(poses, BASE)
        assert len(calls) == used, backend
    monkeypatch.setenv(render.BACKEND_ENV, "cuda-please")
    with pytest.raises(ConfigError, match="SCOLIO_RENDER_BACKEND='cuda-please'"):
        render_skeleton_maps(poses, BASE)


def test_threads_split_frames_without_changing_results(monkeypatch) -> None:
    monkeypatch.delenv(render.BACKEND_ENV, raising=False)
    poses = awkward_poses(10)[:7]
    cfg = dataclasses.replace(BASE, representation="full-body", alignment="opengait")
    one = render_skeleton_maps(poses, cfg, "export")
    torch.set_num_threads(2)
    try:
        two = render_skeleton_maps(poses, cfg, "export")
    finally:
        torch.set_num_threads(1)
    torch.testing.assert_close(two, one, atol=0, rtol=0)


def test_grey_levels_follow_matplotlibs_table() -> None:
    index = np.arange(256)
    np.testing.assert_array_equal(numba_cpu._grey_table_formula(index), constants.GREY_LUT)
    # The kernel's float32 form, just above each level boundary and just below the next one.
    for value in (index / 256.0 + 1e-6, (index + 1) / 256.0 - 1e-6):
        got = [numba_cpu._grey_level(np.float32(v)) for v in value]
        np.testing.assert_array_equal(got, constants.GREY_LUT)


def test_uncached_compile_when_no_cache_location(monkeypatch) -> None:
    """numba refuses cache=True when no directory is writable; the kernel then compiles uncached."""
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_LOCATOR_CLASSES", "ZipCacheLocator")  # never applies to a .py file
    monkeypatch.setattr(numba_cpu, "_CACHE_WARNED", False)

    def double(x):
        return 2 * x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jitted = numba_cpu._njit()(double)
    assert jitted(21) == 42
    assert any("NUMBA_CACHE_DIR" in str(w.message) for w in caught)


@pytest.mark.parametrize("cfg", [
    dataclasses.replace(BASE, canvas_size=96, map_size=64, side_crop=10, sigma=2.0),  # area and enlarging mixed
    dataclasses.replace(BASE, representation="full-body", alignment="opengait"),
], ids=["mixed-modes", "opengait"])
def test_batch_equals_frames_rendered_alone(cfg: InputConfig) -> None:
    """Resize weights are computed once per crop length and render call, and reused by later frames
    (per resize mode); a batch must give exactly what each frame gives alone."""
    poses = awkward_poses(12, seed=3)
    batch = numba_cpu.render_frames(poses, cfg, cfg.side_crop, True)
    alone = torch.cat([numba_cpu.render_frames(poses[i:i + 1], cfg, cfg.side_crop, True) for i in range(12)])
    torch.testing.assert_close(batch, alone, atol=0, rtol=0)
    assert batch.amax() > 0
