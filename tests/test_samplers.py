"""Samplers: counting, determinism, JSON, bounds, smoothness, references, validity errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from liftdata.head import load_head_model
from liftdata.kinematics import Kinematics, KinematicsError
from liftdata.samplers import (Clip, Plan, PlanError, ReferencePolicy, RepeatedClipsWarning, clip_lengths,
                               interpolate, mine_extremes, pose_sweep, select_references)
from liftdata.synthetic import sample_kinematics

MODEL = load_head_model("builtin")
F = 21


def stand_in(n_frames: int, seed: int = 0, **motion) -> SimpleNamespace:
    """A capture-like object: real Kinematics of the real builtin model, no frames rendered."""
    k = sample_kinematics(MODEL, n_frames, np.random.default_rng(seed), **motion)
    return SimpleNamespace(kinematics=k, head_model=MODEL, camera=None)


CAPTURE = stand_in(60)
LEAVES = {
    "interp": interpolate(),
    "interp_extra": interpolate(extrapolation=0.5, pairs="random", pose="hold"),
    "mine": mine_extremes(),
    "mine_prior": mine_extremes(targets="prior"),
    "pose": pose_sweep(yaw=(-40, 40), roll=(-10, 10)),
}
ALL = {**LEAVES, "example": mine_extremes() + pose_sweep(yaw=(-40, 40)) * interpolate()}


def plan_of(sampler, n: int, seed: int = 0, capture=CAPTURE) -> Plan:
    return sampler.sample(capture, n, np.random.default_rng(seed))


# ---------------------------------------------------------------------- counting
@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("n", [0, 1, 20, 21, 22, 100])
def test_frame_count_and_clip_lengths(name, n):
    plan = plan_of(ALL[name], n)
    assert plan.n == n
    if name in LEAVES:  # one sampler: full clips then the remainder
        assert [len(c) for c in plan] == [F] * (n // F) + ([n % F] if n % F else [])


def test_clip_lengths_rule():
    assert clip_lengths(0, 21) == []
    assert clip_lengths(43, 21) == [21, 21, 1]
    assert clip_lengths(42, 21) == [21, 21]


@pytest.mark.parametrize("name", list(LEAVES))
def test_short_last_clip_is_the_start_of_a_full_clip(name):
    sampler = LEAVES[name]
    full = sampler.sample_lengths(CAPTURE, [F, F], seed=5)
    short = sampler.sample_lengths(CAPTURE, [F, 7], seed=5)
    assert short.clips[0].equals(full.clips[0])
    assert short.clips[1].kinematics.equals(full.clips[1].kinematics[:7])


# ---------------------------------------------------------------------- determinism, JSON
@pytest.mark.parametrize("name", list(ALL))
def test_same_seed_same_plan_different_seed_different(name):
    a, b, c = plan_of(ALL[name], 200, 1), plan_of(ALL[name], 200, 1), plan_of(ALL[name], 200, 2)
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()


@pytest.mark.parametrize("name", list(ALL))
def test_json_round_trip_is_exact(name, tmp_path):
    plan = plan_of(ALL[name], 130)
    back = Plan.from_json(plan.to_json())
    assert back.equals(plan) and back.to_json() == plan.to_json()
    np.testing.assert_array_equal(back.lower, plan.lower)
    assert all(type(i) is int for c in back for i in c.reference_indices)


def test_plan_is_the_same_in_a_fresh_interpreter():
    """No dependence on hash seeds, dict/set order or process state: another process with another
    PYTHONHASHSEED produces byte-identical JSON."""
    code = ("import numpy as np; from test_samplers import ALL, plan_of; "
            "print(plan_of(ALL['example'], 150, 7).to_json())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent,
                         env={"PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.stdout.strip() == plan_of(ALL["example"], 150, 7).to_json()


def test_provenance_seed_reproduces_the_clip():
    plan = plan_of(ALL["example"], 100, 3)
    for clip in plan:
        prov = clip.provenance
        assert json.loads(json.dumps(prov)) == prov
        if prov["sampler"] == "extreme_expression_mining":
            again = mine_extremes().sample_seed(CAPTURE, 50, prov["seed"])
            assert any(c.kinematics.equals(clip.kinematics) for c in again)
        else:
            assert prov["sampler"] == "product"
            assert prov["params"]["pose"]["params"]["yaw"] == [-40.0, 40.0]


# ---------------------------------------------------------------------- validity
@pytest.mark.parametrize("sampler", [interpolate(extrapolation=3.0), mine_extremes(strength=1.0),
                                     mine_extremes(targets="prior"), pose_sweep()])
def test_every_frame_finite_and_within_bounds(sampler):
    k = plan_of(sampler, 300).kinematics()
    prior = MODEL.expression_prior()
    assert np.isfinite(k.expression).all() and np.isfinite(k.rotation).all()
    assert (k.expression >= prior.lower).all() and (k.expression <= prior.upper).all()


def test_plan_rejects_out_of_bounds_and_bad_references():
    k = sample_kinematics(MODEL, 5, np.random.default_rng(0))
    bad = k.replace(expression=np.where(np.arange(33) == 4, 1.5, k.expression))
    with pytest.raises(PlanError, match=r"frame 0 expression\[4\]=1.5"):
        Plan((Clip(bad, (0, 1), {"sampler": "test"}),), np.zeros(33), np.ones(33))
    with pytest.raises(PlanError, match="distinct"):
        Clip(k, (1, 1), {})
    with pytest.raises(KinematicsError, match="non-finite"):
        k.replace(rotation=np.full((5, 3), np.nan))


@pytest.mark.parametrize("bad, match", [
    (lambda: interpolate(extrapolation=-1), "extrapolation"),
    (lambda: interpolate(clip_length=1), "clip_length"),
    (lambda: pose_sweep(yaw=(40, -40)), "yaw"),
    (lambda: pose_sweep(pitch=(0, 400)), "pitch"),
    (lambda: mine_extremes(strength=0), "strength"),
    (lambda: mine_extremes(targets="smile"), "targets"),
    (lambda: ReferencePolicy(method="random"), "method"),
])
def test_bad_parameters_raise_naming_them(bad, match):
    with pytest.raises(PlanError if match != "method" else ValueError, match=match):
        bad()


def test_bad_requests_raise():
    with pytest.raises(PlanError, match="unknown expression name"):
        plan_of(mine_extremes(targets=["jawOpen", "smile"]), 10)
    with pytest.raises(PlanError, match="rng"):
        interpolate().sample(CAPTURE, 10, 0)
    with pytest.raises(PlanError, match="n must be"):
        plan_of(interpolate(), -1)
    with pytest.raises(PlanError, match="at least 2 frames"):
        plan_of(interpolate(), 10, capture=stand_in(1))
    with pytest.raises(PlanError, match="camera"):
        plan_of(pose_sweep(zoom=(0.8, 1.2)), 10)


def test_asking_for_more_clips_than_distinct_warns_and_names_the_sampler():
    small = stand_in(4)  # 6 distinct pairs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = plan_of(interpolate(), 6 * F, capture=small)
    assert len({c.kinematics.expression.tobytes() for c in plan}) == 6  # all 6 pairs, no repeat
    with pytest.warns(RepeatedClipsWarning, match="ExpressionInterpolation.*6 distinct"):
        plan_of(interpolate(), 7 * F, capture=small)
    with pytest.warns(RepeatedClipsWarning, match=r"\['jawOpen'\]"):
        plan_of(mine_extremes(targets=["jawOpen"]), 5 * F, capture=small)


# ---------------------------------------------------------------------- smoothness
def _max_step(plan: Plan) -> float:
    return max(float(np.abs(np.diff(c.kinematics.expression, axis=0)).max(initial=0)) for c in plan)


def test_expression_steps_are_bounded():
    """smoothstep has slope <= 1.5, so a clip easing over F - 1 steps across a change of at most
    (1 + 2x)(upper - lower) moves a coefficient by at most 1.5 (1 + 2x) / (F - 1) per frame; mining
    ramps over (F - hold) // 2 steps across at most upper - lower = 1."""
    for x in (0.0, 0.5):
        step = _max_step(plan_of(interpolate(extrapolation=x), 400))
        assert 0 < step <= 1.5 * (1 + 2 * x) / (F - 1) + 1e-6
    step = _max_step(plan_of(mine_extremes(), 400))
    assert 0.05 < step <= 1.5 / ((F - F // 5) // 2) + 1e-6
    raw = float(np.abs(np.diff(CAPTURE.kinematics.expression, axis=0)).max())
    assert raw > 0.2  # the capture's own blinks jump further than any planned step


def test_pose_steps_are_bounded():
    """The rotation between consecutive frames is at most the sum of the Euler angle changes,
    each <= 1.5 * span / (F - 1) per frame."""
    sweep = pose_sweep(yaw=(-40, 40), pitch=(-15, 15), roll=(-10, 10))
    bound = np.radians(1.5 * (80 + 30 + 20) / (F - 1))
    for clip in plan_of(sweep, 400):
        r = Rotation.from_rotvec(clip.kinematics.rotation.astype(np.float64))
        steps = (r[1:] * r[:-1].inv()).magnitude()
        assert steps.max(initial=0) <= bound + 1e-5


def test_pose_sweep_holds_the_expression_and_reaches_the_range_ends():
    plan = plan_of(pose_sweep(yaw=(-30, 30), pitch=(0, 0)), 5 * F)
    obs = CAPTURE.kinematics
    for clip in plan:
        k = clip.kinematics
        assert (k.expression == k.expression[0]).all()
        s = int(np.flatnonzero((obs.expression == k.expression[0]).all(1))[0])
        r_obs = Rotation.from_rotvec(obs.rotation[s].astype(np.float64))
        rel = Rotation.from_rotvec(k.rotation.astype(np.float64)) * r_obs.inv()
        ypr = rel.as_euler("YXZ", degrees=True)
        assert {round(ypr[0, 0]), round(ypr[-1, 0])} == {-30, 30}
        np.testing.assert_allclose(ypr[:, 1:], 0, atol=1e-3)


# ---------------------------------------------------------------------- references
def test_kmeans_references_pick_one_frame_per_cluster():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1, (5, 33))
    label = np.repeat(np.arange(5), 12)
    expr = np.clip(centres[label] + rng.normal(0, 0.01, (60, 33)), 0, 1)
    k = Kinematics.zeros(60, 33, "builtin", "1").replace(expression=expr)
    refs = select_references(k, 5, "kmeans", rng=np.random.default_rng(1))
    assert sorted(label[refs].tolist()) == [0, 1, 2, 3, 4]


def test_nearest_references_match_brute_force():
    obs = CAPTURE.kinematics
    target = obs[10:14]
    got = select_references(obs, 4, "nearest", target=target)
    feats = np.concatenate([obs.expression, obs.rotation], 1).astype(np.float64)
    std = np.where(feats.std(0) > 1e-8, feats.std(0), 1)
    w = np.r_[np.full(33, 33 ** -0.5), np.full(3, 3 ** -0.5)] / std
    centre = (np.concatenate([target.expression, target.rotation], 1) * w).mean(0)
    dist = [sum((feats[i] * w - centre) ** 2) for i in range(len(obs))]
    assert sorted(got.tolist()) == sorted(np.argsort(dist)[:4].tolist())


def test_every_clip_gets_distinct_references():
    for policy in (ReferencePolicy(5, "kmeans"), ReferencePolicy(3, "nearest")):
        plan = plan_of(interpolate(references=policy), 200)
        for clip in plan:
            assert len(clip.reference_indices) == policy.k == len(set(clip.reference_indices))
            assert max(clip.reference_indices) < len(CAPTURE.kinematics)
    tiny = plan_of(interpolate(), 30, capture=stand_in(3))
    assert all(sorted(c.reference_indices) == [0, 1, 2] for c in tiny)


def test_deterministic_linear_algebra_matches_lapack():
    from scipy.linalg import solve_triangular

    from liftdata.samplers.base import cholesky, forward_substitute, lower_times

    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 12))
    cov = a @ a.T + 12 * np.eye(12)
    chol = cholesky(cov)
    np.testing.assert_allclose(chol, np.linalg.cholesky(cov), atol=1e-12)
    b = rng.normal(size=(7, 12))
    np.testing.assert_allclose(forward_substitute(chol, b), solve_triangular(chol, b.T, lower=True).T, atol=1e-12)
    np.testing.assert_allclose(lower_times(chol, b), b @ chol.T, atol=1e-12)
    with pytest.raises(PlanError, match="positive definite"):
        cholesky(-np.eye(3))


