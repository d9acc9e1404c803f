"""Gaussians bound to head-model triangles (GaussianAvatars, Qian et al. CVPR 2024, Sec. 3.2).

Every Gaussian belongs to one triangle (its `binding`) and lives in that triangle's local frame:

* frame: origin T = the triangle's centroid; rotation R = [e1, e2, n] (columns) with
  e1 = unit(v1 - v0), n = unit(e1 x (v2 - v0)) (the outward normal), e2 = n x e1;
* size: k = (|v1 - v0| + |e2 . (v2 - v0)|) / 2, the mean of one edge and its height;
* world values: mean = k R mu_local + T, scale = k exp(s_local), rotation = R R(q_local).

So a Gaussian moves, turns and grows with its triangle under any kinematics, and local units are
"triangle sizes": the position regularizer holds |mu_local| <= 1, the scale one exp(s_local) <= 0.6.

The binding mesh is the head model's triangles plus a fan over every inner boundary loop
(builtin: the eyes and the mouth; FLAME: the mouth), around the loop's mean vertex, so the mouth
interior and the eyes have triangles to carry Gaussians, as GaussianAvatars adds teeth to FLAME.
With `AvatarConfig.mesh = "whole_head"` the builtin model's head proxy (skull, hair region, ears,
neck; `BuiltinHeadModel.head_proxy`) is added, so hair and neck in a matte have triangles too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liftdata.head.base import boundary_loops

__all__ = ["binding_mesh", "extend_vertices", "triangle_frames", "quat_to_matrix", "matrix_to_quat",
           "covariances", "world_gaussians"]


def binding_mesh(faces: np.ndarray, holes_of: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(faces [F', 3] = model faces + cap fans, loops): each cap adds one vertex, numbered after the
    model's vertices in loop order (see `extend_vertices`).

    holes_of: the triangles whose inner boundary loops are capped (default `faces`; the whole head
    passes the face mesh's own, so the proxy's open neck is not closed and the mouth is).
    """
    faces = np.asarray(faces, np.int64)
    n_vertices = int(faces.max()) + 1
    # the longest loop is the outer rim (face oval / neck)
    loops = boundary_loops(faces if holes_of is None else np.asarray(holes_of, np.int64))[1:]
    caps = []
    for i, loop in enumerate(loops):
        centre = n_vertices + i
        nxt = np.roll(loop, -1)
        caps.append(np.stack([nxt, loop, np.full(len(loop), centre)], 1))  # reversed boundary edge: outward
    return np.concatenate([faces, *caps]) if caps else faces, loops


def extend_vertices(vertices: Tensor,  # [T, V, 3]
                    loops: list[np.ndarray]) -> Tensor:  # [T, V + len(loops), 3]
    """Append the cap vertices (the mean of each loop) to posed vertices."""
    if not loops:
        return vertices
    centres = [vertices[:, torch.as_tensor(loop)].mean(1) for loop in loops]
    return torch.cat([vertices, torch.stack(centres, 1)], 1)


def triangle_frames(vertices: Tensor,  # [V, 3]
                    faces: Tensor,  # [F, 3] long
                    ) -> tuple[Tensor, Tensor, Tensor]:  # R [F, 3, 3], T [F, 3], k [F]
    """Per-triangle local frame (module docstring)."""
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    e1 = F.normalize(v1 - v0, dim=-1, eps=1e-12)
    n = F.normalize(torch.cross(e1, v2 - v0, dim=-1), dim=-1, eps=1e-12)
    e2 = torch.cross(n, e1, dim=-1)
    R = torch.stack([e1, e2, n], -1)
    k = 0.5 * ((v1 - v0).norm(dim=-1) + ((v2 - v0) * e2).sum(-1).abs())
    return R, (v0 + v1 + v2) / 3.0, k


def quat_to_matrix(q: Tensor) -> Tensor:  # [N, 4] wxyz (any norm) -> [N, 3, 3]
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


def matrix_to_quat(R: Tensor) -> Tensor:  # [N, 3, 3] rotation -> [N, 4] unit wxyz
    """Shepperd's method, all four branches computed and the best-conditioned one picked."""
    m = R
    t = torch.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    cand = torch.stack([
        torch.stack([t[:, 0], m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], t[:, 1], m[:, 1, 0] + m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1], t[:, 2], m[:, 2, 1] + m[:, 1, 2]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] + m[:, 1, 2], t[:, 3]], -1),
    ], 1)  # [N, 4 branches, 4]
    best = t.argmax(-1)
    q = cand[torch.arange(len(m)), best]
    return F.normalize(q, dim=-1)


def covariances(rotations: Tensor, scales: Tensor) -> Tensor:  # [N, 3, 3], [N, 3] -> [N, 3, 3]
    """Sigma = R diag(s^2) R^T."""
    rs = rotations * scales[:, None, :]
    return rs @ rs.transpose(1, 2)


def world_gaussians(vertices: Tensor,  # [V', 3] posed binding-mesh vertices
                    faces: Tensor,  # [F', 3] long, the binding mesh
                    binding: Tensor,  # [N] long, triangle of each Gaussian
                    xyz: Tensor,  # [N, 3] local mean
                    log_scale: Tensor,  # [N, 3] local log scale
                    quat: Tensor,  # [N, 4] local rotation, wxyz
                    ) -> tuple[Tensor, Tensor, Tensor]:  # means [N, 3], rotations [N, 3, 3], scales [N, 3]
    """World-space means, rotations and scales of bound Gaussians (module docstring)."""
    R, T, k = triangle_frames(vertices, faces)
    R, T, k = R[binding], T[binding], k[binding]
    means = k[:, None] * (R @ xyz[:, :, None])[..., 0] + T
    return means, R @ quat_to_matrix(quat), k[:, None] * torch.exp(log_scale)
