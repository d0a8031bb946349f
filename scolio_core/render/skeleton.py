"""On-the-fly skeleton maps: COCO-17 poses -> 2-channel maps (channel 0 limbs, channel 1 joints).

Rendering runs on the poses' device, so a sweep over `input.sigma` or `input.joint_weight` needs no
re-export. CPU tensors go to the fused numba kernel in `numba_cpu.py` (~6x this module's torch code on one
core); CUDA tensors, and CPU ones under SCOLIO_RENDER_BACKEND=torch, run the torch code below, vectorised
over frames and pixels (frames are chunked so the buffers stay in cache). Both give the same maps.
Parts are a short Python loop (<= 18) of whole-chunk passes: one (frames, parts, H, W) tensor spills the
cache on CPU, and the part-vectorised renderer this replaced was 3-4x slower.

The `opengait` alignment reproduces the public OpenGait SkeletonGait heatmap pretreatment:
 (a) `impute_missing`: coordinates stored as exactly 0 are filled per sequence by distance-weighted
     4-nearest-frame imputation (scikit-learn's KNNImputer); confidences are left as they were;
 (b) per frame: subtract the hip midpoint, scale by (canvas // 1.5) / (y_max - y_min), add canvas // 2;
 (c) Gaussians of width sigma, truncated to integer ±3 sigma boxes, scaled by confidence, max over parts;
 (d) 8-bit quantisation exactly as matplotlib's 256-level grey colour map does it;
 (e) per channel: rows from first to last non-zero row, a square of columns around the canvas centre,
     cv2.INTER_AREA resize to map_size, truncation to uint8.
`aligned` (the default) differs only in (e): one crop box from the keypoints' drawn extent, shared by
both channels, so limbs and joints stay registered.

Step (c) draws in log space: the max over parts of weight * exp(-d^2 / 2 sigma^2) is exp(-min over parts
of d^2 / 2 sigma^2 - ln weight), so each part costs a few adds over its pixels and each pixel one exp.
Both costs split into a row term and a column term (see `_draw`), and each frame is drawn only inside
one window covering its parts' boxes; a part is evaluated in the band of that window that holds its box
in every frame of the chunk (poses are normalised, so this is barely larger than the box). Step (e) is
linear in the map, so the variable crop + resize is `R @ M @ C^T` with per-frame matrices that reproduce
OpenCV's INTER_AREA weights (area averaging when shrinking, its bilinear-like rule when enlarging),
restricted to the window's rows and columns (the canvas is 0 outside it); the side crop is folded into C.
"""

from __future__ import annotations

import math
import os
import warnings

import torch

from scolio_core.config import InputConfig
from scolio_core.errors import ConfigError, DataError
from scolio_core.render import numba_cpu
from scolio_core.render.constants import (
    FACE_JOINTS,
    GREY_LUT,
    HIPS,
    LEVEL_EPS,
    NUM_JOINTS,
    PARTS,
    SHOULDERS,
)

# Canvas pixels per chunk of frames. On CPU the per-part passes over a chunk's window buffers should
# stay in cache (measured best around 2^19-2^20 at canvas 128); on CUDA fewer, larger launches win.
_CHUNK_PIXELS_CPU = 1 << 19
_CHUNK_PIXELS_CUDA = 1 << 24
# Environment variable choosing the CPU renderer: auto (numba when installed), torch, numba.
BACKEND_ENV = "SCOLIO_RENDER_BACKEND"
_NUMBA_MISSING_WARNED = False


