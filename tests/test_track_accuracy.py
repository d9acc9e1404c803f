"""Tracking accuracy against ground truth (synthetic captures -> mp4 -> track_video) and on a real photo.

Metrics (printed; run with -s to see them):
* rotation: geodesic angle between the ground-truth and fitted head rotation. Both captures use
  `Camera.frontal` (world = head-model space), so rotations compare directly, except for one
  gauge: the rigid part of the ground-truth identity (its template offsets contain a small
  rotation, 0.5-3 deg, found by Procrustes against the template) is indistinguishable from head
  pose, and the tracker's identity has no rigid part by construction, so the ground truth is
  compared as R_gt @ R_identity. "relative" additionally removes the clip-constant rotation offset.
* expression MAE on the builtin model's [0, 1] scale.
* translation: head position in camera space, image-plane (x, y) and depth errors in cm (depth
  only printed: it follows the initial field of view, which here equals the true one).
* reprojection: fitted model landmarks vs ground-truth model landmarks, projected, in pixels.
(`liftdata.track.accuracy.tracking_errors` computes them; `benchmarks/track_accuracy.py` prints them
per seed over many subjects.)

Issue 16 (many seeds, 48 frames, 256^2; `benchmarks/results/track_accuracy.json`): with the L1
sparsity prior on the blendshapes (`FitConfig.expression_sparsity = 0.3`, chosen on seeds 40-51)
the expression MAE on held-out seeds 60-71 is 0.062 mean, 0.078 worst (<= 0.08 on 12 of 12; it
was 0.094 / 0.108 and 1 of 12 without it, worse than predicting all zeros: 0.093 vs 0.053 on
seed 40). On fresh seeds 80-91 (measured once, nothing tuned on them): 0.059 mean, 0.085 worst
(11 of 12: seed 80 misses, and misses with exact landmarks too, 0.0845).
The relative rotation within a clip, with the landmark fit alone (stages 1-3): 1.60 deg mean / 2.32
worst on 60-71 (6 of 12), 1.82 / 2.67 on 80-91 (4 of 12), 1.95 / 3.63 on the tuning seeds 40-51
(5 of 12). With the photometric stage (stage 4, `liftdata.track.photometric`; chosen on 40-51,
the landmark fit re-measured in the same run; 960 Adam steps): 0.78 / 1.43 (12 of 12), 0.77 / 1.56
(11 of 12), 0.64 / 1.06 (12 of 12); still NOT met on every seed (see README, Status: 58 of 60
held-out seeds; at 320 steps 0.93 / 1.67, 0.73 / 1.13, 0.90 / 1.46 and 56 of 60).
The figures below are of the landmark fit.
Where it comes from (`rotation_error_parts`, `--oracle`; figures on 40-51 unless said):
* not jitter: the error minus its 5-frame moving average is 0.11 deg mean (0.09-0.10 held out);
  temporal smoothing cannot help. It is a smooth error that an affine function of the TRUE head
  pose explains (R^2 0.79 mean, 0.31-0.97; 0.85 / 0.89 on 60-71 / 80-91): a subject-specific gain
  (previous round: fitted-vs-true slope per axis 0.6-1.4). Adding mouth activity (sum of jaw*/mouth* weights) as a
  regressor raises R^2 by 0.01-0.37 per seed: an expression-correlated part exists but is smaller.
* the detector, not the fit: the same fit on the exact landmarks (`--oracle`) gives 0.91 mean
  (0.67 / 0.71 on 60-71 / 80-91, 11 / 12 of 12 met); with the exact identity held fixed and 300
  Adam steps, 0.26 mean (0.40 worst). Fed mediapipe's landmarks with that exact identity held fixed,
  the fit still gives 1.54 mean / 2.50 worst: mediapipe's landmarks on these renders imply another
  head rotation, in a pose-dependent, subject-specific way.
* the fit's own floor is convergence, not the model: on exact landmarks 60 / 120 / 200 Adam steps
  give 0.91 / 0.81 / 0.72 deg mean (worst 2.62 / 2.06 / 1.36; 600 steps on the 5 hardest seeds:
  0.73 mean, 1.19 worst, from 1.53 / 2.62). On detected
  landmarks the same steps give 1.95 / 1.85 / 1.80 / 1.69: 3x the fit time for 0.15 deg. Not kept.
Tried on seeds 40-51 and not kept (relative rotation, mean): landmark weights by region (oval 0 or
2, lips 0.3-1, eyes 10: 1.88-1.98), per-landmark inverse-variance weights of mediapipe's
time-varying error (measured on the same seeds, i.e. optimistic: 1.95 at 60 steps, 1.75 at 300),
fitting only the 20-40% least expression-driven points or the 100 steadiest (with the exact identity
fixed: 1.59-1.65, vs 1.54 with all points), identity prior /100 (1.85 vs 1.69 at 600 steps), other
learning rates and per-parameter step scales (1.94-1.99); optical-flow tracks of rigid points (Lucas-Kanade on the rendered skin: median error
~1 px, most points lost: the painted skin has too little texture). Detector-side (not in the fit;
scratch runs on 40-51): mediapipe's static-image mode 1.85; landmarks of the mirrored frame mapped
back 1.66, averaged with the normal ones 1.71; worst seed (42) stays at 3.3-3.6 in every variant.

With the prior, seeds 0 / 1 below give expression MAE 0.046 / 0.046 (0.074 / 0.077 before).

Measured (seeds 0 and 1, 48 frames, 256^2): rotation 4.6 / 5.1 deg, of which a constant pitch
offset of 3.0 / 4.9 deg (relative rotation 0.8 / 2.0 deg), expression MAE 0.074 / 0.077,
reprojection 4.4 / 3.5 px, translation (x, y) 0.2 / 0.6 cm. Of the issue's targets, expression
(<= 0.08) is met; rotation (<= 1.5 deg) and reprojection (<= 2 px) are NOT: mediapipe's landmarks
on these renders carry a systematic per-point bias of ~3.5 px (median; ~1.2 px after removing the
per-point mean) that even a PnP with the exact ground-truth 3D shape turns into a 3-4 deg pitch
error. With exact (ground-truth projected) landmarks the same fit reaches rotation 0.9 / 1.6 deg and
reprojection 0.3 / 0.4 px (asserted below): the bottleneck is the detector, not the fit. The
asserts are the measured values plus a margin.

A more realistic albedo does not remove the bias: `make_capture(..., texture="photo")` (the
astronaut photo the template was detected on, plus a skirt continuing the face outline) gives
rotation 4.5 / 4.0 deg (pitch offset 3.3 / 3.6), reprojection 4.2 / 3.5 px, expression MAE
0.076 / 0.081. What remains, measured with static mediapipe on renders: (a) the random identity
offsets (6 smooth bumps of ~4 mm, in-plane too) raise the mean landmark error from ~2 px (zero
identity) to 3.5-5 px: mediapipe does not follow such local warps of a face, it regresses towards
its own face shape; (b) even the template's own face, photo-textured, is read with the nose tip
~2-3 px low relative to the eyes at 0.55 m (~1.3 px for a near-orthographic camera), independent of
the shading, the eye texture and a +-30% depth scale. So the painted albedo stays the test bed here.

Measured later (60 other subjects, seeds 1000-1059, painted and photo, camera 0.45-0.8 m, yaw up
to 30 deg): holding the exact ground-truth shape and per-frame poses and fitting only one
clip-constant rotation, mediapipe's landmarks are best explained by a pitch of +3.9 deg (painted)
/ +3.4 deg (photo), per-subject std 1.65 deg, independent of the distance. The tracker's pitch
offset on held-out seeds 2-11 is +4.9 deg on average (-1.3 to +9.7). Tried and not kept: a
per-landmark calibration (mean detector-vs-model offset in the head frame from those subjects)
lowers reprojection on seeds 2-11 from 3.6 to 2.9 px but barely the rotation (5.8 -> 5.6 deg);
symmetric identities (mirrored bumps) leave seed 1 at 5.6 deg; a photometric-consistency term
(free per-point albedo, first-order SH light) has the ground truth as a local minimum in pitch
but, optimised jointly with identity, reaches energies below the ground truth's with no gain in
rotation. A landmark-only tracker stays near this floor.

Analysis by synthesis, tried next and not kept (seed 0): the fitted mesh rendered with one albedo
map in UV shared by all frames (192^2, solved in closed form per step) and a second-order SH light,
visibility from the rasterizer, barycentrics recomputed in torch from the projected corners so the
texture slides with the geometry, the landmark energy as a weak anchor. The energy does prefer the
ground truth over the landmark fit (1.9e-3 vs 2.5e-3), but scanning a clip-constant pitch offset
about the face centre puts its minimum between +1 and +3 deg, not 0; optimising pose, expression and
identity drives it below the ground truth's (1.6e-3) with the pitch offset unchanged (2.97 ->
2.94 deg). With a free albedo the pixels only see parallax between frames, and a bias that is
the same in every frame (the detector's) is nearly a texture re-registration: the pixels cannot
remove what the landmarks put there. Meeting 1.5 deg needs an unbiased 2D source (another
detector, or a landmark embedding calibrated on real faces with 3D ground truth).

What did help, later: the same idea aimed at the RELATIVE rotation (the pose-dependent part, which
the pixels do see as parallax between frames), with the landmark term kept at full weight: a free
albedo per surface sample (7 barycentric points per triangle) rather than a UV map, a first-order
light, a robust (Charbonnier) colour error, 960 Adam steps after the landmark fit (80 at first:
1.05 / 1.01 / 1.27; then 320; `FitConfig.photometric_iters`; `liftdata.track.photometric`). It halves the
relative rotation on held-out seeds (figures above) and leaves the absolute pitch offset where it was, as the analysis above predicts.
"""

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from liftdata.capture import Capture
from liftdata.synthetic import make_capture, write_video
from liftdata.track import Landmarks, fit_landmarks, overlay, track_images, track_video
from liftdata.track.accuracy import rotation_error_parts, tracking_errors

