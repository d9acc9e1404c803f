"""Gaussian splatting: a pure-torch tiled rasterizer (CPU, any device) and gsplat (CUDA only).

One interface, `rasterize_gaussians(...)`, two backends:

* "torch": our own tile loop, written from the 3DGS papers (EWA splatting: Zwicker et al. 2001;
  Kerbl et al. 2023). Each Gaussian is projected to a 2-D Gaussian (local affine approximation of
  the perspective map, plus `eps2d` on the diagonal as gsplat's "classic" mode), Gaussians are
  sorted front to back by camera depth, the image is cut into 16 x 16 tiles, every Gaussian is
  listed in the tiles its 3-sigma box touches (empty tiles are skipped; a tile keeps at most
  `max_per_tile` front-most Gaussians), and each tile is alpha-composited:
  `C = sum_k c_k a_k prod_{j<k} (1 - a_j) + T_final * background`,
  `a_k = min(0.999, o_k exp(-0.5 d^T Sigma2d^-1 d))`, set to 0 below 1/255.
  Differentiable: the per-tile compositing has a hand-written backward (`_TileComposite`), the
  projection goes through autograd. A tile stops after the Gaussian beyond which every pixel's
  transmittance is below 1e-4 (gsplat stops per pixel at the same level: colours differ by at most
  ~1e-4).
* "gsplat": `gsplat.rasterization` (JIT-compiled CUDA; never imported without CUDA).

Conventions: OpenCV cameras (`liftdata.kinematics.Camera`): pixel centres at integer coordinates,
so pixel (row i, column j) samples image point (u, v) = (j, i). gsplat puts pixel centres at
j + 0.5; its backend shifts the principal point by half a pixel so both render the same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from liftdata.errors import LiftdataError

__all__ = ["RasterCamera", "Projected", "project_gaussians", "rasterize_gaussians", "rasterize_reference",
           "resolve_backend", "RasterError", "BACKENDS", "TILE"]

BACKENDS = ("auto", "torch", "gsplat")
TILE = 16
ALPHA_MIN, ALPHA_MAX = 1.0 / 255.0, 0.999
NEAR = 0.01  # metres, as gsplat's default near_plane
LOG_T_MIN = math.log(1e-4)  # transmittance below which the tile loop stops, as gsplat


class RasterError(LiftdataError, ValueError):
    """A bad rasterizer argument (backend, shapes); the message names it."""


@dataclass(frozen=True)
class RasterCamera:
    """A camera as tensors: OpenCV `K [3, 3]`, `world_to_camera [4, 4]`, image `width` x `height`."""

    K: Tensor
    world_to_camera: Tensor
    width: int
    height: int

    @classmethod
    def from_camera(cls, camera, device=None) -> RasterCamera:
        """From a `liftdata.kinematics.Camera`."""
        f32 = dict(dtype=torch.float32, device=device)
        return cls(torch.as_tensor(camera.K, **f32), torch.as_tensor(camera.world_to_camera, **f32),
                   int(camera.width), int(camera.height))


@dataclass
class Projected:
    """Screen-space Gaussians: means2d [N, 2] (pixels), conics [N, 3] (a, b, c of Sigma2d^-1),
    depths [N], radii [N] (pixels, 0 = culled)."""

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


def project_gaussians(means: Tensor,  # [N, 3] world
                      covars: Tensor,  # [N, 3, 3] world
                      camera: RasterCamera, eps2d: float = 0.3) -> Projected:
    """EWA projection of 3-D Gaussians to the image (the Jacobian's x/z, y/z clamped
    as gsplat does, 30% beyond the image, so Gaussians far outside the image do not blow up)."""
    R, t = camera.world_to_camera[:3, :3], camera.world_to_camera[:3, 3]
    p = means @ R.T + t
    x, y, z = p.unbind(-1)
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    zs = z.clamp_min(NEAR)
    lim_xp = (camera.width - cx) / fx + 0.3 * 0.5 * camera.width / fx  # gsplat's persp_proj limits
    lim_xn = cx / fx + 0.3 * 0.5 * camera.width / fx
    lim_yp = (camera.height - cy) / fy + 0.3 * 0.5 * camera.height / fy
    lim_yn = cy / fy + 0.3 * 0.5 * camera.height / fy
    tx = zs * (x / zs).clamp(-lim_xn, lim_xp)
    ty = zs * (y / zs).clamp(-lim_yn, lim_yp)
    zero = torch.zeros_like(zs)
    J = torch.stack([torch.stack([fx / zs, zero, -fx * tx / zs ** 2], -1),
                     torch.stack([zero, fy / zs, -fy * ty / zs ** 2], -1)], -2)  # [N, 2, 3]
    cov_cam = R @ covars @ R.T
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = (a * c - b * b).clamp_min(1e-12)
    conics = torch.stack([c / det, -b / det, a / det], -1)
    mid = 0.5 * (a + c)
    lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.01))
    radii = torch.ceil(3.0 * torch.sqrt(lam)).detach()
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    radii = torch.where(z > NEAR, radii, torch.zeros_like(radii))
    return Projected(means2d, conics, z, radii)


def _alpha(means2d: Tensor, conics: Tensor, opacities: Tensor, xs: Tensor, ys: Tensor
           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Alpha of K Gaussians on the pixel grid ys x xs, flattened row-major to P pixels:
    (alpha [K, P], raw o * exp(-sigma) [K, P], dx [K, 1, X], dy [K, Y, 1])."""
    dx = xs[None, None, :] - means2d[:, 0, None, None]  # [K, 1, X]
    dy = ys[None, :, None] - means2d[:, 1, None, None]  # [K, Y, 1]
    a, b, c = (conics[:, i, None, None] for i in range(3))
    sigma = (0.5 * a * dx * dx + (b * dx) * dy) + 0.5 * c * dy * dy  # conics are positive definite: sigma >= 0
    raw = (opacities[:, None, None] * torch.exp(-sigma)).flatten(1)
    alpha = raw.clamp_max(ALPHA_MAX)
    return alpha * (alpha >= ALPHA_MIN), raw, dx, dy


