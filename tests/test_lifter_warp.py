"""The warp lifter against ground truth: synthetic subjects rendered under the driving kinematics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_fill_holes

from liftdata.head import load_head_model
from liftdata.head.base import neutral_kinematics
from liftdata.kinematics import Kinematics
from liftdata.lifters import _warp_ops as ops
from liftdata.lifters.base import Conditions, Lifter, References, render_conditions
from liftdata.lifters.warp import LifterInputError, WarpLifter
from liftdata.synthetic import boundary_loops, make_capture

SEED, SIZE = 3, 128


@pytest.fixture(scope="module")
def model():
    return load_head_model("builtin")


def kin(model, yaw=0.0, pitch=0.0, **expression) -> Kinematics:
    k = neutral_kinematics(model, 1)
    e = k.expression.copy()
    for name, value in expression.items():
        e[0, model.expression_index(name)] = value
    return k.replace(expression=e, rotation=np.radians([[pitch, yaw, 0.0]]).astype(np.float32))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    return float(10 * np.log10(255 ** 2 / max((d if mask is None else d[mask]).mean(), 1e-10)))


class Subject:
    """One synthetic subject: references are its frames under some kinematics, with ground truth."""

    def __init__(self, model, ref_kin: Kinematics, distance: float = 0.55):
        self.model, self.distance = model, distance
        capture = make_capture(SEED, kinematics=ref_kin, size=SIZE, distance=distance)
        self.identity, self.camera = capture.identity, capture.camera
        self.images, self.kinematics = capture.frames, ref_kin

    def references(self, which) -> References:
        k = self.kinematics[list(which)]
        return References(self.images[list(which)], render_conditions(self.model, self.identity, k, self.camera))

    def driving(self, k: Kinematics):
        return render_conditions(self.model, self.identity, k, self.camera)

    def truth(self, k: Kinematics) -> np.ndarray:  # the same subject rendered under k: ground truth
        return make_capture(SEED, kinematics=k, size=SIZE, distance=self.distance).frames


@pytest.fixture(scope="module")
def subject(model):
    """Reference frames: frontal neutral; turned + smiling; turned the other way + open jaw."""
    return Subject(model, Kinematics.concat([kin(model), kin(model, yaw=-15, mouthSmileLeft=0.8, mouthSmileRight=0.8),
                                             kin(model, yaw=12, jawOpen=0.8)]))


def head_mask(driving, refs: References, i: int) -> np.ndarray:  # the head in the driving frame or the first reference
    return ((driving.maps["mask"][i, ..., 0] > 0) | (refs.conditions.maps["mask"][0, ..., 0] > 0)).numpy()


# ---------------------------------------------------------------------- against ground truth
@pytest.mark.parametrize("which", [[0], [1], [0, 1, 2]])
def test_own_kinematics_return_the_reference(subject, which):
    refs = subject.references(which)
    out = WarpLifter().lift(refs, subject.driving(subject.kinematics[which]))
    for i, k in enumerate(which):
        assert psnr(out[i], subject.images[k]) > 35


@pytest.mark.parametrize("case, which", [
    ("yaw 10", [0]), ("yaw 10", [0, 1, 2]), ("smile", [0]), ("smile", [0, 2]), ("jaw open 0.6", [0, 2])])
def test_beats_the_unchanged_reference(model, subject, case, which):
    """PSNR against ground truth: >= 3 dB above returning the primary reference, in the head and overall."""
    k = {"yaw 10": kin(model, yaw=10), "smile": kin(model, mouthSmileLeft=1.0, mouthSmileRight=1.0),
         "jaw open 0.6": kin(model, jawOpen=0.6)}[case]
    refs, driving, truth = subject.references(which), subject.driving(k), subject.truth(k)[0]
    out = WarpLifter().lift(refs, driving)[0]
    head = head_mask(driving, refs, 0)
    naive = max((refs.images[i] for i in range(len(refs))), key=lambda im: psnr(im, truth))  # the best one, even
    assert psnr(out, truth, head) >= psnr(naive, truth, head) + 3
    assert psnr(out, truth) > psnr(naive, truth)


def test_background_far_from_the_head_is_unchanged(model):
    subject = Subject(model, kin(model), distance=1.0)  # a smaller head, leaving background around it
    refs, k = subject.references([0]), kin(model, yaw=10, pitch=-8)
    driving = subject.driving(k)
    out = WarpLifter().lift(refs, driving)[0]
    head = head_mask(driving, refs, 0)
    size = np.sqrt(head.sum())
    far = _distance(head) > 0.55 * size
    assert far.sum() > 0.2 * far.size
    np.testing.assert_array_equal(out[far], refs.images[0][far])
    assert (out[head] != refs.images[0][head]).any(axis=-1).mean() > 0.3  # while the head did change


def test_the_rest_of_the_head_follows_the_pose(model, subject):
    """Hair/ears are not in the mesh: paint a pattern around the face and move the head; the
    pattern next to the face must move with it (the flow extends the face's motion outwards)."""
    refs = subject.references([0])
    face = binary_fill_holes(refs.conditions.maps["mask"][0, ..., 0].numpy() > 0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    hair = (127 + 100 * np.sin(2 * np.pi * xx / 16) * np.sin(2 * np.pi * yy / 16)).astype(np.uint8)
    image = np.where(face[..., None], refs.images[0], hair[..., None])
    refs = References(image[None], refs.conditions)
    k = kin(model).replace(translation=np.array([[0.012, 0.007, 0.0]], np.float32))
    driving = subject.driving(k)
    out = WarpLifter().lift(refs, driving)[0].astype(np.float64)
    cam = subject.camera
    shift = (cam.project(driving.vertices[0].numpy()) - cam.project(refs.conditions.vertices[0].numpy()))[:, :2].mean(0)
    moved = np.roll(image.astype(np.float64), np.round(shift).astype(int)[::-1], axis=(0, 1))  # to the nearest pixel
    drv_face = binary_fill_holes(driving.maps["mask"][0, ..., 0].numpy() > 0)
    band = (_distance(drv_face) > 2) & (_distance(drv_face) < 0.08 * np.sqrt(drv_face.sum()))
    assert np.abs(shift).max() > 4 and band.sum() > 100
    followed = np.abs(out[band] - moved[band]).mean()
    stayed = np.abs(image[band].astype(np.float64) - moved[band]).mean()
    assert followed < stayed / 3, (followed, stayed)


def _distance(mask: np.ndarray) -> np.ndarray:  # Euclidean distance of every pixel to the mask (brute force)
    ys, xs = np.nonzero(mask)
    gy, gx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    d = np.full(mask.shape, np.inf)
    for y, x in zip(ys[::3], xs[::3]):
        d = np.minimum(d, np.hypot(gy - y, gx - x))
    return d


# ---------------------------------------------------------------------- contract
def test_shapes_dtype_determinism_and_chunking(model, subject):
    assert isinstance(WarpLifter(), Lifter)
    k = Kinematics.concat([kin(model, yaw=y, jawOpen=j) for y, j in [(-6, 0), (0, 0.3), (5, 0.5), (9, 0.2), (3, 0)]])
    refs, driving = subject.references([0, 1, 2]), subject.driving(k)
    out = WarpLifter().lift(refs, driving)
    assert out.shape == (5, SIZE, SIZE, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, WarpLifter().lift(refs, driving, seed=7))
    np.testing.assert_array_equal(out, WarpLifter(chunk=2).lift(refs, driving))
    one = WarpLifter().lift(subject.references([0]), subject.driving(k[2:3]))
    assert one.shape == (1, SIZE, SIZE, 3)


def test_bad_inputs_raise(model, subject):
    refs, driving = subject.references([0]), subject.driving(kin(model))
    lifter = WarpLifter()
    with pytest.raises(LifterInputError, match="references.images"):
        lifter.lift(References(refs.images[..., :2], refs.conditions), driving)
    with pytest.raises(LifterInputError, match="references.images"):
        lifter.lift(References(refs.images.astype(np.float32), refs.conditions), driving)
    with pytest.raises(LifterInputError, match="at least one reference"):
        lifter.lift(References(refs.images[:0], refs.conditions), driving)
    with pytest.raises(LifterInputError, match="2 images but 1 conditions"):
        lifter.lift(References(np.concatenate([refs.images] * 2), refs.conditions), driving)
    with pytest.raises(LifterInputError, match="driving: need at least one frame"):
        lifter.lift(refs, Conditions(driving.kinematics[:0], driving.camera, driving.vertices[:0], driving.faces,
                                     {name: m[:0] for name, m in driving.maps.items()}))
    with pytest.raises(LifterInputError, match="not the same head model"):
        lifter.lift(refs, Conditions(driving.kinematics, driving.camera, driving.vertices[:, :400], driving.faces[:10],
                                     driving.maps))


# ---------------------------------------------------------------------- helpers against slow twins
def test_extend_flow_matches_its_slow_twin(rng):
    H = W = 40
    yy, xx = np.mgrid[:H, :W]
    face = ((yy - 20) / 9) ** 2 + ((xx - 19) / 7) ** 2 < 1
    exact = np.stack([0.1 * xx - 2 + np.sin(yy / 3), 0.05 * yy + 1], -1).astype(np.float32)
    rigid = np.stack([0.1 * xx - 2, 0.05 * yy + 1], -1).astype(np.float32)
    fast = ops.extend_flow(exact, rigid, face, head_falloff=0.8, residual_falloff=0.3)
    slow = ops.extend_flow_slow(exact, rigid, face, head_falloff=0.8, residual_falloff=0.3)
    np.testing.assert_array_equal(fast[face], exact[face])
    np.testing.assert_allclose(fast, slow, atol=0.12)
    far = np.hypot(yy - 20, xx - 19) > 9 + 0.8 * np.sqrt(face.sum()) + 1
    assert far.any() and (fast[far] == 0).all()


def test_rigid_fit_recovers_a_pose_despite_local_motion(rng):
    src = rng.normal(size=(2, 300, 3))
    angles = np.array([[0.3, -0.2, 0.1], [0.0, 0.5, 0.0]])
    R = np.stack([torch.linalg.matrix_exp(torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])).numpy()
                  for a in angles])
    t = rng.normal(size=(2, 3))
    dst = src @ np.swapaxes(R, -1, -2) + t[:, None]
    dst[:, :40] += rng.normal(0, 0.5, size=(2, 40, 3))  # an "expression": a few vertices moved a lot
    R_fit, t_fit = ops.rigid_fit(src, dst)
    np.testing.assert_allclose(R_fit, R, atol=1e-6)
    np.testing.assert_allclose(t_fit, t, atol=1e-6)
    np.testing.assert_allclose(ops.rotation_angle(R_fit), np.linalg.norm(angles, axis=1), atol=1e-6)


def test_closed_mesh_has_no_holes(model):
    faces = np.asarray(model.faces)
    mesh = ops.close_holes(faces, model.n_vertices)
    assert len(mesh.loops) == len(boundary_loops(faces)) - 1 == 3  # mouth and two eyes
    assert len(boundary_loops(mesh.faces)) == 1  # only the outer rim is left
    assert (mesh.hole_of_face[:len(faces)] == -1).all() and set(mesh.hole_of_face[len(faces):]) == {0, 1, 2}


def test_hole_references_pick_the_closest_opening():
    ref_areas = np.array([[0.0, 1.0], [2.0, 1.0], [5.0, 1.1]])  # [K=3, L=2]
    drv_areas = np.array([[1.8, 1.0], [6.0, 0.0], [40.0, 1.0]])
    choice = ops.choose_hole_references(ref_areas, drv_areas, min_ratio=0.3, eps=1e-9)
    np.testing.assert_array_equal(choice, [[1, 0], [2, 0], [-1, 0]])  # 40 vs 5: too closed -> fill
