import cv2
import numpy as np
import pytest
import torch

from liftdata.capture import Capture, CaptureError
from liftdata.head import load_head_model, neutral_kinematics
from liftdata.render import condition_maps
from liftdata.synthetic import (boundary_loops, make_capture, make_subject, render_subject,
                                sample_kinematics, write_video)


@pytest.fixture(scope="module")
def capture():
    return make_capture(7, n_frames=6, size=128)


def _gt_vertices(cap):
    with torch.no_grad():
        return cap.head_model.vertices(torch.as_tensor(cap.identity), cap.kinematics).numpy()


def test_deterministic_per_seed(capture):
    again = make_capture(7, n_frames=6, size=128)
    assert np.array_equal(np.asarray(again.frames), np.asarray(capture.frames))
    assert again.kinematics.equals(capture.kinematics)
    assert np.array_equal(again.identity, capture.identity)
    other = make_capture(8, n_frames=6, size=128)
    assert not np.array_equal(other.identity, capture.identity)
    assert np.abs(np.asarray(other.frames, float) - np.asarray(capture.frames, float)).mean() > 5


def test_ground_truth_explains_the_pixels(capture):
    """Where the frame differs from the subject's background is exactly the head rendered from the GT."""
    background = make_subject(7, size=128).background
    maps = condition_maps(_gt_vertices(capture), capture.head_model.faces, capture.camera)
    mask = maps["mask"][..., 0].numpy() > 0.5
    changed = np.abs(np.asarray(capture.frames, int) - background[None].astype(int)).max(-1) > 12
    # The caps (eyes, mouth interior) lie inside the face outline, so compare the filled silhouettes.
    for m, c in zip(mask, changed):
        fill = lambda x: cv2.morphologyEx(x.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))  # noqa: E731
        inter, union = (fill(m) & fill(c)).sum(), (fill(m) | fill(c)).sum()
        assert inter / union > 0.95


def test_given_kinematics_are_rendered_exactly():
    model = load_head_model("builtin")
    k = neutral_kinematics(model, 3)
    expr = k.expression.copy()
    expr[1, model.expression_index("jawOpen")] = 1.0
    k = k.replace(expression=expr, rotation=np.array([[0, 0, 0], [0, 0, 0], [0, 0.4, 0]]))
    cap = make_capture(3, kinematics=k, size=96)
    assert cap.kinematics.equals(k) and len(cap) == 3
    f = np.asarray(cap.frames, float)
    assert np.abs(f[1] - f[0]).mean() > 0.5 and np.abs(f[2] - f[0]).mean() > 2  # jaw and yaw change pixels


def test_sampled_kinematics_are_smooth_and_bounded():
    model = load_head_model("builtin")
    k = sample_kinematics(model, 200, np.random.default_rng(0))
    prior = model.expression_prior()
    assert (k.expression >= prior.lower).all() and (k.expression <= prior.upper).all()
    assert np.degrees(np.abs(k.rotation).max()) <= 20.0 + 1e-3
    assert np.abs(np.diff(k.rotation, axis=0)).max() < np.radians(3)  # < 3 degrees per frame
    blink = k.expression[:, model.expression_index("eyeBlinkLeft")]
    assert blink.max() > 0.5  # blinks happen
    assert np.abs(np.diff(k.expression, axis=0)).max() < 0.5


def test_mediapipe_finds_the_synthetic_face_where_the_ground_truth_says(capture):
    """The builtin vertices are mediapipe landmarks: an independent detector must agree with the GT."""
    import mediapipe as mp  # the `track` extra is part of the test install: fail, never skip

    cap = make_capture(1, n_frames=3, size=256)
    gt = np.stack([cap.camera.project(v)[:, :2] for v in _gt_vertices(cap)])
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True) as mesh:
        for frame, truth in zip(cap.frames, gt):
            result = mesh.process(frame)
            assert result.multi_face_landmarks, "mediapipe found no face in a synthetic frame"
            lm = np.array([[p.x * 256, p.y * 256] for p in result.multi_face_landmarks[0].landmark])
            assert np.median(np.linalg.norm(lm - truth, axis=1)) < 5.0


