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
    whole = _whole_head_mask(model, subject, k) | _whole_head_mask(model, subject, kin(model))  # face + proxy
    far = _distance(whole) > 0.55 * np.sqrt(whole.sum())
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


def _whole_head_mask(model, subject, k) -> np.ndarray:  # the face mesh and the head proxy, rendered
    from liftdata.render import rasterize

    verts, faces = model.whole_head(subject.identity, k)
    return rasterize(verts, faces, subject.camera).mask[0].numpy()


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


def test_closed_mesh_caps_are_wound_like_the_surface(model, subject):
    """An orientable closed mesh uses every shared edge once in each direction; a cap wound the
    wrong way round repeats its rim edges' direction and its normal points into the head."""
    faces = np.asarray(model.faces)
    mesh = ops.close_holes(faces, model.n_vertices)
    edges = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]])
    directed, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() == 1  # no directed edge twice
    reverse = {tuple(e) for e in directed[:, ::-1]}
    shared = [tuple(e) for e in directed if tuple(e) in reverse]
    assert len(shared) == len(directed) - len(boundary_loops(mesh.faces)[0])  # all but the outer rim
    # the eye caps of a frontal open-eyed face look at the camera (as the skin around them does)
    refs = subject.references([0])
    world = mesh.vertices(refs.conditions.vertices.double().numpy())
    front = ops.frontality(ops.to_camera(world, refs.conditions.camera), mesh.faces)[0]
    eyes = _eye_holes(mesh, model)
    assert (front[mesh.n_open + np.array(eyes)] > 0.8).all()


def _eye_holes(mesh, model) -> list[int]:
    """The two openings highest on the template (the third, lowest, is the mouth)."""
    height = [float(np.asarray(model.template)[loop, 1].mean()) for loop in mesh.loops]
    return [int(h) for h in np.argsort(height)[-2:]]


def test_hole_references_pick_the_closest_opening():
    ref_areas = np.array([[0.0, 1.0], [2.0, 1.0], [5.0, 1.1]])  # [K=3, L=2]
    drv_areas = np.array([[1.8, 1.0], [6.0, 0.0], [40.0, 1.0]])
    choice = ops.choose_hole_references(ref_areas, drv_areas, min_ratio=0.3, eps=1e-9)
    np.testing.assert_array_equal(choice, [[1, 0], [2, 0], [-1, 0]])  # 40 vs 5: too closed -> fill


# ---------------------------------------------------------------------- confidence and quality terms
def test_lift_detailed_returns_lift_frames_and_a_confidence(model, subject):
    k = Kinematics.concat([kin(model, yaw=5), kin(model, jawOpen=0.5)])
    refs, driving = subject.references([0, 2]), subject.driving(k)
    details = WarpLifter(chunk=1).lift_detailed(refs, driving)
    np.testing.assert_array_equal(details.frames, WarpLifter().lift(refs, driving))
    assert details.confidence.shape == (2, SIZE, SIZE) and details.confidence.dtype == np.float32
    assert details.confidence.min() >= 0 and details.confidence.max() <= 1
    assert set(details.quality) >= {"seen_fraction", "fill_fraction", "disoccluded_fraction", "flow_stretch",
                                    "flow_fold_fraction", "pose_distance_deg"}
    assert all(v.shape == (2,) for v in details.quality.values())


def test_confidence_is_high_on_own_kinematics_and_zero_in_an_unseen_open_mouth(model, subject):
    refs = subject.references([0])  # frontal, closed mouth
    own = WarpLifter().lift_detailed(refs, subject.driving(subject.kinematics[[0]]))
    face = refs.conditions.maps["mask"][0, ..., 0].numpy() > 0
    assert own.confidence[0][face].mean() > 0.9 and own.quality["pose_distance_deg"][0] < 1e-3
    # the open eyes are seen as they are: confident on their caps too (not only on the skin)
    closed = ops.close_holes(np.asarray(refs.conditions.faces), model.n_vertices)
    hole = _rasterize_closed(closed, subject.driving(subject.kinematics[[0]]))
    hole_id = np.where(hole.mask[0].numpy(), closed.hole_of_face[hole.face_id[0].numpy()], -1)
    eyes = np.isin(hole_id, _eye_holes(closed, model))
    assert eyes.sum() > 10 and own.confidence[0][eyes].mean() > 0.9
    driving = subject.driving(kin(model, jawOpen=0.8))
    jaw = WarpLifter().lift_detailed(refs, driving)
    mesh = ops.close_holes(np.asarray(driving.faces), model.n_vertices)
    frags = _rasterize_closed(mesh, driving)
    mouth = frags.mask[0].numpy() & (mesh.hole_of_face[frags.face_id[0].numpy()] == 0)
    world = mesh.vertices(driving.vertices.double().numpy())
    open_ratio = (ops.hole_areas(mesh.vertices(refs.conditions.vertices.double().numpy()), mesh)[0, 0]
                  / ops.hole_areas(world, mesh)[0, 0])
    assert open_ratio < 0.5 and mouth.sum() > 20
    assert jaw.confidence[0][mouth].max() <= open_ratio + 1e-6 and jaw.confidence[0][mouth].mean() < 0.1
    assert jaw.quality["fill_fraction"][0] > 0 == own.quality["fill_fraction"][0]


