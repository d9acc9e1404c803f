"""Coverage: its numbers against slow twins, and each sampler raising it where it claims to."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from liftdata.samplers import coverage, interpolate, mine_extremes, plot_coverage, pose_sweep
from liftdata.samplers.coverage import nearest_distance, prior_samples, yaw_pitch_roll
from liftdata.samplers.pose import sweep_rotation
from liftdata.synthetic import make_capture
from flame_fixtures import make_flame_arrays, write_npz


@pytest.fixture(scope="module")
def narrow():
    """A real synthetic capture with a narrow expression range and little head motion."""
    return make_capture(3, n_frames=40, size=64, expression_scale=0.2, max_yaw_deg=5)


def plan(sampler, capture, n=840, seed=0):
    return sampler.sample(capture, n, np.random.default_rng(seed))


# ---------------------------------------------------------------------- the measure itself
def test_coverage_matches_a_slow_twin(narrow):
    prior = narrow.head_model.expression_prior()
    rep = coverage(narrow, radius=3.0, n_samples=300)
    chol = np.linalg.cholesky(prior.covariance)
    white = lambda x: np.linalg.solve(chol, (np.asarray(x, np.float64) - prior.mean).T).T  # noqa: E731
    s, p = white(prior_samples(prior, 300, 0)), white(narrow.kinematics.expression)
    hits = [min(np.sqrt(((q - x) ** 2).sum()) for x in p) <= 3.0 for q in s]
    assert rep.fraction == pytest.approx(np.mean(hits))
    expr = narrow.kinematics.expression
    assert rep.range_of("jawOpen") == (expr[:, 0].min(), expr[:, 0].max())
    np.testing.assert_allclose(rep.span, np.ptp(expr, 0))  # bounds [0, 1]


def test_nearest_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(50, 7)), rng.normal(size=(5000, 7))
    slow = np.sqrt(((q[:, None] - p[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distance(q, p, block=777), slow, atol=1e-9)


def test_yaw_pitch_roll_inverts_the_sweep_rotation_and_follows_the_axes():
    angles = np.array([[30.0, -10.0, 5.0], [-40.0, 15.0, 0.0], [0.0, 0.0, -20.0]])
    rotvec = Rotation.from_matrix(sweep_rotation(angles)).as_rotvec()
    np.testing.assert_allclose(yaw_pitch_roll(rotvec), angles, atol=1e-9)
    # positive yaw turns the face (+z) towards +x; positive pitch turns it down (-y)
    face = sweep_rotation(np.array([[30.0, 0, 0], [0, 20.0, 0]])) @ np.array([0, 0, 1.0])
    assert face[0, 0] > 0.4 and face[1, 1] < -0.3


# ---------------------------------------------------------------------- samplers raise coverage
def test_mining_raises_expression_coverage_and_reaches_the_extremes(narrow):
    before = coverage(narrow)
    added = plan(mine_extremes(), narrow)
    after = coverage([narrow, added])
    assert after.fraction > before.fraction + 0.05
    for name in ("jawOpen", "mouthSmileLeft", "browInnerUp", "cheekPuff", "mouthPucker"):
        assert before.range_of(name)[1] < 0.6 and after.range_of(name)[1] == 1.0
    assert before.range_of("eyeBlinkLeft")[1] == 1.0  # synthetic blinks close the eye fully


def test_mining_goes_first_where_the_capture_is_thinnest(narrow):
    expr, index = narrow.kinematics.expression, narrow.head_model.expression_index
    gaps = {name: 1 - expr[:, index(name)].max() for name in ("jawOpen", "browInnerUp", "eyeBlinkLeft")}
    assert gaps["eyeBlinkLeft"] == 0 and gaps["jawOpen"] - gaps["browInnerUp"] > 0.1  # seen: 1, 0.17, 0
    p = plan(mine_extremes(targets=list(gaps)), narrow, n=30 * 21)
    peaks = np.array([c.kinematics.expression.max(0) for c in p])
    jaw_clips = int((peaks[:, 0] == 1.0).sum())
    assert (peaks[:, index("browInnerUp")] == 1.0).sum() == 30 - jaw_clips  # blinks already seen: no clip
    assert abs(jaw_clips - 30 * gaps["jawOpen"] / (gaps["jawOpen"] + gaps["browInnerUp"])) <= 1


def test_prior_mining_raises_coverage_on_a_flame_model(tmp_path):
    from liftdata.head.flame import FlameHeadModel
    from liftdata.synthetic import sample_kinematics
    from types import SimpleNamespace

    model = FlameHeadModel.from_file(write_npz(tmp_path / "flame.npz", make_flame_arrays(n_expression=10)),
                                     n_shape=20, n_expression=10)
    k = sample_kinematics(model, 40, np.random.default_rng(0), expression_scale=0.2)
    cap = SimpleNamespace(kinematics=k, head_model=model)
    added = plan(mine_extremes(), cap, n=420)
    assert added.clips[0].provenance["params"]["targets"] is None
    prior = model.expression_prior()
    assert (np.abs(added.kinematics().expression) <= prior.upper).all()
    before, after = coverage(cap), coverage([cap, added])
    assert after.fraction > before.fraction + 0.1 and after.span.mean() > before.span.mean()


def test_pose_sweep_raises_the_yaw_range_to_the_requested_one(narrow):
    before = coverage(narrow)
    assert before.yaw_range[1] - before.yaw_range[0] < 15
    after = coverage([narrow, plan(pose_sweep(yaw=(-40, 40)), narrow)])
    lo, hi = after.yaw_range
    obs = np.abs(yaw_pitch_roll(narrow.kinematics.rotation)[:, 0]).max()
    assert -40 - obs - 1 <= lo <= -40 + obs and 40 - obs <= hi <= 40 + obs + 1
    assert after.fraction == pytest.approx(before.fraction, abs=0.02)  # expressions untouched


def test_interpolation_with_extrapolation_widens_ranges(narrow):
    before = coverage(narrow)
    inside = coverage([narrow, plan(interpolate(), narrow)])
    beyond = coverage([narrow, plan(interpolate(extrapolation=0.5), narrow)])
    np.testing.assert_allclose(inside.expression_max, before.expression_max, atol=1e-6)  # convex: no widening
    assert beyond.span.mean() > 1.1 * before.span.mean()
    assert (beyond.expression_max >= before.expression_max).all()
    assert beyond.fraction >= before.fraction


def test_plot_coverage_writes_a_png(narrow, tmp_path):
    added = plan(mine_extremes() + pose_sweep() * interpolate(), narrow)
    path = plot_coverage(narrow, [narrow, added], tmp_path / "coverage.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
