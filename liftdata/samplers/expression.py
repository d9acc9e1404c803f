"""Expression samplers: interpolation between (and beyond) observed frames, and extreme mining.

Both work in the head model's coefficient space and clip every frame to the prior's bounds.
Distances between expressions are measured in the prior's whitened space
(`Context.whiten`: identity covariance), so "far apart" means "far apart for this model".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from liftdata.kinematics import Kinematics
from liftdata.samplers.base import Context, LeafSampler, assemble, distinct_choice, lower_times, pulse, ramp
from liftdata.samplers.plan import PlanError, RepeatedClipsWarning
from liftdata.samplers.references import ReferencePolicy

__all__ = ["ExpressionInterpolation", "ExtremeExpressionMining", "DEFAULT_TARGETS", "farthest_point_order"]

#: Named extremes and plausible combinations (builtin / ARKit names); a target is kept when the
#: model has all of its names.
DEFAULT_TARGETS: tuple[tuple[str, ...], ...] = (
    ("jawOpen",), ("jawOpen", "mouthFunnel"), ("mouthSmileLeft", "mouthSmileRight"), ("mouthSmileLeft",),
    ("mouthSmileRight",), ("mouthFrownLeft", "mouthFrownRight"), ("mouthPucker",), ("mouthFunnel",),
    ("mouthStretchLeft", "mouthStretchRight"), ("mouthPressLeft", "mouthPressRight"), ("jawLeft",), ("jawRight",),
    ("mouthLeft",), ("mouthRight",), ("mouthUpperUpLeft", "mouthUpperUpRight"),
    ("mouthLowerDownLeft", "mouthLowerDownRight"), ("eyeBlinkLeft", "eyeBlinkRight"), ("eyeBlinkLeft",),
    ("eyeBlinkRight",), ("eyeWideLeft", "eyeWideRight"), ("eyeSquintLeft", "eyeSquintRight"), ("browInnerUp",),
    ("browOuterUpLeft", "browOuterUpRight"), ("browDownLeft", "browDownRight"), ("cheekPuff",),
    ("noseSneerLeft", "noseSneerRight"),
)


def farthest_point_order(points: np.ndarray, m: int, start: int) -> np.ndarray:
    """Indices of m points chosen greedily, each the farthest from those already chosen (ties: lowest index)."""
    chosen = [start]
    d = ((points - points[start]) ** 2).sum(1)
    for _ in range(1, m):
        i = int(d.argmax())
        chosen.append(i)
        d = np.minimum(d, ((points - points[i]) ** 2).sum(1))
    return np.array(chosen, np.int64)


@dataclass(frozen=True)
class ExpressionInterpolation(LeafSampler):
    """Clips that move from one observed expression to another, and optionally beyond both.

    Each clip eases (smoothstep) along e(w) = e_a + w (e_b - e_a) with w from -x to 1 + x, where
    x = `extrapolation`, then clips to the bounds. Pairs (a, b):
      "spread": the anchors are observed frames picked by farthest-point sampling in whitened
        expression space (from a random first frame); pairs are the anchor pairs farthest apart
        first, visited in a random order and direction;
      "random": distinct random pairs of observed frames.
    Pose (rotation, translation, jaw, neck, eyes) is interpolated between a and b (weights
    clipped to [0, 1]: pose never extrapolates) or held at a's ("hold").
    Distinct clips: at most T (T - 1) / 2 pairs for T observed frames; beyond that clips repeat
    (RepeatedClipsWarning).
    """

    clip_length: int = 21
    extrapolation: float = 0.0
    pairs: str = "spread"
    pose: str = "interpolate"
    references: ReferencePolicy = field(default_factory=ReferencePolicy)
    name: ClassVar[str] = "expression_interpolation"
    provides: ClassVar[str] = "expression"

    def __post_init__(self) -> None:
        self._check_clip_length()
        if not self.extrapolation >= 0:
            raise PlanError(f"ExpressionInterpolation.extrapolation: must be >= 0, got {self.extrapolation}")
        if self.pairs not in ("spread", "random"):
            raise PlanError(f"ExpressionInterpolation.pairs: expected 'spread' or 'random', got {self.pairs!r}")
        if self.pose not in ("interpolate", "hold"):
            raise PlanError(f"ExpressionInterpolation.pose: expected 'interpolate' or 'hold', got {self.pose!r}")

    def check_capture(self, ctx: Context) -> None:
        if len(ctx.observed) < 2:
            raise PlanError("ExpressionInterpolation: the capture needs at least 2 frames to interpolate between")

    def capacity(self, ctx: Context) -> int:
        t = len(ctx.observed)
        return t * (t - 1) // 2

    def _pairs(self, ctx: Context, n_clips: int, rng: np.random.Generator) -> np.ndarray:  # -> [n_clips, 2]
        t = len(ctx.observed)
        if self.pairs == "random":
            flat = distinct_choice(rng, t * (t - 1), n_clips)  # ordered pairs a != b
            a, r = np.divmod(flat, t - 1)
            return np.stack([a, r + (r >= a)], 1)
        m = min(t, math.ceil((1 + math.sqrt(1 + 8 * n_clips)) / 2))  # m (m - 1) / 2 >= n_clips
        points = ctx.whiten(ctx.observed.expression)
        anchors = farthest_point_order(points, m, int(rng.integers(t)))
        i, j = np.triu_indices(m, 1)
        dist = ((points[anchors[i]] - points[anchors[j]]) ** 2).sum(1)
        order = np.lexsort((np.arange(len(i)), -dist))  # farthest first, ties by position
        picked = order[np.arange(n_clips) % len(order)]
        pairs = np.stack([anchors[i[picked]], anchors[j[picked]]], 1)[rng.permutation(n_clips)]
        flip = rng.random(n_clips) < 0.5
        pairs[flip] = pairs[flip][:, ::-1]
        return pairs

    def _clips(self, ctx: Context, n_clips: int, rng: np.random.Generator) -> list[Kinematics]:
        pairs = self._pairs(ctx, n_clips, rng)
        w = ramp(self.clip_length, -self.extrapolation, 1.0 + self.extrapolation)  # [F]
        pose_w = np.clip(w, 0.0, 1.0)
        e = ctx.observed.expression.astype(np.float64)
        out = []
        for a, b in pairs:
            expr = e[a] + w[:, None] * (e[b] - e[a])
            other = None if self.pose == "hold" else [b]
            out.append(assemble(ctx, expr, [a], pose_w, other))
        return out


@dataclass(frozen=True)
class ExtremeExpressionMining(LeafSampler):
    """Clips that ramp from an observed expression to an extreme where the capture is thin, and back.

    Named mode (models with `expression_names`, `targets` None or a list of names / name tuples):
      each target sets its coefficients to lower + strength (upper - lower) (1.0 = the bound).
      Thinness of a target = how far the capture's maximum of its coefficients falls short of
      that value; clips go to targets in proportion to it (largest remainder; evenly if the
      capture already reaches every target), each from one of the observed frames lowest in the
      target's coefficients. Distinct clips: T start frames per target; a target given more
      clips than that repeats them (RepeatedClipsWarning naming the target).
    Prior mode (`targets="prior"`, and FLAME-like models without names): candidates are prior
      directions at whitened radius strength * sqrt(E) (clipped to the bounds); the ones farthest
      (whitened) from every observed frame win; each clip starts at the observed frame nearest
      its candidate.
    Trajectory: smoothstep up, `hold` frames at the extreme (default clip_length // 5),
    smoothstep down; pose held from the start frame.
    """

    clip_length: int = 21
    targets: Sequence[str | Sequence[str]] | str | None = None
    strength: float = 1.0
    hold: int | None = None
    references: ReferencePolicy = field(default_factory=ReferencePolicy)
    name: ClassVar[str] = "extreme_expression_mining"
    provides: ClassVar[str] = "expression"

    def __post_init__(self) -> None:
        self._check_clip_length(3)
        if not 0 < self.strength <= 1:
            raise PlanError(f"ExtremeExpressionMining.strength: must be in (0, 1], got {self.strength}")
        if self.hold is not None and not 0 <= self.hold <= self.clip_length - 2:
            raise PlanError(f"ExtremeExpressionMining.hold: must be in [0, clip_length - 2], got {self.hold}")
        if isinstance(self.targets, (list, tuple)):
            object.__setattr__(self, "targets", tuple((t,) if isinstance(t, str) else tuple(t) for t in self.targets))
        elif self.targets not in (None, "prior"):
            raise PlanError(f"ExtremeExpressionMining.targets: expected None, 'prior' or a list of names, got {self.targets!r}")

    @property
    def _hold(self) -> int:
        return self.clip_length // 5 if self.hold is None else self.hold

    def _named_targets(self, ctx: Context) -> list[np.ndarray] | None:
        if self.targets == "prior" or ctx.names is None:
            if isinstance(self.targets, tuple):
                raise PlanError("ExtremeExpressionMining.targets: this head model has no expression names; "
                                "use targets=None or 'prior'")
            return None
        index = {n: i for i, n in enumerate(ctx.names)}
        if self.targets is None:
            return [np.array([index[n] for n in t]) for t in DEFAULT_TARGETS if all(n in index for n in t)]
        unknown = sorted({n for t in self.targets for n in t if n not in index})
        if unknown:
            raise PlanError(f"ExtremeExpressionMining.targets: unknown expression name(s) {unknown}; known: {list(ctx.names)}")
        return [np.array([index[n] for n in t]) for t in self.targets]

    def _clips(self, ctx: Context, n_clips: int, rng: np.random.Generator) -> list[Kinematics]:
        named = self._named_targets(ctx)
        starts, peaks = (self._named_plan(ctx, named, n_clips, rng) if named is not None
                         else self._prior_plan(ctx, n_clips, rng))
        w = pulse(self.clip_length, self._hold)[:, None]  # [F, 1]
        e = ctx.observed.expression.astype(np.float64)
        return [assemble(ctx, e[s] + w * (p - e[s]), [s]) for s, p in zip(starts, peaks)]

    def _named_plan(self, ctx: Context, targets: list[np.ndarray], n_clips: int, rng: np.random.Generator):
        e = ctx.observed.expression.astype(np.float64)
        extreme = ctx.lower + self.strength * (ctx.upper - ctx.lower)
        gaps = np.array([max(0.0, float((extreme[t] - e[:, t].max(0)).mean())) for t in targets])
        counts = largest_remainder(n_clips, gaps if gaps.sum() > 0 else np.ones(len(targets)))
        starts, peaks = [], []
        for t, c in zip(targets, counts):
            if c == 0:
                continue
            if c > len(e):
                names = [ctx.names[i] for i in t]
                warnings.warn(f"ExtremeExpressionMining: target {names} gets {c} clips but the capture has only "
                              f"{len(e)} start frames; clips repeat", RepeatedClipsWarning, stacklevel=5)
            low_first = np.argsort(e[:, t].sum(1), kind="stable")  # frames lowest in the target first
            pool = low_first[: max(1, min(len(e), max(int(c), len(e) // 4)))]
            for s in pool[distinct_choice(rng, len(pool), int(c))]:
                peak = e[s].copy()
                peak[t] = extreme[t]
                starts.append(int(s))
                peaks.append(peak)
        order = rng.permutation(len(starts))
        return [starts[i] for i in order], [peaks[i] for i in order]

    def _prior_plan(self, ctx: Context, n_clips: int, rng: np.random.Generator):
        dim = len(ctx.mean)
        z = rng.normal(size=(4 * n_clips, dim))
        z *= self.strength * math.sqrt(dim) / np.sqrt((z**2).sum(1, keepdims=True))
        cand = ctx.bounded(ctx.mean + lower_times(ctx.chol, z))  # [4n, E]
        obs = ctx.whiten(ctx.observed.expression)
        wc = ctx.whiten(cand)
        d = np.stack([((obs - c) ** 2).sum(1) for c in wc])  # [4n, T]
        best = np.argsort(-d.min(1), kind="stable")[:n_clips]
        return [int(d[i].argmin()) for i in best], [cand[i] for i in best]


def largest_remainder(total: int, weights: np.ndarray | Sequence[float]) -> np.ndarray:
    """Split `total` into integer counts proportional to `weights` (Hamilton's method; ties: lower index)."""
    from fractions import Fraction

    w = [Fraction(float(x)) for x in weights]
    if any(x < 0 for x in w) or sum(w) == 0:
        raise PlanError(f"weights: need non-negative weights with a positive sum, got {list(map(float, weights))}")
    quotas = [total * x / sum(w) for x in w]
    counts = [int(q) for q in quotas]
    rest = total - sum(counts)
    order = sorted(range(len(w)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return np.array(counts, np.int64)
