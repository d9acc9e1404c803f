import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from liftdata.kinematics import (Camera, Kinematics, KinematicsError, axis_angle_to_matrix,
                                 matrix_to_axis_angle)

finite = st.floats(-10, 10, allow_nan=False, width=32)


@st.composite
def kinematics(draw, n_frames=None, n_expression=None):
    t = draw(st.integers(1, 5)) if n_frames is None else n_frames
    e = draw(st.integers(1, 8)) if n_expression is None else n_expression
    arr = lambda w: draw(arrays(np.float32, (t, w), elements=finite))  # noqa: E731
    return Kinematics(arr(e), arr(3), arr(3), arr(6), arr(3), arr(3), "builtin", "1")


@st.composite
def rotations(draw):
    axis = draw(arrays(np.float64, 3, elements=st.floats(-1, 1)))
    if np.linalg.norm(axis) < 1e-3:
        axis = np.array([0.0, 0.0, 1.0])
    angle = draw(st.floats(0, math.pi - 1e-3))
    return axis / np.linalg.norm(axis) * angle


@st.composite
def cameras(draw):
    w, h = draw(st.integers(8, 2048)), draw(st.integers(8, 2048))
    fx, fy = draw(st.floats(10, 5000)), draw(st.floats(10, 5000))
    cx, cy = draw(st.floats(0, w)), draw(st.floats(0, h))
    w2c = np.eye(4)
    w2c[:3, :3] = axis_angle_to_matrix(draw(rotations()))
    w2c[:3, 3] = draw(arrays(np.float64, 3, elements=st.floats(-5, 5)))
    return Camera(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), w2c, w, h)


# ------------------------------------------------------------------ Kinematics
@given(kinematics())
def test_dict_round_trip_through_json_is_exact(k):
    back = Kinematics.from_dict(json.loads(json.dumps(k.to_dict())))
    assert back.equals(k)
    assert back.expression.dtype == np.float32


@given(kinematics(), st.data())
def test_slicing_and_concat_invert_each_other(k, data):
    cut = data.draw(st.integers(0, len(k)))
    assert Kinematics.concat([k[:cut], k[cut:]]).equals(k)
    i = data.draw(st.integers(-len(k), len(k) - 1))
    one = k[i]
    assert len(one) == 1 and np.array_equal(one.jaw[0], k.jaw[i])


def test_index_with_array_and_out_of_range():
    k = Kinematics.zeros(4, 2, "builtin", "1").replace(translation=np.arange(12).reshape(4, 3))
    assert np.array_equal(k[np.array([3, 1])].translation[:, 0], [9, 3])
    with pytest.raises(IndexError):
        k[4]


@pytest.mark.parametrize("field,value,message", [
    ("expression", np.full((2, 3), np.nan), r"expression: non-finite value at index \[0, 0\]"),
    ("jaw", np.zeros((2, 2)), r"jaw: expected shape \[\*, 3\], got \[2, 2\]"),
    ("eyes", np.zeros((3, 6)), r"eyes: has 3 frames, expression has 2"),
    ("rotation", np.array([[0, 0, np.inf]] * 2), r"rotation: non-finite"),
])
def test_validation_names_the_field(field, value, message):
    k = Kinematics.zeros(2, 3, "builtin", "1")
    with pytest.raises(KinematicsError, match=message):
        k.replace(**{field: value})


def test_head_models_never_mix():
    a = Kinematics.zeros(1, 3, "builtin", "1")
    with pytest.raises(KinematicsError, match="cannot mix builtin v1 with flame v2023"):
        Kinematics.concat([a, Kinematics.zeros(1, 3, "flame", "2023")])
    with pytest.raises(KinematicsError, match="3 vs 5"):
        Kinematics.concat([a, Kinematics.zeros(1, 5, "builtin", "1")])
    with pytest.raises(KinematicsError, match="missing field"):
        Kinematics.from_dict({"expression": [[0.0]]})


