"""Samplers: plan the kinematic-space completion (which new kinematics the lifter synthesizes).

    import numpy as np
    from liftdata.samplers import mine_extremes, pose_sweep, interpolate, coverage

    sampler = mine_extremes() + pose_sweep(yaw=(-40, 40)) * interpolate()   # * binds before +
    plan = sampler.sample(capture, n=2000, rng=np.random.default_rng(0))
    print(coverage(capture).summary()); print(coverage([capture, plan]).summary())

A sampler is a frozen dataclass with `sample(capture, n, rng) -> Plan` (exactly n frames, in
clips of `clip_length` frames, the last one shorter); see `base` for the counting and
determinism rules and `compose` for `+`, `mix`, `*`, `.filter`, `.take`.
"""

from __future__ import annotations

from typing import Any, Sequence

from liftdata.samplers.base import LeafSampler, Sampler, clip_lengths, smoothstep
from liftdata.samplers.compose import Concat, Filtered, Mix, Product, Take, mix
from liftdata.samplers.coverage import CoverageReport, coverage, gather_kinematics, plot_coverage, yaw_pitch_roll
from liftdata.samplers.expression import DEFAULT_TARGETS, ExpressionInterpolation, ExtremeExpressionMining
from liftdata.samplers.plan import Clip, Plan, PlanError, RepeatedClipsWarning
from liftdata.samplers.pose import DEFAULT_SUPPORT_DEG, PoseSupportWarning, PoseSweep
from liftdata.samplers.references import ReferencePolicy, select_references

__all__ = [
    "Sampler", "LeafSampler", "Plan", "Clip", "PlanError", "RepeatedClipsWarning",
    "ExpressionInterpolation", "ExtremeExpressionMining", "PoseSweep", "DEFAULT_TARGETS", "DEFAULT_SUPPORT_DEG",
    "PoseSupportWarning",
    "Concat", "Mix", "Product", "Filtered", "Take", "mix",
    "ReferencePolicy", "select_references", "CoverageReport", "coverage", "gather_kinematics",
    "plot_coverage", "yaw_pitch_roll", "clip_lengths", "smoothstep",
    "interpolate", "mine_extremes", "pose_sweep", "SAMPLERS",
]

#: The leaf samplers by their `name` (recorded as `meta.sampler.name`; recipes use the constructor names below).
SAMPLERS: dict[str, type[LeafSampler]] = {
    ExpressionInterpolation.name: ExpressionInterpolation,
    ExtremeExpressionMining.name: ExtremeExpressionMining,
    PoseSweep.name: PoseSweep,
}


def interpolate(clip_length: int = 21, extrapolation: float = 0.0, **kwargs: Any) -> ExpressionInterpolation:
    """`ExpressionInterpolation` between (and `extrapolation` beyond) observed expressions."""
    return ExpressionInterpolation(clip_length=clip_length, extrapolation=extrapolation, **kwargs)


def mine_extremes(clip_length: int = 21, targets: Sequence[str | Sequence[str]] | str | None = None,
                  strength: float = 1.0, **kwargs: Any) -> ExtremeExpressionMining:
    """`ExtremeExpressionMining` towards the expressions the capture lacks."""
    return ExtremeExpressionMining(clip_length=clip_length, targets=targets, strength=strength, **kwargs)


def pose_sweep(yaw: tuple[float, float] | None = None, pitch: tuple[float, float] | None = None,
               roll: tuple[float, float] | None = None, clip_length: int = 21,
               support_deg: float | None = DEFAULT_SUPPORT_DEG, **kwargs: Any) -> PoseSweep:
    """`PoseSweep` over yaw/pitch/roll ranges in degrees (yaw about +y, model space).

    Without ranges: (-40, 40) / (-15, 15) / (0, 0), pulled back to `support_deg` from the nearest
    capture pose; explicit ranges are kept as given (a `PoseSupportWarning` if beyond the support)
    unless `clip_to_support=True` (pass it for a default sampler's own ranges)."""
    return PoseSweep(yaw=yaw, pitch=pitch, roll=roll, clip_length=clip_length, support_deg=support_deg, **kwargs)
