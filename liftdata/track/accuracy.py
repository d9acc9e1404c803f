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

__all__ = ["tracking_errors", "rotation_error_parts", "identity_rotation"]


def identity_rotation(model, identity: np.ndarray) -> np.ndarray:  # [3, 3]
    """The rotation that best aligns the template to the neutral face of `identity` (Procrustes)."""
    with torch.no_grad():
        a = model.vertices(model.neutral_identity(), neutral_kinematics(model))[0].numpy()
        b = model.vertices(torch.as_tensor(identity), neutral_kinematics(model))[0].numpy()
    u, _, vt = np.linalg.svd((b - b.mean(0)).T @ (a - a.mean(0)))
    return u @ vt


def _rotation_errors(gt: Capture, fitted: Capture, sel: np.ndarray) -> tuple[Rotation, Rotation]:
    """Per-frame rotation error R_gt^-1 R_fit [T] (ground truth with its identity's rigid part) and
    the same without the clip-constant offset (the mean rotation vector), `relative`."""
    r_gt = Rotation.from_rotvec(gt.kinematics.rotation[sel]) * Rotation.from_matrix(
        identity_rotation(gt.head_model, gt.identity))
    rel = r_gt.inv() * Rotation.from_rotvec(fitted.kinematics.rotation[sel])
    return rel, rel * Rotation.from_rotvec(rel.as_rotvec().mean(0)).inv()


def tracking_errors(gt: Capture, fitted: Capture, frames: np.ndarray | None = None) -> dict[str, float]:
    """Errors of `fitted` against the ground truth `gt` (same frames), over `frames` (default all)."""
    sel = np.arange(len(gt)) if frames is None else np.asarray(frames)
    model = gt.head_model
    gk, fk = gt.kinematics[sel], fitted.kinematics[sel]
    rel, within = _rotation_errors(gt, fitted, sel)
    relative = np.degrees(within.magnitude())

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
            "residual_px": _nanmean(fitted.landmark_residual[sel])}


def _nanmean(x: np.ndarray) -> float:  # NaN, without numpy's warning, when nothing is finite
    x = np.asarray(x, np.float64)
    return float(x[np.isfinite(x)].mean()) if np.isfinite(x).any() else float("nan")


def rotation_error_parts(gt: Capture, fitted: Capture, frames: np.ndarray | None = None,
                         window: int = 5) -> dict[str, float]:
    """Split the relative rotation error (per frame, a rotation vector in degrees, constant offset removed).

    * rotation_jitter_deg: mean norm of the error minus its centred moving average over `window`
      frames (frame-to-frame noise: what temporal smoothing can remove).
    * rotation_pose_linear_deg: mean norm of the part of the error that an affine function of the
      true head rotation (rotation vector, degrees) explains by least squares (a pose-dependent bias).
    * rotation_pose_r2: the fraction of the error's variance (all 3 axes) that this affine model explains.
    """
    from scipy.ndimage import uniform_filter1d

    sel = np.arange(len(gt)) if frames is None else np.asarray(frames)
    if len(sel) < 5:
        raise ValueError(f"rotation_error_parts: needs at least 5 frames, got {len(sel)}")
    err = np.degrees(_rotation_errors(gt, fitted, sel)[1].as_rotvec())  # [T, 3]
    smooth = uniform_filter1d(err, window, axis=0, mode="nearest")
    pose = np.c_[np.ones(len(sel)), np.degrees(gt.kinematics.rotation[sel])]  # [T, 4]
    explained = pose @ np.linalg.lstsq(pose, err, rcond=None)[0]
    total = ((err - err.mean(0)) ** 2).sum()
    r2 = 1.0 - ((err - explained) ** 2).sum() / total if total > 0 else 0.0
    return {"rotation_jitter_deg": float(np.linalg.norm(err - smooth, axis=1).mean()),
            "rotation_pose_linear_deg": float(np.linalg.norm(explained - explained.mean(0), axis=1).mean()),
            "rotation_pose_r2": float(r2)}
