"""Sampler composition: +, mix, *, filter, take (counts, order, weights, roles)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftdata.samplers import (Concat, ExpressionInterpolation, PlanError, PoseSweep, Product, interpolate,
                               mine_extremes, mix, pose_sweep)
from liftdata.samplers.expression import largest_remainder
from test_samplers import CAPTURE, F, plan_of


def frames_by_sampler(plan) -> list[tuple[str, int]]:
    """Run-length list of (sampler name, frames) in plan order."""
    runs: list[list] = []
    for c in plan:
        name = c.provenance["sampler"]
        if runs and runs[-1][0] == name:
            runs[-1][1] += len(c)
        else:
            runs.append([name, len(c)])
    return [tuple(r) for r in runs]


A, B, C = interpolate(), mine_extremes(), pose_sweep()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 100, 101, 1000])
def test_concat_splits_equally_in_order(n):
    plan = plan_of(A + B + C, n)
    assert plan.n == n
    expected = [(n + 2) // 3, (n + 1) // 3, n // 3]  # extra frames to the earliest parts
    names = ["expression_interpolation", "extreme_expression_mining", "pose_sweep"]
    assert frames_by_sampler(plan) == [(nm, k) for nm, k in zip(names, expected) if k]


def test_concat_is_flat_and_associative():
    assert (A + B) + C == A + (B + C) == Concat((A, B, C))
    assert plan_of((A + B) + C, 300).to_json() == plan_of(A + (B + C), 300).to_json()


def test_mix_splits_by_weight():
    plan = plan_of(mix([A, B, C], [3, 1, 0]), 100)
    assert frames_by_sampler(plan) == [("expression_interpolation", 75), ("extreme_expression_mining", 25)]
    plan = plan_of(mix([A, B], [1, 2]), 100)  # 33.33 / 66.67: the larger remainder wins the frame
    assert frames_by_sampler(plan) == [("expression_interpolation", 33), ("extreme_expression_mining", 67)]


def test_mix_rejects_bad_weights():
    with pytest.raises(PlanError, match="2 samplers but 3 weights"):
        mix([A, B], [1, 2, 3])
    with pytest.raises(PlanError, match="non-negative"):
        mix([A, B], [1, -1])
    with pytest.raises(PlanError, match="non-negative"):
        mix([A, B], [0, 0])


def hamilton_slow(total: int, weights: list[float]) -> list[int]:
    """The textbook method, one frame at a time: floors, then the largest remainders (ties: first)."""
    w = [Fraction(x) for x in weights]
    quota = [total * x / sum(w) for x in w]
    counts = [q.numerator // q.denominator for q in quota]
    while sum(counts) < total:
        rem = [q - c for q, c in zip(quota, counts)]
        best = max(rem)
        i = rem.index(best)
        counts[i] += 1
        quota[i] = Fraction(-1)  # each part gets at most one extra frame
    return counts


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=6))
def test_largest_remainder_property(total, weights):
    if sum(weights) <= 0:
        with pytest.raises(PlanError):
            largest_remainder(total, weights)
        return
    counts = largest_remainder(total, weights).tolist()
    assert sum(counts) == total
    w = [Fraction(x) for x in weights]
    assert all(abs(c - total * x / sum(w)) < 1 for c, x in zip(counts, w))
    assert counts == hamilton_slow(total, weights)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 200), st.lists(st.integers(0, 5), min_size=2, max_size=3).filter(lambda w: sum(w) > 0))
def test_mix_plan_counts_match_weights(n, weights):
    parts = [interpolate(), mine_extremes(), pose_sweep()][: len(weights)]
    plan = plan_of(mix(parts, weights), n)
    counts = largest_remainder(n, weights)
    got = dict(frames_by_sampler(plan))
    assert plan.n == n
    assert [got.get(p.name, 0) for p in parts] == counts.tolist()


# ---------------------------------------------------------------------- product
def test_product_takes_expression_from_one_and_pose_from_the_other():
    n = 3 * F + 5
    plan = plan_of(pose_sweep(yaw=(-40, 40)) * interpolate(), n, seed=4)
    assert plan.n == n and [len(c) for c in plan] == [F, F, F, 5]
    for i, clip in enumerate(plan):
        prov = clip.provenance["params"]
        expr = ExpressionInterpolation().sample_seed(CAPTURE, n, prov["expression"]["seed"])
        pose = PoseSweep(yaw=(-40, 40)).sample_lengths(CAPTURE, [len(c) for c in plan], prov["pose"]["seed"])
        np.testing.assert_array_equal(clip.kinematics.expression, expr.clips[i].kinematics.expression)
        np.testing.assert_array_equal(clip.kinematics.jaw, expr.clips[i].kinematics.jaw)
        np.testing.assert_array_equal(clip.kinematics.rotation, pose.clips[i].kinematics.rotation)
        np.testing.assert_array_equal(clip.kinematics.translation, pose.clips[i].kinematics.translation)


def test_product_operand_order_does_not_matter():
    assert (plan_of(C * A, 100, 2).to_json() == plan_of(A * C, 100, 2).to_json())


def test_product_needs_one_expression_and_one_pose_sampler():
    with pytest.raises(PlanError, match="one expression sampler and one pose sampler"):
        A * B
    with pytest.raises(PlanError, match="one expression sampler and one pose sampler"):
        C * pose_sweep(yaw=(-10, 10))


def test_product_with_a_composite_expression_side():
    plan = plan_of((A + B) * C, 100)
    assert plan.n == 100 and {c.provenance["sampler"] for c in plan} == {"product"}
    kinds = [c.provenance["params"]["expression"]["sampler"] for c in plan]
    assert kinds == ["expression_interpolation"] * 3 + ["extreme_expression_mining"] * 3


def test_product_with_mismatched_composite_pose_side_says_why():
    with pytest.raises(PlanError, match="clip lengths differ"):
        plan_of(interpolate(clip_length=33) * (C + pose_sweep(roll=(-5, 5))), 100)


def test_issue_example_precedence():
    sampler = mine_extremes() + pose_sweep(yaw=(-40, 40)) * interpolate()
    assert isinstance(sampler, Concat) and isinstance(sampler.parts[1], Product)
    plan = plan_of(sampler, 420)
    assert frames_by_sampler(plan) == [("extreme_expression_mining", 210), ("product", 210)]


# ---------------------------------------------------------------------- filter, take
def test_filter_keeps_passing_clips_and_reaches_n():
    unfiltered = plan_of(interpolate(extrapolation=0.3), 210)
    level = np.median([c.kinematics.expression.sum(1).max() for c in unfiltered])
    strong = lambda clip: clip.kinematics.expression.sum(1).max() > level  # noqa: E731
    assert not all(strong(c) for c in unfiltered)  # the predicate does reject clips
    plan = plan_of(interpolate(extrapolation=0.3).filter(strong), 210)
    assert plan.n == 210 and all(strong(c) for c in plan)
    plan = plan_of(interpolate(extrapolation=0.3).filter(strong), 200)  # whole clips judged, then cut
    assert plan.n == 200 and all(strong(c) for c in plan.clips[:-1])


def test_filter_gives_up_with_a_clear_error():
    with pytest.raises(PlanError, match=r"only 0 of 50 frames passed the predicate after 3 tries"):
        plan_of(A.filter(lambda clip: False, max_tries=3), 50)


def test_take():
    assert plan_of(A.take(50), 100).n == 50
    assert plan_of(A.take(500), 100).n == 100
    plan = plan_of(A, 100)
    cut = plan.take(30)
    assert [len(c) for c in cut] == [21, 9]
    assert cut.clips[1].kinematics.equals(plan.clips[1].kinematics[:9])
    assert frames_by_sampler(plan_of(A.take(10) + B, 100)) == [("expression_interpolation", 10),
                                                               ("extreme_expression_mining", 50)]
