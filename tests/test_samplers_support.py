"""Pose support: no planned head pose farther than the support angle from the nearest capture pose."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from liftdata.head import load_head_model
from liftdata.samplers import (DEFAULT_SUPPORT_DEG, Plan, PlanError, PoseSupportWarning, interpolate, pose_sweep)
from liftdata.samplers.pose import distance_to_nearest_pose
from liftdata.synthetic import sample_kinematics

MODEL = load_head_model("builtin")


def narrow(seed: int = 0, n: int = 40):
    k = sample_kinematics(MODEL, n, np.random.default_rng(seed), max_yaw_deg=5, max_pitch_deg=3)
    return SimpleNamespace(kinematics=k, head_model=MODEL, camera=None)


def slow_distance(rotvecs, observed) -> np.ndarray:  # one scipy relative rotation per pair
    return np.array([min((Rotation.from_rotvec(o).inv() * Rotation.from_rotvec(r)).magnitude() for o in observed)
                     for r in rotvecs]) * 180 / np.pi


def distances(plan: Plan, capture) -> np.ndarray:
    return distance_to_nearest_pose(plan.kinematics().rotation, capture.kinematics.rotation)


def test_distance_matches_a_slow_twin(rng):
    obs, planned = rng.normal(0, 0.4, (7, 3)), rng.normal(0, 0.8, (11, 3))
    np.testing.assert_allclose(distance_to_nearest_pose(planned, obs), slow_distance(planned, obs), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_sweep_stays_within_the_support_and_says_so(seed):
    cap = narrow(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoseSupportWarning)  # the default never warns
        plan = pose_sweep().sample(cap, 210, np.random.default_rng(seed))
        free = pose_sweep(support_deg=None).sample(cap, 210, np.random.default_rng(seed))
    d, d_free = distances(plan, cap), distances(free, cap)
    assert d.max() <= DEFAULT_SUPPORT_DEG + 1e-3 and d_free.max() > 35  # the unclipped sweep goes far beyond
    inside = d_free <= DEFAULT_SUPPORT_DEG
    np.testing.assert_allclose(plan.kinematics().rotation[inside], free.kinematics().rotation[inside], atol=1e-6)
    np.testing.assert_allclose(d[~inside], DEFAULT_SUPPORT_DEG, atol=0.01)  # pulled back onto the edge
    summary = plan.summary()
    assert f"{int((~inside).sum())} frames pulled back" in summary and "BEYOND" not in summary
    assert "pose_sweep 210" in summary


def test_explicit_ranges_win_with_a_warning():
    cap = narrow()
    with pytest.warns(PoseSupportWarning, match="explicit ranges plan"):
        plan = pose_sweep(yaw=(-40, 40)).sample(cap, 84, np.random.default_rng(0))
    beyond = int((distances(plan, cap) > DEFAULT_SUPPORT_DEG + 1e-6).sum())
    assert beyond > 0 and f"{beyond} frames BEYOND" in plan.summary()


def test_support_inside_a_product_and_bad_values():
    cap = narrow()
    plan = (pose_sweep(support_deg=15.0) * interpolate()).sample(cap, 63, np.random.default_rng(3))
    assert distances(plan, cap).max() <= 15 + 1e-3 and "pose support 15 deg" in plan.summary()
    with pytest.raises(PlanError, match="support_deg"):
        pose_sweep(support_deg=0)
    with pytest.raises(PlanError, match="support_deg"):
        pose_sweep(support_deg=200)


def test_clip_to_support_overrides_the_explicit_rule():
    cap = narrow(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoseSupportWarning)
        sweep = pose_sweep(yaw=(-30, 30), pitch=(-10, 10), clip_to_support=True)
        plan = sweep.sample(cap, 84, np.random.default_rng(0))
    assert distances(plan, cap).max() <= DEFAULT_SUPPORT_DEG + 1e-3
    with pytest.warns(PoseSupportWarning):
        pose_sweep(clip_to_support=False).sample(cap, 84, np.random.default_rng(0))
