"""Composition of samplers: `a + b`, `mix([...], weights)`, `a * b`, `.filter(...)`, `.take(n)`.

Frame counts, for `sample(capture, n, rng)`:
  `a + b + c` (`Concat`, flattened: (a + b) + c == a + (b + c)) splits n equally, then behaves as
      `mix([a, b, c])`: counts differ by at most 1, the extra frames going to the earliest parts;
      clips come in part order (all of a's, then b's ...).
  `mix(parts, weights)` splits n by weight with largest-remainder (Hamilton) rounding in exact
      rational arithmetic (ties: the earlier part); a part given 0 frames contributes no clip.
  `a * b` (`Product`) has exactly n frames: the expression sampler's clips, each taking rotation,
      translation and neck from the pose sampler's clip at the same position (expression, jaw and
      eyes from the expression side). Operand order does not matter: roles come from `provides`.
  `s.filter(pred)` keeps the clips with pred(clip) true; it resamples (fresh seeds) until n frames
      are kept, at most `max_tries` times, then raises PlanError; the predicate judges whole clips,
      then the result is cut to n frames (which may shorten the last kept clip).
  `s.take(m)` plans min(n, m) frames.
Each part gets its own seed drawn from `rng` in part order (drawn even for parts given 0 frames),
so a plan is a pure function of (sampler, capture, n, seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from liftdata.kinematics import Kinematics
from liftdata.samplers.base import SEED_HIGH, LeafSampler, Sampler, check_request
from liftdata.samplers.expression import largest_remainder
from liftdata.samplers.plan import Clip, Plan, PlanError, concat_plans
from liftdata.samplers.references import ReferencePolicy, usable_reference_frames

__all__ = ["Concat", "Mix", "Product", "Filtered", "Take", "mix"]


def _child(rng: np.random.Generator) -> np.random.Generator:
    return np.random.default_rng(int(rng.integers(SEED_HIGH)))


def _split(parts: Sequence[Sampler], weights: Sequence[float], capture: Any, n: int,
           rng: np.random.Generator) -> Plan:
    counts = largest_remainder(n, weights)
    rngs = [_child(rng) for _ in parts]
    return concat_plans([p.sample(capture, int(c), r) for p, c, r in zip(parts, counts, rngs) if c > 0])


def _common_role(parts: Sequence[Sampler]) -> str:
    roles = {p.provides for p in parts}
    return roles.pop() if len(roles) == 1 else "both"


@dataclass(frozen=True)
class Mix(Sampler):
    """`parts` sharing n frames in proportion to `weights` (see the module docstring)."""

    parts: tuple[Sampler, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not self.parts or not all(isinstance(p, Sampler) for p in self.parts):
            raise PlanError(f"mix: expected a non-empty list of samplers, got {self.parts!r}")
        if len(self.weights) != len(self.parts):
            raise PlanError(f"mix: {len(self.parts)} samplers but {len(self.weights)} weights")
        if any(not np.isfinite(w) or w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise PlanError(f"mix: weights must be finite, non-negative and not all 0, got {list(self.weights)}")

    @property
    def provides(self) -> str:  # type: ignore[override]
        return _common_role(self.parts)

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        check_request(capture, n, rng)
        return _split(self.parts, self.weights, capture, int(n), rng)


def mix(samplers: Sequence[Sampler], weights: Sequence[float] | None = None) -> Mix:
    """A sampler splitting n frames between `samplers` by `weights` (default: equal)."""
    samplers = tuple(samplers)
    return Mix(samplers, tuple(weights) if weights is not None else (1.0,) * len(samplers))


@dataclass(frozen=True)
class Concat(Sampler):
    """`a + b + ...`: equal shares, clips in part order."""

    parts: tuple[Sampler, ...]

    @classmethod
    def of(cls, a: Sampler, b: Sampler) -> Concat:
        flat = lambda s: s.parts if isinstance(s, Concat) else (s,)  # noqa: E731
        return cls(flat(a) + flat(b))

    @property
    def provides(self) -> str:  # type: ignore[override]
        return _common_role(self.parts)

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        check_request(capture, n, rng)
        return _split(self.parts, [1.0] * len(self.parts), capture, int(n), rng)


@dataclass(frozen=True)
class Product(Sampler):
    """`a * b`: expression from the operand that provides it, pose from the other, clip by clip.

    The expression side is sampled first; a leaf pose side then makes one clip per expression clip
    (of the same length, so `clip_length` of the pose side must be >= the expression side's); a
    composite pose side must produce the same clip lengths for n, or PlanError says so.
    Every combined clip gets references from `references` (over the combined kinematics).
    """

    a: Sampler
    b: Sampler
    references: ReferencePolicy = field(default_factory=ReferencePolicy)
    name: ClassVar[str] = "product"
    provides: ClassVar[str] = "both"

    def __post_init__(self) -> None:
        roles = {self.a.provides, self.b.provides}
        if roles != {"expression", "pose"}:
            raise PlanError(f"a * b: needs one expression sampler and one pose sampler, got "
                            f"{type(self.a).__name__} ({self.a.provides}) and {type(self.b).__name__} ({self.b.provides})")

    def _roles(self) -> tuple[Sampler, Sampler]:
        return (self.a, self.b) if self.a.provides == "expression" else (self.b, self.a)

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        check_request(capture, n, rng)
        expr_side, pose_side = self._roles()
        seed = int(rng.integers(SEED_HIGH))
        r_expr, r_pose, r_refs = (_child(rng) for _ in range(3))
        pe = expr_side.sample(capture, int(n), r_expr)
        lengths = [len(c) for c in pe.clips]
        if isinstance(pose_side, LeafSampler):
            pp = pose_side.sample_lengths(capture, lengths, int(r_pose.integers(SEED_HIGH)))
        else:
            pp = pose_side.sample(capture, int(n), r_pose)
            if [len(c) for c in pp.clips] != lengths:
                raise PlanError(f"a * b: clip lengths differ: expression side {lengths}, pose side "
                                f"{[len(c) for c in pp.clips]}; use one clip_length on both sides")
        refs = self.references.prepare(capture.kinematics, r_refs, usable_reference_frames(capture))
        clips = []
        for ce, cp in zip(pe.clips, pp.clips):
            k = _combine(ce.kinematics, cp.kinematics)
            prov = {"sampler": self.name, "params": {"expression": ce.provenance, "pose": cp.provenance}, "seed": seed}
            clips.append(Clip(k, refs(k), prov))
        return Plan(tuple(clips), pe.lower, pe.upper)


def _combine(expr: Kinematics, pose: Kinematics) -> Kinematics:
    return expr.replace(rotation=pose.rotation, translation=pose.translation, neck=pose.neck)


@dataclass(frozen=True)
class Filtered(Sampler):
    """Clips of `base` with predicate(clip) true, resampled until n frames (see module docstring)."""

    base: Sampler
    predicate: Callable[[Clip], bool]
    max_tries: int = 10

    @property
    def provides(self) -> str:  # type: ignore[override]
        return self.base.provides

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        check_request(capture, n, rng)
        kept: list[Plan] = []
        total = 0
        for _ in range(self.max_tries):
            if total >= n:
                break
            plan = self.base.sample(capture, int(n), _child(rng)).filter(self.predicate)
            kept.append(plan)
            total += plan.n
        if total < n:
            raise PlanError(f"filter: only {total} of {n} frames passed the predicate after {self.max_tries} "
                            f"tries of {type(self.base).__name__}; loosen the predicate or raise max_tries")
        return concat_plans(kept).take(int(n)) if kept else Plan(())


@dataclass(frozen=True)
class Take(Sampler):
    """At most `n` frames of `base`."""

    base: Sampler
    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 0:
            raise PlanError(f"take: n must be a non-negative integer, got {self.n!r}")

    @property
    def provides(self) -> str:  # type: ignore[override]
        return self.base.provides

    def sample(self, capture: Any, n: int, rng: np.random.Generator) -> Plan:
        check_request(capture, n, rng)
        return self.base.sample(capture, min(int(n), int(self.n)), rng)