class _TileComposite(torch.autograd.Function):
    """Front-to-back compositing of one tile, K Gaussians sorted by depth, with a hand-written backward.

    Forward: C_p = sum_k c_k w_kp + T_p bg, w_kp = a_kp T_kp, T_kp = prod_{j<k} (1 - a_jp), T_p the
    transmittance after the last Gaussian, accumulated alpha 1 - T_p. Only the first Gaussians up to
    the one after which every pixel has T < 1e-4 are kept (gsplat's stopping level).
    Backward (dL/dC = G): dL/dc_k = sum_p w_kp G_p; dL/da_kp = T_kp c_k.G_p - S_kp / (1 - a_kp) with
    S_kp = sum_{j>k} w_jp c_j.G_p + T_p (bg.G_p - dL/dacc_p); then through a = min(0.999, o exp(-sigma))
    (zero below 1/255 or at the clamp) to o, the conic (a, b, c) and the 2-D mean.
    `rasterize_reference` and finite differences in the tests check both directions.
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, xs, ys, background):
        alpha, raw, dx, dy = _alpha(means2d, conics, opacities, xs, ys)
        log1m = torch.log1p(-alpha)
        log_t = torch.cumsum(log1m, 0)  # log transmittance after each Gaussian
        alive = (log_t > LOG_T_MIN).any(1)
        k = len(alpha) if bool(alive.all()) else int(alive.sum()) + 1
        alpha, raw, log1m, log_t = alpha[:k], raw[:k], log1m[:k], log_t[:k]
        t_before = torch.exp(log_t - log1m)
        w = alpha * t_before
        t_final = torch.exp(log_t[-1])
        rgb = w.T @ colors[:k] + t_final[:, None] * background
        ctx.save_for_backward(means2d, conics, opacities, colors, alpha, raw, t_before, w, t_final, dx[:k], dy[:k],
                              background)
        ctx.k = k
        return rgb, 1.0 - t_final

    @staticmethod
    def backward(ctx, grad_rgb, grad_acc):
        means2d, conics, opacities, colors, alpha, raw, t_before, w, t_final, dx, dy, bg = ctx.saved_tensors
        k = ctx.k
        c = colors[:k]
        grad_colors = torch.zeros_like(colors)
        grad_colors[:k] = w @ grad_rgb
        cg = c @ grad_rgb.T  # [k, P]
        wcg = w * cg
        after = wcg.sum(0, keepdim=True) - torch.cumsum(wcg, 0)  # sum over j > k
        tail = t_final * ((grad_rgb @ bg) - grad_acc)  # [P]
        d_alpha = t_before * cg - (after + tail) / (1 - alpha)
        d_raw = d_alpha * ((raw < ALPHA_MAX) & (alpha >= ALPHA_MIN))
        grad_opac = torch.zeros_like(opacities)
        grad_opac[:k] = (d_raw * raw).sum(1) / opacities[:k]
        d_sigma = (-d_raw * raw).view(k, dy.shape[1], dx.shape[2])
        a_, b_, c_ = (conics[:k, i, None, None] for i in range(3))
        grad_conics = torch.zeros_like(conics)
        grad_conics[:k] = torch.stack([(0.5 * d_sigma * dx * dx).sum((1, 2)), (d_sigma * dx * dy).sum((1, 2)),
                                       (0.5 * d_sigma * dy * dy).sum((1, 2))], -1)
        grad_means = torch.zeros_like(means2d)
        grad_means[:k] = -torch.stack([(d_sigma * (a_ * dx + b_ * dy)).sum((1, 2)),
                                       (d_sigma * (b_ * dx + c_ * dy)).sum((1, 2))], -1)
        return grad_means, grad_conics, grad_opac, grad_colors, None, None, None


def rasterize_torch(means: Tensor, covars: Tensor, colors: Tensor, opacities: Tensor, camera: RasterCamera,
                    background: Tensor, *, eps2d: float = 0.3, max_per_tile: int = 1024,
                    ) -> tuple[Tensor, Tensor, Projected]:
    """The tiled torch rasterizer; see `rasterize_gaussians`."""
    proj = project_gaussians(means, covars, camera, eps2d)
    W, H = camera.width, camera.height
    order = torch.argsort(proj.depths.detach())
    keep = order[proj.radii[order] > 0]
    m2d, r = proj.means2d.detach()[keep], proj.radii[keep]
    ntx, nty = math.ceil(W / TILE), math.ceil(H / TILE)
    tx = torch.arange(ntx, dtype=m2d.dtype, device=m2d.device) * TILE
    ty = torch.arange(nty, dtype=m2d.dtype, device=m2d.device) * TILE
    # the pixel centres of tile i span [i*TILE, i*TILE + TILE - 1]
    hit_x = (m2d[:, :1] + r[:, None] >= tx) & (m2d[:, :1] - r[:, None] <= tx + TILE - 1)  # [K, ntx]
    hit_y = (m2d[:, 1:] + r[:, None] >= ty) & (m2d[:, 1:] - r[:, None] <= ty + TILE - 1)  # [K, nty]
    bg = background.to(colors.dtype)
    rows = []
    for j in range(nty):
        y0, y1 = j * TILE, min(H, (j + 1) * TILE)
        tiles = []
        for i in range(ntx):
            x0, x1 = i * TILE, min(W, (i + 1) * TILE)
            ids = keep[torch.nonzero(hit_x[:, i] & hit_y[:, j]).squeeze(1)][:max_per_tile]
            if len(ids) == 0:
                tiles.append((bg.expand(y1 - y0, x1 - x0, -1), colors.new_zeros(y1 - y0, x1 - x0)))
                continue
            xs = torch.arange(x0, x1, device=means.device, dtype=colors.dtype)
            ys = torch.arange(y0, y1, device=means.device, dtype=colors.dtype)
            rgb, acc = _TileComposite.apply(proj.means2d[ids], proj.conics[ids], opacities[ids], colors[ids],
                                            xs, ys, bg)
            tiles.append((rgb.reshape(y1 - y0, x1 - x0, -1), acc.reshape(y1 - y0, x1 - x0)))
        rows.append((torch.cat([t[0] for t in tiles], 1), torch.cat([t[1] for t in tiles], 1)))
    return torch.cat([r_[0] for r_ in rows], 0), torch.cat([r_[1] for r_ in rows], 0), proj


def rasterize_reference(means: Tensor, covars: Tensor, colors: Tensor, opacities: Tensor, camera: RasterCamera,
                        background: Tensor, eps2d: float = 0.3) -> tuple[Tensor, Tensor]:
    """The slow, obvious twin for tests: whole-image "over" compositing, one Gaussian at a time,
    front to back; no tiles, no 3-sigma culling, no early stop."""
    proj = project_gaussians(means, covars, camera, eps2d)
    order = torch.argsort(proj.depths)
    order = order[proj.radii[order] > 0]
    rgb = background.to(colors.dtype).repeat(camera.height, camera.width, 1)
    t = torch.ones(camera.height, camera.width, dtype=colors.dtype)
    for k in order.tolist():  # pixel by pixel would be slower still; this loop is the textbook "over"
        d = torch.stack(torch.meshgrid(torch.arange(camera.height, dtype=colors.dtype),
                                       torch.arange(camera.width, dtype=colors.dtype), indexing="ij")[::-1], -1)
        d = d - proj.means2d[k]
        a_, b_, c_ = proj.conics[k]
        sigma = 0.5 * (a_ * d[..., 0] ** 2 + c_ * d[..., 1] ** 2) + b_ * d[..., 0] * d[..., 1]
        alpha = torch.clamp(opacities[k] * torch.exp(-sigma), max=ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
        rgb = rgb + (t * alpha)[..., None] * (colors[k] - background.to(colors.dtype))
        t = t * (1 - alpha)
    return rgb, 1 - t


def rasterize_gsplat(means: Tensor, covars: Tensor, colors: Tensor, opacities: Tensor, camera: RasterCamera,
                     background: Tensor, *, eps2d: float = 0.3) -> tuple[Tensor, Tensor, dict]:
    """gsplat 1.5.x `rasterization` (CUDA only). UNTESTED on a GPU in this repository's CI."""
    if not torch.cuda.is_available():
        raise RasterError("backend 'gsplat' needs CUDA (torch.cuda.is_available() is False); use backend='torch'")
    from liftdata._extras import require

    gsplat = require("gsplat", "avatar-gpu")
    K = camera.K.clone()
    K[0, 2] += 0.5  # gsplat samples pixel j at j + 0.5 (module docstring)
    K[1, 2] += 0.5
    rgb, alpha, meta = gsplat.rasterization(
        means, None, None, opacities, colors, camera.world_to_camera[None], K[None], camera.width, camera.height,
        covars=covars, eps2d=eps2d, near_plane=NEAR, packed=False, backgrounds=background[None].to(colors.dtype))
    return rgb[0], alpha[0, ..., 0], meta


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise RasterError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "gsplat" if torch.cuda.is_available() and _gsplat_installed() else "torch"
    return backend


