"""The builtin head model: topology, template, kinematics and each named blendshape.

Independent references: mediapipe's own region sets (FACEMESH_*), a numpy Rodrigues
(`liftdata.kinematics.axis_angle_to_matrix`), and the generator re-run from scratch.
"""

from collections import Counter
from itertools import combinations

import mediapipe as mp
import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from liftdata.head import HeadModel, load_head_model, neutral_kinematics
from liftdata.head.builtin import ASSET_PATH, BuiltinHeadModel, load_builtin
from liftdata.head.lbs import axis_angle_to_matrix as aa_torch
from liftdata.kinematics import axis_angle_to_matrix

FM = mp.solutions.face_mesh


def region(connections) -> np.ndarray:
    return np.array(sorted({i for e in connections for i in e}))


LIPS, OVAL = region(FM.FACEMESH_LIPS), region(FM.FACEMESH_FACE_OVAL)
LEFT_EYE, RIGHT_EYE = region(FM.FACEMESH_LEFT_EYE), region(FM.FACEMESH_RIGHT_EYE)
LEFT_BROW, RIGHT_BROW = region(FM.FACEMESH_LEFT_EYEBROW), region(FM.FACEMESH_RIGHT_EYEBROW)
EYES_AND_BROWS = np.r_[LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW]
UPPER_LIP_CENTRE, LOWER_LIP_CENTRE = [0, 13], [14, 17]  # mediapipe: outer/inner lip midpoints
LEFT_CORNER, RIGHT_CORNER = 291, 61  # mouth corners (subject's left = +x)


@pytest.fixture(scope="module")
def model() -> BuiltinHeadModel:
    return load_builtin()


def posed(model, expression=None, **fields) -> torch.Tensor:
    """Vertices [T, V, 3] for the given named coefficients (dict) and kinematic fields."""
    fields = {k: np.asarray(v, np.float32) for k, v in fields.items()}
    n = len(next(iter(fields.values()))) if fields else 1
    k = neutral_kinematics(model, n)
    e = k.expression.copy()
    for name, value in (expression or {}).items():
        e[:, model.expression_index(name)] = value
    return model.vertices(model.neutral_identity(), k.replace(expression=e, **fields))


def offsets(model, name, value=1.0) -> np.ndarray:  # [V, 3] displacement of one shape
    return (posed(model, {name: value}) - posed(model))[0].numpy()


# ---------------------------------------------------------------------- topology and template
def test_topology_manifold_with_four_boundary_loops(model):
    faces = model.faces
    assert faces.shape == (852, 3) and faces.dtype == np.int64
    undirected = Counter(tuple(sorted(e)) for f in faces for e in combinations(f, 2))
    assert max(undirected.values()) <= 2  # manifold
    directed = Counter((f[k], f[(k + 1) % 3]) for f in faces for k in range(3))
    assert max(directed.values()) == 1  # consistent orientation: shared edges run both ways
    v, e = len(np.unique(faces)), len(undirected)
    assert (v, v - e + len(faces)) == (468, 2 - 4)  # Euler characteristic of a sphere with 4 holes
    border = np.array([k for k, c in undirected.items() if c == 1])
    graph = coo_matrix((np.ones(len(border)), (border[:, 0], border[:, 1])), shape=(468, 468))
    _, label = connected_components(graph, directed=False)
    loops = [set(np.unique(border[label[border[:, 0]] == c])) for c in np.unique(label[border[:, 0]])]
    assert sorted(len(x) for x in loops) == [16, 16, 20, 36]
    assert set(map(frozenset, loops)) >= {frozenset(OVAL), frozenset(LEFT_EYE), frozenset(RIGHT_EYE)}
    inner_lips = next(x for x in loops if len(x) == 20)
    assert inner_lips <= set(LIPS) and {13, 14} <= inner_lips