N_FRAMES, SIZE = 48, 256


def metrics(gt, fitted) -> dict[str, float]:
    return tracking_errors(gt, fitted)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = []
    for seed in (0, 1):
        gt = make_capture(seed, n_frames=N_FRAMES, size=SIZE)
        path = write_video(gt, tmp_path_factory.mktemp("video") / f"synthetic{seed}.mp4")
        out.append((gt, track_video(path, progress=False)))
    return out


def test_accuracy_on_synthetic_video(synthetic):
    for gt, fitted in synthetic:
        m = metrics(gt, fitted)
        print(gt.capture_id, {k: round(v, 3) for k, v in m.items()})
        assert fitted.face_found.all() and len(fitted) == N_FRAMES
        # the model follows the detected landmarks; the photometric stage pulls the pose away from
        # their pose-dependent bias, so the residual rises (60 held-out seeds: 1.55-1.67 px mean
        # per set, 2.06 px worst; the landmark fit alone: ~0.8)
        assert m["residual_px"] < 3.0
        assert m["rotation_deg"] < 6.5  # target 1.5: NOT met (detector bias, see module docstring)
        assert m["rotation_relative_deg"] < 2.5
        assert m["expression_mae"] < 0.08  # target 0.08: met
        assert m["reprojection_px"] < 5.5  # target 2 px: NOT met
        assert m["translation_xy_cm"] < 1.5
        # No focal / depth assert: the default initial field of view (24 deg) equals the synthetic
        # camera's and landmarks barely move it (see FitConfig.fov_y_deg), so it would prove nothing.


