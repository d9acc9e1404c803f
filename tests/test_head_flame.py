"""FLAME from a user file: loading (chumpy-free), skinning against a numpy twin, landmarks, errors."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse
import torch

from flame_fixtures import (make_embedding_arrays, make_flame_arrays, write_chumpy_pickle,
                            write_flame2023_pickle, write_npz)
from liftdata.head.base import HeadModel, neutral_kinematics
from liftdata.head.flame import FlameFileError, FlameHeadModel, reference_lbs
from liftdata.kinematics import Kinematics, axis_angle_to_matrix

N_SHAPE, N_EXPR = 20, 10


@pytest.fixture(scope="module")
def arrays():
    return make_flame_arrays()


@pytest.fixture
def model_files(tmp_path, arrays):
    return {"chumpy": write_chumpy_pickle(tmp_path / "generic_model.pkl", arrays),
            "2023": write_flame2023_pickle(tmp_path / "flame2023.pkl", arrays),
            "npz": write_npz(tmp_path / "flame.npz", arrays)}


def load(path, **kw):
    return FlameHeadModel.from_file(path, n_shape=N_SHAPE, n_expression=N_EXPR, **kw)


def random_kinematics(rng, t, version, scale=0.4):
    f = lambda w, s=scale: rng.normal(size=(t, w)) * s  # noqa: E731
    return Kinematics(expression=f(N_EXPR, 1.0), jaw=f(3), neck=f(3), eyes=f(6), rotation=f(3),
                      translation=f(3, 0.1), head_model="flame", head_model_version=version)


def numpy_vertices(arrays, identity, k):
    """The spec, written out: blend shapes [identity | expression], pose order, translation."""
    sd = arrays["shapedirs"]
    shapedirs = np.concatenate([sd[:, :, :N_SHAPE], sd[:, :, N_SHAPE:N_SHAPE + N_EXPR]], axis=2)
    betas = np.concatenate([np.broadcast_to(identity, (len(k), N_SHAPE)), k.expression], axis=1)
    pose = np.stack([k.rotation, k.neck, k.jaw, k.eyes[:, :3], k.eyes[:, 3:]], axis=1)
    parents = np.array([-1, 0, 1, 1, 1])
    v = reference_lbs(betas, pose, arrays["v_template"], shapedirs, arrays["posedirs"],
                      arrays["J_regressor"], parents, arrays["weights"])
    return v + k.translation[:, None, :]


# ---------------------------------------------------------------------- loading
def test_three_layouts_load_identically(model_files, arrays, rng):
    assert importlib.util.find_spec("chumpy") is None  # the chumpy pickle needs the stub unpickler
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads(model_files["chumpy"].read_bytes())
    models = {k: load(p) for k, p in model_files.items()}
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    assert {k: m.version for k, m in models.items()} == {"chumpy": "2020", "2023": "2023", "npz": "2023"}
    for m in models.values():
        assert isinstance(m, HeadModel) and m.name == "flame" and m.expression_names is None
        np.testing.assert_array_equal(m.faces, arrays["f"].astype(np.int64))
        for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
            np.testing.assert_array_equal(m.arrays[key], arrays[key])
        np.testing.assert_array_equal(m.arrays["parents"], [-1, 0, 1, 1, 1])
    identity = torch.as_tensor(rng.normal(size=N_SHAPE), dtype=torch.float32)
    k = random_kinematics(rng, 3, "2023")
    ref = models["npz"].vertices(identity, k)
    assert torch.equal(models["2023"].vertices(identity, k), ref)
    assert torch.equal(load(model_files["chumpy"], version="2023").vertices(identity, k), ref)


def test_version_mismatch_refused_and_npz_round_trip(model_files, tmp_path, rng):
    m2020 = load(model_files["chumpy"])
    with pytest.raises(ValueError, match="2023.*not to flame v2020"):
        m2020.vertices(m2020.neutral_identity(), random_kinematics(rng, 1, "2023"))
    m2020.save_npz(tmp_path / "converted.npz")
    back = load(tmp_path / "converted.npz")
    assert back.version == "2020"
    k = random_kinematics(rng, 2, "2020")
    assert torch.equal(back.vertices(back.neutral_identity(), k), m2020.vertices(m2020.neutral_identity(), k))


# ---------------------------------------------------------------------- skinning
def test_lbs_matches_numpy_reference(model_files, arrays, rng):
    model = load(model_files["npz"])
    for _ in range(3):
        identity = rng.normal(size=N_SHAPE)
        k = random_kinematics(rng, 4, "2023", scale=0.6)
        got = model.vertices(torch.as_tensor(identity, dtype=torch.float32), k).numpy()
        np.testing.assert_allclose(got, numpy_vertices(arrays, identity, k), atol=1e-5)


def test_global_rotation_is_rigid_about_root(model_files, arrays, rng):
    """Ground truth without any skinning code: a global pose rotates the shaped mesh about joint 0."""
    model = load(model_files["npz"])
    identity, k = rng.normal(size=N_SHAPE), random_kinematics(rng, 2, "2023")
    k = k.replace(jaw=0 * k.jaw, neck=0 * k.neck, eyes=0 * k.eyes)
    sd = arrays["shapedirs"]
    v_shaped = (arrays["v_template"] + sd[:, :, :N_SHAPE] @ identity)[None] + np.einsum(
        "vck,tk->tvc", sd[:, :, N_SHAPE:], k.expression)
    j0 = np.einsum("v,tvc->tc", arrays["J_regressor"][0], v_shaped)[:, None]
    want = np.einsum("tab,tvb->tva", axis_angle_to_matrix(k.rotation), v_shaped - j0) + j0 + k.translation[:, None]
    got = model.vertices(torch.as_tensor(identity, dtype=torch.float32), k).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_identity_batched_and_dict_input(model_files, rng):
    model = load(model_files["npz"])
    k = random_kinematics(rng, 3, "2023")
    identity = torch.as_tensor(rng.normal(size=N_SHAPE), dtype=torch.float32)
    one = model.vertices(identity, k)
    assert one.shape == (3, 40, 3) and one.dtype == torch.float32
    torch.testing.assert_close(model.vertices(identity.expand(3, -1), k.as_tensors()), one)


def test_gradients(model_files, arrays, rng):
    model = load(model_files["npz"])
    k = {f: v.requires_grad_() for f, v in Kinematics.zeros(1, N_EXPR, "flame", "2023").as_tensors().items()}
    w = torch.as_tensor(rng.normal(size=(1, 40, 3)), dtype=torch.float32)
    (model.vertices(model.neutral_identity(), k) * w).sum().backward()
    # At rest the mesh is linear in expression: d/de_i sum(w * v) = sum(w * expression_dir_i).
    want = np.einsum("vc,vck->k", w[0].numpy(), arrays["shapedirs"][:, :, N_SHAPE:])
    np.testing.assert_allclose(k["expression"].grad[0].numpy(), want, rtol=1e-4, atol=1e-6)
    # Jaw rotation: autograd against central finite differences.
    jaw = torch.tensor([[0.2, -0.1, 0.05]], requires_grad=True)
    base = {f: v.detach() for f, v in k.items()}
    energy = lambda j: (model.vertices(model.neutral_identity(), dict(base, jaw=j)) * w).sum()  # noqa: E731
    energy(jaw).backward()
    eps, fd = 1e-2, []
    for i in range(3):
        d = torch.zeros(1, 3)
        d[0, i] = eps
        fd.append((energy(jaw.detach() + d) - energy(jaw.detach() - d)).item() / (2 * eps))
    np.testing.assert_allclose(jaw.grad[0].numpy(), fd, rtol=2e-2, atol=1e-4)


def test_component_split(tmp_path, rng):
    """400 blend shapes: identity 0:300, expression 300:400. Fewer: split after n_shape."""
    big = make_flame_arrays(n_vertices=12, n_faces=10, n_shape=300, n_expression=100)
    path = write_npz(tmp_path / "big.npz", big)
    full = FlameHeadModel.from_file(path)
    assert (full.n_shape, full.n_expression) == (300, 100)
    m = FlameHeadModel.from_file(path, n_shape=50, n_expression=20)
    identity, expr = rng.normal(size=50), rng.normal(size=(1, 20))
    k = Kinematics.zeros(1, 20, "flame", "2023").replace(expression=expr)
    want = big["v_template"] + big["shapedirs"][:, :, :50] @ identity + big["shapedirs"][:, :, 300:320] @ expr[0]
    got = m.vertices(torch.as_tensor(identity, dtype=torch.float32), k)[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)

    small = write_npz(tmp_path / "small.npz", make_flame_arrays())  # 30 blend shapes
    with pytest.raises(FlameFileError, match="30 blend shapes.*smaller n_shape"):
        FlameHeadModel.from_file(small)
    clamped = FlameHeadModel.from_file(small, n_shape=25)
    assert (clamped.n_shape, clamped.n_expression) == (25, 5)


@pytest.mark.parametrize("layout", ["V*3,P", "P,V*3"])
def test_flattened_posedirs(tmp_path, arrays, model_files, rng, layout):
    pd = arrays["posedirs"].reshape(-1, 36)
    path = write_npz(tmp_path / "flat.npz", dict(arrays, posedirs=pd if layout == "V*3,P" else pd.T))
    k = random_kinematics(rng, 2, "2023")
    identity = load(path).neutral_identity()
    assert torch.equal(load(path).vertices(identity, k), load(model_files["npz"]).vertices(identity, k))


def test_prior_and_neutral(model_files):
    model = load(model_files["npz"])
    prior = model.expression_prior()
    np.testing.assert_array_equal(prior.mean, np.zeros(N_EXPR))
    np.testing.assert_array_equal(prior.covariance, np.eye(N_EXPR))
    np.testing.assert_array_equal(prior.lower, -3.0)
    np.testing.assert_array_equal(prior.upper, 3.0)
    k = neutral_kinematics(model, 2)
    v = model.vertices(model.neutral_identity(), k)
    np.testing.assert_allclose(v.numpy(), np.broadcast_to(model.arrays["v_template"], v.shape), atol=1e-6)


# ---------------------------------------------------------------------- landmarks
def test_landmarks_against_per_landmark_loop(tmp_path, arrays, model_files, rng):
    emb = make_embedding_arrays(n_faces=60, n_landmarks=12)
    model = load(model_files["npz"], landmark_embedding=write_npz(tmp_path / "emb.npz", emb))
    np.testing.assert_array_equal(model.landmark_mediapipe_index, emb["landmark_indices"])
    verts = torch.as_tensor(rng.normal(size=(3, 40, 3)), dtype=torch.float32)
    got = model.landmarks(verts).numpy()
    faces, v = arrays["f"], verts.numpy()
    want = np.zeros((3, 12, 3))
    for t in range(3):
        for i, (fi, b) in enumerate(zip(emb["lmk_face_idx"], emb["lmk_b_coords"])):
            want[t, i] = sum(b[c] * v[t, faces[fi, c]] for c in range(3))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_no_embedding(model_files):
    model = load(model_files["npz"])
    assert model.landmark_mediapipe_index.shape == (0,)
    with pytest.raises(ValueError, match="landmark embedding.*tracking"):
        model.landmarks(torch.zeros(1, 40, 3))


# ---------------------------------------------------------------------- bad files
def _bad_arrays(kind, a):
    if kind == "missing":
        return {k: v for k, v in a.items() if k not in ("weights", "posedirs")}, r"missing key\(s\) \['posedirs', 'weights'\]"
    if kind == "shapedirs_v":
        return dict(a, shapedirs=a["shapedirs"][:-1]), r"`shapedirs` should have shape \[40, 3, K\]"
    if kind == "faces_range":
        return dict(a, f=np.where(a["f"] == 7, 40, a["f"])), "vertex 40.*out of range for 40 vertices"
    if kind == "six_joints":
        kt = np.array([[-1, 0, 1, 1, 1, 1], [0, 1, 2, 3, 4, 5]])
        return dict(a, kintree_table=kt), "5 joints expected"
    if kind == "smpl":
        v, j = np.zeros((6890, 3)), 24
        smpl = dict(a, v_template=v, kintree_table=np.zeros((2, j)), J_regressor=np.zeros((j, 6890)))
        return smpl, "looks like SMPL, not FLAME"
    if kind == "bad_chain":
        kt = np.array([[-1, 0, 4, 1, 1], [0, 1, 2, 3, 4]])
        return dict(a, kintree_table=kt), "parent precedes its child"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "shapedirs_v", "faces_range", "six_joints", "smpl", "bad_chain"])
def test_malformed_arrays(tmp_path, arrays, kind):
    bad, message = _bad_arrays(kind, arrays)
    for path in (write_npz(tmp_path / "bad.npz", bad), write_flame2023_pickle(tmp_path / "bad.pkl", bad)):
        with pytest.raises(FlameFileError, match=message):
            load(path)


def test_unreadable_files(tmp_path, model_files):
    cases = {
        "nope.pkl": (None, "not found"),
        "photo.pkl": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100), "looks like a JPEG image"),
        "notes.pkl": (b"v_template = [1, 2, 3]\n", "looks like a text file"),
        "empty.pkl": (b"", "the file is empty"),
        "cut.pkl": (model_files["chumpy"].read_bytes()[:3000], "truncated"),
        "cut2023.pkl": (model_files["2023"].read_bytes()[:-200], "truncated"),
        "cut.npz": (model_files["npz"].read_bytes()[:2000], "truncated or corrupt"),
        "list.pkl": (pickle.dumps([1, 2]), "expected a pickled dict"),
        "evil.pkl": (b"\x80\x02cos\nsystem\nX\x05\x00\x00\x00touch\x85R.", "refusing to load `os.system`"),
    }
    for name, (data, message) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(FlameFileError, match=message):
            load(tmp_path / name)


def test_sparse_and_py2_paths_are_mapped(tmp_path, arrays):
    """The chumpy fixture uses numpy.core / scipy.sparse.csc paths; J_regressor stays exact."""
    blob = (tmp_path / "m.pkl")
    write_chumpy_pickle(blob, arrays)
    assert b"scipy.sparse.csc\ncsc_matrix" in blob.read_bytes() and b"numpy.core.multiarray\n" in blob.read_bytes()
    m = load(blob)
    np.testing.assert_array_equal(m.arrays["J_regressor"], scipy.sparse.csc_matrix(arrays["J_regressor"]).toarray())


def _bad_embedding(kind, emb):
    if kind == "missing":
        return {k: v for k, v in emb.items() if k != "lmk_b_coords"}, r"missing key\(s\) \['lmk_b_coords'\]"
    if kind == "mismatched":
        return dict(emb, landmark_indices=emb["landmark_indices"][:-1]), "mismatched landmark counts"
    if kind == "face_range":
        return dict(emb, lmk_face_idx=emb["lmk_face_idx"] + 60), "out of range for a mesh of 60 faces"
    if kind == "bary":
        return dict(emb, lmk_b_coords=emb["lmk_b_coords"] * 1.1), "sum to 1.1000, not 1"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "mismatched", "face_range", "bary"])
def test_malformed_embedding(tmp_path, model_files, kind):
    bad, message = _bad_embedding(kind, make_embedding_arrays(n_faces=60))
    with pytest.raises(FlameFileError, match=message):
        load(model_files["npz"], landmark_embedding=write_npz(tmp_path / "emb.npz", bad))


def test_embedding_not_found_or_not_npz(tmp_path, model_files):
    with pytest.raises(FlameFileError, match="landmark embedding file not found"):
        load(model_files["npz"], landmark_embedding=tmp_path / "missing.npz")
    with pytest.raises(FlameFileError, match="not a landmark embedding .npz"):
        load(model_files["npz"], landmark_embedding=model_files["chumpy"])


def test_smplx_missing(monkeypatch, model_files):
    monkeypatch.setitem(sys.modules, "smplx", None)
    monkeypatch.setitem(sys.modules, "smplx.lbs", None)
    with pytest.raises(ImportError, match=r"pip install 'liftdata\[flame\]'"):
        load(model_files["npz"])