# ------------------------------------------------------------------ rotations
@given(rotations())
def test_axis_angle_round_trip(aa):
    r = axis_angle_to_matrix(aa)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(matrix_to_axis_angle(r), aa, atol=1e-9)


def test_axis_angle_against_known_rotation():
    # 90 degrees about z maps x to y.
    r = axis_angle_to_matrix(np.array([0, 0, math.pi / 2]))
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)


# ------------------------------------------------------------------ Camera
@settings(max_examples=50)
@given(cameras())
def test_opengl_c2w_round_trip(cam):
    back = Camera.from_c2w_opengl(cam.c2w_opengl(), cam.K, cam.width, cam.height)
    assert back.equals(cam, atol=1e-9)
    frame = cam.to_transforms_frame()
    back = Camera.from_transforms({}, json.loads(json.dumps(frame)))
    assert back.equals(cam, atol=1e-9)


@settings(max_examples=50)
@given(cameras(), arrays(np.float64, (5, 3), elements=st.floats(-1, 1)))
def test_opengl_matrix_sees_points_like_opencv(cam, pts):
    """An OpenGL camera looks down -z with y up; the same point must project identically."""
    p_cam_cv = pts @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    w2c_gl = np.linalg.inv(cam.c2w_opengl())
    p_cam_gl = pts @ w2c_gl[:3, :3].T + w2c_gl[:3, 3]
    np.testing.assert_allclose(p_cam_gl, p_cam_cv * [1, -1, -1], atol=1e-9)


@given(cameras())
def test_camera_dict_round_trip(cam):
    assert Camera.from_dict(json.loads(json.dumps(cam.to_dict()))).equals(cam)


def test_frontal_camera_sees_the_face():
    cam = Camera.frontal(20.0, 256, 192, distance=0.6)
    uvz = cam.project(np.array([[0, 0, 0], [0.05, 0.05, 0.01]]))
    np.testing.assert_allclose(uvz[0], [127.5, 95.5, 0.6])
    # +x (subject's left) is image right, +y (up) is image up, +z (towards camera) is nearer.
    assert uvz[1, 0] > 127.5 and uvz[1, 1] < 95.5 and uvz[1, 2] < 0.6


def test_resized_keeps_pixel_centres():
    cam = Camera.frontal(30.0, 100, 80, distance=1.0)
    small = cam.resized(50, 40)
    p = np.array([[0.1, -0.05, 0.2]])
    uv_big, uv_small = cam.project(p)[0, :2], small.project(p)[0, :2]
    # pixel centre i at scale s maps to (i + 0.5) * s - 0.5
    np.testing.assert_allclose(uv_small, (uv_big + 0.5) * 0.5 - 0.5, atol=1e-9)


@pytest.mark.parametrize("kwargs,message", [
    (dict(K=np.eye(3) * [0, 1, 1]), "not a pinhole"),
    (dict(world_to_camera=np.diag([1, 1, -1, 1])), "not a proper rotation"),
    (dict(width=0), "positive integers"),
    (dict(K=np.full((3, 3), np.nan)), "camera.K: non-finite"),
])
def test_camera_validation(kwargs, message):
    base = dict(K=np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]), world_to_camera=np.eye(4),
                width=100, height=100)
    with pytest.raises(KinematicsError, match=message):
        Camera(**{**base, **kwargs})


@given(cameras(), arrays(np.float64, (5, 3), elements=st.floats(-2, 2)))
@settings(max_examples=50, deadline=None)
def test_world_to_camera_points_and_centre(cam, points):
    """Against the homogeneous 4x4 product; the centre maps to the camera-space origin."""
    homogeneous = np.concatenate([points, np.ones((5, 1))], 1) @ cam.world_to_camera.T
    np.testing.assert_allclose(cam.world_to_camera_points(points), homogeneous[:, :3], atol=1e-9)
    np.testing.assert_allclose(cam.world_to_camera_points(cam.centre), 0, atol=1e-6)  # R orthonormal to ~1e-7
