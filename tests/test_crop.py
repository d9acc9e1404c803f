"""Head-centred crops with exact cameras (issue 16, item 3), on synthetic ground truth."""

import numpy as np
import pytest
import torch

from liftdata.capture import CaptureError
from liftdata.kinematics import Camera
from liftdata.render import condition_maps
from liftdata.synthetic import make_capture
from liftdata.track.crop import CropConfig, crop_boxes, crop_camera, crop_capture, crop_image

torch.set_num_threads(1)
SIZE = 256


@pytest.fixture(scope="module")
def capture():
    # a wider field of view than the default so that a 2.5 x face box fits in the frame
    return make_capture(9, n_frames=12, size=SIZE, fov_y_deg=45.0, max_yaw_deg=25)


def _landmarks_uv(capture, cameras):
    with torch.no_grad():
        verts = capture.head_model.vertices(torch.as_tensor(capture.identity), capture.kinematics).numpy()
    return verts, np.stack([cam.project(v)[:, :2] for cam, v in zip(cameras, verts)])


def test_crop_camera_of_the_whole_image_is_a_resize():
    """The slow, obvious twin: a box covering the whole (square) image is `Camera.resized`."""
    cam = Camera.from_fov(30.0, 200, 200)
    for size in (64, 200, 512):
        assert crop_camera(cam, np.array([0.0, 0.0, 200.0]), size).equals(cam.resized(size, size), atol=1e-9)


def test_crop_keeps_the_head_inside_and_projects_onto_the_same_pixels(capture):
    cfg = CropConfig(size=512)
    crop = crop_capture(capture, cfg)
    assert len(np.unique(crop.boxes, axis=0)) == 1  # one box for the whole (single-shot) capture
    verts, uv = _landmarks_uv(capture, [capture.camera] * len(capture))
    _, uv_crop = _landmarks_uv(capture, crop.cameras)
    assert (uv_crop >= 0).all() and (uv_crop <= cfg.size - 1).all()  # the head is inside every crop
    x0, y0, side = crop.boxes[0]
    s = cfg.size / side
    expected = (uv + 0.5 - [x0, y0]) * s - 0.5  # the uncropped projection, cropped and scaled
    assert np.abs(uv_crop - expected).max() < 1e-4  # float32 vertices
    # Independent of that formula: the head rendered with the crop camera vs the full-frame render
    # cut out by `crop_image`. The crop upsamples ~2.3 x, so a half-pixel slip in either convention
    # would move the centroid by ~0.65 crop pixels.
    faces = torch.as_tensor(np.asarray(capture.head_model.faces))
    full = condition_maps(torch.as_tensor(verts), faces, capture.camera)["mask"]
    direct = condition_maps(torch.as_tensor(verts), faces, crop.cameras[0])["mask"]
    yy, xx = np.mgrid[0:cfg.size, 0:cfg.size]
    centroid = lambda m: np.array([(m * xx).sum(), (m * yy).sum()]) / m.sum()  # noqa: E731
    shifts = []
    for t in range(len(capture)):
        cut, d = crop_image(full[t, ..., 0].numpy(), crop.boxes[t], cfg.size), direct[t, ..., 0].numpy()
        shifts.append(np.abs(centroid(cut) - centroid(d)).max())
        assert np.minimum(cut, d).sum() / np.maximum(cut, d).sum() > 0.97  # IoU
    print("mask centroid shift, crop px:", np.round(shifts, 3))
    assert max(shifts) < 0.5
    frame = crop.frames[0]
    assert frame.shape == (cfg.size, cfg.size, 3) and frame.dtype == np.uint8


def test_one_box_per_segment_and_capture_conversion(capture):
    starts = np.zeros(len(capture), bool)
    starts[6] = True
    crop = crop_capture(capture, CropConfig(size=128), starts=starts)
    assert (crop.boxes[:6] == crop.boxes[0]).all() and (crop.boxes[6:] == crop.boxes[6]).all()
    with pytest.raises(CaptureError, match="2 crop boxes"):
        crop.capture(capture)
    assert len(np.unique(crop_capture(capture, CropConfig(size=128, per_shot=False), starts=starts).boxes,
                         axis=0)) == 1
    one = crop_capture(capture, CropConfig(size=128))
    cropped = one.capture(capture)
    assert cropped.kinematics is capture.kinematics and cropped.camera.width == 128
    assert cropped.frames[3].shape == (128, 128, 3) and cropped.extra["crop"]["size"] == 128


def test_box_grows_to_keep_a_moving_face_and_scales_with_face_size():
    t = np.arange(20)
    square = np.array([[0, 0], [40, 0], [40, 40], [0, 40]], float)  # a 40 px face
    uv = square[None] + np.stack([3.0 * t, np.zeros(20)], 1)[:, None] + 100  # sliding 57 px to the right
    starts = np.zeros(20, bool)
    starts[0] = True
    box = crop_boxes(uv, starts, CropConfig(scale=2.5, margin=1.1))[0]
    x0, y0, side = box
    assert side >= 2.5 * 40
    lo, hi = uv.min((0, 1)) + 0.5, uv.max((0, 1)) + 0.5  # pixel edges
    assert x0 <= lo[0] and x0 + side >= hi[0] and y0 <= lo[1] and y0 + side >= hi[1]
    still = crop_boxes(uv[:1].repeat(20, 0), starts, CropConfig(scale=2.5))[0]
    assert still[2] == pytest.approx(100.0)  # 2.5 x 40 px when the face does not move


