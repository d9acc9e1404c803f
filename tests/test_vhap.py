"""VHAP / GaussianAvatars layout: export -> import round trip with a tiny FLAME-shaped model."""

import json

import numpy as np
import pytest
from flame_fixtures import make_flame_arrays, write_npz

from liftdata.capture import Capture
from liftdata.head import load_head_model
from liftdata.head.flame import FlameHeadModel
from liftdata.io.vhap import VhapError, export_vhap, import_vhap
from liftdata.kinematics import Camera, Kinematics


@pytest.fixture
def flame(tmp_path):
    return FlameHeadModel.from_file(write_npz(tmp_path / "flame.npz", make_flame_arrays()), n_shape=20, n_expression=10)


def _capture(model, rng, t=5):
    k = Kinematics(expression=rng.normal(size=(t, model.n_expression)), jaw=rng.normal(size=(t, 3)) * 0.1,
                   neck=rng.normal(size=(t, 3)) * 0.1, eyes=rng.normal(size=(t, 6)) * 0.1,
                   rotation=rng.normal(size=(t, 3)) * 0.3, translation=rng.normal(size=(t, 3)) * 0.02,
                   head_model=model.name, head_model_version=model.version)
    frames = rng.integers(0, 256, size=(t, 12, 16, 3), dtype=np.uint8)
    return Capture(frames=frames, kinematics=k, camera=Camera.frontal(30.0, 16, 12, 0.6),
                   identity=rng.normal(size=model.n_shape), head_model=model, capture_id="c")


def test_round_trip(tmp_path, flame, rng):
    cap = _capture(flame, rng)
    out = export_vhap(cap, tmp_path / "vhap", splits={"train": [0, 2, 4], "val": [3], "test": [1]})
    assert sorted(p.name for p in (out / "flame_param").iterdir()) == [f"{i:05d}.npz" for i in range(5)]
    with np.load(out / "flame_param" / "00002.npz") as z:
        assert z["eyes_pose"].shape == (1, 6) and z["static_offset"].shape == (1, 40, 3)
        assert not z["static_offset"].any()
    with np.load(out / "canonical_flame_param.npz") as z:
        np.testing.assert_allclose(z["jaw_pose"], [[0.3, 0, 0]])
    meta = json.loads((out / "transforms_val.json").read_text())
    assert meta["w"] == 16 and meta["h"] == 12 and meta["frames"][0]["timestep_index"] == 3
    np.testing.assert_allclose(meta["frames"][0]["transform_matrix"], cap.camera.c2w_opengl(), atol=1e-12)

    back = import_vhap(out, flame)
    assert back.kinematics.equals(cap.kinematics)
    np.testing.assert_array_equal(back.identity, cap.identity.astype(np.float32))
    assert back.camera.equals(cap.camera, atol=1e-9)
    for i in range(len(cap)):
        np.testing.assert_array_equal(back.frames[i], cap.frames[i])


def test_errors(tmp_path, flame, rng):
    builtin = load_head_model("builtin")
    k = Kinematics.zeros(2, builtin.n_expression, "builtin", builtin.version)
    cap_b = Capture(frames=np.zeros((2, 8, 8, 3), np.uint8), kinematics=k, camera=Camera.frontal(30, 8, 8, 0.5),
                    identity=np.zeros((468, 3)), head_model=builtin)
    with pytest.raises(VhapError, match="not 'flame'"):
        export_vhap(cap_b, tmp_path / "b")
    with pytest.raises(VhapError, match="not 'flame'"):
        import_vhap(tmp_path, builtin)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VhapError, match="not a VHAP/GaussianAvatars directory"):
        import_vhap(tmp_path / "empty", flame)

    out = export_vhap(_capture(flame, rng), tmp_path / "v")
    with pytest.raises(VhapError, match="already exists"):
        export_vhap(_capture(flame, rng), out)
    np.savez(out / "flame_param" / "00001.npz", rotation=np.zeros((1, 3)))  # keys missing
    with pytest.raises(VhapError, match=r"00001.npz: missing key\(s\) \['translation'"):
        import_vhap(out, flame)
    other = FlameHeadModel.from_file(write_npz(tmp_path / "f2.npz", make_flame_arrays()), n_shape=15, n_expression=10)
    out2 = export_vhap(_capture(flame, rng), tmp_path / "v2")
    with pytest.raises(VhapError, match="20 shape / 10 expression components, the head model 15 / 10"):
        import_vhap(out2, other)
