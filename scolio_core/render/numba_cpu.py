"""Fused CPU skeleton-map renderer: steps (b)-(e) of `skeleton.py` as one numba loop per frame.

Eager torch makes ~9 memory passes per limb pixel, each a separate kernel over the whole chunk; here a
pixel costs one pass per part that covers it, then one exp and a grey level, and the crop + resize reads
only the pixels it weights, all while the frame's buffers sit in L1/L2. The arithmetic is the torch
path's (costs are float64 row and column terms rounded to float32 and added in float32, the same
OpenCV resize weights), so float maps agree to ~1e-6 and exported levels differ only where a value lies
within rounding of a level boundary (at most 1 level, in about 1 pixel per million).
`skeleton.render_skeleton_maps` sends CPU tensors here (SCOLIO_RENDER_BACKEND=torch opts out).

Per frame:
 * canvas points, the virtual head and shoulder midpoint (as `skeleton._points`);
 * each part is evaluated only inside its +-3 sigma box; a pixel keeps the minimum over parts of its
   log-space cost, then takes one exp (a polynomial LLVM vectorises; numba's exp is a scalar call);
 * grey levels: matplotlib's table is the identity except 24 entries one below, which `_grey_level`
   finds with one bit test on the level as a float32 instead of a table gather;
 * crop rows per channel (opengait: first/last non-zero row) or from the keypoints (aligned);
 * crop + INTER_AREA resize as two banded passes with OpenCV's weights, each output reading only the
   2-4 source pixels it covers; the weights are computed once per crop length and render call, and
   output columns whose taps miss the drawing window are written as 0 without a pass.
Maps are stored x-major (a canvas column is contiguous), so the column pass runs along contiguous memory;
one small transpose of the live columns between the passes lets the row pass do the same.

Frames run in parallel (prange) on `torch.get_num_threads()` threads, so a trial's thread budget holds;
with one thread a serial build runs and no thread pool starts. Compiled code is cached on disk
(cache=True): in __pycache__ next to this file or, where that is read-only, numba's user-wide cache
(~/.cache/numba); NUMBA_CACHE_DIR, when set, takes precedence over both.
"""

# Min/max are written as `a if a < b else b` on purpose: one compare and select each, which LLVM vectorises
# in the pixel loops (checked in the generated IR); the builtins were not tried there.
# ruff: noqa: FURB136

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from scolio_core.config import InputConfig
from scolio_core.render.constants import (
    FACE_JOINTS,
    GREY_LUT,
    HEAD,
    LEVEL_EPS,
    NUM_JOINTS,
    PARTS,
    SHOULDER_MID,
)

try:  # numba is a declared dependency; the guard lets an environment without it fall back to torch.
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - only without numba installed
    numba = None

_CACHE_WARNED = False


def _grey_table_formula(index: np.ndarray) -> np.ndarray:
    """matplotlib's grey table (constants.GREY_LUT) as arithmetic: index k maps to k - 1 where k is in
    [32, 64) with k % 4 == 1, [64, 128) with k % 8 == 2 or [128, 256) with k % 16 == 4, else to k."""
    k = np.asarray(index)
    low = (k >= 32) & (k < 64) & (k % 4 == 1)
    mid = (k >= 64) & (k < 128) & (k % 8 == 2)
    high = (k >= 128) & (k % 16 == 4)
    return k - (low | mid | high)


# The kernel relies on this identity; a matplotlib-table change would have to be mirrored there.
assert np.array_equal(_grey_table_formula(np.arange(256)), GREY_LUT)


def available() -> bool:
    """Whether numba imported (the fused CPU path can run)."""
    return numba is not None