def test_box_stays_inside_the_frame():
    """Against the unconstrained box of the same faces: a box reaching past an edge moves back in
    with its side kept; one larger than the frame shrinks to the shorter side; inside=False is the
    unconstrained box."""
    starts = np.eye(1, 10, dtype=bool)[0]
    square = np.array([[0, 0], [40, 0], [40, 40], [0, 40]], float)  # a 40 px face
    cases = {"left edge": ((300, 200), [5.0, 80.0]), "bottom-right corner": ((300, 200), [250.0, 150.0]),
             "face fills a small frame": ((90, 120), [25.0, 40.0]), "centred": ((400, 400), [180.0, 180.0])}
    for name, ((w, h), corner) in cases.items():
        uv = np.repeat(square[None] + corner, 10, 0)
        free = crop_boxes(uv, starts, CropConfig(inside=False), frame=(w, h))[0]
        assert np.allclose(free, crop_boxes(uv, starts, CropConfig())[0]), name  # no frame given: unconstrained
        x0, y0, side = crop_boxes(uv, starts, CropConfig(), frame=(w, h))[0]
        assert side == pytest.approx(min(free[2], w, h)), name
        assert -1e-9 <= x0 <= w - side + 1e-9 and -1e-9 <= y0 <= h - side + 1e-9, name
        if free[2] <= min(w, h) and 0 <= free[0] <= w - free[2] and 0 <= free[1] <= h - free[2]:
            assert np.allclose([x0, y0, side], free), name  # a box already inside is unchanged
        else:
            # the crop of a white frame has no black pixel: nothing the camera did not see, whether
            # the crop shrinks or enlarges the box (an upsampled edge is not blended with black)
            for size in (64, 301):
                assert crop_image(np.full((h, w), 255, np.uint8), np.array([x0, y0, side]), size).min() == 255, name
            assert crop_image(np.full((h, w), 255, np.uint8), free, 64).min() == 0, name


def test_capture_whose_head_box_exceeds_the_frame_is_cropped_inside_it():
    """A close-up (the default 24 deg field of view at 160 px: 2.5 x the face is wider than the frame):
    the crop is the largest square inside the frame, holds no black border, and its camera still
    projects the head onto the same pixels as the uncropped one, scaled."""
    close = make_capture(4, n_frames=6, size=160, max_yaw_deg=15)
    free = crop_capture(close, CropConfig(size=128, inside=False))
    assert free.boxes[0][2] > 160  # the case this test is about
    crop = crop_capture(close, CropConfig(size=128))
    x0, y0, side = crop.boxes[0]
    assert side == pytest.approx(160) and x0 == pytest.approx(0) and y0 == pytest.approx(0)
    white = np.full((160, 160, 3), 255, np.uint8)
    assert crop_image(white, crop.boxes[0], 128).min() == 255 and crop_image(white, free.boxes[0], 128).min() == 0
    _, uv = _landmarks_uv(close, [close.camera] * len(close))
    _, uv_crop = _landmarks_uv(close, crop.cameras)
    assert np.abs(uv_crop - ((uv + 0.5 - [x0, y0]) * 128 / side - 0.5)).max() < 1e-4


@pytest.mark.parametrize("box, size", [((37.3, 21.7, 300.0), 100), ((-20.5, 10.25, 150.0), 64),
                                       ((50.0, 40.0, 80.0), 200)])
def test_crop_image_geometry_and_antialiasing(box, size):
    """Where a blob lands (against the crop map u' = (u + 0.5 - x0) * size / side - 0.5), shrinking,
    enlarging, a box partly outside; and a shrinking crop of 1-px stripes is their average (area
    resampling), not an aliased pattern."""
    yy, xx = np.mgrid[0:400, 0:400]
    u, v = 90.3, 81.6  # well inside every box
    blob = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 6.0**2)).astype(np.float32)
    crop = crop_image(blob, np.array(box), size)
    cy, cx = np.mgrid[0:size, 0:size]
    centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    x0, y0, side = box
    np.testing.assert_allclose(centroid, (np.array([u, v]) + 0.5 - [x0, y0]) * size / side - 0.5, atol=0.1)
    if size < side:
        stripes = ((xx + yy) % 2 * 255).astype(np.uint8)
        inner = crop_image(stripes, np.array([40.0, 30.0, side]), size)[2:-2, 2:-2].astype(float)  # box inside
        assert abs(inner.mean() - 127.5) < 3 and inner.std() < 10, (inner.mean(), inner.std())
