"""The torch Gaussian rasterizer against analytic images, its per-pixel twin, and finite differences;
the triangle binding against its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftdata.avatar.binding import (binding_mesh, covariances, matrix_to_quat, quat_to_matrix, triangle_frames,
                                     world_gaussians)
from liftdata.avatar.raster import (RasterCamera, RasterError, rasterize_gaussians, rasterize_reference,
                                    rasterize_torch)

torch.set_num_threads(1)


def _camera(w=40, h=36, f=50.0, dtype=torch.float64):
    K = torch.tensor([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], dtype=dtype)
    return RasterCamera(K, torch.eye(4, dtype=dtype), w, h)


def _analytic(cam, items, bg):
    """Front-to-back composite of flat (zero z-extent), axis-aligned Gaussians, each written out by hand:
    at camera point (x, y, z) with std (sx, sy, 0) the projected covariance is exactly
    diag((f sx / z)^2, (f sy / z)^2) + 0.3 I, centred at (f x / z + cx, f y / z + cy)."""
    f, cx, cy = float(cam.K[0, 0]), float(cam.K[0, 2]), float(cam.K[1, 2])
    out = np.zeros((cam.height, cam.width, 3))
    t = np.ones((cam.height, cam.width))
    vv, uu = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    for (x, y, z), (sx, sy), opacity, colour in sorted(items, key=lambda it: it[0][2]):
        vx, vy = (f * sx / z) ** 2 + 0.3, (f * sy / z) ** 2 + 0.3
        q = (uu - (f * x / z + cx)) ** 2 / vx + (vv - (f * y / z + cy)) ** 2 / vy
        a = np.minimum(opacity * np.exp(-0.5 * q), 0.999)
        a = np.where(a >= 1 / 255, a, 0.0)
        out += (t * a)[..., None] * np.asarray(colour)
        t = t * (1 - a)
    return out + t[..., None] * np.asarray(bg), 1 - t


def _tensors(items):
    means = torch.tensor([it[0] for it in items], dtype=torch.float64)
    scales = torch.tensor([[*it[1], 1e-9] for it in items], dtype=torch.float64)
    covars = covariances(torch.eye(3, dtype=torch.float64).expand(len(items), 3, 3), scales)
    opac = torch.tensor([it[2] for it in items], dtype=torch.float64)
    cols = torch.tensor([it[3] for it in items], dtype=torch.float64)
    return means, covars, cols, opac


@pytest.mark.parametrize("items", [
    [((0.0, 0.0, 1.0), (0.05, 0.09), 0.9, (1.0, 0.2, 0.1))],
    [((0.02, -0.01, 1.0), (0.06, 0.04), 0.8, (0.9, 0.1, 0.1)),
     ((-0.03, 0.02, 1.3), (0.08, 0.05), 0.95, (0.1, 0.3, 1.0))],
])
def test_torch_rasterizer_matches_analytic_image(items):
    cam, bg = _camera(), torch.tensor([0.2, 0.7, 0.4], dtype=torch.float64)
    rgb, alpha, _ = rasterize_torch(*_tensors(items), cam, bg)
    want_rgb, want_alpha = _analytic(cam, items, bg.numpy())
    # pixels beyond 3 sigma are culled by the tile lists: there exp(-4.5) * o <= 0.011
    assert np.abs(rgb.numpy() - want_rgb).max() < 0.012
    assert np.abs(alpha.numpy() - want_alpha).max() < 0.012
    inner = want_alpha > 0.05  # inside the boxes the two agree to rounding
    assert np.abs(rgb.numpy() - want_rgb)[inner].max() < 0.012
    assert 10 * math.log10(1 / np.mean((rgb.numpy() - want_rgb) ** 2)) > 50


def _random_scene(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.cat([torch.rand(n, 2, generator=g, dtype=dtype) * 0.6 - 0.3,
                       1.0 + torch.rand(n, 1, generator=g, dtype=dtype)], 1)
    rot = quat_to_matrix(torch.randn(n, 4, generator=g, dtype=dtype))
    scales = 0.01 + 0.05 * torch.rand(n, 3, generator=g, dtype=dtype)
    cols = torch.rand(n, 3, generator=g, dtype=dtype)
    opac = 0.2 + 0.7 * torch.rand(n, generator=g, dtype=dtype)
    return means, covariances(rot, scales), cols, opac


@pytest.mark.parametrize("seed", range(4))
def test_tiles_match_per_pixel_reference(seed):
    cam, bg = _camera(53, 37), torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    scene = _random_scene(30, seed)
    rgb, alpha, _ = rasterize_torch(*scene, cam, bg)
    ref_rgb, ref_alpha = rasterize_reference(*scene, cam, bg)
    # the tiles drop only contributions beyond 3 sigma (opacity * exp(-4.5) < 0.011 each)
    assert (rgb - ref_rgb).abs().max() < 0.03
    assert 10 * math.log10(1 / float(((rgb - ref_rgb) ** 2).mean())) > 45


def test_gradients_match_finite_differences():
    cam = _camera(20, 18, f=30.0)
    bg = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    means, covars, cols, opac = _random_scene(3, 7)
    target = torch.rand(18, 20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss(m, c, o):
        rgb, _, _ = rasterize_torch(m, covars, c, o, cam, bg)
        return ((rgb - target) ** 2).sum()

    m, c, o = (x.clone().requires_grad_(True) for x in (means, cols, opac))
    loss(m, c, o).backward()
    for name, x, grad in (("means", means, m.grad), ("colors", cols, c.grad), ("opacities", opac, o.grad)):
        fd = torch.zeros_like(x)
        for i in range(x.numel()):
            d = torch.zeros_like(x).view(-1)
            d[i] = 1e-6
            args = {"means": (means, cols, opac), "colors": (means, cols, opac), "opacities": (means, cols, opac)}[name]
            plus = [a + d.view_as(a) if a is x else a for a in args]
            minus = [a - d.view_as(a) if a is x else a for a in args]
            fd.view(-1)[i] = (loss(*plus) - loss(*minus)) / 2e-6
        assert torch.allclose(grad, fd, rtol=1e-4, atol=1e-6), name
    assert m.grad.abs().sum() > 0


def test_rasterizer_rejects_bad_input():
    cam, bg = _camera(), torch.ones(3, dtype=torch.float64)
    means, covars, cols, opac = _random_scene(4, 0)
    with pytest.raises(RasterError, match="backend"):
        rasterize_gaussians(means, covars, cols, opac, cam, bg, backend="opengl")
    with pytest.raises(RasterError, match="covars"):
        rasterize_gaussians(means, covars[:3], cols, opac, cam, bg)
    if not torch.cuda.is_available():
        with pytest.raises(RasterError, match="CUDA"):
            rasterize_gaussians(means, covars, cols, opac, cam, bg, backend="gsplat")


def test_triangle_binding_follows_its_triangle():
    """A Gaussian's world mean/scale/rotation transform with a rigid motion + uniform scaling of its triangle."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 3, generator=g, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    R, T, k = triangle_frames(v, faces)
    assert torch.allclose(R[0].T @ R[0], torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(T[0], v.mean(0))
    n = torch.cross(v[1] - v[0], v[2] - v[0], dim=0)
    assert torch.allclose(R[0][:, 2], n / n.norm())  # third axis = outward normal
    xyz, ls = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    q = torch.randn(2, 4, generator=g, dtype=torch.float64)
    binding = torch.zeros(2, dtype=torch.long)
    m0, r0, s0 = world_gaussians(v, faces, binding, xyz, ls, q)
    rot = quat_to_matrix(torch.randn(1, 4, generator=g, dtype=torch.float64))[0]
    moved = 1.7 * v @ rot.T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    m1, r1, s1 = world_gaussians(moved, faces, binding, xyz, ls, q)
    assert torch.allclose(m1, 1.7 * m0 @ rot.T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    assert torch.allclose(s1, 1.7 * s0) and torch.allclose(r1, rot @ r0)
    assert torch.allclose(matrix_to_quat(quat_to_matrix(q)).abs(), torch.nn.functional.normalize(q, dim=-1).abs())


def test_binding_mesh_caps_inner_loops():
    from liftdata.head import load_head_model

    model = load_head_model("builtin")
    faces, loops = binding_mesh(model.faces)
    assert len(loops) == 3  # mouth and two eyes; the face oval stays open
    assert len(faces) == len(model.faces) + sum(len(lp) for lp in loops)
    # every cap edge on a loop is shared with exactly one model triangle, in the opposite direction
    model_edges = {(int(a), int(b)) for f in model.faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    for f in faces[len(model.faces):]:
        assert (int(f[1]), int(f[0])) in model_edges


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat parity needs a CUDA GPU (and liftdata[avatar-gpu])")
@pytest.mark.parametrize("seed", range(3))
def test_gsplat_matches_torch(seed):
    pytest.importorskip("gsplat", reason="pip install 'liftdata[avatar-gpu]'")
    cam = _camera(96, 80, f=90.0, dtype=torch.float32)
    bg = torch.tensor([1.0, 1.0, 1.0])
    scene = [x.float() for x in _random_scene(200, seed)]
    want, _, _ = rasterize_gaussians(*scene, cam, bg, backend="torch")
    cuda_cam = RasterCamera(cam.K.cuda(), cam.world_to_camera.cuda(), cam.width, cam.height)
    got, _, _ = rasterize_gaussians(*[x.cuda() for x in scene], cuda_cam, bg.cuda(), backend="gsplat")
    assert 10 * math.log10(1 / float(((got.cpu() - want) ** 2).mean())) >= 40
