"""Coverage: how much of the head model's expression and pose space a set of frames covers.

`coverage(source, prior)` measures, for a set of frames (a capture, a plan, kinematics, or a
list of them, concatenated):
  fraction: the share of a FIXED set of prior samples (seeded; N(mean, covariance) clipped to
      the bounds) that lie within `radius` of some frame, in the prior's whitened expression
      space (identity covariance). The default radius is 0.6 sqrt(E) whitened units: with it, 1000
      independent prior samples cover about 64% of the fixed set for the builtin model (E = 33)
      while a 40-frame capture with a narrow expression range covers about 19%.
  expression_min / expression_max: the range covered per coefficient (named where the model
      names them), and `span` = covered range / (upper - lower).
  pose_min / pose_max: yaw, pitch, roll in degrees (R = R_y(yaw) R_x(pitch) R_z(roll), see
      `liftdata.samplers.pose`).
So `coverage(capture)` vs `coverage([capture, plan])` shows what a completion adds;
`plot_coverage` draws both (needs matplotlib: `pip install liftdata[viz]`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.linalg import solve_triangular
from scipy.spatial.transform import Rotation

from liftdata.kinematics import Kinematics
from liftdata.samplers.plan import Plan, PlanError

__all__ = ["CoverageReport", "coverage", "gather_kinematics", "prior_samples", "yaw_pitch_roll", "plot_coverage"]


def gather_kinematics(source: Any) -> Kinematics:
    """Kinematics of a capture, a plan, kinematics, or a list of those (concatenated in order)."""
    if isinstance(source, Kinematics):
        return source
    if isinstance(source, Plan):
        return source.kinematics()
    if isinstance(source, (list, tuple)):
        if not source:
            raise PlanError("coverage: empty list of sources")
        return Kinematics.concat([gather_kinematics(s) for s in source])
    if hasattr(source, "kinematics"):
        return source.kinematics
    raise PlanError(f"coverage: expected a Capture, Plan, Kinematics or a list of them, got {type(source).__name__}")


def _find_model(source: Any) -> Any:
    items = source if isinstance(source, (list, tuple)) else [source]
    return next((s.head_model for s in items if hasattr(s, "head_model")), None)


def yaw_pitch_roll(rotation: np.ndarray) -> np.ndarray:
    """[N, 3] axis-angle -> [N, 3] (yaw, pitch, roll) degrees, R = R_y(yaw) R_x(pitch) R_z(roll)."""
    return Rotation.from_rotvec(np.asarray(rotation, np.float64)).as_euler("YXZ", degrees=True)


def prior_samples(prior: Any, n_samples: int = 2000, seed: int = 0) -> np.ndarray:
    """[n_samples, E] fixed samples of the prior: N(mean, covariance), clipped to the bounds."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.asarray(prior.covariance, np.float64))
    z = rng.standard_normal((n_samples, len(prior.mean)))
    return np.clip(np.asarray(prior.mean, np.float64) + z @ chol.T, prior.lower, prior.upper)


