"""Condition maps (shading / normal / depth / mask) and a textured render, from a head mesh.

The "shading maps" of the LiftAvatar paper are the Lambertian shading of the head model:
`ambient + diffuse * max(0, n . l)`, with a directional light fixed in *camera* space.

Light convention: `light_dir` is the direction from the surface *towards* the light, in OpenCV
camera axes (x right, y down, z forward); it is normalised. `(0, 0, -1)` is a light at the camera,
shining along the view direction. The default `DEFAULT_LIGHT = (-0.3, -0.4, -1.0)` comes from the
camera, slightly from the upper left of the image, so that relief is visible.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liftdata.render.raster import (Cameras, Fragments, RenderError, interpolate, prepare, rasterize,
                                    resolve_backend, vertex_normals)

__all__ = ["DEFAULT_LIGHT", "condition_maps", "render_textured", "to_uint8"]

DEFAULT_LIGHT = (-0.3, -0.4, -1.0)


def condition_maps(vertices: Tensor | np.ndarray,  # [T, V, 3] world space
                   faces: Tensor | np.ndarray,  # [F, 3]
                   cameras: Cameras,
                   *, backend: str = "auto",
                   light_dir: tuple[float, float, float] = DEFAULT_LIGHT,
                   ambient: float = 0.3, diffuse: float = 0.7,
                   fragments: Fragments | None = None,
                   cull_backfaces: bool = False,
                   dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Driving conditions of T frames, 0 on the background.

    Returns, with `dtype=torch.float32` (the default):
        "shading": [T, H, W, 1] Lambertian shading in [0, 1] (for ambient + diffuse <= 1).
        "normal": [T, H, W, 3] camera-space unit normals stored as 0.5 n + 0.5 (visible
            surfaces have n_z < 0, OpenCV axes).
        "depth": [T, H, W, 1] camera z in metres.
        "mask": [T, H, W, 1] float 0 / 1.
    With `dtype=torch.uint8` (8-bit maps for writing data sets, 4 bytes per pixel read back):
        "shading", "normal": the float maps as `to_uint8` quantises them (clipped to [0, 1],
            round(255 x)), within 1 LSB of it on the moderngl backend (the GPU's rounding);
        "mask": [T, H, W, 1] uint8 0 / 255;
        and NO "depth" (an 8-bit depth map would be useless; use float32 for depth).

    With backend "moderngl" (and no `fragments`) everything is computed in one shader pass;
    otherwise from `fragments` (rasterized here if not given) by interpolating vertex normals.
    """
    if dtype not in (torch.float32, torch.uint8):
        raise RenderError(f"dtype: expected torch.float32 or torch.uint8, got {dtype!r}")
    scene = prepare(vertices, faces, cameras)
    light = F.normalize(torch.tensor(light_dir, dtype=torch.float64), dim=0)
    normals = vertex_normals(scene.vertices.float(), scene.faces)
    if fragments is None and resolve_backend(backend) == "moderngl":
        from liftdata.render._moderngl import condition_maps_moderngl

        return condition_maps_moderngl(scene, normals, tuple(light.tolist()), ambient, diffuse, cull_backfaces,
                                       eight_bit=dtype == torch.uint8)
    if fragments is None:
        from liftdata.render._torch import rasterize_torch

        fragments = rasterize_torch(scene, cull_backfaces)
    mask = fragments.mask[..., None].float()
    n = F.normalize(interpolate(fragments, scene.faces, normals), dim=-1).float()
    lit = (n @ light.to(n)).clamp(min=0)[..., None]
    maps = {"shading": (ambient + diffuse * lit) * mask, "normal": (0.5 * n + 0.5) * mask,
            "depth": fragments.depth[..., None], "mask": mask}
    if dtype == torch.uint8:
        device = maps["mask"].device
        return {key: torch.from_numpy(to_uint8(maps[key])).to(device) for key in ("shading", "normal", "mask")}
    return maps


def render_textured(vertices: Tensor | np.ndarray,  # [T, V, 3] world space
                    faces: Tensor | np.ndarray,  # [F, 3]
                    cameras: Cameras,
                    uvs: Tensor | np.ndarray,  # [V, 2] or [T, V, 2], pixel coordinates in `texture`
                    texture: Tensor | np.ndarray,  # [H_t, W_t, 3] uint8 or float in [0, 1]
                    *, backend: str = "auto", fragments: Fragments | None = None,
                    background: Tensor | np.ndarray | None = None,  # [H, W, 3] or [T, H, W, 3]
                    ) -> tuple[Tensor, Tensor]:  # rgb [T, H, W, 3] float in [0, 1], mask [T, H, W]
    """Render a mesh whose vertices carry texture coordinates into an image.

    `uvs` are pixel coordinates (x right, y down, pixel centres at integers) of `texture`, e.g.
    the projection of the vertices into a reference frame. Bilinear sampling, border padding.
    Outside the mask: black, or `background` (uint8 or float in [0, 1]).
    Differentiable with respect to `uvs` and `texture`.
    """
    tex = _image(texture, "texture")
    if tex.dim() != 3:
        raise RenderError(f"texture: expected [H_t, W_t, 3], got {list(tex.shape)}")
    uvs = torch.as_tensor(uvs)
    if uvs.dim() not in (2, 3) or uvs.shape[-1] != 2:
        raise RenderError(f"uvs: expected [V, 2] or [T, V, 2], got {list(uvs.shape)}")
    if fragments is None:
        fragments = rasterize(vertices, faces, cameras, backend=backend)
    T, H, W = fragments.face_id.shape
    uv = interpolate(fragments, faces, uvs.to(tex.dtype))  # [T, H, W, 2]
    h_t, w_t = tex.shape[:2]
    grid = torch.stack([2 * uv[..., 0] / max(w_t - 1, 1) - 1, 2 * uv[..., 1] / max(h_t - 1, 1) - 1], -1)
    texel = tex.permute(2, 0, 1)[None].expand(T, -1, -1, -1)
    rgb = F.grid_sample(texel, grid, mode="bilinear", padding_mode="border", align_corners=True)
    rgb = rgb.permute(0, 2, 3, 1)
    mask = fragments.mask.to(rgb.device)
    if background is None:
        return rgb * mask[..., None], mask
    bg = _image(background, "background").to(rgb)
    if bg.shape[-3:] != (H, W, 3) or bg.dim() not in (3, 4):
        raise RenderError(f"background: expected [{H}, {W}, 3] or [T, {H}, {W}, 3], got {list(bg.shape)}")
    return torch.where(mask[..., None], rgb, bg.expand(T, H, W, 3)), mask


def to_uint8(x: Tensor | np.ndarray) -> np.ndarray:
    """[..., C] float image in [0, 1] -> uint8 numpy (clipped, rounded), e.g. for saving PNGs."""
    x = torch.as_tensor(x).detach().float().cpu()
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _image(x: Tensor | np.ndarray, name: str) -> Tensor:
    """uint8 -> float32 / 255; float stays (assumed in [0, 1])."""
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise RenderError(f"{name}: expected uint8 or float, got {x.dtype}")
    return x