def _mediapipe_error(frames, truth) -> np.ndarray:  # [468] mean landmark distance in pixels over frames
    import mediapipe as mp

    errors = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True) as mesh:
        for frame, gt in zip(frames, truth):
            result = mesh.process(frame)
            assert result.multi_face_landmarks, "mediapipe found no face in a synthetic frame"
            n = frame.shape[0]
            lm = np.array([[p.x * n - 0.5, p.y * n - 0.5] for p in result.multi_face_landmarks[0].landmark])[:468]
            errors.append(np.linalg.norm(lm - gt, axis=1))
    return np.mean(errors, 0)


def test_photo_texture_is_where_mediapipe_expects_the_landmarks():
    """The template's own face (zero identity) textured with the photo it was detected on (plus the skirt
    around the outline) is read by mediapipe closer to the ground truth than the painted albedo."""
    model = load_head_model("builtin")
    k = neutral_kinematics(model, 3).replace(rotation=np.radians([[0, 0, 0], [8, 0, 0], [0, 15, 0]]))
    from liftdata.kinematics import Camera

    camera = Camera.frontal(24.0, 256, 256, 0.55)
    zero = np.zeros_like(model.neutral_identity().numpy())
    with torch.no_grad():
        truth = camera.project(model.vertices(torch.as_tensor(zero), k).numpy())[..., :2]
    errors = {}
    for texture in ("painted", "photo"):
        subject = make_subject(4, size=256, texture=texture)
        subject.identity = zero
        errors[texture] = _mediapipe_error(render_subject(subject, k, camera), truth)
    ends = [10, 152]  # top of the forehead, chin: where the face used to end abruptly
    print("mediapipe landmark error px (all, forehead + chin)",
          {t: (e.mean().round(2), e[ends].mean().round(2)) for t, e in errors.items()})
    assert errors["photo"].mean() < 0.95 * errors["painted"].mean()
    assert errors["photo"][ends].mean() < 0.75 * errors["painted"][ends].mean()  # the skirt
    photo = make_capture(4, n_frames=2, size=96, texture="photo")  # deterministic, a different face
    assert np.array_equal(np.asarray(photo.frames), np.asarray(make_capture(4, n_frames=2, size=96, texture="photo").frames))
    with pytest.raises(ValueError, match="texture: expected one of"):
        make_subject(0, texture="drawn")


def test_write_video_round_trip(capture, tmp_path):
    path = write_video(capture, tmp_path / "clip.mp4")
    reader = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, bgr = reader.read()
        if not ok:
            break
        frames.append(bgr[..., ::-1])
    assert len(frames) == len(capture)
    mse = np.mean((np.asarray(frames, float) - np.asarray(capture.frames, float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # lossy codec, but the same pictures
    assert not list(tmp_path.glob("*.tmp*"))


def test_boundary_loops_of_a_grid_with_a_hole():
    # 4x4 vertex grid, the centre quad removed: outer loop of 12, inner loop of 4.
    idx = np.arange(16).reshape(4, 4)
    faces = []
    for r in range(3):
        for c in range(3):
            if (r, c) == (1, 1):
                continue
            a, b, d, e = idx[r, c], idx[r, c + 1], idx[r + 1, c], idx[r + 1, c + 1]
            faces += [[a, b, e], [a, e, d]]
    loops = boundary_loops(np.array(faces))
    assert [len(x) for x in loops] == [12, 4]
    assert set(loops[1]) == {5, 6, 9, 10}


def test_capture_save_load_round_trip(capture, tmp_path):
    capture.save(tmp_path / "cap")
    back = Capture.load(tmp_path / "cap")
    assert back.kinematics.equals(capture.kinematics) and back.camera.equals(capture.camera)
    assert np.array_equal(back.identity, capture.identity)
    assert all(np.array_equal(back.frames[i], capture.frames[i]) for i in range(len(capture)))
    with pytest.raises(CaptureError, match="already exists"):
        capture.save(tmp_path / "cap")
    with pytest.raises(CaptureError, match="no capture.json"):
        Capture.load(tmp_path)


def test_capture_rejects_mismatched_frames(capture):
    with pytest.raises(CaptureError, match="5 frames but 6 kinematics"):
        Capture(np.asarray(capture.frames)[:5], capture.kinematics, capture.camera, capture.identity,
                capture.head_model)
