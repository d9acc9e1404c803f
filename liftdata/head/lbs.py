"""Functional skinning helpers in torch: axis-angle rotations and rigid transforms.

All functions are batched over a leading frame axis T and differentiable. Rotations are
axis-angle vectors in radians; points are in metres.
"""

from __future__ import annotations

import torch

__all__ = ["axis_angle_to_matrix", "rotate_about", "blend_rotate_about"]

_SMALL = 1e-3  # below this angle (rad) the Rodrigues coefficients use their Taylor series


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """[..., 3] axis-angle -> [..., 3, 3] rotation matrices (Rodrigues; smooth at zero)."""
    theta2 = (aa * aa).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    theta = torch.sqrt(theta2 + 1e-12)
    small = theta < _SMALL
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)  # sin(t) / t
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(_SMALL ** 2))
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(aa.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def rotate_about(points: torch.Tensor,  # [T, V, 3]
                 rotation: torch.Tensor,  # [T, 3, 3]
                 pivot: torch.Tensor,  # [3]
                 ) -> torch.Tensor:  # [T, V, 3]
    """Rotate points about `pivot`: p' = R (p - pivot) + pivot."""
    return (points - pivot) @ rotation.transpose(-1, -2) + pivot


def blend_rotate_about(points: torch.Tensor,  # [T, V, 3]
                       rotation: torch.Tensor,  # [T, 3, 3]
                       pivot: torch.Tensor,  # [3]
                       weights: torch.Tensor,  # [V] in [0, 1]
                       ) -> torch.Tensor:  # [T, V, 3]
    """One-bone linear blend skinning: p' = p + w (R (p - pivot) + pivot - p)."""
    return points + weights[:, None] * (rotate_about(points, rotation, pivot) - points)
