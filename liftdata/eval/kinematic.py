"""Kinematic accuracy of generated frames: AED, APD (re-tracking) and LMD (landmarks).

The generated frames are re-tracked and their kinematics compared with the target: either the
driving kinematics they were generated from, or the re-tracked ground-truth frames (same
tracker on both sides, which cancels most of the tracker's own bias). The numbers depend on the
tracker: they are only comparable between methods evaluated with the same tracker (and head
model); the report records which one was used.

Definitions (per frame, then the mean over frames):
* AED (average expression distance): `aed_l1` = mean |e_pred - e_target| over the E expression
  coefficients; `aed_l2` = Euclidean norm ||e_pred - e_target||_2.
* APD (average pose distance): `apd_rotation_deg` = angle of R_pred^T R_target in degrees (global
  head rotation, axis-angle -> geodesic distance); `apd_translation` = ||t_pred - t_target||_2 in
  the kinematics' units (metres); `jaw_deg` = the same angle for the jaw rotation.
* LMD (landmark distance): mean Euclidean distance in pixels between corresponding 2-D landmarks
  of generated and ground-truth frames, over landmarks of frames where both were found.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from liftdata.kinematics import Kinematics, axis_angle_to_matrix

__all__ = ["Tracker", "Landmarker", "aed", "apd", "rotation_angle_deg", "lmd", "default_tracker",
           "default_landmarker", "kinematic_metrics"]

Tracker = Callable[[Any], Kinematics]  # frames (len + getitem -> RGB uint8 [H, W, 3]) -> Kinematics [T]
Landmarker = Callable[[Any], np.ndarray]  # frames -> [T, L, 2] pixels, NaN where no face was found


def _check_pair(pred: Kinematics, target: Kinematics) -> None:
    pred.check_compatible(target)
    if len(pred) != len(target):
        raise ValueError(f"kinematics: {len(pred)} predicted frames vs {len(target)} target frames")


def aed(pred: Kinematics, target: Kinematics) -> dict[str, np.ndarray]:
    """Per-frame expression distances {"aed_l1": [T], "aed_l2": [T]} (see module doc)."""
    _check_pair(pred, target)
    diff = pred.expression.astype(np.float64) - target.expression.astype(np.float64)
    return {"aed_l1": np.abs(diff).mean(axis=1), "aed_l2": np.linalg.norm(diff, axis=1)}


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [T, 3] axis-angle x2 -> [T]
    """Geodesic angle between two rotations in degrees: angle of R_a^T R_b."""
    rel = np.swapaxes(axis_angle_to_matrix(a), -1, -2) @ axis_angle_to_matrix(b)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def apd(pred: Kinematics, target: Kinematics) -> dict[str, np.ndarray]:
    """Per-frame pose distances {"apd_rotation_deg", "apd_translation", "jaw_deg"}: [T] each."""
    _check_pair(pred, target)
    return {"apd_rotation_deg": rotation_angle_deg(pred.rotation, target.rotation),
            "apd_translation": np.linalg.norm(pred.translation.astype(np.float64) - target.translation, axis=1),
            "jaw_deg": rotation_angle_deg(pred.jaw, target.jaw)}


def lmd(pred: np.ndarray,  # [T, L, 2] pixels, NaN where no face
        target: np.ndarray,  # [T, L, 2] pixels, NaN where no face
        ) -> np.ndarray:  # [T] mean landmark distance per frame (NaN where either has no face)
    """Per-frame mean Euclidean landmark distance in pixels."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmarks: expected two [T, L, 2] arrays of equal shape, got "
                         f"{list(pred.shape)} and {list(target.shape)}")
    return np.linalg.norm(pred - target, axis=-1).mean(axis=1)


def default_tracker(head_model: Any = "builtin") -> Tracker:
    """liftdata's tracker (mediapipe landmarks + fit, static mode), imported lazily."""

    def track(frames: Any) -> Kinematics:
        from liftdata.track.pipeline import track_frames

        return track_frames(frames, head_model, static=True, progress=False).kinematics

    return track


def default_landmarker() -> Landmarker:
    """mediapipe 0.10.14 face mesh (the 468 mesh points), static mode, imported lazily."""

    def detect(frames: Any) -> np.ndarray:
        from liftdata.track.landmarks import detect_landmarks

        lmk = detect_landmarks((frames[i] for i in range(len(frames))), len(frames), static=True, progress=False)
        return lmk.points[:, :468]

    return detect


def kinematic_metrics(frames: Any, target: Kinematics | Any, *, tracker: Tracker | None = None,
                      gt_frames: Any = None, landmarker: Landmarker | None = None) -> dict[str, Any]:
    """AED / APD of re-tracked `frames` against `target`, and LMD against `gt_frames`.

    Args:
        frames: the generated frames (len + getitem -> RGB uint8 [H, W, 3]).
        target: the driving `Kinematics` [T], or ground-truth frames to re-track with the same tracker.
        tracker: frames -> Kinematics; default `default_tracker()` (liftdata.track).
        gt_frames: ground-truth frames for LMD (default: `target` when it is frames; else no LMD).
        landmarker: frames -> [T, L, 2] pixels; default `default_landmarker()` (mediapipe).
    Returns:
        {"per_frame": {metric: [T] list}, "mean": {metric: float}} (NaN-free means over frames).
    """
    tracker = tracker or default_tracker()
    pred = tracker(frames)
    if not isinstance(target, Kinematics):
        gt_frames = target if gt_frames is None else gt_frames
        target = tracker(target)
    per_frame = {**aed(pred, target), **apd(pred, target)}
    if gt_frames is not None:
        landmarker = landmarker or default_landmarker()
        per_frame["lmd_px"] = lmd(landmarker(frames), landmarker(gt_frames))
    mean = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in per_frame.items()}
    return {"per_frame": {k: v.tolist() for k, v in per_frame.items()}, "mean": mean}
