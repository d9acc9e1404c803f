"""Reference selection: which K captured frames a clip's lifter call is conditioned on.

The paper picks references by k-means over the capture's kinematics so that they cover it
("kmeans"); "nearest" picks the K observed frames closest to the clip's own kinematics.

Features (`kinematic_features`): expression and global rotation, each column standardized by the
capture's own spread, and each block scaled by 1/sqrt(width) so expression and pose weigh the
same however many coefficients the head model has. Distances are plain numpy sums of squared
differences (no BLAS), so the choice is bit-identical across machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from liftdata.kinematics import Kinematics
from liftdata.samplers.plan import PlanError

__all__ = ["ReferencePolicy", "select_references", "kinematic_features", "kmeans", "usable_reference_frames",
           "usable_sample_frames"]

METHODS = ("kmeans", "nearest")


def _scales(observed: Kinematics) -> tuple[np.ndarray, np.ndarray]:
    feats = np.concatenate([observed.expression, observed.rotation], 1).astype(np.float64)
    std = feats.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    e = observed.n_expression
    block = np.concatenate([np.full(e, 1 / np.sqrt(e)), np.full(3, 1 / np.sqrt(3))])
    return feats.mean(0), block / std


def kinematic_features(kinematics: Kinematics, observed: Kinematics) -> np.ndarray:
    """[T, E + 3] features of `kinematics`, standardized with the statistics of `observed`."""
    mean, scale = _scales(observed)
    feats = np.concatenate([kinematics.expression, kinematics.rotation], 1).astype(np.float64)
    return (feats - mean) * scale


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [N, D], [M, D] -> [N, M]
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """[N, D] points -> [k, D] centroids: k-means++ seeding, then Lloyd iterations (k <= N)."""
    centroids = [points[int(rng.integers(len(points)))]]
    for _ in range(1, k):  # k-means++: next seed with probability ~ squared distance
        d = _sq_dist(points, np.array(centroids)).min(1)
        total = d.sum()
        i = int(rng.integers(len(points))) if total <= 0 else int(np.searchsorted(np.cumsum(d), rng.uniform(0, total)))
        centroids.append(points[min(i, len(points) - 1)])
    c = np.array(centroids)
    for _ in range(iters):
        label = _sq_dist(points, c).argmin(1)
        new = np.array([points[label == j].mean(0) if (label == j).any() else c[j] for j in range(k)])
        if np.array_equal(new, c):
            break
        c = new
    return c


def _nearest_distinct(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target in order, the nearest point not already taken."""
    d = _sq_dist(targets, points)
    taken: list[int] = []
    for row in d:
        row = row.copy()
        row[taken] = np.inf
        taken.append(int(row.argmin()))
    return np.array(taken, np.int64)


def select_references(observed: Kinematics, k: int = 5, method: str = "kmeans", target: Kinematics | None = None,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """K distinct frame indices of `observed` to condition a clip on.

    Args:
        observed: [T] the capture's kinematics.
        k: number of references; a capture with fewer than k frames gives all of its frames.
        method: "kmeans" (frame nearest each k-means centroid: covers the capture) or "nearest"
            (the k frames nearest to the mean features of `target`).
        target: [F] the clip's kinematics (needed by "nearest").
        rng: seeds k-means++ (needed by "kmeans").
    Returns:
        [min(k, T)] int64 distinct indices (kmeans: in centroid order; nearest: nearest first).
    """
    if method not in METHODS:
        raise ValueError(f"reference method: expected one of {METHODS}, got {method!r}")
    if k < 1:
        raise ValueError(f"reference k: must be >= 1, got {k}")
    feats = kinematic_features(observed, observed)
    k = min(k, len(observed))
    if method == "kmeans":
        if rng is None:
            raise ValueError("reference method 'kmeans' needs an rng")
        return _nearest_distinct(feats, kmeans(feats, k, rng))
    if target is None:
        raise ValueError("reference method 'nearest' needs the clip's target kinematics")
    centre = kinematic_features(target, observed).mean(0, keepdims=True)
    d = _sq_dist(centre, feats)[0]
    return np.argsort(d, kind="stable")[:k].astype(np.int64)


@dataclass(frozen=True)
class ReferencePolicy:
    """How every clip of a sampler gets its K reference frames (K=5, k-means as in the paper)."""

    k: int = 5
    method: str = "kmeans"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"ReferencePolicy.method: expected one of {METHODS}, got {self.method!r}")
        if self.k < 1:
            raise ValueError(f"ReferencePolicy.k: must be >= 1, got {self.k}")

    def prepare(self, observed: Kinematics, rng: np.random.Generator, usable: np.ndarray | None = None
                ) -> Callable[[Kinematics], tuple[int, ...]]:
        """A function clip kinematics -> reference indices (k-means runs once per plan).

        `usable` ([T] bool, see `usable_reference_frames`): only these frames may be references.
        """
        candidates = np.arange(len(observed)) if usable is None else np.flatnonzero(np.asarray(usable, bool))
        if len(candidates) == 0:
            raise PlanError("capture: no frame can be a reference (no face found, or every fit is an outlier)")
        pool = observed if len(candidates) == len(observed) else observed[candidates]
        if self.method == "kmeans":
            fixed = tuple(candidates[select_references(pool, self.k, "kmeans", rng=rng)].tolist())
            return lambda clip: fixed
        feats = kinematic_features(pool, pool)
        mean, scale = _scales(pool)
        k = min(self.k, len(pool))

        def nearest(clip: Kinematics) -> tuple[int, ...]:
            c = ((np.concatenate([clip.expression, clip.rotation], 1).astype(np.float64) - mean) * scale).mean(0)
            return tuple(candidates[np.argsort(((feats - c) ** 2).sum(1), kind="stable")[:k]].tolist())

        return nearest


def usable_sample_frames(capture: object) -> np.ndarray | None:
    """[T] bool: frames fit to be training samples: a face was found and its fit is not a residual
    outlier (`liftdata.track.quality`); None when the capture records neither (every frame is usable)."""
    found = getattr(capture, "face_found", None)
    if found is None:
        return None
    from liftdata.track.quality import QualityConfig, _robust_ok

    found = np.asarray(found, bool)
    residual = getattr(capture, "landmark_residual", None)
    residual = np.full(len(found), np.nan) if residual is None else np.asarray(residual, np.float64)
    return found & _robust_ok(residual, found, QualityConfig())


def usable_reference_frames(capture: object) -> np.ndarray | None:
    """[T] bool: frames a plan may use as references: usable samples (`usable_sample_frames`) that are
    not blurred, where tracking recorded the face sharpness (`extra["tracking"]["sharpness"]`,
    variance of the Laplacian of the face region): at least `QualityConfig.blur_ratio` x the
    capture's median. None when the capture records none of it (every frame is usable)."""
    usable = usable_sample_frames(capture)
    sharpness = ((getattr(capture, "extra", None) or {}).get("tracking") or {}).get("sharpness")
    if usable is None or sharpness is None or len(sharpness) != len(usable):
        return usable
    from liftdata.track.quality import QualityConfig

    s = np.array([np.nan if v is None else v for v in sharpness], np.float64)
    known = usable & np.isfinite(s)
    if not known.any():
        return usable
    sharp = s >= QualityConfig().blur_ratio * float(np.median(s[known]))
    return usable & (sharp | ~np.isfinite(s)) if (usable & sharp).any() else usable
