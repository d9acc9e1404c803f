"""The quality score of a lifted frame and the gate that keeps or drops it (DESIGN.md section 8).

Every lifted frame gets a score in [0, 1] from the geometric quality terms of the warp lifter
(`WarpLifter.lift_detailed(...).quality`): how much of the driven face some reference saw and how
frontally, how much was inpainted (disoccluded) or filled (mouth/eye interiors never seen open),
how far the dense flow stretches or folds outside the face, and how far the head pose is from the
nearest reference. The terms are geometric (they do not look at the lifted pixels), so the same
score applies to any lifter's frame for the same references and driving kinematics.

The score is an estimate of the frame's head-region PSNR against ground truth, mapped linearly
to [0, 1] (`PSNR_RANGE`), from a linear model fitted on synthetic subjects
(`benchmarks/quality_calibration.py --dump` on seeds 8000-8039; its Spearman correlation with the
ground-truth PSNR is reported on seeds 8100-8139 in benchmarks/results/quality_calibration.json).
`QUALITY_THRESHOLD` is the default gate, chosen from that calibration (see benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np

from liftdata.errors import LiftdataError

__all__ = ["QUALITY_TERMS", "QUALITY_THRESHOLD", "PSNR_RANGE", "quality_score", "estimated_psnr", "GateResult",
           "gate", "GATE_POLICIES", "QualityError", "ScoredClip", "lift_scored"]

# head-region PSNR (dB) = intercept + sum(weight x term), least squares on 320 frames of the 40
# calibration subjects (seeds 8000-8039, 8 random frames each; benchmarks/quality_calibration.py
# --dump). Terms chosen by 2-fold (by subject) cross-validated Spearman among all 2-4 term subsets
# whose weights have the physically sensible sign; the best (0.865) is these two: the share of the
# face that is a mouth/eye opening no reference showed open, and the head-pose angle to the nearest
# reference. (Adding head_confidence: 0.861; seen_fraction / flow terms did not help once the
# whole-head proxy made the flow next to the face exact.)
_INTERCEPT = 27.006
_WEIGHTS: dict[str, float] = {"fill_fraction": -153.460, "pose_distance_deg": -0.10296}
QUALITY_TERMS = ("seen_fraction", "face_confidence", "fill_fraction", "disoccluded_fraction", "flow_stretch",
                 "flow_fold_fraction", "pose_distance_deg", "head_confidence")
PSNR_RANGE = (12.0, 36.0)
"""Estimated PSNR (dB) mapped to score 0 and 1."""
QUALITY_THRESHOLD = 0.425
"""Default gate (an estimated 22.2 dB): the smallest threshold (in steps of 0.025) that drops >= 80%
of the calibration frames whose true head PSNR is under 20 dB (it drops 87% of them, keeps 59% of
that deliberately hard mix; 6% of the kept frames are under 20 dB)."""
GATE_POLICIES = ("resample", "drop", "off")


class QualityError(LiftdataError, ValueError):
    """Bad quality terms or gate settings; the message names the input."""


def estimated_psnr(terms: Mapping[str, np.ndarray | float]) -> np.ndarray:  # [F] dB
    """The calibrated linear estimate of each frame's head-region PSNR from its quality terms."""
    missing = [k for k in _WEIGHTS if k not in terms]
    if missing:
        raise QualityError(f"quality terms: missing {missing} (from WarpLifter.lift_detailed)")
    out = np.full(np.shape(np.asarray(terms[next(iter(_WEIGHTS))], np.float64)) if _WEIGHTS else (), _INTERCEPT)
    for k, w in _WEIGHTS.items():
        out = out + w * np.asarray(terms[k], np.float64)
    return np.atleast_1d(out)


def quality_score(terms: Mapping[str, np.ndarray | float]) -> np.ndarray:  # [F] in [0, 1]
    """Score of each frame in [0, 1]: the estimated PSNR mapped linearly from `PSNR_RANGE`."""
    lo, hi = PSNR_RANGE
    return np.clip((estimated_psnr(terms) - lo) / (hi - lo), 0.0, 1.0)


@dataclass(frozen=True)
class GateResult:
    """Which frames of a clip pass the gate."""

    keep: np.ndarray  # [F] bool
    scores: np.ndarray  # [F]
    threshold: float

    @property
    def n_dropped(self) -> int:
        return int((~self.keep).sum())


def gate(scores: np.ndarray, threshold: float = QUALITY_THRESHOLD, policy: str = "resample") -> GateResult:
    """Keep frames scoring >= threshold (all of them with policy "off")."""
    if policy not in GATE_POLICIES:
        raise QualityError(f"gate policy: expected one of {GATE_POLICIES}, got {policy!r}")
    if not 0.0 <= threshold <= 1.0:
        raise QualityError(f"quality threshold: expected a score in [0, 1], got {threshold}")
    scores = np.asarray(scores, np.float64)
    keep = np.ones(len(scores), bool) if policy == "off" else scores >= threshold
    return GateResult(keep, scores, float(threshold))


class ScoredClip(NamedTuple):
    """A lifted clip with the quality score of every frame (see `lift_scored`)."""

    frames: np.ndarray  # [F, H, W, 3] uint8
    scores: np.ndarray  # [F] in [0, 1]
    terms: dict[str, np.ndarray]  # quality term -> [F]

    def meta(self, f: int, threshold: float = QUALITY_THRESHOLD) -> dict[str, Any]:
        """What a lifted sample's `meta["quality"]` records for frame f."""
        return {"score": round(float(self.scores[f]), 4), "threshold": float(threshold),
                "terms": {k: round(float(v[f]), 4) for k, v in self.terms.items()}}


def lift_scored(lifter: Any, references: Any, driving: Any, *, seed: int = 0) -> ScoredClip:
    """Lift one clip and score every frame.

    The warp lifter returns its quality terms with its frames (`lift_detailed`), a lifter with
    `lift_with_quality` (LiftAvatar: its warp guidance pass) returns them too; for any other
    lifter the terms come from the warp lifter's geometry for the same references and driving
    frames (an extra warp pass: cheap next to a diffusion lifter), since they do not depend on
    the lifted pixels.
    """
    from liftdata.lifters.warp import WarpLifter

    if isinstance(lifter, WarpLifter):
        details = lifter.lift_detailed(references, driving, seed=seed)
        frames, terms = details.frames, details.quality
    elif hasattr(lifter, "lift_with_quality"):
        frames, terms = lifter.lift_with_quality(references, driving, seed=seed)
    else:
        frames = lifter.lift(references, driving, seed=seed)
        terms = WarpLifter().lift_detailed(references, driving, seed=seed).quality
    return ScoredClip(np.asarray(frames), quality_score(terms), terms)