def normalize_to_canvas(poses: torch.Tensor, canvas_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step (b): hip-centre and height-normalise (N, 17, 3) poses into the canvas (float64 xy).

    Returns (xy (N, 17, 2), valid (N,)); a frame whose joints span no height cannot be scaled and is
    marked invalid (OpenGait would divide by zero there).
    """
    xy = poses[..., :2].to(torch.float64)
    hip = xy[:, HIPS, :].mean(dim=1, keepdim=True)
    xy = xy - hip
    height = xy[..., 1].amax(dim=1) - xy[..., 1].amin(dim=1)
    valid = height > 1e-6
    scale = float(canvas_size // 1.5) / torch.where(valid, height, torch.ones_like(height))
    return xy * scale[:, None, None] + canvas_size // 2, valid


def _points(poses: torch.Tensor, cfg: InputConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canvas points incl. the virtual head and shoulder midpoint: xy (N, 19, 2) float64,
    drawn (N, 19) bool, value (N, 19) float32 (the Gaussian peak)."""
    xy, valid = normalize_to_canvas(poses, cfg.canvas_size)
    conf = poses[..., 2].to(torch.float64)
    drawn = (conf >= cfg.min_confidence) & valid[:, None]
    value = conf if cfg.confidence_weighting else torch.ones_like(conf)

    face = drawn[:, FACE_JOINTS].to(torch.float64)
    count = face.sum(dim=1)
    denom = count.clamp(min=1.0)
    head_xy = (xy[:, FACE_JOINTS] * face[..., None]).sum(dim=1) / denom[:, None]
    head_value = (value[:, FACE_JOINTS] * face).sum(dim=1) / denom
    mid_xy = xy[:, SHOULDERS].mean(dim=1)
    mid_value = value[:, SHOULDERS].amin(dim=1)

    xy = torch.cat([xy, head_xy[:, None], mid_xy[:, None]], dim=1)
    drawn = torch.cat([drawn, (count > 0)[:, None], drawn[:, SHOULDERS].all(dim=1, keepdim=True)], dim=1)
    value = torch.cat([value, head_value[:, None], mid_value[:, None]], dim=1)
    return xy, drawn, value.to(torch.float32)


def _box(low: torch.Tensor, high: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A part's box along one axis: pixels p with int(low - 3 sigma) <= p <= int(high + 3 sigma), int()
    truncating toward zero as OpenGait's Python int() does (a box ending in (-1, 0) still covers pixel 0)."""
    return torch.trunc(low - 3 * sigma), torch.trunc(high + 3 * sigma)


def _window(first: torch.Tensor, last: torch.Tensor, live: torch.Tensor, size: int) -> torch.Tensor:
    """Per-frame origin of one common-length window covering every live part's box along one axis.

    first/last (n, P) box bounds, live (n, P) bool. Returns pixel coordinates (n, K) float64, the window
    placed inside the canvas; a frame with nothing live gets any window (nothing is drawn there).
    """
    first = torch.where(live, first.clamp(0, size - 1), torch.full_like(first, size - 1)).amin(dim=1)
    last = torch.where(live, last.clamp(0, size - 1), torch.zeros_like(last)).amax(dim=1)
    extent = (last - first + 1).clamp(min=1)
    k = int(extent.max().item()) if extent.numel() else 1
    origin = first.clamp(0, size - k)
    return origin[:, None] + torch.arange(k, device=first.device, dtype=first.dtype)


def _bands(first: torch.Tensor, last: torch.Tensor, live: torch.Tensor, pixels: torch.Tensor
           ) -> list[tuple[int, int] | None]:
    """Per part, the slice [lo, hi) of the window that holds its box in every frame of the chunk, or None
    when the part is drawn in none. Poses are hip-centred and height-normalised, so a part sits at nearly
    the same place in every frame's window and this band is barely larger than one box."""
    k = pixels.shape[1]
    origin = pixels[:, :1]
    lo = torch.where(live, (first - origin).clamp(0, k - 1), torch.full_like(first, k)).amin(dim=0)
    hi = torch.where(live, (last - origin).clamp(0, k - 1), torch.full_like(last, -1)).amax(dim=0)
    return [(int(a), int(b) + 1) if b >= a else None for a, b in zip(lo.tolist(), hi.tolist())]


def _scratch(buffer: torch.Tensor, *shape: int) -> torch.Tensor:
    """A contiguous (n, h, w) view at the start of a flat scratch buffer (no allocation per part)."""
    return buffer[:math.prod(shape)].view(shape)


def _outside(pixels: torch.Tensor, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """0 for window pixels inside each part's box, +inf outside. pixels (n, K), first/last (n, P) -> (n, P, K)."""
    p = pixels[:, None, :]
    inside = (p >= first[..., None]) & (p <= last[..., None])
    return torch.where(inside, 0.0, math.inf).to(pixels.dtype)


def _draw(xy: torch.Tensor, drawn: torch.Tensor, value: torch.Tensor, cfg: InputConfig
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step (c) inside one window per frame: maps (n, 2, Kh, Kw) float32 in [0, 1] (channel 0 limbs,
    1 joints) and the window's canvas rows (n, Kh) and columns (n, Kw); outside it both maps are 0.

    Every part is a weighted Gaussian, so the max over parts is exp(-min over parts of a cost)
    with cost = d^2 / (2 sigma^2) - ln(weight), +inf outside the part's box: one exp per pixel, and the
    per-part work is a few passes of adds over the window. Both costs split into row and column terms:
    a joint's cost is exactly (column term) + (row term); a limb's distance to its segment is
    d^2 = s^2 + (t - clamp(t, 0, L))^2 with s, t the pixel's coordinates across and along the segment
    (t in pixels from the start, L its length), each a row term plus a column term.
    """
    joints, limbs = PARTS[cfg.representation]
    size, sigma = cfg.canvas_size, float(cfg.sigma)
    device = xy.device
    joint_index = torch.tensor(joints, device=device, dtype=torch.long)
    pairs = torch.tensor(limbs, device=device, dtype=torch.long).reshape(-1, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    value = value.to(torch.float64)
    zero = torch.zeros((), dtype=torch.float64, device=device)

    # Joints: weight = confidence x joint_weight (the clamp to 1 comes after the exp).
    jxy = xy[:, joint_index]
    jweight = torch.where(drawn[:, joint_index], value[:, joint_index] * cfg.joint_weight, zero)
    jx0, jx1 = _box(jxy[..., 0], jxy[..., 0], sigma)
    jy0, jy1 = _box(jxy[..., 1], jxy[..., 1], sigma)

    # Limbs: a limb shorter than 1 px is drawn as its start joint (OpenGait's rule), with that joint's box.
    start, end = xy[:, a], xy[:, b]
    direction = end - start
    length = direction.square().sum(dim=-1).sqrt()
    short = length < 1
    lweight = torch.where(short, value[:, a], torch.minimum(value[:, a], value[:, b]))
    lweight = torch.where(drawn[:, a] & drawn[:, b], lweight, zero)
    box_end = torch.where(short[..., None], start, end)
    lx0, lx1 = _box(torch.minimum(start[..., 0], box_end[..., 0]), torch.maximum(start[..., 0], box_end[..., 0]), sigma)
    ly0, ly1 = _box(torch.minimum(start[..., 1], box_end[..., 1]), torch.maximum(start[..., 1], box_end[..., 1]), sigma)

    live_j, live_l = jweight > 0, lweight > 0
    cols = _window(torch.cat([jx0, lx0], 1), torch.cat([jx1, lx1], 1), torch.cat([live_j, live_l], 1), size)
    rows = _window(torch.cat([jy0, ly0], 1), torch.cat([jy1, ly1], 1), torch.cat([live_j, live_l], 1), size)
    n, kh, kw = xy.shape[0], rows.shape[1], cols.shape[1]
    scale = 1.0 / (sigma * math.sqrt(2.0))  # costs are in units of sigma * sqrt(2)
    f32 = torch.float32
    buffer = torch.empty(n * kh * kw, device=device, dtype=f32)

    # Joint cost = ((x - jx) scale)^2 [+inf outside] + ((y - jy) scale)^2 - ln(weight) [+inf outside].
    cx = (((cols[:, None, :] - jxy[..., 0:1]) * scale).square() + _outside(cols, jx0, jx1)).to(f32)
    cy = (((rows[:, None, :] - jxy[..., 1:2]) * scale).square() - jweight.log()[..., None]
          + _outside(rows, jy0, jy1)).to(f32)
    joint_cost = torch.full((n, kh, kw), math.inf, device=device, dtype=f32)
    band_x, band_y = _bands(jx0, jx1, live_j, cols), _bands(jy0, jy1, live_j, rows)
    for j, (bx, by) in enumerate(zip(band_x, band_y)):
        if bx is None or by is None:
            continue
        acc = joint_cost[:, by[0]:by[1], bx[0]:bx[1]]
        cost = torch.add(cx[:, j, None, bx[0]:bx[1]], cy[:, j, by[0]:by[1], None], out=_scratch(buffer, n, by[1] - by[0], bx[1] - bx[0]))
        torch.minimum(acc, cost, out=acc)

    # Limb cost = s^2 + (t - clamp(t, 0, L))^2 - ln(weight), in the scaled units; a short limb gets any
    # unit direction and L = 0, which leaves s^2 + t^2 = the squared distance to its start joint.
    unit = torch.where(short[..., None], torch.tensor([1.0, 0.0], dtype=torch.float64, device=device),
                       direction / length.clamp(min=1.0)[..., None])
    ex, ey = unit[..., 0:1], unit[..., 1:2]
    u = (cols[:, None, :] - start[..., 0:1]) * scale  # (n, L, Kw)
    v = (rows[:, None, :] - start[..., 1:2]) * scale  # (n, L, Kh)
    sx = (-u * ey + _outside(cols, lx0, lx1)).to(f32)
    sy = (v * ex + _outside(rows, ly0, ly1)).to(f32)
    tx, ty = (u * ex).to(f32), (v * ey).to(f32)
    span = torch.where(short, zero, length * scale).to(f32)[..., None, None]
    bias = (-lweight.log()).to(f32)[..., None, None]
    limb_cost = torch.full((n, kh, kw), math.inf, device=device, dtype=f32)
    along, inner = torch.empty_like(buffer), torch.empty_like(buffer)
    band_x, band_y = _bands(lx0, lx1, live_l, cols), _bands(ly0, ly1, live_l, rows)
    for i, (bx, by) in enumerate(zip(band_x, band_y)):
        if bx is None or by is None:
            continue
        x, y = slice(*bx), slice(*by)
        h, w = by[1] - by[0], bx[1] - bx[0]
        s = torch.add(sx[:, i, None, x], sy[:, i, y, None], out=_scratch(buffer, n, h, w))
        t = torch.add(tx[:, i, None, x], ty[:, i, y, None], out=_scratch(along, n, h, w))
        # t - clamp(t, 0, L); a scalar clamp then a broadcast minimum (clamp to a tensor bound is slow on CPU).
        beyond = t.sub_(torch.minimum(torch.clamp(t, min=0.0, out=_scratch(inner, n, h, w)), span[:, i], out=_scratch(inner, n, h, w)))
        s.mul_(s).addcmul_(beyond, beyond).add_(bias[:, i])
        acc = limb_cost[:, y, x]
        torch.minimum(acc, s, out=acc)

    maps = torch.stack([limb_cost, joint_cost], dim=1).neg_().exp_()
    maps[:, 1].clamp_(max=1.0)
    return maps, rows, cols


def grey_levels(maps: torch.Tensor) -> torch.Tensor:
    """Step (d): float maps in [0, 1] -> 8-bit grey levels (as float) the way matplotlib's cm.gray +
    `(rgb * 255).astype(uint8)` produce them: level = LUT[min(floor(v * 256), 255)]."""
    lut = torch.as_tensor(GREY_LUT, device=maps.device).to(torch.float32)
    # Clamping first makes the integer cast's truncation a floor; index_select is the fast gather on CPU.
    index = (maps * 256).clamp_(0, 255).to(torch.long)
    return lut.index_select(0, index.view(-1)).view(maps.shape)


def resize_weights(start: torch.Tensor, length: torch.Tensor, out_size: int, canvas_size: int,
                   area: torch.Tensor) -> torch.Tensor:
    """Rows of the matrix that crops [start, start + length) from a canvas axis and resizes it to
    `out_size` as cv2.resize(..., INTER_AREA) does. start/length/area (n,) -> (n, out_size, canvas) f32.

    `area` picks OpenCV's area averaging (used when neither axis is enlarged); otherwise OpenCV applies
    its INTER_AREA enlarging rule, a bilinear variant, to both axes. Per-output coefficients follow
    OpenCV's double arithmetic so the chosen source pixels match it exactly.
    """
    n = start.shape[0]
    weights = torch.empty((n, out_size, canvas_size), device=start.device, dtype=torch.float32)
    pixels = torch.arange(canvas_size, device=start.device, dtype=torch.float32)
    d = torch.arange(out_size, device=start.device, dtype=torch.float64)
    first = start.to(torch.float64)[:, None]
    length = length.to(torch.float64)[:, None]
    inv_scale = out_size / length
    scale = 1.0 / inv_scale  # (n, 1), as OpenCV derives it

    if area.any():
        # Output cell d averages source [lo, lo + scale); the overlap of pixel p with it is a
        # difference of two unit ramps.
        lo = (first + d * scale)[area].to(torch.float32)[..., None]
        cell = scale[area].to(torch.float32)[..., None]
        w = (lo + cell - pixels).clamp_(0, 1).sub_((lo - pixels).clamp_(0, 1)).div_(cell)
        weights[area] = w
    if not area.all():
        keep = ~area
        # OpenCV: sx = floor(d * scale), fx = frac((d + 1) - (sx + 1) / scale) in float, 0 if <= 0;
        # at the last source pixel the weight goes wholly to it.
        sx = torch.floor(d * scale[keep])
        fx = ((d + 1) - (sx + 1) * inv_scale[keep]).to(torch.float32)
        fx = torch.where(fx <= 0, torch.zeros_like(fx), fx - torch.floor(fx))
        at_end = sx >= length[keep] - 1
        fx = torch.where(at_end, torch.zeros_like(fx), fx)
        sx = torch.where(at_end, length[keep] - 1, sx)
        left = (first[keep] + sx).to(torch.float32)[..., None]
        fx = fx[..., None]
        weights[keep] = (pixels == left) * (1 - fx) + (pixels == left + 1) * fx
    return weights


def _crop_boxes(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenGait's per-channel rows: first and last row holding a non-zero level ((n, 2) each); an empty
    channel gives row 0 only, as numpy's argmax of an all-False array does."""
    rows = (levels.amax(dim=-1) > 0).to(torch.uint8)  # (n, 2, H)
    top = rows.argmax(dim=-1)
    bottom = rows.shape[-1] - 1 - rows.flip(-1).argmax(dim=-1)
    empty = rows.amax(dim=-1) == 0
    bottom = torch.where(empty, top, bottom)
    return top, bottom


def _keypoint_rows(xy: torch.Tensor, drawn: torch.Tensor, cfg: InputConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """`aligned` rows: the drawn joints' rows ± 3 sigma (as the drawing truncates them), clipped to the
    canvas; a frame with nothing drawn keeps the whole canvas. (n, 1) each."""
    joints, _ = PARTS[cfg.representation]
    index = torch.tensor(joints, device=xy.device, dtype=torch.long)
    y, on = xy[:, index, 1], drawn[:, index]
    inf = torch.full_like(y, math.inf)
    y_min = torch.where(on, y, inf).amin(dim=1)
    y_max = torch.where(on, y, -inf).amax(dim=1)
    any_on = on.any(dim=1)
    last = cfg.canvas_size - 1
    top = torch.trunc(torch.where(any_on, y_min - 3 * cfg.sigma, torch.zeros_like(y_min))).clamp(0, last)
    bottom = torch.trunc(torch.where(any_on, y_max + 3 * cfg.sigma, torch.full_like(y_max, last))).clamp(0, last)
    bottom = torch.maximum(top, bottom)
    return top.long()[:, None], bottom.long()[:, None]


def _crop_resize(maps: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor, rows: torch.Tensor,
                 cols: torch.Tensor, cfg: InputConfig, side_crop: int) -> torch.Tensor:
    """Step (e) as R @ maps @ C^T on the drawing window. maps (n, 2, Kh, Kw) whose canvas rows/columns are
    `rows` (n, Kh) / `cols` (n, Kw); top/bottom (n, c) canvas rows, c in {1, 2} -> (n, 2, D, D - 2 side).
    Canvas pixels outside the window are 0, so their columns of R and C are simply left out."""
    n, c = top.shape
    size, out = cfg.canvas_size, cfg.map_size
    height = bottom - top + 1
    centre = size // 2
    # OpenGait's columns: [centre - h // 2, centre + h // 2 + 1), clipped by slicing to the canvas.
    left = (centre - height // 2).clamp(min=0)
    right = (centre + height // 2 + 1).clamp(max=size)
    width = right - left
    area = ((height >= out) & (width >= out)).flatten()
    row_origin, col_origin = rows[:, :1].to(top.dtype), cols[:, :1].to(top.dtype)
    r = resize_weights((top - row_origin).flatten(), height.flatten(), out, rows.shape[1], area)
    k = resize_weights((left - col_origin).flatten(), width.flatten(), out, cols.shape[1], area)
    r = r.reshape(n, c, out, rows.shape[1])
    k = k.reshape(n, c, out, cols.shape[1])[:, :, side_crop:out - side_crop]
    return r @ maps @ k.transpose(-1, -2)


def render_skeleton_maps(poses: torch.Tensor, cfg: InputConfig, output: str = "model") -> torch.Tensor:
    """Render (..., 17, 3) canvas-free poses (image pixels, imputed) into 2-channel skeleton maps.

    output="model": float32 in [0, 1], shape (..., 2, map_size, map_size - 2 * side_crop); quantised to
    uint8 levels / 255 unless cfg.dtype == "float32".
    output="export": uint8, shape (..., 2, map_size, map_size), as `scolio render` writes files.
    """
    if output not in ("model", "export"):
        raise ConfigError(f"output must be 'model' or 'export', got {output!r}")
    if cfg.representation not in PARTS:
        raise ConfigError(f"input.representation {cfg.representation!r} is not a skeleton representation; "
                          f"choose one of {list(PARTS)}")
    if poses.shape[-2:] != (NUM_JOINTS, 3):
        raise DataError(f"poses must have shape (..., 17, 3), got {tuple(poses.shape)}")
    lead = poses.shape[:-2]
    flat = poses.reshape(-1, NUM_JOINTS, 3)
    side = cfg.side_crop if output == "model" else 0
    quantise = output == "export" or cfg.dtype == "uint8"
    width = cfg.map_size - 2 * side
    if _backend(flat) == "numba":
        maps = numba_cpu.render_frames(flat, cfg, side, quantise)
    else:
        budget = _CHUNK_PIXELS_CUDA if flat.is_cuda else _CHUNK_PIXELS_CPU
        chunk = max(1, budget // cfg.canvas_size**2)
        pieces = [_render_chunk(flat[i:i + chunk], cfg, side, quantise) for i in range(0, flat.shape[0], chunk)]
        maps = torch.cat(pieces) if pieces else flat.new_zeros((0, 2, cfg.map_size, width), dtype=torch.float32)
    maps = maps.reshape(*lead, 2, cfg.map_size, width)
    if output == "export":
        return maps.to(torch.uint8)
    return maps / 255.0 if quantise else maps.clamp_(0.0, 1.0)


def _backend(poses: torch.Tensor) -> str:
    """Which implementation renders `poses`: the fused numba kernel (scolio_core/render/numba_cpu.py) for CPU
    tensors, this module's torch code on CUDA. SCOLIO_RENDER_BACKEND=torch forces the torch code on CPU
    too (to compare the two, or as a fallback); both give the same maps, so no config field names it."""
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "torch", "numba"):
        raise ConfigError(f"{BACKEND_ENV}={choice!r} is not a renderer backend; use auto, torch or numba")
    if choice == "torch" or poses.device.type != "cpu":
        return "torch"
    global _NUMBA_MISSING_WARNED
    if numba_cpu.available():
        return "numba"
    if choice == "numba":
        raise ConfigError(f"{BACKEND_ENV}=numba but numba is not installed (pip install numba)")
    if not _NUMBA_MISSING_WARNED:  # say once why CPU rendering is ~10x slower than it should be
        warnings.warn("numba is not installed: rendering skeleton maps with the slower torch code on CPU "
                      "(pip install numba)", RuntimeWarning, stacklevel=3)
        _NUMBA_MISSING_WARNED = True
    return "torch"


def _render_chunk(poses: torch.Tensor, cfg: InputConfig, side: int, quantise: bool) -> torch.Tensor:
    """One chunk of frames: (n, 17, 3) -> (n, 2, D, D - 2 side): uint8 levels as float when `quantise`,
    else float maps in [0, 1]."""
    xy, drawn, value = _points(poses, cfg)
    maps, rows, cols = _draw(xy, drawn, value, cfg)
    levels = grey_levels(maps) if quantise or cfg.alignment == "opengait" else maps
    if cfg.alignment == "opengait":
        top, bottom = _crop_boxes(levels)
        # Window rows -> canvas rows; an empty channel keeps canvas row 0 (numpy's argmax of nothing).
        empty = (levels.amax(dim=(-1, -2)) == 0)
        origin = rows[:, :1].long()
        top = torch.where(empty, 0, top + origin)
        bottom = torch.where(empty, 0, bottom + origin)
    else:
        top, bottom = _keypoint_rows(xy, drawn, cfg)
    if quantise:
        return torch.floor(_crop_resize(levels, top, bottom, rows, cols, cfg, side) + LEVEL_EPS).clamp_(0, 255)
    return _crop_resize(maps, top, bottom, rows, cols, cfg, side)