def test_frames_without_face_are_flagged_and_interpolated(synthetic, tmp_path):
    gt, tracked = synthetic[0]
    frames = np.array([gt.frames[i] for i in range(len(gt))])
    lost = [20, 21, 22]
    frames[lost] = 128  # blank grey frames: no face
    video = write_video(type(gt)(frames=frames, kinematics=gt.kinematics, camera=gt.camera, identity=gt.identity,
                                 head_model=gt.head_model), tmp_path / "gaps.mp4")
    fitted = track_video(video, progress=False)
    np.testing.assert_array_equal(np.flatnonzero(~fitted.face_found), lost)
    assert np.isnan(fitted.landmark_residual[lost]).all()
    # the gap is bridged: close to the capture tracked without the gap
    gap = Rotation.from_rotvec(fitted.kinematics.rotation[lost]).inv() * Rotation.from_rotvec(
        tracked.kinematics.rotation[lost])
    assert np.degrees(gap.magnitude()).max() < 2.0
    assert np.abs(fitted.kinematics.expression[lost] - tracked.kinematics.expression[lost]).mean() < 0.1


def test_fit_reaches_targets_with_exact_landmarks(synthetic):
    """The fit alone, fed the ground-truth projected landmarks of the same captures."""
    for gt, _ in synthetic:
        model = gt.head_model
        with torch.no_grad():
            uv = gt.camera.project(model.vertices(torch.as_tensor(gt.identity), gt.kinematics).numpy())[..., :2]
        points = np.concatenate([uv, np.zeros((len(uv), 10, 2))], 1).astype(np.float32)
        lmk = Landmarks(points, np.zeros(points.shape[:2], np.float32), np.ones(len(uv), bool), SIZE, SIZE)
        fit = fit_landmarks(lmk, model, progress=False)
        fitted = type(gt)(frames=gt.frames, kinematics=fit.kinematics, camera=fit.camera, identity=fit.identity,
                          head_model=model, landmark_residual=fit.residual)
        m = metrics(gt, fitted)
        print("exact landmarks", gt.capture_id, {k: round(v, 3) for k, v in m.items()})
        assert m["reprojection_px"] < 0.6
        assert m["rotation_deg"] < 2.0  # some identity/pose ambiguity of landmark-only fitting remains
        assert m["expression_mae"] < 0.085