def _rasterize_closed(mesh, driving):
    from liftdata.render import rasterize

    world = mesh.vertices(driving.vertices.double().numpy())
    return rasterize(torch.from_numpy(world), mesh.faces, driving.camera)


def test_confidence_tells_where_the_warp_is_wrong(model, subject):
    """Against ground truth at a large yaw: low-confidence pixels err more than high-confidence ones,
    and the quality terms grow with the pose distance."""
    refs = subject.references([0])
    k = Kinematics.concat([kin(model, yaw=y) for y in (10, 25, 40)])
    details = WarpLifter().lift_detailed(refs, subject.driving(k))
    truth = subject.truth(k)
    err = np.abs(details.frames.astype(np.float64) - truth).mean(-1)
    near = _distance(binary_fill_holes(refs.conditions.maps["mask"][0, ..., 0].numpy() > 0)) < 20
    low, high = (details.confidence < 0.3) & near, (details.confidence > 0.8) & near
    assert low.sum() > 100 and high.sum() > 100
    assert err[low].mean() > 2 * err[high].mean(), (err[low].mean(), err[high].mean())
    q = details.quality
    assert np.all(np.diff(q["pose_distance_deg"]) > 0) and np.all(np.diff(q["disoccluded_fraction"]) > 0)
    assert np.all(np.diff(q["flow_stretch"]) > 0)


def test_map_jacobian_det_of_affine_and_folded_maps():
    yy, xx = np.mgrid[:20, :30].astype(np.float64)
    A = np.array([[1.3, 0.2], [-0.4, 0.7]])  # map(p) = A p: disp = (A - I) p
    disp = np.stack([(A[0, 0] - 1) * xx + A[0, 1] * yy, A[1, 0] * xx + (A[1, 1] - 1) * yy], -1)
    np.testing.assert_allclose(ops.map_jacobian_det(disp), np.linalg.det(A), atol=1e-9)
    mirror = np.stack([-2 * xx, np.zeros_like(yy)], -1)  # map x -> -x: a fold
    np.testing.assert_allclose(ops.map_jacobian_det(mirror), -1.0, atol=1e-9)


def test_shading_fit_and_ratio_recover_a_lambertian_light(rng):
    n = rng.normal(size=(40, 50, 3))
    n[..., 2] = -np.abs(n[..., 2]) - 0.5  # facing the camera (OpenCV: -z)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    beta = np.array([[0.3, 0.25, 0.2], [0.1, 0.05, 0.08], [-0.2, -0.15, -0.1], [-0.4, -0.3, -0.35]])
    image = np.concatenate([np.ones((40, 50, 1)), n], -1) @ beta
    image[:5, :5] = 0.9  # a patch of another albedo: dropped as outliers
    mask = np.ones((40, 50), bool)
    fit = ops.fit_shading(image, n, mask)
    np.testing.assert_allclose(fit, beta, atol=1e-6)
    m = np.roll(n, 7, axis=1)
    ratio = ops.shading_ratio(fit, m, n, limits=(0, np.inf))
    ones = np.ones((40, 50, 1))
    expected = (np.concatenate([ones, m], -1) @ beta) / (np.concatenate([ones, n], -1) @ beta)
    np.testing.assert_allclose(ratio, expected, rtol=1e-6)


def test_extend_colours_keeps_the_mask_and_fills_from_it():
    image = np.zeros((30, 30, 3), np.float32)
    mask = np.zeros((30, 30), bool)
    mask[10:20, 10:20] = True
    image[mask] = (0.2, 0.5, 0.9)
    image[~mask] = (1.0, 0.0, 0.0)  # background that must not leak
    out = ops.extend_colours(image, mask)
    np.testing.assert_array_equal(out[mask], image[mask])
    np.testing.assert_allclose(out[~mask], np.broadcast_to([0.2, 0.5, 0.9], out[~mask].shape), atol=1e-5)


def test_vertex_normals_match_the_renderer_twin(model, rng):
    from liftdata.render.raster import vertex_normals

    v = model.vertices(model.neutral_identity(), neutral_kinematics(model, 1)).double().numpy()
    v = v + rng.normal(0, 1e-3, v.shape)
    ours = ops.vertex_normals(v, np.asarray(model.faces))
    np.testing.assert_allclose(ours, vertex_normals(torch.from_numpy(v), model.faces).numpy(), atol=1e-10)
