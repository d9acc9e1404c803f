"""Which tracked frames are usable: as training samples, and as references for the lifter.

A frame is a usable **sample** when a face was found in it and its fit residual is not an outlier
of its capture (robust z-score over median / MAD, and at least `residual_ratio` x the median). A
usable **reference** must also be sharp: the variance of the Laplacian of the face region
(the fitted face's bounding box, resampled to 128 px so the measure does not depend on the face
size) is at least `blur_ratio` x the capture's median (motion blur and defocus lower it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from liftdata.capture import Capture

__all__ = ["QualityConfig", "FrameQuality", "frame_quality", "usable_frames", "face_sharpness"]


@dataclass
class QualityConfig:
    """Thresholds of `frame_quality`."""

    residual_z: float = 4.0  #: robust z-score of the landmark residual above which a fit is an outlier
    residual_ratio: float = 2.0  #: ... and only when the residual is also this many x the median
    blur_ratio: float = 0.4  #: sharpness below this x the capture's median: blurred (not a reference)


@dataclass(frozen=True)
class FrameQuality:
    """Per-frame quality flags of a capture ([T] each)."""

    face_found: np.ndarray
    residual_ok: np.ndarray
    sharpness: np.ndarray  #: variance of the Laplacian of the face region (grey levels^2)
    sharp: np.ndarray

    @property
    def sample(self) -> np.ndarray:  # [T] bool
        """Usable as a training sample: face found and fit not an outlier."""
        return self.face_found & self.residual_ok

    @property
    def reference(self) -> np.ndarray:  # [T] bool
        """Usable as a reference frame: a usable sample that is not blurred."""
        return self.sample & self.sharp

    def counts(self) -> dict[str, int]:
        return {"frames": len(self.face_found), "without_face": int((~self.face_found).sum()),
                "residual_outliers": int((self.face_found & ~self.residual_ok).sum()),
                "blurred": int((self.sample & ~self.sharp).sum()), "samples": int(self.sample.sum()),
                "references": int(self.reference.sum())}


def face_sharpness(frame: np.ndarray, points: np.ndarray, side: int = 128) -> float:
    """Variance of the Laplacian of the grey face region (bounding box of `points` [L, 2])."""
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    half, cx, cy = 0.5 * max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
    box = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
    warp = cv2.getAffineTransform(box, np.float32([[0, 0], [side, 0], [0, side]]))
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    crop = cv2.warpAffine(grey, warp, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return float(cv2.Laplacian(crop.astype(np.float32), cv2.CV_32F).var())


def _robust_ok(residual: np.ndarray, found: np.ndarray, cfg: QualityConfig) -> np.ndarray:
    """[T] bool: False where a found face's residual is an outlier (unknown residuals, NaN, pass)."""
    known = found & np.isfinite(residual)
    ok = np.ones(len(residual), bool)
    if known.sum() < 3:
        return ok
    r = residual[known]
    med = float(np.median(r))
    mad = 1.4826 * float(np.median(np.abs(r - med))) + 1e-6
    bad = ((r - med) / mad > cfg.residual_z) & (r > cfg.residual_ratio * med)
    ok[np.flatnonzero(known)[bad]] = False
    return ok


def frame_quality(capture: Capture, cfg: QualityConfig | None = None) -> FrameQuality:
    """Quality flags of every frame of a tracked capture (see the module docstring)."""
    cfg = cfg or QualityConfig()
    found = np.asarray(capture.face_found, bool)
    ok = _robust_ok(np.asarray(capture.landmark_residual, np.float64), found, cfg)
    with torch.no_grad():
        verts = capture.head_model.vertices(torch.as_tensor(capture.identity), capture.kinematics)
    uv = capture.camera.project(capture.head_model.landmarks(verts).numpy())[..., :2]
    sharpness = np.array([face_sharpness(np.asarray(capture.frames[t]), uv[t]) for t in range(len(capture))])
    med = float(np.median(sharpness[found])) if found.any() else 0.0
    return FrameQuality(found, ok, sharpness, sharpness >= cfg.blur_ratio * med)


def usable_frames(capture: Capture, reference: bool = False, cfg: QualityConfig | None = None) -> np.ndarray:
    """[T] bool: frames usable as training samples, or (`reference=True`) as references."""
    q = frame_quality(capture, cfg)
    return q.reference if reference else q.sample