def _gsplat_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("gsplat") is not None


def rasterize_gaussians(means: Tensor,  # [N, 3] world space
                        covars: Tensor,  # [N, 3, 3] world space
                        colors: Tensor,  # [N, D] (RGB: D = 3)
                        opacities: Tensor,  # [N] in [0, 1]
                        camera: RasterCamera,
                        background: Tensor,  # [D]
                        *, backend: str = "torch", eps2d: float = 0.3, max_per_tile: int = 1024,
                        ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Render Gaussians: (image [H, W, D], alpha [H, W], means2d [N, 2] or None).

    `means2d` is the screen-space mean tensor whose `.grad` (after `retain_grad()` and backward)
    drives densification (torch backend; gsplat: `meta["means2d"]`).
    """
    backend = resolve_backend(backend)
    if means.ndim != 2 or means.shape[1] != 3 or covars.shape != (len(means), 3, 3):
        raise RasterError(f"means [N, 3] / covars [N, 3, 3]: got {list(means.shape)} / {list(covars.shape)}")
    if colors.shape[0] != len(means) or opacities.shape != (len(means),):
        raise RasterError(f"colors [N, D] / opacities [N]: got {list(colors.shape)} / {list(opacities.shape)}")
    if backend == "gsplat":
        rgb, alpha, meta = rasterize_gsplat(means, covars, colors, opacities, camera, background, eps2d=eps2d)
        return rgb, alpha, meta.get("means2d")
    rgb, alpha, proj = rasterize_torch(means, covars, colors, opacities, camera, background, eps2d=eps2d,
                                       max_per_tile=max_per_tile)
    return rgb, alpha, proj.means2d
