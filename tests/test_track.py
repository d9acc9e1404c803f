"""Tracking building blocks: decoding, input errors, landmarks plumbing, the fit's fast twin and the fit."""

import sys

import av
import cv2
import numpy as np
import pytest
import torch
from flame_fixtures import make_embedding_arrays, make_flame_arrays, write_npz

from liftdata.head import load_head_model
from liftdata.head.base import neutral_kinematics
from liftdata.head.flame import FlameHeadModel
from liftdata.kinematics import Camera, Kinematics
from liftdata.synthetic import sample_kinematics
from liftdata.track import FitConfig, Landmarks, TrackingError, fit_landmarks, read_images, read_video, track_video
from liftdata.track.fit import BuiltinFastLandmarks, rigid_free_basis


def _write_pyav(path, frames, fps=25, rotation=0):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.bit_rate = 4_000_000
        if rotation:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _pattern(t, h=32, w=48):
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[:, :h // 2, :w // 3] = 255  # white block top-left: shows any rotation
    for i in range(t):
        frames[i, h // 2:, :, :] = i * 12  # frame index as the grey level of the bottom half
    return frames


# ---------------------------------------------------------------------- decoding
def test_read_video_selection(tmp_path):
    path = _write_pyav(tmp_path / "v.mp4", _pattern(20))
    v = read_video(path)
    assert len(v) == 20 and v.fps == 25 and v[0].shape == (32, 48, 3) and v[0].dtype == np.uint8
    index = lambda frames: [int(round(f[-8:, 8:-8].mean() / 12)) for f in frames]  # noqa: E731
    assert index(v) == list(range(20))
    assert index(read_video(path, stride=3)) == [0, 3, 6, 9, 12, 15, 18]
    assert index(read_video(path, fps=12.5)) == list(range(0, 20, 2))
    assert index(read_video(path, fps=10, max_frames=4)) == [0, 3, 5, 8]  # t >= 0, 0.1, 0.2, 0.3 s
    assert read_video(path, fps=10).fps == 10 and read_video(path, stride=2).fps == 12.5
    # OpenCV fallback decodes the same frames (up to codec rounding)
    cv = read_video(path, backend="opencv")
    assert len(cv) == 20 and np.abs(cv[5].astype(int) - v[5].astype(int)).mean() < 2
    assert index(read_video(path, fps=10, max_frames=4, backend="opencv")) == [0, 3, 5, 8]
    assert read_video(path, stride=3, max_frames=2).source_indices.tolist() == [0, 3]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata(tmp_path, rotation):
    path = _write_pyav(tmp_path / "r.mp4", _pattern(3), rotation=rotation)
    pyav, ocv = read_video(path, backend="pyav")[0], read_video(path, backend="opencv")[0]
    assert pyav.shape == ocv.shape == ((48, 32, 3) if rotation != 180 else (32, 48, 3))
    assert np.abs(pyav.astype(int) - ocv.astype(int)).mean() < 3  # OpenCV auto-orients independently
    expected = np.rot90(_pattern(1)[0], rotation // 90)  # the display matrix rotates counter-clockwise
    assert np.abs(pyav.astype(int) - expected.astype(int)).mean() < 8


def test_bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    good = _write_pyav(tmp_path / "good.mp4", _pattern(10))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    for path, reason in [(text, "cannot decode|cannot open|no decodable"), (empty, "empty"),
                         (truncated, "cannot decode|cannot open|no decodable"), (tmp_path / "missing.mp4", "no such file")]:
        for backend in ("pyav", "opencv"):
            with pytest.raises(TrackingError, match=f"{path.name}.*({reason})"):
                read_video(path, backend=backend)
    with pytest.raises(TrackingError, match="stride"):
        read_video(good, stride=0)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.txt").write_text("x")
    with pytest.raises(TrackingError, match="imgs: folder has no images"):
        read_images(tmp_path / "imgs")
    bad_png = tmp_path / "bad.png"
    bad_png.write_text("not a png")
    with pytest.raises(TrackingError, match="bad.png: cannot read image"):
        read_images([bad_png])
    with pytest.raises(TrackingError, match="missing.png: no such image"):
        read_images(tmp_path / "missing.png")


def test_no_face_video_is_an_error(tmp_path):
    path = _write_pyav(tmp_path / "noface.mp4", _pattern(4, 64, 64))
    with pytest.raises(TrackingError, match="noface.mp4: no face found in any of its 4 frame"):
        track_video(path, progress=False)


def test_missing_mediapipe_message(monkeypatch, tmp_path):
    from liftdata.track.landmarks import detect_landmarks

    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(ImportError, match=r"pip install 'liftdata\[track\]'"):
        detect_landmarks(iter([np.zeros((8, 8, 3), np.uint8)]), 1)


# ---------------------------------------------------------------------- fit
def _kinematics(model, t, rng):
    k = neutral_kinematics(model, t)
    e = np.clip(rng.uniform(-0.3, 0.6, (t, model.n_expression)), 0, 1)
    return k.replace(expression=e, rotation=rng.normal(size=(t, 3)) * 0.15,
                     translation=rng.normal(size=(t, 3)) * 0.01)


def test_fast_landmarks_match_model(rng):
    model = load_head_model("builtin")
    fast = BuiltinFastLandmarks(model)
    k = _kinematics(model, 4, rng)
    ident = torch.as_tensor(rng.normal(size=(468, 3)) * 0.003, dtype=torch.float32)
    slow = model.vertices(ident, k)
    t = k.as_tensors()
    got = fast(ident, t["expression"], t["rotation"], t["translation"])
    torch.testing.assert_close(got, slow[:, fast.order], atol=1e-6, rtol=0)


def test_rigid_free_basis(rng):
    pts = rng.normal(size=(30, 3))
    b = rigid_free_basis(pts).double().numpy()
    np.testing.assert_allclose(b.T @ b, np.eye(6), atol=1e-6)
    w = rng.normal(size=3) * 1e-3  # an infinitesimal rotation plus a translation lies in the span
    motion = (np.cross(w, pts) + [0.01, -0.02, 0.005]).ravel()
    np.testing.assert_allclose(b @ (b.T @ motion), motion, atol=1e-6)


def _synthetic_landmarks(model, identity, k, camera, lost=()):
    with torch.no_grad():
        lm = model.landmarks(model.vertices(torch.as_tensor(identity), k)).numpy()
    uv = camera.project(lm)[..., :2].astype(np.float32)
    points = np.full((len(k), 478, 2), np.nan, np.float32)
    points[:, model.landmark_mediapipe_index] = uv
    found = np.ones(len(k), bool)
    found[list(lost)] = False
    points[~found] = np.nan
    return Landmarks(points, np.zeros((len(k), 478), np.float32), found, camera.width, camera.height)


def test_fit_exact_landmarks_builtin(rng):
    """Noise-free landmarks of the neutral identity: the fit reprojects them and bridges lost frames."""
    model = load_head_model("builtin")
    t = 24
    k = sample_kinematics(model, t, rng)  # smooth motion, as in a video
    cam = Camera.frontal(24.0, 256, 256, 0.55)
    lmk = _synthetic_landmarks(model, np.zeros((468, 3)), k, cam, lost=(10, 11))
    fit = fit_landmarks(lmk, model, FitConfig(fov_y_deg=30.0), progress=False)  # a wrong initial focal
    assert np.isnan(fit.residual[[10, 11]]).all()
    assert np.nanmean(fit.residual) < 0.6
    fitted = fit.camera.project(model.vertices(torch.as_tensor(fit.identity), fit.kinematics).numpy())[..., :2]
    gt = cam.project(model.vertices(torch.zeros(468, 3), k).numpy())[..., :2]
    err = np.linalg.norm(fitted - gt, axis=-1).mean(-1)
    assert err[~np.isin(np.arange(t), [10, 11])].mean() < 0.6
    assert err[[10, 11]].max() < 4.0  # interpolated by the temporal terms


def test_fit_flame_generic_path(tmp_path, rng):
    """FLAME (tiny random model): jaw/eyes fitted, landmarks through the embedding subset."""
    arrays = make_flame_arrays(n_vertices=60, n_faces=90)
    arrays["v_template"][:, 2] = np.abs(arrays["v_template"][:, 2])  # keep the mesh in front of the camera
    emb = make_embedding_arrays(n_faces=90, n_landmarks=40)
    model = FlameHeadModel.from_file(write_npz(tmp_path / "f.npz", arrays), write_npz(tmp_path / "e.npz", emb),
                                     n_shape=20, n_expression=10)
    t = 6
    k = Kinematics.zeros(t, 10, "flame", model.version).replace(
        expression=rng.normal(size=(t, 10)) * 0.5, rotation=rng.normal(size=(t, 3)) * 0.1,
        jaw=np.abs(rng.normal(size=(t, 3))) * 0.05)
    cam = Camera.frontal(24.0, 128, 128, 0.55)
    lmk = _synthetic_landmarks(model, np.zeros(20), k, cam)
    cfg = FitConfig(iters=200, smooth_rotation=0, smooth_translation=0, smooth_expression=0)  # frames unrelated
    fit = fit_landmarks(lmk, model, cfg, progress=False)
    assert fit.identity.shape == (20,) and fit.kinematics.head_model == "flame"
    assert np.abs(fit.kinematics.jaw).sum() > 0 and np.abs(fit.kinematics.neck).sum() == 0
    assert np.nanmean(fit.residual) < 0.5


@pytest.mark.parametrize("box, size", [((37.3, 21.7, 90.5), 256), ((-12.0, 5.5, 180.0), 64)])
def test_uncrop_points_inverts_crop_image(box, size):
    """A blob drawn in a frame, cut out by `crop.crop_image` (up- and down-sampling, a box partly
    outside): its centroid in the crop, mapped back by `uncrop_points`, is where it was drawn."""
    from liftdata.track.crop import crop_image
    from liftdata.track.landmarks import uncrop_points

    yy, xx = np.mgrid[0:200, 0:300]
    frame = np.exp(-((xx - 62.3) ** 2 + (yy - 81.6) ** 2) / (2 * 6.0**2)).astype(np.float32)  # centres at integers
    crop = crop_image(frame, np.array(box), size, cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:size, 0:size]
    centroid = np.array([(crop * xx).sum(), (crop * yy).sum()]) / crop.sum()
    np.testing.assert_allclose(uncrop_points(centroid, np.array(box), size), [62.3, 81.6], atol=0.1)


def test_a_face_too_small_for_facemesh_is_found_by_the_full_range_detector(monkeypatch):
    """The astronaut photo placed small in a portrait frame (a face ~17% of the width): FaceMesh's
    short-range detector alone finds nothing; with the full-range fallback its landmarks agree with
    FaceMesh's on a closer framing of the same photo, mapped through the known affine."""
    from skimage.data import astronaut

    import liftdata.track.landmarks as lm

    def frame(w, h, s, offset):
        m = np.float32([[s, 0, offset[0]], [0, s, offset[1]]])
        return cv2.warpAffine(astronaut(), m, (w, h), borderMode=cv2.BORDER_REPLICATE), m

    close, m_close = frame(360, 640, 1.0, (-80, 60))
    far, m_far = frame(720, 1280, 1.2, (150, 300))
    reference = lm.detect_landmarks([close], 1, static=True, progress=False).points[0]
    got = lm.detect_landmarks([far], 1, static=True, progress=False).points[0]
    expected = (reference - m_close[:, 2]) / m_close[0, 0] * m_far[0, 0] + m_far[:, 2]  # close -> photo -> far
    face = np.ptp(got[:468], axis=0).max()
    err = np.linalg.norm(got - expected, axis=1)
    print(f"face {face:.0f} px, landmark difference mean {err.mean():.2f} px, max {err.max():.2f}")
    assert face < 0.2 * 720 and err.mean() < 0.03 * face
    monkeypatch.setattr(lm._Fallback, "__call__", lambda self, frame: None)
    with pytest.raises(TrackingError, match="no face found"):
        lm.detect_landmarks([far], 1, static=True, progress=False)