def _whiten(prior: Any, x: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(np.asarray(prior.covariance, np.float64))
    return solve_triangular(chol, (np.asarray(x, np.float64) - prior.mean).T, lower=True).T


def nearest_distance(queries: np.ndarray, points: np.ndarray, block: int = 4096) -> np.ndarray:
    """[Q] Euclidean distance from each query [Q, D] to its nearest point [N, D] (blocked)."""
    best = np.full(len(queries), np.inf)
    q2 = (queries**2).sum(1)[:, None]
    for i in range(0, len(points), block):
        p = points[i:i + block]
        d2 = q2 + (p**2).sum(1)[None] - 2 * queries @ p.T
        best = np.minimum(best, d2.min(1))
    return np.sqrt(np.maximum(best, 0))


@dataclass(frozen=True)
class CoverageReport:
    """What a set of frames covers (see the module docstring)."""

    n_frames: int
    fraction: float
    radius: float
    n_samples: int
    names: tuple[str, ...]
    expression_min: np.ndarray  # [E]
    expression_max: np.ndarray  # [E]
    span: np.ndarray  # [E] covered range / (upper - lower)
    pose_min: np.ndarray  # [3] yaw, pitch, roll degrees
    pose_max: np.ndarray

    def range_of(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        return float(self.expression_min[i]), float(self.expression_max[i])

    @property
    def yaw_range(self) -> tuple[float, float]:
        return float(self.pose_min[0]), float(self.pose_max[0])

    @property
    def pitch_range(self) -> tuple[float, float]:
        return float(self.pose_min[1]), float(self.pose_max[1])

    @property
    def roll_range(self) -> tuple[float, float]:
        return float(self.pose_min[2]), float(self.pose_max[2])

    def to_dict(self) -> dict[str, Any]:
        return {"n_frames": self.n_frames, "fraction": self.fraction, "radius": self.radius,
                "n_samples": self.n_samples, "mean_span": float(self.span.mean()),
                "expression": {n: [float(a), float(b)] for n, a, b in zip(self.names, self.expression_min, self.expression_max)},
                "yaw": list(self.yaw_range), "pitch": list(self.pitch_range), "roll": list(self.roll_range)}

    def summary(self) -> str:
        return (f"{self.n_frames} frames: {100 * self.fraction:.1f}% of prior samples within r={self.radius:.2f}, "
                f"mean expression span {100 * self.span.mean():.1f}%, yaw [{self.pose_min[0]:.1f}, {self.pose_max[0]:.1f}]°, "
                f"pitch [{self.pose_min[1]:.1f}, {self.pose_max[1]:.1f}]°, roll [{self.pose_min[2]:.1f}, {self.pose_max[2]:.1f}]°")


def coverage(source: Any, prior: Any = None, *, radius: float | None = None, n_samples: int = 2000, seed: int = 0,
             names: Sequence[str] | None = None) -> CoverageReport:
    """Coverage of `source` (Capture | Plan | Kinematics | list of them) under `prior`.

    Args:
        prior: an `ExpressionPrior` or a head model; default: the source's capture's head model.
        radius: whitened radius; default 0.6 sqrt(E).
        n_samples, seed: the fixed prior sample set (keep them fixed to compare reports).
        names: names of the E coefficients (default: the model's, else "e0", "e1", ...).
    """
    model = prior if hasattr(prior, "expression_prior") else _find_model(source)
    if prior is None or hasattr(prior, "expression_prior"):
        if model is None:
            raise PlanError("coverage: pass prior= (an ExpressionPrior or head model) for kinematics or plans")
        prior = model.expression_prior()
    k = gather_kinematics(source)
    e = k.n_expression
    if len(prior.mean) != e:
        raise PlanError(f"coverage: the prior has {len(prior.mean)} coefficients, the frames have {e}")
    names = tuple(names or getattr(model, "expression_names", None) or [f"e{i}" for i in range(e)])
    radius = 0.6 * math.sqrt(e) if radius is None else float(radius)
    samples = _whiten(prior, prior_samples(prior, n_samples, seed))
    dist = nearest_distance(samples, _whiten(prior, k.expression))
    expr = k.expression.astype(np.float64)
    ypr = yaw_pitch_roll(k.rotation)
    return CoverageReport(len(k), float((dist <= radius).mean()), radius, n_samples, names, expr.min(0), expr.max(0),
                          np.ptp(expr, 0) / (np.asarray(prior.upper) - np.asarray(prior.lower)), ypr.min(0), ypr.max(0))


def plot_coverage(before: Any, after: Any, path: str | Path, prior: Any = None, *, n_samples: int = 2000,
                  seed: int = 0) -> Path:
    """Save a PNG of the covered space before / after a completion.

    Panels: the expressions in the first two principal axes of the (whitened) prior samples;
    the covered range of every coefficient before and after; yaw vs pitch.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plot_coverage needs matplotlib: pip install 'liftdata[viz]'") from e
    rep_b, rep_a = coverage(before, prior, n_samples=n_samples, seed=seed), coverage(after, prior, n_samples=n_samples, seed=seed)
    model = prior if hasattr(prior, "expression_prior") else _find_model(before) or _find_model(after)
    prior = model.expression_prior() if prior is None or hasattr(prior, "expression_prior") else prior
    kb, ka = gather_kinematics(before), gather_kinematics(after)
    samples = _whiten(prior, prior_samples(prior, n_samples, seed))
    centre = samples.mean(0)
    axes = np.linalg.svd(samples - centre, full_matrices=False)[2][:2]
    proj = lambda k: (_whiten(prior, k.expression) - centre) @ axes.T  # noqa: E731
    fig, ax = plt.subplots(1, 3, figsize=(18, 6), gridspec_kw={"width_ratios": [1, 1.2, 1]})
    s = (samples - centre) @ axes.T
    ax[0].scatter(s[:, 0], s[:, 1], s=4, c="0.8", label="prior samples")
    ax[0].scatter(*proj(ka).T, s=5, c="tab:orange", alpha=0.5, label=f"after ({rep_a.fraction:.1%} covered)")
    ax[0].scatter(*proj(kb).T, s=8, c="tab:blue", label=f"before ({rep_b.fraction:.1%} covered)")
    ax[0].set(title="expressions (whitened, prior PCA)", xlabel="PC 1", ylabel="PC 2")
    ax[0].legend(loc="upper right", fontsize=8)
    y = np.arange(len(rep_b.names))
    ax[1].barh(y + 0.2, rep_a.expression_max - rep_a.expression_min, left=rep_a.expression_min, height=0.4,
               color="tab:orange", label="after")
    ax[1].barh(y - 0.2, rep_b.expression_max - rep_b.expression_min, left=rep_b.expression_min, height=0.4,
               color="tab:blue", label="before")
    ax[1].set_yticks(y, rep_b.names, fontsize=6)
    ax[1].set(title="covered range per coefficient", xlim=(float(np.min(prior.lower)), float(np.max(prior.upper))))
    ax[1].invert_yaxis()
    ax[1].legend(loc="lower right", fontsize=8)
    for k, c, label in ((ka, "tab:orange", "after"), (kb, "tab:blue", "before")):
        ypr = yaw_pitch_roll(k.rotation)
        ax[2].scatter(ypr[:, 0], ypr[:, 1], s=5, c=c, alpha=0.6, label=label)
    ax[2].set(title="head pose", xlabel="yaw (deg)", ylabel="pitch (deg)")
    ax[2].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
