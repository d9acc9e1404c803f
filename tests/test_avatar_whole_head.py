"""The avatar bound to the whole head (face mesh + head proxy): hair and neck in a matte get triangles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liftdata.avatar.data import fill_holes, frames_from_capture
from liftdata.avatar.model import AvatarConfig, AvatarError, GaussianAvatar, resolve_mesh
from liftdata.avatar.train import TrainConfig, render_frames, train
from liftdata.head import load_head_model
from liftdata.head.base import boundary_loops, neutral_kinematics

torch.set_num_threads(1)


def _silhouettes(vertices: torch.Tensor, faces: np.ndarray, camera, n: int) -> np.ndarray:  # [T, H, W] float32
    from liftdata.render import rasterize

    mask = rasterize(vertices.float(), faces, [camera] * n, backend="auto").mask.float().numpy()
    return np.stack([fill_holes(m > 0.5) for m in mask.reshape(n, camera.height, camera.width)]).astype(np.float32)


def test_whole_head_binding_mesh_is_the_face_mesh_plus_the_proxy():
    model = load_head_model("builtin")
    rng = np.random.default_rng(0)
    identity = (0.002 * rng.standard_normal((model.n_vertices, 3))).astype(np.float32)
    kin = neutral_kinematics(model, 3)
    kin.rotation[:] = [[0, 0.3, 0], [0.2, 0, 0], [0, -0.4, 0.1]]
    kin.expression[:, model.expression_names.index("jawOpen")] = [0.0, 0.5, 1.0]
    face = GaussianAvatar(model, identity, AvatarConfig(mesh="face"))
    whole = GaussianAvatar(model, identity, AvatarConfig(mesh="whole_head"))
    ref_v, ref_f = model.whole_head(identity, kin)  # the head model's own whole-head mesh
    holes = boundary_loops(np.asarray(model.faces))[1:]  # eyes + mouth (the longest, the oval, is the rim)
    n_holes, n_caps = len(holes), sum(len(h) for h in holes)  # a fan per hole: one triangle per edge
    assert len(whole.faces) == len(ref_f) + n_caps and len(face.faces) == len(model.faces) + n_caps
    assert np.array_equal(whole.faces[:len(ref_f)].numpy(), ref_f)  # the proxy's triangles, then the caps
    posed = whole.mesh(kin)
    assert posed.shape == (3, ref_v.shape[1] + n_holes, 3)
    assert torch.allclose(posed[:, :ref_v.shape[1]], ref_v.float(), atol=1e-5)
    assert torch.allclose(posed[:, :model.n_vertices], face.mesh(kin)[:, :model.n_vertices])
    assert len(whole) == len(whole.faces)  # one initial Gaussian per triangle


def test_mesh_setting_resolves_and_round_trips(tmp_path):
    model = load_head_model("builtin")
    auto = AvatarConfig()
    assert resolve_mesh(auto, model, matted=True).mesh == "whole_head"
    assert resolve_mesh(auto, model, matted=False).mesh == "face"
    assert resolve_mesh(AvatarConfig(mesh="face"), model, matted=True).mesh == "face"

    class NoProxy:  # e.g. FLAME: its mesh is already a whole head
        name = "flame"

    assert resolve_mesh(auto, NoProxy(), matted=True).mesh == "face"
    with pytest.raises(AvatarError, match="'whole_head' needs a head model with a whole-head proxy"):
        resolve_mesh(AvatarConfig(mesh="whole_head"), NoProxy(), matted=True)
    with pytest.raises(AvatarError, match="mesh: expected one of"):
        resolve_mesh(AvatarConfig(mesh="hair"), model, matted=True)

    avatar = GaussianAvatar(model, np.zeros((model.n_vertices, 3), np.float32), AvatarConfig(mesh="whole_head"))
    loaded, doc = GaussianAvatar.load(avatar.save(tmp_path / "a"))
    assert doc["config"]["mesh"] == "whole_head" and loaded.config.mesh == "whole_head"
    assert torch.equal(loaded.faces, avatar.faces)
    doc = json.loads((tmp_path / "a" / "avatar.json").read_text())
    del doc["config"]["mesh"]  # an avatar.json written before the setting: its Gaussians are on the face mesh
    (tmp_path / "a" / "avatar.json").write_text(json.dumps(doc))
    with pytest.raises(AvatarError, match="the face binding mesh has"):
        GaussianAvatar.load(tmp_path / "a")
    face = GaussianAvatar(model, np.zeros((model.n_vertices, 3), np.float32), AvatarConfig(mesh="face"))
    face.save(tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "avatar.json").read_text())
    del doc["config"]["mesh"]
    (tmp_path / "b" / "avatar.json").write_text(json.dumps(doc))
    old, _ = GaussianAvatar.load(tmp_path / "b")
    assert old.config.mesh == "face" and torch.equal(old.faces, face.faces)


@pytest.mark.parametrize("seed", [11, 12])
def test_whole_head_avatar_reproduces_the_matted_hair_and_neck(seed, tmp_path):
    """On a subject with hair and a neck, matted: the Gaussians bound to the face cannot reach what the
    proxy covers; the whole-head avatar (what "auto" picks for matted frames) can."""
    from liftdata.synthetic import make_capture

    size, n = 64, 8
    cap = make_capture(seed, n_frames=n, size=size, head="proxy", max_yaw_deg=20, expression_scale=0.3)
    model, identity = cap.head_model, torch.as_tensor(cap.identity)
    whole_v, whole_f = model.whole_head(identity, cap.kinematics)
    matte = _silhouettes(whole_v, whole_f, cap.camera, n)
    face = _silhouettes(model.vertices(identity, cap.kinematics), np.asarray(model.faces), cap.camera, n)
    frames = frames_from_capture(cap, masks=matte, matted=True)
    target = frames.images / 255.0 * matte[..., None] + (1 - matte[..., None])
    beyond_face = (matte > 0.5) & (face < 0.5)
    assert beyond_face.mean() > 0.02  # the subject shows hair / neck outside the face mesh

    def psnr(avatar, where):
        err = (render_frames(avatar, frames, size) / 255.0 - target) ** 2
        return -10 * np.log10(err[where].mean())

    cfg = TrainConfig(iterations=150, size=size, checkpoint_every=10 ** 6)
    auto = train(frames, tmp_path / "auto", cfg)
    bound_face = train(frames, tmp_path / "face", TrainConfig(**{**cfg.__dict__, "avatar": AvatarConfig(mesh="face")}))
    assert auto.config.mesh == "whole_head" and bound_face.config.mesh == "face"
    assert psnr(auto, beyond_face) > psnr(bound_face, beyond_face) + 1.0
    assert psnr(auto, face > 0.5) > psnr(bound_face, face > 0.5) - 0.5  # the face is not paid for it


def test_matte_is_limited_to_what_the_avatar_can_represent():
    """A torso (or anything else far from the head) in the matte becomes background for the avatar; the matte on
    and right around the binding mesh is kept; masks that are not mattes are left alone."""
    from liftdata.avatar.data import MATTE_MARGIN, reachable_masks
    from liftdata.synthetic import make_capture

    size, n = 64, 3
    cap = make_capture(21, n_frames=n, size=size, head="proxy", max_yaw_deg=15)
    model, identity = cap.head_model, torch.as_tensor(cap.identity)
    whole_v, whole_f = model.whole_head(identity, cap.kinematics)
    head = _silhouettes(whole_v, whole_f, cap.camera, n)
    matte = head.copy()
    matte[:, -8:, :] = 1.0  # a torso along the bottom edge
    matte[:, :6, :6] = 0.5  # something in a corner
    frames = frames_from_capture(cap, masks=matte, matted=True)
    avatar = GaussianAvatar(model, cap.identity, AvatarConfig(mesh="whole_head"))
    kept = reachable_masks(frames, avatar).masks
    assert np.array_equal(kept[head > 0.5], matte[head > 0.5])  # the head itself: untouched
    far = np.ones_like(head, bool)
    r = int(np.ceil(MATTE_MARGIN * size)) + 1
    ys, xs = np.nonzero(head.max(0) > 0.5)
    far[:, max(0, ys.min() - r):ys.max() + r + 1, max(0, xs.min() - r):xs.max() + r + 1] = False
    assert far[:, :6, :6].all() and (kept[far] == 0).all() and (matte[far] > 0).any()
    assert kept[:, -8:][head[:, -8:] > 0.5].min() == 1.0  # the neck where it meets the torso is kept
    plain = frames_from_capture(cap, masks=matte, matted=False)
    assert reachable_masks(plain, avatar) is plain
