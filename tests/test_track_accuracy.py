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
seed 40). The
relative rotation within a clip is unchanged, 1.60 deg mean, 2.32 worst (<= 1.5 deg on 6 of 12:
NOT met). Its error is low-frequency and correlates with the true pose in a subject-specific way
(fitted-vs-true slope per axis 0.6-1.4 across seeds 40-51, mean ~1): the detector's bias changes
with the pose. Tried on seeds 40-51 and not kept: temporal weights x0.1 / x10, 2-7x the Adam
steps (1.95 -> 1.80 deg, too slow for the speed target), 10-100x identity priors, a term on
mediapipe's relative depth (z) per landmark (1.95 -> 1.82 at best).
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
"""

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from liftdata.capture import Capture
from liftdata.synthetic import make_capture, write_video
from liftdata.track import Landmarks, fit_landmarks, overlay, track_images, track_video
from liftdata.track.accuracy import tracking_errors

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
        assert m["residual_px"] < 1.5  # the model follows the detected landmarks
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