def test_outward_normals_face_plus_z(model):
    t = model.template.numpy()
    a, b, c = (t[model.faces[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    front = np.abs(t[model.faces].mean(1)[:, 0]) < 0.03  # the central face, seen from the front
    assert (n[front, 2] > 0).mean() > 0.97


def test_template_symmetric_metric(model):
    t, p = model.template.numpy(), model.mirror_partner
    assert np.array_equal(p[p], np.arange(468))
    np.testing.assert_allclose(t[p] * [-1, 1, 1], t, atol=1e-6)
    assert set(p[LEFT_EYE]) == set(RIGHT_EYE) and set(p[LEFT_BROW]) == set(RIGHT_BROW)
    edges = {tuple(sorted(e)) for e in FM.FACEMESH_TESSELATION}
    kept = np.mean([tuple(sorted((p[i], p[j]))) in edges for i, j in edges])
    assert kept > 0.99  # the pairing is (nearly) a graph automorphism
    assert 0.12 < np.ptp(t[:, 0]) < 0.16  # face width
    assert t[LEFT_EYE, 0].mean() > 0.02 > -0.02 > t[RIGHT_EYE, 0].mean()  # left = +x
    assert t[10, 1] > t[1, 1] > t[152, 1] and t[:, 2].argmax() in (1, 4)  # +y up, nose tip in front


# ---------------------------------------------------------------------- kinematics
def test_vertices_batched_identity(model, rng):
    identity = torch.as_tensor(rng.normal(0, 0.002, (468, 3)), dtype=torch.float32)
    k = neutral_kinematics(model, 4)
    v = model.vertices(identity, k)
    assert v.shape == (4, 468, 3)
    torch.testing.assert_close(v, (model.template + identity).expand(4, -1, -1))
    assert torch.equal(model.landmarks(v), v) and np.array_equal(model.landmark_mediapipe_index, np.arange(468))
    with pytest.raises(ValueError, match="identity"):
        model.vertices(torch.zeros(10, 3), k)


def test_rigid_and_neck_against_numpy(model, rng):
    t = 3
    expression = rng.uniform(0, 1, (t, model.n_expression))
    rot, trans, neck = rng.normal(0, 0.4, (t, 3)), rng.normal(0, 0.1, (t, 3)), rng.normal(0, 0.3, (t, 3))
    base = posed(model, {n: expression[:, i] for i, n in enumerate(model.expression_names)},
                 rotation=np.zeros((t, 3))).numpy().astype(np.float64)
    got = posed(model, {n: expression[:, i] for i, n in enumerate(model.expression_names)},
                rotation=rot, translation=trans, neck=neck).numpy()
    pivot = model.neck_pivot.numpy()
    for f in range(t):
        r, n = axis_angle_to_matrix(rot[f]), axis_angle_to_matrix(neck[f])
        want = [r @ (n @ (v - pivot) + pivot) + trans[f] for v in base[f]]
        np.testing.assert_allclose(got[f], want, atol=2e-6)


def test_jaw_and_eyes_fields_are_ignored(model, rng):
    a = posed(model, {"jawOpen": 0.5}, jaw=np.zeros((1, 3)))
    b = posed(model, {"jawOpen": 0.5}, jaw=rng.normal(size=(1, 3)), eyes=rng.normal(size=(1, 6)))
    assert torch.equal(a, b)


def test_differentiable(model, rng):
    identity = torch.zeros(468, 3, requires_grad=True)
    k = neutral_kinematics(model, 2).as_tensors()
    k["expression"] = torch.full((2, model.n_expression), 0.3, requires_grad=True)
    k["rotation"] = torch.zeros(2, 3, requires_grad=True)  # gradient at exactly zero rotation
    weights = torch.as_tensor(rng.normal(size=(2, 468, 3)), dtype=torch.float32)
    (model.vertices(identity, k) * weights).sum().backward()
    for g in (identity.grad, k["expression"].grad, k["rotation"].grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_axis_angle_matches_numpy_and_gradcheck(rng):
    aa = np.r_[rng.normal(0, 1, (5, 3)), np.zeros((1, 3)), np.full((1, 3), 1e-5)]
    np.testing.assert_allclose(aa_torch(torch.as_tensor(aa)).numpy(), axis_angle_to_matrix(aa), atol=1e-12)
    x = torch.as_tensor(aa, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(aa_torch, (x,))


# ---------------------------------------------------------------------- blendshapes
def loop_chains(connections, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two chains (without corners) of a closed mediapipe loop between its leftmost and
    rightmost vertices, paired from one corner; the chain through the higher vertices first."""
    nbr: dict[int, list[int]] = {}
    for i, j in connections:
        nbr.setdefault(i, []).append(j)
        nbr.setdefault(j, []).append(i)
    loop = np.array(sorted(nbr))
    start, end = loop[np.argmin(template[loop, 0])], loop[np.argmax(template[loop, 0])]
    chains = []
    for first in nbr[start]:
        chain = [start, first]
        while chain[-1] != end:
            chain.append(next(v for v in nbr[chain[-1]] if v != chain[-2]))
        chains.append(np.array(chain[1:-1]))
    chains.sort(key=lambda c: -template[c, 1].mean())
    return chains[0], chains[1]


def inner_lip_chains(template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower inner lip chains from FACEMESH_LIPS: the loop through 13 (upper) and 14."""
    inner, grow = {13}, True
    while grow:  # connected component of the lip edges that holds landmark 13
        new = {v for e in FM.FACEMESH_LIPS if inner & set(e) for v in e} - inner
        inner |= new
        grow = bool(new)
    upper, lower = loop_chains([e for e in FM.FACEMESH_LIPS if e[0] in inner], template)
    return (upper, lower) if 13 in upper else (lower, upper)  # closed lips: same height


def lip_gaps(v: np.ndarray, template: np.ndarray) -> np.ndarray:  # [V, 3] -> [9] upper y - lower y
    upper, lower = inner_lip_chains(template)
    return v[upper, 1] - v[lower, 1]


def test_neutral_is_relaxed_with_closed_lips(model):
    t = model.template.numpy()
    upper, lower = inner_lip_chains(t)
    assert len(upper) == len(lower) == 9 and 13 in upper and 14 in lower
    assert np.linalg.norm(t[upper] - t[lower], axis=1).max() < 0.001  # the lips touch: a closed slit
    line = (t[13, 1] + t[14, 1]) / 2
    for corner in (LEFT_CORNER, RIGHT_CORNER):  # corners at the lip line, not raised in a smile
        assert abs(t[corner, 1] - line) < 0.002
    assert 0.05 < t[LEFT_CORNER, 0] - t[RIGHT_CORNER, 0] < 0.062  # relaxed width (the photo's smile: 64 mm)


def test_neutral_has_no_folded_triangles(model):
    angle, edges = dihedral_deg(model.template.numpy().astype(np.float64), model.faces)
    assert angle.max() < 165  # closing the lips must not fold the mouth corners over (~180)


def test_jaw_open_opens_the_mouth(model):
    d = offsets(model, "jawOpen")
    gap = posed(model, {"jawOpen": 1.0})[0, 13, 1] - posed(model, {"jawOpen": 1.0})[0, 14, 1]
    assert abs(float(model.template[13, 1] - model.template[14, 1])) < 0.001  # from closed lips
    assert 0.025 <= float(gap) <= 0.032  # ~2.5-3 cm opening at the lips
    assert (d[LOWER_LIP_CENTRE, 1] < -0.015).all() and (d[152, 1] < -0.015)  # lower lip, chin down
    assert np.abs(d[UPPER_LIP_CENTRE]).max() < 1e-4 and np.abs(d[EYES_AND_BROWS]).max() < 1e-6


def test_blink_closes_the_left_eye_only(model):
    t = model.template.numpy()
    upper, lower = loop_chains(FM.FACEMESH_LEFT_EYE, t)
    assert len(upper) == len(lower) == 7
    assert np.linalg.norm(t[upper] - t[lower], axis=1).max() > 0.004  # open at rest
    v = posed(model, {"eyeBlinkLeft": 1.0})[0].numpy()
    assert np.linalg.norm(v[upper] - v[lower], axis=1).max() < 0.001  # closed
    assert (t[upper, 1] - v[upper, 1] > 2 * (v[lower, 1] - t[lower, 1])).all()  # mostly the upper lid moves
    d = offsets(model, "eyeBlinkLeft")
    assert np.abs(d[np.r_[RIGHT_EYE, RIGHT_BROW, LIPS]]).max() < 1e-6


@pytest.mark.parametrize("side", ["Left", "Right"])
def test_smile_and_frown_move_their_corner(model, side):
    corner, other = (LEFT_CORNER, RIGHT_CORNER) if side == "Left" else (RIGHT_CORNER, LEFT_CORNER)
    out = np.sign(model.template[corner, 0].item())
    smile, frown = offsets(model, "mouthSmile" + side), offsets(model, "mouthFrown" + side)
    assert smile[corner, 1] > 0.005 and smile[corner, 0] * out > 0.003
    assert 0.01 <= np.linalg.norm(smile[corner]) <= 0.015
    assert frown[corner, 1] < -0.005
    for d in (smile, frown):
        assert np.linalg.norm(d[other]) < 1e-4 and np.abs(d[EYES_AND_BROWS]).max() < 1e-6


def test_left_right_twins_are_mirror_images(model):
    p, names = model.mirror_partner, model.expression_names
    pairs = [(n, n[:-4] + "Right") for n in names if n.endswith("Left")]
    assert len(pairs) >= 10
    for left, right in pairs:
        np.testing.assert_allclose(offsets(model, right), offsets(model, left)[p] * [-1, 1, 1], atol=1e-6)


@pytest.mark.parametrize("name, moved, axis, sign", [
    ("mouthPucker", [0, 13, 14, 17], 2, 1), ("mouthFunnel", [0, 13, 14, 17], 2, 1),
    ("mouthStretchLeft", [LEFT_CORNER], 0, 1), ("mouthPressLeft", [267], 1, -1), ("mouthPressLeft", [314], 1, 1),
    ("mouthUpperUpLeft", [267], 1, 1), ("mouthLowerDownLeft", [314], 1, -1),
    ("jawLeft", [152, 14], 0, 1), ("mouthLeft", [0, 17], 0, 1),
    ("browInnerUp", [336, 107], 1, 1), ("browOuterUpLeft", [300], 1, 1), ("browDownLeft", [336, 300], 1, -1),
    ("eyeWideLeft", [386], 1, 1), ("eyeSquintLeft", [374], 1, 1), ("noseSneerLeft", [294], 1, 1),
])
def test_shape_moves_its_region_in_its_direction(model, name, moved, axis, sign):
    d = offsets(model, name)
    assert (sign * d[moved, axis] > 0.002).all()
    mouth = name.startswith(("mouth", "jaw", "cheek", "nose"))
    still = EYES_AND_BROWS if mouth else LIPS  # the other half of the face stays
    assert np.abs(d[still]).max() < 1e-6
    if name.endswith("Left") and not name.startswith(("jaw", "mouthLeft")):
        right = {"eye": RIGHT_EYE, "bro": RIGHT_BROW, "nos": RIGHT_EYE}.get(name[:3], [RIGHT_CORNER])
        assert np.abs(d[right]).max() < 1e-4


SEALED = ["mouthSmileLeft", "mouthFrownLeft", "mouthStretchLeft", "mouthPressLeft", "mouthPucker",
          "mouthLeft", "jawLeft", "cheekPuff"]
OPENING = ["jawOpen", "mouthFunnel", "mouthUpperUpLeft", "mouthLowerDownLeft"]


@pytest.mark.parametrize("name", SEALED + OPENING)
def test_lips_stay_closed_or_open_without_crossing(model, name):
    t = model.template.numpy()
    for value in (0.5, 1.0):
        gap = lip_gaps(posed(model, {name: value})[0].numpy(), t)
        if name in SEALED:
            assert np.abs(gap).max() < 0.001, (value, gap)
        else:
            assert gap.min() > -0.0005 and gap.max() > 0.003 * value, (value, gap)


def dihedral_deg(v: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angle (deg) between the normals of the two triangles at each interior edge, and edge [K, 2]."""
    by_edge: dict[tuple[int, int], list[int]] = {}
    for f, tri in enumerate(faces):
        for a, b in combinations(sorted(tri), 2):
            by_edge.setdefault((a, b), []).append(f)
    pairs = [(e, fs) for e, fs in by_edge.items() if len(fs) == 2]
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    f0, f1 = np.array([fs for _, fs in pairs]).T
    cos = np.clip((n[f0] * n[f1]).sum(1), -1, 1)
    return np.degrees(np.arccos(cos)), np.array([e for e, _ in pairs])


@pytest.mark.parametrize("name, centre, radius, max_deg", [
    ("eyeBlinkLeft", 263, 0.012, 17.0),  # no crease running out from the outer eye corner
    ("cheekPuff", None, None, 25.0),  # a smooth bump, no lumps
])
def test_shape_bends_the_skin_smoothly(model, name, centre, radius, max_deg):
    t = model.template.numpy().astype(np.float64)
    before, edges = dihedral_deg(t, model.faces)
    after, _ = dihedral_deg(t + offsets(model, name), model.faces)
    near = np.ones(len(edges), bool)
    if centre is not None:
        near = np.linalg.norm(t[edges].mean(1) - t[centre], axis=1) < radius
    assert np.abs(after - before)[near].max() < max_deg


def test_cheek_puff_pushes_both_cheeks_out(model):
    t, d = model.template.numpy(), offsets(model, "cheekPuff")
    cheek = np.flatnonzero((t[:, 0] > 0.045) & (t[:, 1] > -0.06) & (t[:, 1] < -0.03))  # left cheek
    assert len(cheek) > 5 and d[cheek, 0].min() >= 0 and d[cheek, 0].max() > 0.005
    assert np.abs(d[np.r_[LIPS, EYES_AND_BROWS]]).max() < 1e-6


def test_pucker_narrows_the_mouth(model):
    d = offsets(model, "mouthPucker")
    assert d[LEFT_CORNER, 0] < -0.005 and d[RIGHT_CORNER, 0] > 0.005


def test_expression_prior(model):
    prior = model.expression_prior()
    e = model.n_expression
    assert prior.mean.shape == (e,) and np.all((prior.lower == 0) & (prior.upper == 1))
    assert np.all(prior.mean > 0) and np.all(prior.mean < 0.2)
    assert np.allclose(prior.covariance, prior.covariance.T) and np.linalg.eigvalsh(prior.covariance).min() > 0
    i, j = model.expression_index("eyeBlinkLeft"), model.expression_index("eyeBlinkRight")
    assert prior.covariance[i, j] > 0


def test_protocol_and_loader(model):
    assert isinstance(model, HeadModel) and load_head_model() is model
    assert (model.name, model.version, model.n_expression) == ("builtin", "1", len(model.expression_names))
    with pytest.raises(ValueError, match="unknown head model"):
        load_head_model("smpl")
    with pytest.raises(KeyError, match="mouthSmile"):
        model.expression_index("mouthSmile")


def test_generator_reproduces_the_shipped_asset():
    from liftdata.head.build_builtin import build_asset

    fresh = build_asset()
    with np.load(ASSET_PATH) as shipped:
        assert sorted(shipped.files) == sorted(fresh)
        for key in shipped.files:
            if shipped[key].dtype.kind in "iU":
                assert np.array_equal(shipped[key], fresh[key]), key
            else:
                np.testing.assert_allclose(shipped[key], fresh[key], atol=1e-6, err_msg=key)
    assert ASSET_PATH.stat().st_size < 1_000_000


# ---------------------------------------------------------------------- whole-head proxy
def _loops_after_closing(faces):
    from liftdata.head.base import boundary_loops

    return sorted(len(loop) for loop in boundary_loops(faces))


def test_whole_head_keeps_the_face_mesh_and_closes_the_oval(model):
    k = neutral_kinematics(model, 2)
    k = k.replace(rotation=np.array([[0.1, 0.5, 0.0], [0.0, -0.3, 0.2]], np.float32))
    verts, faces = model.whole_head(model.neutral_identity(), k)
    face = model.vertices(model.neutral_identity(), k)
    torch.testing.assert_close(verts[:, :model.n_vertices], face)  # face vertex indices unchanged
    np.testing.assert_array_equal(faces[:len(model.faces)], model.faces)
    # the face oval (36) is no boundary any more: mouth 20, eyes 16 + 16, the neck tube's two ends 16 + 16
    assert _loops_after_closing(faces) == [16, 16, 16, 16, 20]
    counts = Counter(tuple(sorted(e)) for f in faces for e in combinations(f.tolist(), 2))
    assert max(counts.values()) == 2  # manifold: no edge shared by three triangles


def test_proxy_moves_rigidly_with_the_head_and_opens_with_the_jaw(model):
    ident = model.neutral_identity()
    proxy = model.head_proxy(ident)
    rot, trans = np.array([[0.3, -0.6, 0.1]], np.float32), np.array([[0.01, -0.02, 0.03]], np.float32)
    k = neutral_kinematics(model, 1).replace(rotation=rot, translation=trans)
    verts, _ = model.whole_head(ident, k)
    R = axis_angle_to_matrix(rot[0].astype(np.float64))  # independent rotation (scipy)
    expected = proxy.vertices @ R.T + trans[0]
    np.testing.assert_allclose(verts[0, model.n_vertices:].numpy(), expected, atol=2e-5)
    e = neutral_kinematics(model, 1).expression.copy()
    e[0, model.expression_index("jawOpen")] = 1.0
    jaw, _ = model.whole_head(ident, neutral_kinematics(model, 1).replace(expression=e))
    moved = np.linalg.norm(jaw[0, model.n_vertices:].numpy() - proxy.vertices, axis=1)
    parent_y = np.where(proxy.parent >= 0, proxy.neutral_face[proxy.parent, 1], np.inf)
    chin_ring = (proxy.follow > 0.3) & (parent_y <= np.sort(np.unique(parent_y))[4])  # under the 5 lowest oval vertices
    assert chin_ring.any() and moved[chin_ring].max() > 0.01  # the rings under the chin open with the jaw
    assert moved[proxy.follow == 0].max() < 1e-4  # the skull and neck do not


def test_proxy_is_fitted_to_the_face_size(model):
    small = model.head_proxy(model.neutral_identity())
    big = model.head_proxy(model.template * 0.15)  # the same face 15% larger (about the model origin)
    np.testing.assert_allclose(np.ptp(big.vertices, 0), 1.15 * np.ptp(small.vertices, 0), rtol=1e-6)
    width = np.ptp(model.template[:, 0].numpy())
    assert np.ptp(small.vertices[:, 0]) > width and np.ptp(small.vertices[:, 2]) > 1.2 * width  # a head, not a mask
