"""The named lifter evaluation cases: inputs, ground truth, metrics and the unchanged-reference baseline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from liftdata.eval.lifter_cases import CASES, case_data, evaluate_cases, temporal_error
from liftdata.lifters import _warp_ops as ops
from liftdata.synthetic import make_capture, make_subject
from test_eval_lpips import caches  # noqa: F401  (fixture: fake LPIPS weight files)

SEED, SIZE = 4100, 64


@pytest.fixture(scope="module")
def yaw30():
    return case_data(SEED, "yaw30", size=SIZE, frames=3)


def test_driving_ramps_to_the_target_pose(yaw30):
    ref = yaw30.references.conditions.vertices.double().numpy()
    drv = yaw30.driving.vertices.double().numpy()
    R, _ = ops.rigid_fit(np.repeat(ref, len(drv), 0), drv)
    np.testing.assert_allclose(np.degrees(ops.rotation_angle(R)), [10, 20, 30], atol=1e-3)
    jaw = case_data(SEED, "jaw", size=SIZE, frames=2).driving.kinematics
    model = yaw30.references.conditions
    assert jaw.expression[-1].max() == pytest.approx(0.8) and np.count_nonzero(jaw.expression[-1]) == 1
    assert model.kinematics.expression.max() == 0  # one frontal, neutral, closed-mouth reference


def test_truth_is_the_subject_rendered_under_the_driving_kinematics(yaw30):
    again = make_capture(SEED, kinematics=yaw30.driving.kinematics, size=SIZE)
    np.testing.assert_array_equal(yaw30.truth, np.stack(list(again.frames)))


def test_head_mask_covers_exactly_what_differs_from_the_background(yaw30):
    bg = make_subject(SEED, size=SIZE).background / 255.0  # resampled as render_subject does (2x supersampling)
    up = cv2.resize(bg, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_LINEAR)
    background = np.clip(cv2.resize(up, (SIZE, SIZE), interpolation=cv2.INTER_AREA) * 255 + 0.5, 0, 255).astype(int)
    for frame, mask in zip(yaw30.truth, yaw30.mask, strict=True):
        differs = np.abs(frame.astype(int) - background).max(-1) > 2
        near = binary_dilation(mask, iterations=1)
        assert not (differs & ~near).any()  # nothing of the head outside the mask (but anti-aliasing)
        assert differs[mask].mean() > 0.97 and mask.sum() > 200


def test_oracle_and_unchanged_reference(yaw30):
    def oracle(refs, driving, seed):  # renders the truth: an independent "perfect lifter"
        return np.stack(list(make_capture(seed, kinematics=driving.kinematics, size=SIZE).frames))

    def unchanged(refs, driving, seed):
        return np.repeat(refs.images[:1], len(driving), 0)

    best = evaluate_cases(oracle, [SEED], size=SIZE, cases=["yaw30"], frames=3)["yaw30"]
    assert best["psnr"] == np.inf and best["ssim"] == pytest.approx(1.0) and best["temporal"] == 0
    same = evaluate_cases(unchanged, [SEED, SEED + 1], size=SIZE, cases=["yaw30"], frames=3)["yaw30"]
    for key in ("psnr", "ssim", "psnr_clip", "temporal"):
        assert same[key] == pytest.approx(same[f"{key}_reference"])
    assert same["psnr"] < 25 and len(same["per_seed"]["psnr"]) == 2


def test_temporal_error_matches_a_loop(rng):
    pred = rng.integers(0, 256, (4, 6, 7, 3)).astype(np.uint8)
    truth = rng.integers(0, 256, (4, 6, 7, 3)).astype(np.uint8)
    mask = rng.random((4, 6, 7)) > 0.5
    total, count = 0.0, 0
    for t in range(3):
        for y in range(6):
            for x in range(7):
                if mask[t, y, x] or mask[t + 1, y, x]:
                    dp = pred[t + 1, y, x].astype(float) - pred[t, y, x]
                    dg = truth[t + 1, y, x].astype(float) - truth[t, y, x]
                    total += np.abs(dp - dg).mean() / 255
                    count += 1
    assert temporal_error(pred, truth, mask) == pytest.approx(total / count)
    assert temporal_error(truth, truth, mask) == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown"):
        evaluate_cases(lambda r, d, s: None, [1], cases=["yaw90"])
    with pytest.raises(ValueError, match="seeds"):
        evaluate_cases(lambda r, d, s: None, [], cases=["yaw10"])
    with pytest.raises(ValueError, match="lifted frames"):
        evaluate_cases(lambda r, d, s: np.zeros((1, SIZE, SIZE, 3), np.uint8), [SEED], size=SIZE, cases=["yaw10"],
                       frames=2)
    assert set(CASES) >= {"yaw10", "yaw20", "yaw30", "yaw40", "jaw", "smile", "jaw_yaw30"}


def test_k_references_are_narrow_and_closed_mouth():
    data = case_data(SEED, "smile", size=SIZE, frames=1, references=4)
    k = data.references.conditions.kinematics
    assert len(data.references) == 4 and k.expression[:, 0:0].shape == (4, 0)
    model = data.references.conditions
    names = make_subject(SEED, size=SIZE).head_model.expression_names
    assert (k.expression[:, names.index("jawOpen")] == 0).all()
    yaw = np.degrees(np.abs(np.asarray(k.rotation)[:, 1]))
    assert yaw.max() <= 6.0 + 1e-4 and torch.is_tensor(model.vertices)


def test_proxy_world_adds_hair_and_neck_around_the_same_face():
    face = case_data(SEED, "yaw20", size=SIZE, frames=1)
    head = case_data(SEED, "yaw20", size=SIZE, frames=1, head="proxy")
    np.testing.assert_array_equal(face.references.images.shape, head.references.images.shape)
    assert (head.mask[0] >= face.mask[0]).all() and head.mask[0].sum() > 1.2 * face.mask[0].sum()
    inner = cv2.erode(face.mask[0].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # the face, off its silhouette
    differs = np.abs(head.truth[0].astype(int) - face.truth[0]).max(-1) > 0
    assert differs[inner].mean() < 0.005  # a few pixels of the mouth slit see the shell behind it
    far = ~binary_dilation(head.mask[0], iterations=2)
    np.testing.assert_array_equal(head.truth[0][far], face.truth[0][far])  # same background


def test_masked_lpips_per_case_matches_the_network_on_each_frame(caches):
    from liftdata.eval.lpips import load_lpips
    from liftdata.eval.metrics import to_nchw

    net = load_lpips("alex", caches)

    def oracle(refs, driving, seed):
        return np.stack(list(make_capture(seed, kinematics=driving.kinematics, size=SIZE).frames))

    def unchanged(refs, driving, seed):
        return np.repeat(refs.images[:1], len(driving), 0)

    best = evaluate_cases(oracle, [SEED], size=SIZE, cases=["yaw30"], frames=3, lpips=net)["yaw30"]
    assert best["lpips_alex"] == pytest.approx(0, abs=1e-6) and best["lpips_alex_clip"] == pytest.approx(0, abs=1e-6)
    same = evaluate_cases(unchanged, [SEED], size=SIZE, cases=["yaw30"], frames=3, lpips=net)["yaw30"]
    data = case_data(SEED, "yaw30", size=SIZE, frames=3)
    x = to_nchw(np.repeat(data.references.images[:1], 3, 0), dtype=torch.float32)
    want = [float(net(x[i:i + 1], to_nchw(data.truth[i:i + 1], dtype=torch.float32),
                      torch.from_numpy(data.mask[i:i + 1]).float())) for i in range(3)]
    assert want[-1] > 0 and same["lpips_alex"] == pytest.approx(want[-1], rel=1e-4)
    assert same["lpips_alex_clip"] == pytest.approx(np.mean(want), rel=1e-4)
    assert same["lpips_alex"] == pytest.approx(same["lpips_alex_reference"])
