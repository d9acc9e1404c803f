"""The photometric stage of the fit (`liftdata.track.photometric`, `fit_landmarks(..., frames=...)`).

Ground truth: synthetic captures rendered by our own renderer. mediapipe's landmark error on such
renders is a smooth error that follows the head pose (see tests/test_track_accuracy.py); here it is
injected exactly: the landmarks are those of the head turned 1.5x as far as it really is, so a
landmark-only fit inherits half of every turn as error, while the pixels move with the true pose.
The photometric stage has an error floor of its own (~0.4-0.6 deg here with unbiased landmarks),
so the claim tested is that it beats the landmark-only fit, not that it removes the whole error.
"""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from liftdata.capture import Capture
from liftdata.synthetic import drift_exposure, make_capture
from liftdata.track import FitConfig, Landmarks, fit_landmarks
from liftdata.track.accuracy import tracking_errors
from liftdata.track.photometric import PhotometricTerm, _crop

torch.set_num_threads(1)
N_FRAMES, SIZE = 48, 192
#: the tests of the stage's mechanisms run a third of its default steps (the previous default, 320):
#: what they check does not depend on the step count, and the default's own accuracy is measured
#: in test_track_accuracy.py and benchmarks/track_accuracy.py
MECHANISM = FitConfig(photometric_iters=320)


def _biased_landmarks(gt: Capture, scale: float = 1.5) -> Landmarks:
    """The model's landmarks with every head rotation scaled by `scale` (about the identity)."""
    turned = gt.kinematics.replace(rotation=gt.kinematics.rotation * scale)
    with torch.no_grad():
        uv = gt.camera.project(gt.head_model.vertices(torch.as_tensor(gt.identity), turned).numpy())[..., :2]
    points = np.concatenate([uv, np.zeros((len(uv), 10, 2))], 1).astype(np.float32)
    return Landmarks(points, np.zeros(points.shape[:2], np.float32), np.ones(len(uv), bool), SIZE, SIZE)


@pytest.fixture(scope="module")
def captures():
    return [make_capture(seed, n_frames=N_FRAMES, size=SIZE) for seed in (0, 1)]


def _errors(gt: Capture, fit) -> dict[str, float]:
    return tracking_errors(gt, Capture(gt.frames, fit.kinematics, fit.camera, fit.identity, gt.head_model))


def test_photometric_stage_removes_a_pose_dependent_landmark_error(captures):
    for gt in captures:
        lmk = _biased_landmarks(gt)
        frames = np.stack([gt.frames[i] for i in range(len(gt))])
        landmarks_only = _errors(gt, fit_landmarks(lmk, gt.head_model, progress=False))
        fit = fit_landmarks(lmk, gt.head_model, MECHANISM, progress=False, frames=frames)
        photometric = _errors(gt, fit)
        print(gt.capture_id, "relative rotation: landmarks only", round(landmarks_only["rotation_relative_deg"], 3),
              "with the photometric stage", round(photometric["rotation_relative_deg"], 3))
        assert landmarks_only["rotation_relative_deg"] > 0.5  # the injected error is there
        assert photometric["rotation_relative_deg"] < landmarks_only["rotation_relative_deg"]
        assert fit.photometric_residual.shape == (N_FRAMES,) and np.isfinite(fit.photometric_residual).all()


def test_per_frame_gain_absorbs_an_exposure_drift(captures):
    """A camera's exposure and white balance drift by +-20% over the clip: with each frame's gain
    estimated (the default) the stage still beats the landmark fit; with one for the clip it does worse."""
    for gt in captures:
        lmk = _biased_landmarks(gt)
        frames = drift_exposure(np.stack([gt.frames[i] for i in range(len(gt))]), 0.2, seed=3)
        assert np.abs(frames.reshape(N_FRAMES, -1).mean(1) / np.stack(gt.frames).reshape(N_FRAMES, -1).mean(1)
                      - 1).max() > 0.15  # the drift is there
        assert np.array_equal(drift_exposure(np.stack(gt.frames), 0.0), np.stack(gt.frames))
        landmarks_only = _errors(gt, fit_landmarks(lmk, gt.head_model, progress=False))["rotation_relative_deg"]
        gain = _errors(gt, fit_landmarks(lmk, gt.head_model, MECHANISM, progress=False, frames=frames))
        fixed = _errors(gt, fit_landmarks(lmk, gt.head_model, dataclasses.replace(MECHANISM, photometric_gain=False),
                                          progress=False, frames=frames))
        print(gt.capture_id, "relative rotation: landmarks only", round(landmarks_only, 3), "per-frame gains",
              round(gain["rotation_relative_deg"], 3), "one gain", round(fixed["rotation_relative_deg"], 3))
        assert gain["rotation_relative_deg"] < landmarks_only
        assert gain["rotation_relative_deg"] < fixed["rotation_relative_deg"]


