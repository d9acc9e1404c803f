"""Mesh rasterization: `Fragments`, backend dispatch, attribute interpolation, vertex normals.

Conventions
-----------
* Cameras are OpenCV (`liftdata.kinematics.Camera`): x right, y down, z forward, pixel centres at
  integer coordinates. Pixel (row i, column j) of every output samples the ray through the pixel
  centre `(u, v) = (j, i)`.
* Triangles are counter-clockwise seen from outside in a right-handed model space. Camera space
  is right-handed too, so `cross(v1 - v0, v2 - v0)` points outwards there as well: surfaces facing
  the camera have normals with `n_z < 0`. In the image (v down) such a triangle winds clockwise,
  which is what back-face culling (off by default) keeps.
* Faces with a vertex nearer than `NEAR` metres (or behind the camera) are not drawn, by either
  backend.
* Two backends: "moderngl" (OpenGL through headless EGL: Mesa llvmpipe on CPUs, the NVIDIA driver
  on GPUs) and "torch", the slow, obviously correct reference. The raster itself is not
  differentiable; `interpolate` is, with respect to the vertex attributes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

from liftdata.errors import LiftdataError
from liftdata.kinematics import Camera

__all__ = ["Fragments", "RenderError", "EGLUnavailableError", "rasterize", "interpolate",
           "vertex_normals", "NEAR"]

NEAR = 1e-3  #: metres; faces with a vertex at camera z <= NEAR are skipped
BACKENDS = ("auto", "moderngl", "torch")
Cameras = Union[Camera, Sequence[Camera]]


class RenderError(LiftdataError, ValueError):
    """Bad input to a render function; the message names the argument and what is wrong."""


class EGLUnavailableError(LiftdataError, RuntimeError):
    """backend="moderngl" was requested but no headless EGL OpenGL context could be created."""


@dataclass
class Fragments:
    """What covers each pixel, for T frames of H x W pixels.

    Attributes:
        face_id: [T, H, W] int64 index of the visible face, -1 where no face.
        barycentrics: [T, H, W, 3] float32 perspective-correct barycentric coordinates of the
            pixel centre in that face (weights of `faces[face_id]`), 0 where no face.
        depth: [T, H, W] float32 camera-space z in metres (OpenCV, +z forward), 0 off-mesh.
        mask: [T, H, W] bool, `face_id >= 0`.
    """

    face_id: Tensor
    barycentrics: Tensor
    depth: Tensor
    mask: Tensor


@dataclass
class Scene:
    """Validated render input, with vertices already in camera space (internal)."""

    vertices: Tensor  # [T, V, 3] float64 camera-space vertices
    faces: Tensor  # [F, 3] int64
    K: np.ndarray  # [T, 3, 3] float64 intrinsics
    width: int
    height: int


# ---------------------------------------------------------------------- input
def prepare(vertices: Tensor | np.ndarray, faces: Tensor | np.ndarray, cameras: Cameras) -> Scene:
    """Check shapes and ranges and move the vertices into each frame's camera space."""
    v = torch.as_tensor(vertices)
    if v.dim() != 3 or v.shape[-1] != 3 or not v.is_floating_point():
        raise RenderError(f"vertices: expected a float [T, V, 3] array, got {v.dtype} {list(v.shape)}")
    v = v.detach().double()
    if not torch.isfinite(v).all():
        raise RenderError("vertices: contain NaN or inf")
    f = torch.as_tensor(faces, device=v.device)
    if f.dim() != 2 or f.shape[1] != 3 or f.is_floating_point() or f.dtype == torch.bool:
        raise RenderError(f"faces: expected an integer [F, 3] array, got {f.dtype} {list(f.shape)}")
    f = f.long()
    if f.numel() and (f.min() < 0 or f.max() >= v.shape[1]):
        bad = int(f.max()) if f.max() >= v.shape[1] else int(f.min())
        raise RenderError(f"faces: index {bad} out of range for {v.shape[1]} vertices")
    cams = [cameras] if isinstance(cameras, Camera) else list(cameras)
    if not all(isinstance(c, Camera) for c in cams) or len(cams) not in (1, v.shape[0]):
        raise RenderError(f"cameras: expected one Camera or a sequence of T={v.shape[0]} Cameras")
    if len({(c.width, c.height) for c in cams}) != 1:
        raise RenderError("cameras: all cameras must share one width and height")
    w2c = torch.as_tensor(np.stack([c.world_to_camera for c in cams]), device=v.device)
    cam = v @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
    K = np.stack([c.K for c in cams]).repeat(v.shape[0] // len(cams), axis=0)
    return Scene(cam, f, K, cams[0].width, cams[0].height)


def resolve_backend(backend: str) -> str:
    """"auto" -> "moderngl" when EGL works, else "torch" (warning once)."""
    if backend not in BACKENDS:
        raise RenderError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    from liftdata.render import _moderngl

    try:
        _moderngl.get_context()
        return "moderngl"
    except EGLUnavailableError as e:
        if not _FALLBACK_WARNED:
            warnings.warn(f"{e} Falling back to the slow torch rasterizer.", stacklevel=3)
            _FALLBACK_WARNED.append(True)
        return "torch"


_FALLBACK_WARNED: list[bool] = []


# ---------------------------------------------------------------------- public API
def rasterize(vertices: Tensor | np.ndarray,  # [T, V, 3] world space
              faces: Tensor | np.ndarray,  # [F, 3] int
              cameras: Cameras,  # one Camera for all frames, or T Cameras of one size
              *, backend: str = "auto", cull_backfaces: bool = False) -> Fragments:
    """Rasterize T frames of a triangle mesh into `Fragments` of camera.height x camera.width.

    `cull_backfaces` drops faces whose outside faces away from the camera.
    """
    scene = prepare(vertices, faces, cameras)
    if resolve_backend(backend) == "moderngl":
        from liftdata.render._moderngl import rasterize_moderngl

        return rasterize_moderngl(scene, cull_backfaces)
    from liftdata.render._torch import rasterize_torch

    return rasterize_torch(scene, cull_backfaces)


def interpolate(fragments: Fragments,
                faces: Tensor | np.ndarray,  # [F, 3]
                vertex_attributes: Tensor | np.ndarray,  # [T, V, C] or [V, C] (shared by all frames)
                ) -> Tensor:  # [T, H, W, C], 0 off-mesh
    """Barycentric interpolation of per-vertex attributes at every covered pixel.

    Differentiable with respect to `vertex_attributes` (output dtype = their dtype).
    """
    attrs = torch.as_tensor(vertex_attributes)
    T, H, W = fragments.face_id.shape
    if attrs.dim() == 2:
        attrs = attrs.expand(T, *attrs.shape)
    if attrs.dim() != 3 or attrs.shape[0] != T:
        raise RenderError(f"vertex_attributes: expected [V, C] or [T={T}, V, C], got {list(attrs.shape)}")
    faces = torch.as_tensor(faces, device=attrs.device).long()
    V, C = attrs.shape[1:]
    pix = fragments.mask.reshape(-1).nonzero().squeeze(1).to(attrs.device)  # covered pixels, flat
    face = fragments.face_id.reshape(-1).to(attrs.device)[pix]
    frame = pix // (H * W)
    corner_rows = faces[face] + (frame * V)[:, None]  # [N, 3] rows of attrs.reshape(T * V, C)
    corner_values = attrs.reshape(T * V, C)[corner_rows]  # [N, 3, C]
    bary = fragments.barycentrics.reshape(-1, 3).to(attrs.device, attrs.dtype)[pix]
    values = (bary[:, :, None] * corner_values).sum(1)
    return attrs.new_zeros(T * H * W, C).index_copy(0, pix, values).reshape(T, H, W, C)


def vertex_normals(vertices: Tensor,  # [T, V, 3]
                   faces: Tensor | np.ndarray,  # [F, 3], counter-clockwise seen from outside
                   ) -> Tensor:  # [T, V, 3]
    """Area-weighted unit vertex normals pointing outwards (zero for vertices in no face)."""
    faces = torch.as_tensor(faces, device=vertices.device).long()
    T, V = vertices.shape[:2]
    rows = vertices.transpose(0, 1)  # [V, T, 3]: gathers and sums move whole rows
    v0, v1, v2 = (rows.index_select(0, faces[:, i]) for i in range(3))
    face_normals = torch.linalg.cross(v1 - v0, v2 - v0).reshape(-1, T * 3)  # length = 2 * area
    summed = vertices.new_zeros(V, T * 3)
    for i in range(3):
        summed.index_add_(0, faces[:, i], face_normals)
    return torch.nn.functional.normalize(summed.view(V, T, 3).transpose(0, 1), dim=-1, eps=1e-20)
