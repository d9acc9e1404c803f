"""The lifted-frame quality score and gate, against ground truth on a held-out synthetic subject."""

from __future__ import annotations

import numpy as np
import pytest

from liftdata.eval.lifter_cases import case_data, score_clip
from liftdata.lifters.quality import (QUALITY_THRESHOLD, QualityError, gate, lift_scored, quality_score)
from liftdata.lifters.warp import WarpLifter

SEED, SIZE = 4200, 96  # not a calibration subject (8000-8039)


@pytest.fixture(scope="module")
def yaw_sweep():
    """Scores and ground-truth head PSNR of the target frames of yaw 10/20/30/40 and jaw_yaw30."""
    out = []
    for case in ("yaw10", "yaw20", "yaw30", "yaw40", "jaw_yaw30"):
        data = case_data(SEED, case, size=SIZE, frames=1)
        scored = lift_scored(WarpLifter(), data.references, data.driving)
        out.append((case, float(scored.scores[0]), score_clip(scored.frames, data)["psnr"]))
    return out


def test_score_orders_frames_like_the_ground_truth(yaw_sweep):
    scores, truth = np.array([s for _, s, _ in yaw_sweep]), np.array([p for _, _, p in yaw_sweep])
    assert np.all(np.diff(truth[:4]) < 0)  # the premise: harder yaw, lower PSNR
    assert np.all(np.diff(scores[:4]) < 0), yaw_sweep
    assert scores[4] < scores[2] and truth[4] < truth[2]  # jaw open on top of yaw 30: worse still
    assert ((scores >= 0) & (scores <= 1)).all()


def test_score_of_another_lifter_uses_the_warp_geometry():
    data = case_data(SEED, "yaw30", size=SIZE, frames=2)

    class Unchanged:  # any lifter: returns the first reference
        name, version = "unchanged", "0"

        def lift(self, references, driving, *, seed=0):
            return np.repeat(references.images[:1], len(driving), 0)

    other, warp = lift_scored(Unchanged(), data.references, data.driving), lift_scored(WarpLifter(), data.references,
                                                                                       data.driving)
    np.testing.assert_array_equal(other.frames, np.repeat(data.references.images[:1], 2, 0))
    np.testing.assert_allclose(other.scores, warp.scores)
    meta = warp.meta(1)
    assert meta["score"] == pytest.approx(warp.scores[1], abs=1e-4) and meta["threshold"] == QUALITY_THRESHOLD
    assert set(meta["terms"]) == set(warp.terms)


def test_more_filled_or_farther_scores_lower():
    base = {"fill_fraction": np.array([0.0]), "pose_distance_deg": np.array([10.0]), "seen_fraction": np.array([1.0])}
    s0 = quality_score(base)[0]
    assert quality_score({**base, "fill_fraction": np.array([0.03])})[0] < s0
    assert quality_score({**base, "pose_distance_deg": np.array([30.0])})[0] < s0
    with pytest.raises(QualityError, match="missing"):
        quality_score({"seen_fraction": np.array([1.0])})


def test_gate_policies_and_errors():
    scores = np.array([0.1, 0.5, 0.39, 0.9])
    g = gate(scores, 0.4)
    np.testing.assert_array_equal(g.keep, [False, True, False, True])
    assert g.n_dropped == 2 and gate(scores, 0.4, "drop").n_dropped == 2
    assert gate(scores, 0.4, "off").keep.all()
    with pytest.raises(QualityError, match="policy"):
        gate(scores, 0.4, "maybe")
    with pytest.raises(QualityError, match="threshold"):
        gate(scores, 1.5)