def test_zoom_keeps_the_head_at_its_pixel_and_scales_its_depth():
    from liftdata.kinematics import Camera

    camera = Camera.frontal(24.0, 64, 64, 0.55)
    cap = SimpleNamespace(kinematics=CAPTURE.kinematics, head_model=MODEL, camera=camera)
    sweep = pose_sweep(yaw=(0, 0), pitch=(0, 0), zoom=(0.5, 2.0))
    for clip in plan_of(sweep, 3 * F, capture=cap):
        k = clip.kinematics
        s = int(np.flatnonzero((CAPTURE.kinematics.expression == k.expression[0]).all(1))[0])
        before = camera.project(CAPTURE.kinematics.translation[s].astype(np.float64))
        after = camera.project(k.translation.astype(np.float64))
        np.testing.assert_allclose(after[:, :2] - before[:2], 0, atol=1e-3)
        ratio = before[2] / after[:, 2]
        assert {round(ratio[0], 3), round(ratio[-1], 3)} == {0.5, 2.0}


def test_references_are_only_usable_frames():
    """Frames without a face or with an outlier fit are never references (issue 16); a capture where every
    frame is usable plans exactly as before (the restriction is a no-op there)."""
    import dataclasses

    from liftdata.samplers import interpolate, mine_extremes, pose_sweep
    from liftdata.samplers.references import ReferencePolicy, usable_reference_frames
    from liftdata.synthetic import make_capture

    capture = make_capture(seed=4, n_frames=24, size=64)
    found = np.ones(len(capture), bool)
    found[[0, 5, 6, 17]] = False  # interpolated frames
    residual = np.full(len(capture), 0.8)
    residual[[3, 11]] = 9.0  # outlier fits (> 4 robust z and > 2x the median)
    flagged = dataclasses.replace(capture, face_found=found, landmark_residual=residual)
    usable = usable_reference_frames(flagged)
    assert np.array_equal(np.flatnonzero(~usable), [0, 3, 5, 6, 11, 17])
    bad = set(np.flatnonzero(~usable).tolist())
    for method in ("kmeans", "nearest"):
        refs = ReferencePolicy(k=5, method=method)
        for sampler in (mine_extremes(clip_length=5, references=refs), pose_sweep(clip_length=5, references=refs),
                        mine_extremes(clip_length=5) * pose_sweep(clip_length=5)):
            plan = sampler.sample(flagged, 20, np.random.default_rng(1))
            chosen = {int(i) for c in plan.clips for i in c.reference_indices}
            assert chosen and not chosen & bad, (method, sampler, chosen & bad)
            clean = dataclasses.replace(capture, face_found=np.ones(len(capture), bool),
                                        landmark_residual=np.full(len(capture), 0.8))
            a = sampler.sample(clean, 20, np.random.default_rng(1))
            b = sampler.sample(dataclasses.replace(capture, face_found=None, landmark_residual=None), 20,
                               np.random.default_rng(1))
            assert [c.reference_indices for c in a.clips] == [c.reference_indices for c in b.clips]
    none = dataclasses.replace(capture, face_found=np.zeros(len(capture), bool))
    with pytest.raises(Exception, match="no frame can be a reference"):
        mine_extremes(clip_length=5).sample(none, 10, np.random.default_rng(0))