def _astronaut_clip(path, n=12):
    from skimage.data import astronaut

    img = astronaut()
    frames = []
    for i in range(n):
        a = 4.0 * np.sin(2 * np.pi * i / n)
        m = cv2.getRotationMatrix2D((240.0, 150.0), a, 1.0)
        m[:, 2] += (3.0 * i - 15.0, 2.0 * np.cos(2 * np.pi * i / n))
        frames.append(cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 512))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_real_photo_and_clip(tmp_path):
    from skimage.data import astronaut

    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    photo = track_images(tmp_path / "astronaut.png", progress=False)
    assert photo.face_found.all() and photo.landmark_residual[0] < 2.0
    back = Capture.load(photo.save(tmp_path / "saved"))  # a tracked capture saves and loads
    assert back.kinematics.equals(photo.kinematics) and np.array_equal(back.frames[0], astronaut())
    clip = track_video(_astronaut_clip(tmp_path / "astronaut.mp4"), progress=False)
    print("astronaut residual px", photo.landmark_residual, clip.landmark_residual.round(2))
    assert clip.face_found.all() and np.nanmax(clip.landmark_residual) < 3.0
    # The photo turns counter-clockwise (as displayed) by 4 sin(2 pi i / 12) deg: a positive rotation
    # about the model's +z axis (towards the camera). Regress the fitted roll on [1, i, sin, cos].
    roll = np.degrees(Rotation.from_rotvec(clip.kinematics.rotation).as_euler("xyz")[:, 2])
    i = np.arange(12)
    basis = np.stack([np.ones(12), i, np.sin(2 * np.pi * i / 12), np.cos(2 * np.pi * i / 12)], 1)
    coef = np.linalg.lstsq(basis, roll, rcond=None)[0]
    print("roll regression [offset, trend, sin, cos]", coef.round(2))
    assert 3.0 < coef[2] < 5.0 and abs(coef[3]) < 1.0
    grid = overlay(clip, tmp_path / "overlay.png", frames=[0, 3, 6, 9])
    assert grid.shape == (512, 2048, 3) and (tmp_path / "overlay.png").is_file()


def _with_rotation_error(err_deg: np.ndarray):
    """A ground-truth capture (neutral identity: no rigid part) and a copy whose head rotation is
    R_gt @ R(err_deg[t]) (rotation vectors in degrees, [T, 3])."""
    from liftdata.head import load_head_model
    from liftdata.kinematics import Camera
    from liftdata.synthetic import sample_kinematics

    model = load_head_model("builtin")
    kin = sample_kinematics(model, len(err_deg), np.random.default_rng(7))
    blank = np.zeros((len(kin), 1, 1, 3), np.uint8)
    identity = model.neutral_identity().numpy()
    gt = Capture(blank, kin, Camera.frontal(24.0, 64, 64, 0.55), identity, model)
    rot = (Rotation.from_rotvec(kin.rotation) * Rotation.from_rotvec(np.radians(err_deg))).as_rotvec()
    return gt, Capture(blank, kin.replace(rotation=rot), gt.camera, identity, model,
                       landmark_residual=np.zeros(len(kin), np.float32))


def test_rotation_error_parts_separates_pose_bias_from_jitter():
    """Synthetic errors with a known structure: a gain on yaw (plus a constant offset) vs white noise."""
    n = 48
    gt, _ = _with_rotation_error(np.zeros((n, 3)))
    yaw = np.degrees(gt.kinematics.rotation[:, 1])
    err = np.zeros((n, 3))
    err[:, 1] = 2.0 + 0.1 * yaw  # about one axis: rotations add exactly, so the reference is exact
    gt, fitted = _with_rotation_error(err)
    m, parts = tracking_errors(gt, fitted), rotation_error_parts(gt, fitted)
    expected = np.abs(0.1 * (yaw - yaw.mean())).mean()
    print("pose bias", round(expected, 4), {k: round(v, 4) for k, v in {**m, **parts}.items()})
    assert m["rotation_relative_deg"] == pytest.approx(expected, rel=1e-4)
    assert parts["rotation_pose_r2"] > 0.999
    assert parts["rotation_pose_linear_deg"] == pytest.approx(expected, rel=1e-3)
    assert parts["rotation_jitter_deg"] < 0.2 * expected  # the sampled pose is smooth (period 60 frames)
    for seed in range(5):  # white noise, 0.5 deg per axis: explained by the pose only by chance (~3/47)
        noise = np.random.default_rng(seed).normal(0, 0.5, (n, 3))
        gt, fitted = _with_rotation_error(noise)
        m, parts = tracking_errors(gt, fitted), rotation_error_parts(gt, fitted)
        print("white noise", {k: round(v, 3) for k, v in {**m, **parts}.items()})
        assert parts["rotation_pose_r2"] < 0.3
        # a 5-frame moving average keeps 1/5 of white noise's variance: the rest is jitter (~0.9)
        assert 0.7 < parts["rotation_jitter_deg"] / m["rotation_relative_deg"] < 1.05
    with pytest.raises(ValueError, match="at least 5 frames"):
        rotation_error_parts(gt, fitted, frames=np.arange(3))
