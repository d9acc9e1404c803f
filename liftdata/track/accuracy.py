"""Tracking accuracy against ground truth (synthetic captures): the figures of issue 16, item 5.

`tracking_errors(gt, fitted)` compares a tracked `Capture` with the synthetic capture it came from:

* rotation: geodesic angle between fitted and ground-truth head rotation, in degrees. The builtin
  identity's template offsets contain a small rotation (found by Procrustes against the template)
  that is indistinguishable from head pose; the tracker's identity has no rigid part by
  construction, so the ground truth is compared as R_gt @ R_identity.
* rotation_relative: the same after removing the clip-constant rotation offset (the error of the
  motion within the clip; the constant part is mostly the detector's pitch bias).
* pitch_offset: the x component of that constant offset, in degrees.
* expression MAE on the model's coefficient scale; translation errors in cm (camera space);
  reprojection of all model vertices in pixels; the fit's own mean landmark residual.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from liftdata.capture import Capture
from liftdata.head.base import neutral_kinematics

__all__ = ["tracking_errors", "identity_rotation"]


def identity_rotation(model, identity: np.ndarray) -> np.ndarray:  # [3, 3]
    """The rotation that best aligns the template to the neutral face of `identity` (Procrustes)."""
    with torch.no_grad():
        a = model.vertices(model.neutral_identity(), neutral_kinematics(model))[0].numpy()
        b = model.vertices(torch.as_tensor(identity), neutral_kinematics(model))[0].numpy()
    u, _, vt = np.linalg.svd((b - b.mean(0)).T @ (a - a.mean(0)))
    return u @ vt


def tracking_errors(gt: Capture, fitted: Capture, frames: np.ndarray | None = None) -> dict[str, float]:
    """Errors of `fitted` against the ground truth `gt` (same frames), over `frames` (default all)."""
    sel = np.arange(len(gt)) if frames is None else np.asarray(frames)
    model = gt.head_model
    gk, fk = gt.kinematics[sel], fitted.kinematics[sel]
    r_gt = Rotation.from_rotvec(gk.rotation) * Rotation.from_matrix(identity_rotation(model, gt.identity))
    rel = r_gt.inv() * Rotation.from_rotvec(fk.rotation)
    offset = Rotation.from_rotvec(rel.as_rotvec().mean(0))
    relative = np.degrees((rel * offset.inv()).magnitude())

    def cam_pos(c: Capture, k) -> np.ndarray:
        return k.translation @ c.camera.world_to_camera[:3, :3].T + c.camera.world_to_camera[:3, 3]

    dt = (cam_pos(gt, gk) - cam_pos(fitted, fk)) * 100
    with torch.no_grad():
        p_gt = gt.camera.project(model.vertices(torch.as_tensor(gt.identity), gk).numpy())[..., :2]
        p_fit = fitted.camera.project(model.vertices(torch.as_tensor(fitted.identity), fk).numpy())[..., :2]
    return {"rotation_deg": float(np.degrees(rel.magnitude()).mean()),
            "rotation_relative_deg": float(relative.mean()),
            "pitch_offset_deg": float(np.degrees(rel.as_rotvec().mean(0))[0]),
            "expression_mae": float(np.abs(gk.expression - fk.expression).mean()),
            "translation_xy_cm": float(np.linalg.norm(dt[:, :2], axis=1).mean()),
            "translation_z_cm": float(np.abs(dt[:, 2]).mean()),
            "reprojection_px": float(np.linalg.norm(p_gt - p_fit, axis=-1).mean()),
            "residual_px": float(np.nanmean(fitted.landmark_residual[sel]))}
