"""Test splits and expression extremeness.

* `monocular_split(n, protocol)`: the standard monocular self-reenactment splits, frames in
  temporal order: "last30" (last 30% are test; VHAP monocular), "last350" (INSTA,
  SplattingAvatar, GaussianBlendshapes), "last500" (FlashAvatar).
* Extremeness of a frame = the Mahalanobis distance of its (expression, jaw) vector from the
  training frames' distribution: d = sqrt((x - mu)^T (S + lambda I)^-1 (x - mu)), mu and S the
  mean and population covariance of the training vectors, lambda = 1e-3 * trace(S) / D (so
  coefficients that never move in training do not make the matrix singular).
* `extreme_split(kin, train_kin, quantile)`: the frames more extreme than `quantile` of the
  training frames themselves (their own distances), e.g. 0.95.
* Bins for reports: edges at the 50th, 90th and 99th percentile of the training frames'
  distances: "<=p50", "p50-p90", "p90-p99", ">p99" (in-distribution -> beyond the training set).
"""

from __future__ import annotations

import math

import numpy as np

from liftdata.kinematics import Kinematics

__all__ = ["SPLITS", "monocular_split", "expression_features", "ExtremenessModel", "extreme_split",
           "BIN_PERCENTILES", "bin_labels"]

SPLITS = ("last30", "last350", "last500")
BIN_PERCENTILES = (50.0, 90.0, 99.0)


def monocular_split(n: int, protocol: str = "last30") -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of `n` frames in temporal order under `protocol`."""
    if protocol not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {protocol!r}")
    n_test = math.ceil(0.3 * n) if protocol == "last30" else int(protocol[4:])
    if n_test >= n or n_test <= 0:
        raise ValueError(f"split {protocol!r}: needs more than {n_test} frames, got {n}")
    idx = np.arange(n)
    return idx[:n - n_test], idx[n - n_test:]


def expression_features(k: Kinematics) -> np.ndarray:  # [T, E + 3] float64
    """What extremeness is measured on: expression coefficients and the jaw rotation."""
    return np.concatenate([k.expression, k.jaw], axis=1).astype(np.float64)


class ExtremenessModel:
    """Mean and regularized inverse covariance of the training frames' (expression, jaw)."""

    def __init__(self, train: Kinematics):
        x = expression_features(train)
        if len(x) < 2:
            raise ValueError(f"training kinematics: need at least 2 frames, got {len(x)}")
        self.head_model = (train.head_model, train.head_model_version, train.n_expression)
        self.mean = x.mean(axis=0)
        cov = np.cov(x, rowvar=False, bias=True)
        ridge = 1e-3 * max(np.trace(cov) / len(cov), 1e-12)
        self.precision = np.linalg.inv(cov + ridge * np.eye(len(cov)))
        self.train_distances = self.distance(train)
        self.edges = np.percentile(self.train_distances, BIN_PERCENTILES)

    def distance(self, k: Kinematics) -> np.ndarray:  # [T]
        """Mahalanobis distance of each frame from the training distribution."""
        if (k.head_model, k.head_model_version, k.n_expression) != self.head_model:
            raise ValueError(f"kinematics of {k.head_model} v{k.head_model_version} (E={k.n_expression}) cannot be "
                             f"compared with training kinematics of {self.head_model}")
        d = expression_features(k) - self.mean
        return np.sqrt(np.einsum("ti,ij,tj->t", d, self.precision, d))

    def bins(self, distances: np.ndarray) -> np.ndarray:  # [T] int in 0..3
        """Bin index of each distance (edges at the training percentiles)."""
        return np.searchsorted(self.edges, distances, side="left")


def bin_labels() -> list[str]:
    p = [f"p{q:g}" for q in BIN_PERCENTILES]
    return [f"<={p[0]}"] + [f"{a}-{b}" for a, b in zip(p, p[1:])] + [f">{p[-1]}"]


def extreme_split(kinematics: Kinematics, train_kinematics: Kinematics, quantile: float = 0.95) -> np.ndarray:
    """Indices of the frames of `kinematics` farther from the training distribution than the
    `quantile` of the training frames' own distances."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile: expected a value in [0, 1), got {quantile}")
    model = ExtremenessModel(train_kinematics)
    threshold = np.quantile(model.train_distances, quantile)
    return np.flatnonzero(model.distance(kinematics) > threshold)