def test_gain_estimate_recovers_a_known_exposure(captures):
    """Frames multiplied by a known per-frame RGB gain (no video coding): the term's estimate, at the
    true pose, removes most of it (up to a constant per channel, which the albedo absorbs). What is
    left is the face's own brightness change as it turns in the light, and clipping at 255."""
    for gt in captures:
        true = np.random.default_rng(5).uniform(0.7, 1.2, (N_FRAMES, 3))
        frames = np.stack([gt.frames[i] for i in range(len(gt))]).astype(np.float32)
        frames = np.clip(np.rint(frames * true[:, None, None]), 0, 255).astype(np.uint8)
        with torch.no_grad():
            verts = gt.head_model.vertices(torch.as_tensor(gt.identity), gt.kinematics)
        args = (frames, verts, np.asarray(gt.head_model.faces), float(gt.camera.K[0, 0]),
                float(gt.camera.world_to_camera[2, 3]), SIZE, SIZE, np.ones(N_FRAMES, bool))
        left = np.log(PhotometricTerm(*args).gain.numpy() / true)
        left -= left.mean(0)
        assert left.std(0).max() < 0.25 * np.log(true).std(0).min()
        assert PhotometricTerm(*args, gain=False).gain is None


def test_samples_outside_the_frame_are_not_visible(captures):
    """A head half out of the picture: samples that project outside the frame never count (the crop
    there holds replicated edge pixels), the ones inside still do."""
    gt = captures[0]
    frames = np.stack([gt.frames[i] for i in range(len(gt))])
    with torch.no_grad():
        verts = gt.head_model.vertices(torch.as_tensor(gt.identity), gt.kinematics)
    verts = verts + torch.tensor([-0.1, 0.0, 0.0])  # 10 cm to the left: about half the face leaves the frame
    term = PhotometricTerm(frames, verts, np.asarray(gt.head_model.faces), float(gt.camera.K[0, 0]),
                           float(gt.camera.world_to_camera[2, 3]), SIZE, SIZE, np.ones(N_FRAMES, bool))
    pts, _ = term.samples(verts)
    uv = gt.camera.project(pts.reshape(-1, 3).numpy())[:, :2].reshape(N_FRAMES, -1, 2)
    outside = (uv < -0.5).any(-1) | (uv > SIZE - 0.5).any(-1)
    assert outside.mean() > 0.2 and (~outside).mean() > 0.2  # the setup: both kinds are there
    visible = term.visible.numpy()
    assert not visible[outside].any()
    assert visible[~outside].mean() > 0.3


def test_photometric_stage_off_equals_the_landmark_fit(captures):
    gt = captures[0]
    lmk = _biased_landmarks(gt)
    frames = np.stack([gt.frames[i] for i in range(len(gt))])
    a = fit_landmarks(lmk, gt.head_model, progress=False)
    b = fit_landmarks(lmk, gt.head_model, FitConfig(photometric_iters=0), progress=False, frames=frames)
    assert a.kinematics.equals(b.kinematics) and a.photometric_residual is None and b.photometric_residual is None
    with pytest.raises(ValueError, match="frames: expected 48 frames"):
        fit_landmarks(lmk, gt.head_model, progress=False, frames=frames[:-1])
    with pytest.raises(ValueError, match="frames: 96x96 pixels"):
        fit_landmarks(lmk, gt.head_model, progress=False, frames=frames[:, ::2, ::2])