if numba is not None:
    _F32 = np.float32
    _I32 = np.int32

    def _njit(**options):
        """numba.njit with the on-disk cache. numba finds no cache location only when both this
        directory and its user-wide cache are read-only (and NUMBA_CACHE_DIR is unset); it then refuses
        to decorate, so compile uncached (every process pays the compile) and say so once."""
        def wrap(fn):
            try:
                return njit(cache=True, nogil=True, error_model="numpy", **options)(fn)
            except RuntimeError as exc:
                global _CACHE_WARNED
                if not _CACHE_WARNED:
                    warnings.warn(f"{exc}; the skeleton-map kernel is compiled in every process (~15 s). "
                                  "Set NUMBA_CACHE_DIR to a writable directory to cache it.", RuntimeWarning)
                    _CACHE_WARNED = True
                return njit(cache=False, nogil=True, error_model="numpy", **options)(fn)
        return wrap

    @_njit(inline="always")
    def _exp_neg(c):
        """exp(-c) in float32 for |c| < 87: 2^n p(r) with Cody-Waite reduction and Cephes' expf
        polynomial, max relative error ~8e-8 (torch's Sleef expf: ~1 ulp). Only c > -87 is clamped (a
        weight above e^87); `_value` discards the lanes with c >= 87, incl. +inf, so no lower clamp."""
        x = -c
        x = x if x < _F32(87.0) else _F32(87.0)
        t = x * _F32(1.4426950408889634)
        n = (t + _F32(12582912.0)) - _F32(12582912.0)  # round to nearest with the 1.5 * 2^23 trick
        r = x - n * _F32(0.693145751953125)
        r = r - n * _F32(1.428606765330187e-06)
        p = _F32(1.9875691500e-4)
        p = p * r + _F32(1.3981999507e-3)
        p = p * r + _F32(8.3334519073e-3)
        p = p * r + _F32(4.1665795894e-2)
        p = p * r + _F32(1.6666665459e-1)
        p = p * r + _F32(5.0000001201e-1)
        p = p * r * r + r + _F32(1.0)
        bits = _I32((_I32(n) + _I32(127)) << _I32(23))
        return p * bits.view(np.float32)

    @_njit(inline="always")
    def _grey_level(v):
        """Step (d) for one value: LUT[min(floor(256 v), 255)] (see `_grey_table_formula`). The table
        lowers k >= 32 by one where k mod 4c == c, c = 2^(floor(log2 k) - 5); for the integer k as a
        float32 that is exactly: the low 20 mantissa bits equal 2^18 (one bit test, no table gather)."""
        q = v * _F32(256.0)
        q = q if q < _F32(255.0) else _F32(255.0)
        k = _F32(_I32(q))  # v >= 0: truncation is the floor
        bits = k.view(np.int32)
        return k - _F32(1.0) if (k >= _F32(32.0)) & ((bits & _I32(0xFFFFF)) == _I32(0x40000)) else k

    @_njit()
    def _points(pose, canvas, min_conf, weighting, xs, ys, drawn, value):
        """Step (b) for one frame: canvas points (19, float64) incl. head and shoulder midpoint, drawn
        flags and Gaussian peaks (rounded to float32 as the torch path does). Returns False when the
        joints span no height (nothing is drawn)."""
        hx = (pose[11, 0] + pose[12, 0]) / 2.0
        hy = (pose[11, 1] + pose[12, 1]) / 2.0
        ymin, ymax = np.inf, -np.inf
        for j in range(NUM_JOINTS):
            y = pose[j, 1] - hy
            ymin = min(ymin, y)
            ymax = max(ymax, y)
        height = ymax - ymin
        valid = height > 1e-6
        scale = float(canvas // 1.5) / (height if valid else 1.0)
        centre = canvas // 2
        for j in range(NUM_JOINTS):
            xs[j] = (pose[j, 0] - hx) * scale + centre
            ys[j] = (pose[j, 1] - hy) * scale + centre
            conf = pose[j, 2]
            drawn[j] = valid and conf >= min_conf
            value[j] = conf if weighting else 1.0
        count, hxs, hys, hv = 0.0, 0.0, 0.0, 0.0
        for j in FACE_JOINTS:
            if drawn[j]:
                count += 1.0
                hxs += xs[j]
                hys += ys[j]
                hv += value[j]
        denom = max(count, 1.0)
        xs[HEAD], ys[HEAD], value[HEAD], drawn[HEAD] = hxs / denom, hys / denom, hv / denom, count > 0
        xs[SHOULDER_MID] = (xs[5] + xs[6]) / 2.0
        ys[SHOULDER_MID] = (ys[5] + ys[6]) / 2.0
        value[SHOULDER_MID] = min(value[5], value[6])
        drawn[SHOULDER_MID] = drawn[5] and drawn[6]
        for j in range(NUM_JOINTS + 2):
            value[j] = float(np.float32(value[j]))
        return valid

    @_njit(inline="always")
    def _box_pixels(low, high, sigma, size):
        """A part's box as inclusive canvas pixels (lo, hi), lo > hi when it misses the canvas. The box
        is trunc(low - 3 sigma) .. trunc(high + 3 sigma): Python's int(), as OpenGait draws it."""
        lo = int(max(np.trunc(low - 3.0 * sigma), 0.0))
        hi = int(min(np.trunc(high + 3.0 * sigma), size - 1.0))
        return lo, hi

    @_njit(inline="always")
    def _grow(win, x0, x1, y0, y1):
        win[0], win[1] = min(win[0], x0), max(win[1], x1)
        win[2], win[3] = min(win[2], y0), max(win[3], y1)

    @_njit()
    def _draw_joints(cost, joints, xs, ys, drawn, value, joint_weight, sigma, size, colt, rowt, win):
        """Channel 1 into cost[x, y]: min over joints of ((x - jx) s)^2 + ((y - jy) s)^2 - ln(weight)
        inside each box (s = 1 / (sigma sqrt 2)). Sets win = (x0, x1, y0, y1), the union of the boxes;
        returns False when no joint is drawn."""
        scale = 1.0 / (sigma * math.sqrt(2.0))
        win[0], win[1], win[2], win[3] = size, -1, size, -1
        for j in joints:
            if drawn[j] and value[j] * joint_weight > 0:
                bx0, bx1 = _box_pixels(xs[j], xs[j], sigma, size)
                by0, by1 = _box_pixels(ys[j], ys[j], sigma, size)
                if bx0 <= bx1 and by0 <= by1:
                    _grow(win, bx0, bx1, by0, by1)
        if win[1] < win[0]:
            return False
        cost[win[0]:win[1] + 1, win[2]:win[3] + 1] = np.inf
        for j in joints:
            weight = value[j] * joint_weight
            if not (drawn[j] and weight > 0):
                continue
            bx0, bx1 = _box_pixels(xs[j], xs[j], sigma, size)
            by0, by1 = _box_pixels(ys[j], ys[j], sigma, size)
            if bx0 > bx1 or by0 > by1:
                continue
            bias = -math.log(weight)
            for x in range(bx0, bx1 + 1):
                colt[x] = np.float32(((x - xs[j]) * scale) ** 2)
            for y in range(by0, by1 + 1):
                rowt[y] = np.float32(((y - ys[j]) * scale) ** 2 + bias)
            rows = rowt[by0:by1 + 1]
            for x in range(bx0, bx1 + 1):
                cx = colt[x]
                line = cost[x, by0:by1 + 1]  # 0-based slices: numba drops its negative-index checks
                for i in range(rows.shape[0]):  # and LLVM vectorises the loop
                    c = rows[i] + cx
                    line[i] = c if c < line[i] else line[i]
        return True

    @_njit()
    def _draw_limbs(cost, limb_a, limb_b, xs, ys, drawn, value, sigma, size, sxc, txc, syr, tyr, win):
        """Channel 0 into cost[x, y]: min over limbs of S^2 + (T - clamp(T, 0, L))^2 - ln(weight), S and T
        the pixel's scaled coordinates across and along the segment, each a column plus a row term; a
        limb shorter than 1 px is drawn as its start joint. As `skeleton._draw`; win as `_draw_joints`."""
        scale = 1.0 / (sigma * math.sqrt(2.0))
        win[0], win[1], win[2], win[3] = size, -1, size, -1
        for stage in range(2):  # 0: the window (union of boxes), 1: draw
            if stage == 1:
                if win[1] < win[0]:
                    return False
                cost[win[0]:win[1] + 1, win[2]:win[3] + 1] = np.inf
            for i in range(limb_a.shape[0]):
                a, b = limb_a[i], limb_b[i]
                if not (drawn[a] and drawn[b]):
                    continue
                dx, dy = xs[b] - xs[a], ys[b] - ys[a]
                length = math.sqrt(dx * dx + dy * dy)
                short = length < 1.0
                weight = value[a] if short else min(value[a], value[b])
                if not weight > 0:
                    continue
                ex, ey = (xs[a], ys[a]) if short else (xs[b], ys[b])
                bx0, bx1 = _box_pixels(min(xs[a], ex), max(xs[a], ex), sigma, size)
                by0, by1 = _box_pixels(min(ys[a], ey), max(ys[a], ey), sigma, size)
                if bx0 > bx1 or by0 > by1:
                    continue
                if stage == 0:
                    _grow(win, bx0, bx1, by0, by1)
                    continue
                ux, uy = (1.0, 0.0) if short else (dx / max(length, 1.0), dy / max(length, 1.0))
                span = np.float32(0.0 if short else length * scale)
                bias = np.float32(-math.log(weight))
                for x in range(bx0, bx1 + 1):
                    u = (x - xs[a]) * scale
                    sxc[x] = np.float32(-u * uy)
                    txc[x] = np.float32(u * ux)
                for y in range(by0, by1 + 1):
                    v = (y - ys[a]) * scale
                    syr[y] = np.float32(v * ux)
                    tyr[y] = np.float32(v * uy)
                across, along = syr[by0:by1 + 1], tyr[by0:by1 + 1]
                for x in range(bx0, bx1 + 1):
                    sx, tx = sxc[x], txc[x]
                    line = cost[x, by0:by1 + 1]
                    for k in range(across.shape[0]):
                        s = across[k] + sx
                        t = along[k] + tx
                        inner = t if t > _F32(0.0) else _F32(0.0)
                        inner = inner if inner < span else span
                        beyond = t - inner
                        c = (s * s + beyond * beyond) + bias
                        line[k] = c if c < line[k] else line[k]
        return True

    @_njit(inline="always")
    def _value(c, ceiling, quantise):
        v = _exp_neg(c) if c < _F32(87.0) else _F32(0.0)  # +inf (outside every box) is exactly 0
        v = v if v < ceiling else ceiling
        return _grey_level(v) if quantise else v

    @_njit()
    def _to_values(cost, win, clamp_one, quantise, rowmax, track):
        """Costs -> map values in place over the window: exp(-cost) (joints clamped to 1), grey levels
        when `quantise`. With `track`, rowmax[y] gets the row's largest value (the opengait crop looks
        for non-zero levels): an elementwise max across columns, which vectorises where a per-row flag
        would not. The loops are written out per mode so each one vectorises without branches."""
        x0, x1, y0, y1 = win[0], win[1], win[2], win[3]
        ceiling = _F32(1.0) if clamp_one else _F32(np.inf)
        best = rowmax[y0:y1 + 1]
        best[:] = 0.0
        for x in range(x0, x1 + 1):
            line = cost[x, y0:y1 + 1]
            if quantise and track:
                for i in range(line.shape[0]):
                    v = _value(line[i], ceiling, True)
                    line[i] = v
                    best[i] = v if v > best[i] else best[i]
            elif quantise:
                for i in range(line.shape[0]):
                    line[i] = _value(line[i], ceiling, True)
            elif track:
                for i in range(line.shape[0]):
                    v = _value(line[i], ceiling, False)
                    line[i] = v
                    best[i] = v if v > best[i] else best[i]
            else:
                for i in range(line.shape[0]):
                    line[i] = _value(line[i], ceiling, False)

    @_njit()
    def _resize_axis(length, out_size, area, first_px, taps, weights):
        """Banded INTER_AREA weights for one axis of a crop `length` pixels long: output d reads crop
        pixels first_px[d] .. first_px[d] + taps[d] - 1 with weights[d, k] (float32). The arithmetic of
        `skeleton.resize_weights`, with positions relative to the crop start."""
        inv_scale = out_size / float(length)
        scale = 1.0 / inv_scale
        for d in range(out_size):
            if area:
                # Output cell d averages source [lo, lo + cell): overlaps of unit pixels, as two ramps.
                lo = np.float32(d * scale)
                cell = np.float32(scale)
                first = math.floor(lo)
                last = min(math.ceil(lo + cell), length)
                first_px[d] = first
                taps[d] = last - first
                for k in range(last - first):
                    p = np.float32(first + k)
                    hi_part = min(max(lo + cell - p, _F32(0.0)), _F32(1.0))
                    lo_part = min(max(lo - p, _F32(0.0)), _F32(1.0))
                    weights[d, k] = (hi_part - lo_part) / cell
            else:
                # OpenCV's enlarging rule: sx = floor(d scale), fx = frac((d + 1) - (sx + 1) / scale);
                # at the last source pixel the weight goes wholly to it.
                sx = math.floor(d * scale)
                fx = np.float32((d + 1) - (sx + 1) * inv_scale)
                fx = _F32(0.0) if fx <= 0 else fx - np.float32(math.floor(fx))
                if sx >= length - 1:
                    fx, sx = _F32(0.0), length - 1
                first_px[d] = int(sx)
                taps[d] = 2
                weights[d, 0] = _F32(1.0) - fx
                weights[d, 1] = fx

    @_njit(inline="always")
    def _tap_plan(first, taps, weights, lo, hi):
        """The taps of one output whose source line lies in [lo, hi] (others are 0 on the canvas), as
        (base, count, w0, w1, w2) when they are at most 3 consecutive lines from `base`; count -1 means
        the general form (more taps, or a gap) is needed."""
        w0 = w1 = w2 = _F32(0.0)
        count = 0
        base = first
        for k in range(taps):
            if first + k < lo or first + k > hi or weights[k] == 0:
                continue
            if count == 0:
                base = first + k
            if count == 3 or first + k - base != count:
                return base, -1, w0, w1, w2
            if count == 0:
                w0 = weights[k]
            elif count == 1:
                w1 = weights[k]
            else:
                w2 = weights[k]
            count += 1
        return base, count, w0, w1, w2

    @_njit(inline="always")
    def _taps_into(line, src, first, taps, weights, lo, hi, offset, n):
        """line[:n] = sum_k weights[k] src[first + k, offset:offset + n] over the taps whose source line
        lies in [lo, hi]; up to 3 taps in one pass, so each output is loaded and stored once."""
        base, count, w0, w1, w2 = _tap_plan(first, taps, weights, lo, hi)
        if count == 0:
            line[:n] = 0.0
        elif count == 1:
            a = src[base, offset:offset + n]
            for i in range(n):
                line[i] = w0 * a[i]
        elif count == 2:
            a, b = src[base, offset:offset + n], src[base + 1, offset:offset + n]
            for i in range(n):
                line[i] = w0 * a[i] + w1 * b[i]
        elif count == 3:
            a, b = src[base, offset:offset + n], src[base + 1, offset:offset + n]
            c = src[base + 2, offset:offset + n]
            for i in range(n):
                line[i] = (w0 * a[i] + w1 * b[i]) + w2 * c[i]
        else:
            line[:n] = 0.0
            for k in range(taps):
                if lo <= first + k <= hi and weights[k] != 0:
                    a = src[first + k, offset:offset + n]
                    for i in range(n):
                        line[i] += weights[k] * a[i]

    @_njit(inline="always")
    def _axis_plan(plans, length, out_size, area):
        """`_resize_axis` for one crop length, computed once per render call: a crop's weights depend only
        on its length and the resize mode, and a few dozen lengths recur across frames and channels."""
        first, taps, weights, ready = plans
        mode = 1 if area else 0
        if not ready[mode, length]:
            _resize_axis(length, out_size, area, first[mode, length], taps[mode, length], weights[mode, length])
            ready[mode, length] = True
        return first[mode, length], taps[mode, length], weights[mode, length]

    @_njit()
    def _crop_resize(vals, win, top, bottom, size, out_size, side, quantise, plans, cols, cols_t, dest):
        """Step (e) for one channel of x-major values: crop rows [top, bottom] and OpenGait's centred
        square of columns, INTER_AREA-resize to out_size, keep columns [side, out_size - side) into
        dest (out_size, out_size - 2 side). Canvas pixels outside `win` are 0 and are never read."""
        height = bottom - top + 1
        centre = size // 2
        left = max(centre - height // 2, 0)
        right = min(centre + height // 2 + 1, size)
        width = right - left
        area = height >= out_size and width >= out_size
        rlo, rtaps, rw = _axis_plan(plans, height, out_size, area)
        clo, ctaps, cw = _axis_plan(plans, width, out_size, area)
        x0, x1 = win[0], win[1]
        y0, y1 = max(top, win[2]), min(bottom, win[3])  # the crop rows that can be non-zero
        kept = out_size - 2 * side
        if y1 < y0:
            dest[:, :] = 0.0
            return
        rows = y1 - y0 + 1
        # Columns pass along contiguous memory: cols[e, y] = sum_k C[e, k] vals[left + clo[e] + k, y]; only
        # the outputs [e0, e1) whose taps reach the window's columns can be non-zero.
        e0, e1 = kept, 0
        for e in range(kept):
            first_x = left + clo[e + side]
            if first_x <= x1 and first_x + ctaps[e + side] > x0:
                e0 = min(e0, e)
                e1 = e + 1
                _taps_into(cols[e, :rows], vals, first_x, ctaps[e + side], cw[e + side], x0, x1, y0, rows)
        # Transpose the live outputs so the rows pass also runs along contiguous memory. Loops here and in
        # the passes are 0-based over slices: with a non-zero start numba keeps its negative-index
        # handling and the loops run several times slower (measured).
        live = e1 - e0
        for e in range(live):
            src = cols[e0 + e, :rows]
            for i in range(rows):
                cols_t[i, e] = src[i]
        # Rows pass: dest[d, e0:e1] = sum_k R[d, k] cols_t[top + rlo[d] + k - y0, :live]; 0 elsewhere.
        for d in range(out_size):
            line = dest[d]
            line[:] = 0.0
            if live > 0:
                _taps_into(line[e0:e1], cols_t, top + rlo[d] - y0, rtaps[d], rw[d], 0, rows - 1, 0, live)
            if quantise:  # truncate to levels with the torch path's tolerance (a floor: sums are >= 0)
                for i in range(kept):
                    v = line[i] + _F32(LEVEL_EPS)
                    v = v if v > _F32(0.0) else _F32(0.0)
                    v = v if v < _F32(255.0) else _F32(255.0)
                    line[i] = _F32(_I32(v))

    @_njit()
    def _scratch(canvas, map_size):
        taps = canvas // map_size + 3
        plans = (np.empty((2, canvas + 1, map_size), np.int64), np.empty((2, canvas + 1, map_size), np.int64),
                 np.empty((2, canvas + 1, map_size, taps), np.float32),  # resize plans per (mode, length)
                 np.zeros((2, canvas + 1), np.bool_))
        return (np.empty((2, canvas, canvas), np.float32),  # cost, then values, x-major
                np.empty(19), np.empty(19), np.empty(19, np.bool_), np.empty(19),  # points
                np.empty((4, canvas), np.float32),  # column / row terms of one part
                np.empty((2, 4), np.int64),  # drawing window per channel
                np.empty(canvas, np.float32),  # row maxima
                plans,
                np.empty((map_size, canvas), np.float32), np.empty((canvas, map_size), np.float32))  # columns pass

    @_njit()
    def _render_frame(pose, out, joints, limb_a, limb_b, canvas, sigma, joint_weight, min_conf, weighting,
                      opengait, quantise, map_size, side, s):
        """One frame (17, 3) float64 -> out (2, map_size, map_size - 2 side) float32."""
        cost, xs, ys, drawn, value, terms, win, rowmax, plans, cols, cols_t = s
        valid = _points(pose, canvas, min_conf, weighting, xs, ys, drawn, value)
        # Rows of the aligned crop: the drawn joints' rows +-3 sigma, as `skeleton._keypoint_rows`.
        any_on, jy0, jy1 = False, np.inf, -np.inf
        for j in joints:
            if drawn[j]:
                any_on = True
                jy0, jy1 = min(jy0, ys[j]), max(jy1, ys[j])
        last = float(canvas - 1)
        a_top = int(min(max(np.trunc(jy0 - 3 * sigma) if any_on else 0.0, 0.0), last))
        a_bottom = int(min(max(np.trunc(jy1 + 3 * sigma) if any_on else last, 0.0), last))
        a_bottom = max(a_top, a_bottom)
        # Smallest non-zero grey level (as stored) and value: opengait crops rows holding one.
        floor_value = _F32(1.0) if quantise else _F32(1.0 / 256.0)
        for ch in range(2):
            drew = False
            if valid and ch == 0:
                drew = _draw_limbs(cost[0], limb_a, limb_b, xs, ys, drawn, value, sigma, canvas,
                                   terms[0], terms[1], terms[2], terms[3], win[0])
            elif valid:
                drew = _draw_joints(cost[1], joints, xs, ys, drawn, value, joint_weight, sigma, canvas,
                                    terms[0], terms[1], win[1])
            if not drew:  # an empty channel is 0 whatever its crop
                out[ch, :, :] = 0.0
                continue
            w = win[ch]
            _to_values(cost[ch], w, ch == 1, quantise, rowmax, opengait)
            if opengait:
                top, bottom = -1, -1
                for y in range(w[2], w[3] + 1):
                    if rowmax[y] >= floor_value:
                        top = y if top < 0 else top
                        bottom = y
                if top < 0:  # nothing reaches a non-zero level: an all-zero channel
                    out[ch, :, :] = 0.0
                    continue
            else:
                top, bottom = a_top, a_bottom
            _crop_resize(cost[ch], w, top, bottom, canvas, map_size, side, quantise, plans, cols, cols_t, out[ch])

    @_njit()
    def _render_serial(poses, out, joints, limb_a, limb_b, canvas, sigma, joint_weight, min_conf, weighting,
                       opengait, quantise, map_size, side):
        s = _scratch(canvas, map_size)
        for f in range(poses.shape[0]):
            _render_frame(poses[f], out[f], joints, limb_a, limb_b, canvas, sigma, joint_weight, min_conf,
                          weighting, opengait, quantise, map_size, side, s)

    @_njit(parallel=True)
    def _render_parallel(poses, out, joints, limb_a, limb_b, canvas, sigma, joint_weight, min_conf,
                         weighting, opengait, quantise, map_size, side, blocks):
        n = poses.shape[0]
        for b in prange(blocks):  # one block of consecutive frames per thread, one scratch per block
            s = _scratch(canvas, map_size)
            for f in range(b * n // blocks, (b + 1) * n // blocks):
                _render_frame(poses[f], out[f], joints, limb_a, limb_b, canvas, sigma, joint_weight,
                              min_conf, weighting, opengait, quantise, map_size, side, s)


def render_frames(poses: torch.Tensor, cfg: InputConfig, side: int, quantise: bool) -> torch.Tensor:
    """(n, 17, 3) CPU poses -> (n, 2, D, D - 2 side) float32: uint8 levels as float when `quantise`, else
    float maps; what `skeleton._render_chunk` returns for the same arguments."""
    if numba is None:
        raise RuntimeError("numba is not installed: pip install numba, or set SCOLIO_RENDER_BACKEND=torch")
    joints, limbs = PARTS[cfg.representation]
    flat = np.ascontiguousarray(poses.detach().numpy(), dtype=np.float64)
    n = flat.shape[0]
    out = np.empty((n, 2, cfg.map_size, cfg.map_size - 2 * side), np.float32)
    pairs = np.asarray(limbs, np.int64).reshape(-1, 2)
    args = (flat, out, np.asarray(joints, np.int64), np.ascontiguousarray(pairs[:, 0]),
            np.ascontiguousarray(pairs[:, 1]), int(cfg.canvas_size), float(cfg.sigma), float(cfg.joint_weight),
            float(cfg.min_confidence), bool(cfg.confidence_weighting), cfg.alignment == "opengait",
            bool(quantise), int(cfg.map_size), int(side))
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, n)
    if threads <= 1:
        _render_serial(*args)
    else:
        numba.set_num_threads(threads)
        _render_parallel(*args, threads)
    return torch.from_numpy(out)


def warm_up(parallel: bool = False) -> float:
    """Compile, or load from the cache, the serial (and with `parallel` the threaded) kernel; returns
    the seconds it took. Trial processes need not call it: the first render does the same."""
    start = time.perf_counter()
    poses = torch.zeros((2, NUM_JOINTS, 3))
    poses[..., 1] = torch.arange(NUM_JOINTS, dtype=torch.float32)
    poses[..., 2] = 1.0
    cfg = InputConfig(representation="full-body")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's "cannot cache" notes; the caller measures, not caches
        render_frames(poses[:1], cfg, 0, True)
        if parallel and numba.config.NUMBA_NUM_THREADS > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(2)
            try:
                render_frames(poses, cfg, 0, True)
            finally:
                torch.set_num_threads(threads)
    return time.perf_counter() - start
