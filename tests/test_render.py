"""The vectorised skeleton-map renderer against a slow per-frame, per-part reference of the OpenGait
pretreatment (numpy Gaussians, matplotlib's grey map, cv2.resize INTER_AREA), plus shapes, imputation
and the interpolation matrices against OpenCV itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cm

from scolio_core.config import InputConfig
from scolio_core.errors import ConfigError, DataError
from scolio_core.render.impute import impute_missing
from scolio_core.render.skeleton import render_skeleton_maps, resize_weights

torch.set_num_threads(1)

LIMBS = ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
         (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12))
# A standing person in image pixels (COCO-17 order), about 130 px tall.
STANDING = np.array([[250, 100], [254, 96], [246, 96], [259, 99], [241, 99], [266, 122], [234, 122],
                     [272, 150], [228, 150], [275, 176], [225, 176], [260, 182], [240, 182],
                     [262, 212], [238, 212], [263, 238], [237, 240]], dtype=np.float64)


def make_poses(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = STANDING[None] + rng.normal(0, 3, (frames, 17, 2)) + rng.uniform(-40, 40, (frames, 1, 2))
    conf = rng.uniform(0.2, 1.0, (frames, 17))
    conf[0, 3] = 0.0  # an undetected ear: not drawn
    xy[0, 1] = xy[0, 0] + 0.4  # a limb shorter than 1 px: drawn as its start joint
    conf[1, 9] = 5e-4  # below min_confidence
    conf[1, 0:5] = 0.0  # no visible face: head-lite draws no head
    return np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32)


# ---------------------------------------------------------------- slow reference (loops over frames/parts)

def ref_points(frame: np.ndarray, cfg: InputConfig):
    """Canvas points of one frame: dict index -> (x, y, drawn, value) incl. head (17), shoulder mid (18)."""
    xy = frame[:, :2].astype(np.float64)
    xy = xy - (xy[11] + xy[12]) / 2
    xy = xy * ((cfg.canvas_size // 1.5) / (xy[:, 1].max() - xy[:, 1].min())) + cfg.canvas_size // 2
    pts = {}
    for j in range(17):
        c = float(frame[j, 2])
        pts[j] = (xy[j, 0], xy[j, 1], c >= cfg.min_confidence, c if cfg.confidence_weighting else 1.0)
    face = [j for j in range(5) if pts[j][2]]
    if face:
        pts[17] = (np.mean([pts[j][0] for j in face]), np.mean([pts[j][1] for j in face]), True,
                   np.mean([pts[j][3] for j in face]))
    else:
        pts[17] = (0.0, 0.0, False, 0.0)
    pts[18] = ((pts[5][0] + pts[6][0]) / 2, (pts[5][1] + pts[6][1]) / 2, pts[5][2] and pts[6][2],
               min(pts[5][3], pts[6][3]))
    return pts


def ref_parts(representation: str):
    if representation == "full-body":
        return list(range(17)), list(LIMBS)
    body = [j for j in range(5, 17)]
    limbs = [lb for lb in LIMBS if min(lb) >= 5]
    if representation == "body-only":
        return body, limbs
    return body + [17], limbs + [(17, 18)]


def ref_gaussian(arr, x, y, value, sigma):
    h, w = arr.shape
    x0, x1 = max(int(x - 3 * sigma), 0), min(int(x + 3 * sigma) + 1, w)
    y0, y1 = max(int(y - 3 * sigma), 0), min(int(y + 3 * sigma) + 1, h)
    for py in range(y0, y1):
        for px in range(x0, x1):
            arr[py, px] = max(arr[py, px], np.exp(-((px - x) ** 2 + (py - y) ** 2) / 2 / sigma**2) * value)


def ref_limb(arr, a, b, va, vb, sigma):
    h, w = arr.shape
    ab2 = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    if ab2 < 1:
        ref_gaussian(arr, a[0], a[1], va, sigma)
        return
    value = min(va, vb)
    x0, x1 = max(int(min(a[0], b[0]) - 3 * sigma), 0), min(int(max(a[0], b[0]) + 3 * sigma) + 1, w)
    y0, y1 = max(int(min(a[1], b[1]) - 3 * sigma), 0), min(int(max(a[1], b[1]) + 3 * sigma) + 1, h)
    for py in range(y0, y1):
        for px in range(x0, x1):
            da = (px - a[0]) ** 2 + (py - a[1]) ** 2
            db = (px - b[0]) ** 2 + (py - b[1]) ** 2
            coeff = (da - db + ab2) / 2 / ab2
            if coeff <= 0:
                d2 = da
            elif coeff >= 1:
                d2 = db
            else:
                qx, qy = a[0] + coeff * (b[0] - a[0]), a[1] + coeff * (b[1] - a[1])
                d2 = (px - qx) ** 2 + (py - qy) ** 2
            arr[py, px] = max(arr[py, px], np.exp(-d2 / 2 / sigma**2) * value)


def ref_render(poses: np.ndarray, cfg: InputConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T, 17, 3) -> (float maps (T, 2, 64, 44) without quantisation, uint8 export (T, 2, 64, 64))."""
    size, sigma = cfg.canvas_size, cfg.sigma
    joints, limbs = ref_parts(cfg.representation)
    floats, exports = [], []
    for frame in poses:
        pts = ref_points(frame, cfg)
        limb_map = np.zeros((size, size), np.float32)
        joint_map = np.zeros((size, size), np.float32)
        for a, b in limbs:
            if pts[a][2] and pts[b][2]:
                ref_limb(limb_map, pts[a][:2], pts[b][:2], pts[a][3], pts[b][3], sigma)
        for j in joints:
            if pts[j][2]:
                ref_gaussian(joint_map, pts[j][0], pts[j][1], pts[j][3], sigma)
        joint_map = np.minimum(joint_map * cfg.joint_weight, 1.0)
        channels = [limb_map, joint_map]
        levels = [(cm.gray(c)[..., :3] * 255).astype(np.uint8)[..., 0].astype(np.float64) for c in channels]
        if cfg.alignment == "aligned":
            ys = [pts[j][1] for j in joints if pts[j][2]]
            top = min(max(int(min(ys) - 3 * sigma), 0), size - 1)
            bottom = min(max(int(max(ys) + 3 * sigma), 0), size - 1)
            rows = [(top, bottom)] * 2
        else:
            rows = []
            for lv in levels:
                nz = np.flatnonzero(lv.sum(axis=1) != 0)
                rows.append((nz[0], nz[-1]) if len(nz) else (0, 0))
        f_out, e_out = [], []
        for c, lv, (top, bottom) in zip(channels, levels, rows):
            h = bottom - top + 1
            cols = slice(size // 2 - h // 2, size // 2 + h // 2 + 1)
            resized = cv2.resize(c.astype(np.float64)[top:bottom + 1, cols], (64, 64),
                                 interpolation=cv2.INTER_AREA)
            f_out.append(resized[:, cfg.side_crop:64 - cfg.side_crop])
            q = cv2.resize(lv[top:bottom + 1, cols] / 255.0, (64, 64), interpolation=cv2.INTER_AREA)
            e_out.append((q * 255).astype(np.uint8))
        floats.append(f_out)
        exports.append(e_out)
    return np.asarray(floats, np.float32), np.asarray(exports, np.uint8)


# ---------------------------------------------------------------- tests

CASES = [(8.0, 1.0), (3.5, 0.5), (12.0, 2.0)]


@pytest.mark.parametrize("alignment", ["opengait", "aligned"])
@pytest.mark.parametrize("representation", ["full-body", "body-only", "head-lite"])
def test_matches_loop_reference(representation: str, alignment: str) -> None:
    poses = make_poses(2, seed=len(representation) * 10 + len(alignment))
    for sigma, joint_weight in CASES:
        cfg = InputConfig(representation=representation, alignment=alignment, sigma=sigma,
                          joint_weight=joint_weight, dtype="float32")
        want_float, want_export = ref_render(poses, cfg)
        got_float = render_skeleton_maps(torch.from_numpy(poses), cfg).numpy()
        got_export = render_skeleton_maps(torch.from_numpy(poses), cfg, output="export").numpy()
        assert got_float.shape == want_float.shape == (2, 2, 64, 44)
        assert want_float.max() > 0.5  # the reference drew something
        np.testing.assert_allclose(got_float, want_float, atol=1e-4, rtol=0)
        diff = np.abs(got_export.astype(int) - want_export.astype(int))
        assert diff.max() <= 1, (sigma, joint_weight, diff.max())
        assert (diff == 0).mean() > 0.95


def test_confidence_weighting_off_uses_unit_peaks() -> None:
    poses = make_poses(2, seed=3)
    cfg = InputConfig(representation="full-body", confidence_weighting=False, dtype="float32", sigma=6.0)
    want, _ = ref_render(poses, cfg)
    got = render_skeleton_maps(torch.from_numpy(poses), cfg).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    weighted = render_skeleton_maps(torch.from_numpy(poses), InputConfig(representation="full-body",
                                                                         dtype="float32", sigma=6.0))
    assert got[:, 1].max() > weighted[:, 1].max().item()


def test_shapes_dtypes_and_uint8_model_matches_export() -> None:
    poses = torch.from_numpy(make_poses(6, seed=1)).reshape(2, 3, 17, 3)
    cfg = InputConfig()
    model = render_skeleton_maps(poses, cfg)
    export = render_skeleton_maps(poses, cfg, output="export")
    assert model.shape == (2, 3, 2, 64, 44) and model.dtype == torch.float32
    assert export.shape == (2, 3, 2, 64, 64) and export.dtype == torch.uint8
    assert 0.0 <= model.min() and model.max() <= 1.0
    # Quantised model maps are the exported levels / 255 with the side columns cut.
    torch.testing.assert_close(model, export[..., 10:54].float() / 255.0)
    assert render_skeleton_maps(poses[:, :0], cfg).shape == (2, 0, 2, 64, 44)


def test_aligned_shares_one_box_and_opengait_crops_per_channel() -> None:
    poses = torch.from_numpy(make_poses(3, seed=5))
    # A faint joint channel: its Gaussian tails quantise to 0 well inside the keypoints' 3-sigma box.
    aligned = render_skeleton_maps(poses, InputConfig(alignment="aligned", joint_weight=0.1), output="export")
    opengait = render_skeleton_maps(poses, InputConfig(alignment="opengait", joint_weight=0.1), output="export")
    # opengait crops each channel to its own non-zero rows, so both reach the top and bottom rows ...
    for channel in (0, 1):
        assert (opengait[:, channel, 0].amax(dim=-1) > 0).all()
        assert (opengait[:, channel, -1].amax(dim=-1) > 0).all()
    # ... while aligned keeps one box: the faint joints no longer fill it (and stay registered to the limbs).
    assert (aligned[:, 1, 0].amax(dim=-1) == 0).all() and (aligned[:, 1, -1].amax(dim=-1) == 0).all()


def test_maps_ignore_translation_and_scale_of_the_pose() -> None:
    poses = torch.from_numpy(make_poses(3, seed=6))
    moved = poses.clone()
    moved[..., :2] = poses[..., :2] * 1.75 + torch.tensor([-120.0, 33.0])
    for alignment in ("aligned", "opengait"):
        cfg = InputConfig(alignment=alignment, dtype="float32")
        torch.testing.assert_close(render_skeleton_maps(moved, cfg), render_skeleton_maps(poses, cfg),
                                   atol=1e-4, rtol=0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(DataError, match=r"\(\.\.\., 17, 3\)"):
        render_skeleton_maps(torch.zeros(4, 18, 3), InputConfig())
    with pytest.raises(ConfigError, match="silhouette"):
        render_skeleton_maps(torch.zeros(4, 17, 3), InputConfig(representation="silhouette"))
    with pytest.raises(ConfigError, match="output"):
        render_skeleton_maps(torch.zeros(4, 17, 3), InputConfig(), output="png")


def test_resize_weights_match_opencv_inter_area() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((128, 128))
    for h in list(range(1, 129, 3)) + [63, 64, 65, 127, 128]:
        w = min(2 * (h // 2) + 1, 128)
        top, left = rng.integers(0, 129 - h), rng.integers(0, 129 - w)
        want = cv2.resize(image[top:top + h, left:left + w], (64, 64), interpolation=cv2.INTER_AREA)
        area = torch.tensor([h >= 64 and w >= 64])
        rows = resize_weights(torch.tensor([top]), torch.tensor([h]), 64, 128, area)[0].double()
        cols = resize_weights(torch.tensor([left]), torch.tensor([w]), 64, 128, area)[0].double()
        got = (rows @ torch.from_numpy(image) @ cols.T).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"crop {h}x{w}")


def test_impute_missing_fills_zeros_from_neighbouring_frames() -> None:
    t = np.arange(10, dtype=np.float32)
    poses = np.zeros((10, 17, 3), np.float32)
    poses[..., 0] = 100 + 2 * t[:, None] + np.arange(17)  # joints drift steadily right
    poses[..., 1] = 50 + np.arange(17) * 5
    poses[..., 2] = 0.9
    poses[4, 7, :] = 0.0  # wrist missing in frame 4 (x, y and confidence)
    poses[6, 3, 1] = 0.0  # only y missing
    poses[:, 16, 0] = 0.0  # never observed: stays 0
    filled = impute_missing(poses, k=4)
    assert filled.dtype == np.float32 and filled.shape == poses.shape
    assert 100 + 2 * 2 + 7 <= filled[4, 7, 0] <= 100 + 2 * 6 + 7  # between the 4 nearest frames' values
    assert filled[4, 7, 1] == pytest.approx(50 + 7 * 5)
    assert filled[6, 3, 1] == pytest.approx(50 + 3 * 5)
    assert filled[4, 7, 2] == 0.0  # confidences are left as they were
    assert (filled[:, 16, 0] == 0).all()
    untouched = np.ones(poses.shape[:2], bool)
    untouched[4, 7] = untouched[6, 3] = False
    np.testing.assert_array_equal(filled[untouched][:, 2], poses[untouched][:, 2])
    np.testing.assert_array_equal(filled[~np.isin(np.arange(10), [4, 6])], poses[~np.isin(np.arange(10), [4, 6])])
    with pytest.raises(DataError, match=r"\(T, 17, 3\)"):
        impute_missing(np.zeros((5, 17, 2)))


def test_scolio_render_exports_opengait_layout(tmp_path) -> None:
    import json
    import pickle

    from scolio_core.cli.main import main
    from scolio_core.data.release import index_release
    from scolio_core.data.safe_pickle import safe_load

    root = tmp_path / "pose"
    sequences = {"00001": "negative", "00002": "Positive", "00003": "neutral"}
    for i, (seq_id, cls) in enumerate(sequences.items()):
        folder = root / seq_id / cls / "000_180"
        folder.mkdir(parents=True)
        poses = make_poses(3, seed=i)
        poses[1, 9, :] = 0.0  # a missing wrist, imputed before drawing
        with open(folder / "000_180.pkl", "wb") as handle:
            pickle.dump(poses, handle)
    ids_file = tmp_path / "part.json"
    ids_file.write_text(json.dumps({"TRAIN_SET": ["00001"], "TEST_SET": ["00002"]}))
    out = tmp_path / "maps"
    argv = ["render", str(root), str(out), "--sigma", "4", "--joint-weight", "0.8", "--alignment", "opengait",
            "--representation", "full-body", "--no-confidence-weighting", "--ids-from", str(ids_file),
            "--device", "cpu"]
    assert main(argv) == 0
    index = index_release(out)
    assert sorted(index) == ["00001", "00002"]  # only the listed ids
    assert index["00002"].class_name == "positive"
    maps = safe_load(out / "00002" / "positive" / "000_180" / "000_180.pkl")  # class folder canonicalised
    assert maps.dtype == np.uint8 and maps.shape == (3, 2, 64, 64)
    cfg = InputConfig(representation="full-body", sigma=4.0, joint_weight=0.8, alignment="opengait",
                      confidence_weighting=False)
    poses = impute_missing(safe_load(root / "00002" / "Positive" / "000_180" / "000_180.pkl"))
    np.testing.assert_array_equal(maps, render_skeleton_maps(torch.from_numpy(poses), cfg, output="export").numpy())
    recorded = json.loads((out / "render_config.json").read_text())
    assert recorded["input"]["sigma"] == 4.0 and recorded["input"]["confidence_weighting"] is False
    assert recorded["input"]["alignment"] == "opengait" and recorded["sequences"] == 2
    # An id the root does not hold is a one-line error naming it.
    ids_file.write_text(json.dumps(["00001", "00042"]))
    assert main(argv) == 2


def test_chunked_batches_match_frame_by_frame(monkeypatch) -> None:
    """Windows and part bands are shared by the frames of a chunk: a mixed batch split over several
    chunks (different people, sizes, a frame with nothing drawn, a pose partly off canvas) must render
    each frame exactly as it renders alone."""
    from scolio_core.render import skeleton as render

    poses = make_poses(9, seed=11)
    poses[2, :, :2] = poses[2, :, :2] * 0.6 + 40  # a smaller, shifted person
    poses[4, :, 2] = 0.0  # nothing drawn: an all-zero frame
    poses[6, 9:11, 0] += 400  # wrists far right: their boxes leave the canvas
    poses[7, 13:17, 1] -= 60  # knees/ankles pulled up: a crouch, bands differ from the others
    tensor = torch.from_numpy(poses)
    for alignment in ("aligned", "opengait"):
        cfg = InputConfig(representation="head-lite", alignment=alignment, dtype="float32", sigma=6.0)
        alone = torch.cat([render_skeleton_maps(tensor[i:i + 1], cfg) for i in range(len(poses))])
        monkeypatch.setattr(render, "_CHUNK_PIXELS_CPU", 4 * cfg.canvas_size**2)  # chunks of 4 frames
        together = render_skeleton_maps(tensor, cfg)
        monkeypatch.undo()
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
        assert together[4].abs().max() == 0 and together[6].amax() > 0.5
        want, _ = ref_render(poses[[6, 7]], cfg)
        np.testing.assert_allclose(together[[6, 7]].numpy(), want, atol=1e-4, rtol=0)