@pytest.mark.parametrize("centre,half,size", [((60.3, 80.7), 40.2, 64), ((10.0, 150.0), 70.0, 64),
                                              ((100.0, 100.0), 20.0, 96)])
def test_crop_affine_maps_frame_pixels_to_crop_pixels(centre, half, size):
    """A dot drawn at a frame position appears where the returned affine says (edges replicated,
    downscaled with area averaging or upscaled bilinearly)."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        frame = np.zeros((180, 200, 3), np.uint8)
        p = np.array(centre) + rng.uniform(-0.6, 0.6, 2) * half
        if not (6 <= p[0] < 194 and 6 <= p[1] < 174):  # the whole dot inside the frame
            continue
        cv2.circle(frame, (int(round(p[0] * 16)), int(round(p[1] * 16))), 4 * 16, (255, 255, 255), -1,
                   cv2.LINE_AA, shift=4)
        crop, affine = _crop(frame, np.array(centre), half, size)
        w = crop[..., 0]
        ys, xs = np.mgrid[:size, :size]
        found = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()  # intensity centroid in the crop
        expected = affine[:, :2] @ p + affine[:, 2]
        assert np.abs(found - expected).max() < 0.15 * max(1.0, size / (2 * half))


def test_tracking_modes_record_what_ran_and_subsets_keep_per_frame_records(captures):
    from liftdata.dataset import _capture_subset
    from liftdata.track import track_frames

    gt = captures[1]
    frames = np.stack([gt.frames[i] for i in range(12)])
    fast = track_frames(frames, progress=False, tracking="landmarks")
    assert fast.extra["tracking"]["fit"] == "landmarks" and "photometric_residual" not in fast.extra["tracking"]
    full = track_frames(frames, progress=False)  # photometric by default
    residual = full.extra["tracking"]["photometric_residual"]
    assert full.extra["tracking"]["fit"] == "photometric" and len(residual) == 12
    assert all(r is not None and 0 <= r < 255 for r in residual)
    assert not np.allclose(full.kinematics.rotation, fast.kinematics.rotation)  # the stage moved the pose
    sub = _capture_subset(full, np.array([1, 5, 7]))
    assert sub.extra["tracking"]["photometric_residual"] == [residual[i] for i in (1, 5, 7)]
    with pytest.raises(ValueError, match="tracking: expected one of photometric, landmarks, got 'fast'"):
        track_frames(frames, progress=False, tracking="fast")


def test_a_known_identity_is_held_fixed_through_every_stage(captures):
    """`fit_landmarks(identity=...)`: the identity of an earlier fit, or the true one (whose rigid part
    a free fit would remove), comes back unchanged (landmark and photometric stages), while a free
    fit of the same clip moves it; a wrong shape is refused."""
    gt = captures[1]
    lmk = _biased_landmarks(gt, 1.0)
    frames = np.stack([gt.frames[i] for i in range(12)])
    lmk = Landmarks(lmk.points[:12], lmk.depth[:12], lmk.found[:12], SIZE, SIZE)
    earlier = fit_landmarks(lmk, gt.head_model, FitConfig(photometric_iters=0), progress=False)
    again = fit_landmarks(lmk, gt.head_model, MECHANISM, progress=False, frames=frames, identity=earlier.identity)
    free = fit_landmarks(lmk, gt.head_model, MECHANISM, progress=False, frames=frames)
    np.testing.assert_allclose(again.identity, earlier.identity, atol=1e-7)
    truth = fit_landmarks(lmk, gt.head_model, MECHANISM, progress=False, frames=frames, identity=gt.identity)
    np.testing.assert_array_equal(truth.identity, gt.identity)  # as given: not even its rigid part removed
    assert np.abs(free.identity - earlier.identity).max() > 1e-4  # the photometric stage does move a free identity
    assert np.nanmean(again.residual) < 1.0  # and the fixed one still fits (pixels)
    with pytest.raises(ValueError, match=r"^identity: expected shape \[468, 3\]"):
        fit_landmarks(lmk, gt.head_model, progress=False, identity=np.zeros(10))
