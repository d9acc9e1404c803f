"""Avatar training at a tiny size: loss goes down, density control keeps bindings, resume is exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from liftdata.avatar.data import composite, fill_holes, frames_from_capture
from liftdata.avatar.densify import GradStats, densify_and_prune, protect_last_per_triangle
from liftdata.avatar.model import AvatarError, GaussianAvatar
from liftdata.avatar.train import TrainConfig, _optimizer, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def frames():
    from liftdata.synthetic import make_capture

    return frames_from_capture(make_capture(3, n_frames=6, size=48, max_yaw_deg=5, expression_scale=0.3))


def test_masks_cover_the_head_and_fill_the_holes(frames):
    m = frames.masks
    assert m.shape == frames.images.shape[:3] and 0.1 < m.mean() < 0.7
    assert np.array_equal(fill_holes(m[0] > 0.5), m[0] > 0.5)  # the binding mesh's caps leave no holes
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[0, 0]
    out = composite(frames.images[:1], np.zeros_like(m[:1]), (0.0, 1.0, 0.0))
    assert np.allclose(out, [0.0, 1.0, 0.0])


def test_training_lowers_the_loss(frames, tmp_path):
    cfg = TrainConfig(iterations=40, size=48, checkpoint_every=1000)
    losses = []
    train(frames, tmp_path / "a", cfg, progress=lambda i, n, info: losses.append(info["loss"]))
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_resume_continues_exactly(frames, tmp_path):
    """Interrupted after a checkpoint, a rerun ends with the same Gaussians, density control included."""
    cfg = TrainConfig(iterations=8, size=32, checkpoint_every=4, densify_from=1, densify_every=2, densify_until=1.0,
                      grad_threshold=0.0, max_gaussians=1000)
    full = train(frames, tmp_path / "full", cfg)
    assert len(full) > 904  # densification ran (the binding mesh has 904 triangles)

    class Stop(Exception):
        pass

    def stop_at_6(i, n, info):
        if i == 6:
            raise Stop

    with pytest.raises(Stop):
        train(frames, tmp_path / "cut", cfg, progress=stop_at_6)
    resumed = train(frames, tmp_path / "cut", cfg)  # picks up at the iteration-4 checkpoint
    for k, v in full.state().items():
        assert np.allclose(resumed.state()[k], v, atol=1e-6), k
    with pytest.raises(AvatarError, match="other settings"):
        train(frames, tmp_path / "cut", dataclasses.replace(cfg, lambda_dssim=0.5))


def test_protect_last_per_triangle():
    binding = torch.tensor([0, 0, 1, 1, 1, 2])
    opacity = torch.tensor([0.001, 0.002, 0.001, 0.5, 0.003, 0.001])
    prune = opacity < 0.005
    out = protect_last_per_triangle(prune, binding, opacity, 4)
    # triangle 0 keeps its most opaque, triangle 1 already keeps index 3, triangle 2 keeps its only one
    assert out.tolist() == [True, False, True, False, True, False]


@pytest.mark.parametrize("seed", range(3))
def test_densify_keeps_bindings_and_optimizer_in_step(seed):
    from liftdata.head import load_head_model

    model = load_head_model("builtin")
    avatar = GaussianAvatar(model, np.zeros((468, 3), np.float32))
    opt = _optimizer(avatar, TrainConfig())
    g = torch.Generator().manual_seed(seed)
    loss = sum((getattr(avatar, n) ** 2).sum() for n in ("xyz", "log_scale", "sh", "opacity_logit"))
    loss.backward()
    opt.step()
    n0 = len(avatar)
    with torch.no_grad():  # a third nearly transparent, some tiny
        avatar.opacity_logit[torch.rand(n0, generator=g) < 0.33] = -10.0
        avatar.log_scale[torch.rand(n0, generator=g) < 0.3] = -6.0
    stats = GradStats(n0)
    stats.add(torch.rand(n0, 2, generator=g) * 1e-5, 64, 64)
    parent_binding = avatar.binding.clone()
    counts = densify_and_prune(avatar, opt, stats, grad_threshold=2e-4, dense_scale=0.003, prune_opacity=0.005,
                               max_gaussians=10_000, generator=g)
    assert counts["cloned"] > 0 and counts["split"] > 0 and counts["pruned"] > 0
    assert len(avatar) == n0 + counts["cloned"] + counts["split"] - counts["pruned"]
    # every triangle still has at least one Gaussian, and the multiset of triangles only grew from the parents'
    assert set(avatar.binding.tolist()) == set(range(len(avatar.faces)))
    assert set(avatar.binding.tolist()) <= set(parent_binding.tolist())
    for group in opt.param_groups:
        p = group["params"][0]
        if group["name"] != "quat":  # the only parameter without a gradient above, so without moments
            assert opt.state[p]["exp_avg"].shape == p.shape
    loss = sum((getattr(avatar, n) ** 2).sum() for n in ("xyz", "log_scale", "sh", "opacity_logit"))
    loss.backward()
    opt.step()  # the edited optimizer still steps


def test_frames_resampled_on_load(tmp_path):
    from liftdata.avatar.data import load_frames
    from liftdata.synthetic import make_capture

    capture = make_capture(4, n_frames=3, size=64)
    capture.save(tmp_path / "cap")
    small = load_frames(tmp_path / "cap", size=32)
    full = load_frames(tmp_path / "cap")
    assert small.images.shape == (3, 32, 32, 3) and small.cameras[0].width == 32 and full.images.shape[1] == 64
    # the masks rendered at the small camera agree with the full-size masks, area-downsampled
    down = full.masks.reshape(3, 32, 2, 32, 2).mean((2, 4))
    assert np.abs(small.masks - down).mean() < 0.05
    assert np.abs(small.images.astype(float) - full.images.reshape(3, 32, 2, 32, 2, 3).mean((2, 4))).mean() < 2.0


def test_holdout_split_picks_the_most_extreme_captured_frames(frames):
    from liftdata.avatar.compare import holdout_split
    from liftdata.avatar.data import AvatarFrames
    from liftdata.eval.splits import ExtremenessModel

    both = AvatarFrames.concat([frames, dataclasses.replace(frames, sources=["lifted"] * len(frames))])
    train_idx, test_idx = holdout_split(both, "extremes", holdout=0.34)
    assert len(test_idx) == 3 and len(train_idx) == 3 and set(train_idx) | set(test_idx) == set(range(6))
    d = ExtremenessModel(frames.kinematics).train_distances
    assert d[test_idx].min() >= d[train_idx].max()  # held out = farthest from the capture's own distribution
    train_idx, test_idx = holdout_split(both, "last30")
    assert test_idx.tolist() == [4, 5] and train_idx.tolist() == [0, 1, 2, 3]
    with pytest.raises(AvatarError, match="split"):
        holdout_split(both, "random")
