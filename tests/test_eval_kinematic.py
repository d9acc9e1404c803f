"""AED / APD / LMD math against hand-computed values, with a perfect tracker built from ground truth
(synthetic captures), and the splits / extremeness helpers."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from liftdata.eval.kinematic import aed, apd, kinematic_metrics, lmd
from liftdata.eval.splits import ExtremenessModel, bin_labels, extreme_split, monocular_split
from liftdata.kinematics import Kinematics
from liftdata.synthetic import make_capture


class GroundTruthTracker:
    """Re-tracks a frame by looking it up among frames with known kinematics (exact).

    `sources`: objects with `.frames` and `.kinematics` (captures)."""

    def __init__(self, *sources):
        self.table = [(np.asarray(c.frames[i]), c.kinematics[i]) for c in sources for i in range(len(c.kinematics))]

    def __call__(self, frames):
        found = []
        for t in range(len(frames)):
            f = np.asarray(frames[t])
            found.append(next(k for g, k in self.table if g.shape == f.shape and np.array_equal(g, f)))
        return Kinematics.concat(found)


class GroundTruthLandmarker(GroundTruthTracker):
    """Landmarks of a frame = the head model's landmarks of its true kinematics, projected."""

    def __init__(self, capture, *captures):
        super().__init__(capture, *captures)
        self.capture = capture

    def __call__(self, frames):
        k = super().__call__(frames)
        with torch.no_grad():
            verts = self.capture.head_model.vertices(torch.as_tensor(self.capture.identity), k)
            lmk = self.capture.head_model.landmarks(verts).numpy()
        return self.capture.camera.project(lmk)[..., :2]


@pytest.fixture(scope="module")
def captures():
    truth = make_capture(0, n_frames=3, size=48)
    k = truth.kinematics
    expr = k.expression.copy()
    expr[:, 0] += 0.1  # AED: l1 = 0.1 / E, l2 = 0.1
    extra = Rotation.from_rotvec([0, 0, np.radians(5.0)])  # 5 degrees of roll on top of the pose
    rot = (extra * Rotation.from_rotvec(k.rotation)).as_rotvec()
    moved = k.replace(expression=expr, rotation=rot, translation=k.translation + [0.003, 0.004, 0.0])
    generated = make_capture(0, kinematics=moved, size=48)
    return truth, generated


def test_aed_apd_hand_computed(captures):
    truth, generated = captures
    e = truth.kinematics.n_expression
    tracker = GroundTruthTracker(truth, generated)
    for target in (truth.kinematics, truth.frames):  # driving kinematics, or re-tracked ground truth
        out = kinematic_metrics(generated.frames, target, tracker=tracker)
        m = out["mean"]
        assert m["aed_l1"] == pytest.approx(0.1 / e, rel=1e-5)
        assert m["aed_l2"] == pytest.approx(0.1, rel=1e-5)
        assert m["apd_rotation_deg"] == pytest.approx(5.0, abs=1e-3)
        assert m["apd_translation"] == pytest.approx(0.005, rel=1e-4)
        assert m["jaw_deg"] == pytest.approx(0.0, abs=1e-3)
        assert len(out["per_frame"]["aed_l2"]) == 3


def test_lmd_hand_computed_and_with_projected_landmarks(captures):
    a = np.zeros((2, 4, 2))
    b = a + [3.0, 4.0]
    b[1, :2] += [3.0, 4.0]  # frame 1: half the landmarks 10 px away
    np.testing.assert_allclose(lmd(a, b), [5.0, 7.5])
    b[0, 0] = np.nan  # no face in frame 0 of one side
    assert np.isnan(lmd(a, b)[0]) and lmd(a, b)[1] == 7.5
    with pytest.raises(ValueError, match=r"\[T, L, 2\]"):
        lmd(a, a[:, :3])
    truth, generated = captures
    landmarker = GroundTruthLandmarker(truth, generated)
    out = kinematic_metrics(generated.frames, truth.frames, tracker=GroundTruthTracker(truth, generated),
                            landmarker=landmarker)
    same = kinematic_metrics(truth.frames, truth.frames, tracker=GroundTruthTracker(truth), landmarker=landmarker)
    assert out["mean"]["lmd_px"] > 0.3 and same["mean"]["lmd_px"] == 0.0


def test_kinematics_of_different_lengths_or_models_are_rejected(captures):
    truth, _ = captures
    with pytest.raises(ValueError, match="3 predicted frames vs 2"):
        aed(truth.kinematics, truth.kinematics[:2])
    other = truth.kinematics.replace(head_model="flame")
    with pytest.raises(ValueError, match="cannot mix"):
        apd(truth.kinematics, other)


def test_monocular_splits():
    for protocol, n_test in (("last30", 300), ("last350", 350), ("last500", 500)):
        train, test = monocular_split(1000, protocol)
        assert len(test) == n_test and test[-1] == 999 and train[-1] + 1 == test[0] and len(train) + n_test == 1000
    assert len(monocular_split(7, "last30")[1]) == 3  # ceil(0.3 * 7)
    with pytest.raises(ValueError, match="needs more than 350 frames"):
        monocular_split(300, "last350")
    with pytest.raises(ValueError, match="expected one of"):
        monocular_split(100, "last10")


def gaussian_kinematics(n, rng, mean, chol):
    x = mean + rng.standard_normal((n, 5)) @ chol.T
    return Kinematics(x[:, :2], x[:, 2:], np.zeros((n, 3)), np.zeros((n, 6)), np.zeros((n, 3)), np.zeros((n, 3)),
                      "builtin", "1"), x


def test_mahalanobis_recovers_whitened_distance(rng):
    mean = np.array([0.3, 0.1, 0.05, -0.02, 0.0])
    a = rng.standard_normal((5, 5))
    chol = np.linalg.cholesky(a @ a.T + 0.5 * np.eye(5)) * 0.1
    train, _ = gaussian_kinematics(20000, rng, mean, chol)
    model = ExtremenessModel(train)
    z = np.diag([0.5, 1, 2, 3, 4.0])  # whitened offsets: the distance of row i is z[i, i]
    x = mean + z @ chol.T
    test = Kinematics(x[:, :2], x[:, 2:], np.zeros((5, 3)), np.zeros((5, 6)), np.zeros((5, 3)), np.zeros((5, 3)),
                      "builtin", "1")
    np.testing.assert_allclose(model.distance(test), np.linalg.norm(z, axis=1), rtol=0.05)
    # chi distribution with 5 degrees of freedom: median ~2.15
    assert np.median(model.train_distances) == pytest.approx(2.15, rel=0.05)
    assert list(model.bins(np.array([0.0, model.edges[0], model.edges[0] + 1e-9, 1e9]))) == [0, 0, 1, 3]
    assert bin_labels() == ["<=p50", "p50-p90", "p90-p99", ">p99"]


def test_extreme_split(rng):
    mean, chol = np.zeros(5), np.eye(5) * 0.1
    train, _ = gaussian_kinematics(2000, rng, mean, chol)
    far = Kinematics(np.full((2, 2), 1.0), np.full((2, 3), 1.0), np.zeros((2, 3)), np.zeros((2, 6)),
                     np.zeros((2, 3)), np.zeros((2, 3)), "builtin", "1")
    test = Kinematics.concat([train[:3], far])
    assert list(extreme_split(test, train, 0.999)) == [3, 4]
    assert len(extreme_split(train, train, 0.5)) == pytest.approx(1000, abs=2)
    with pytest.raises(ValueError, match="quantile"):
        extreme_split(test, train, 1.0)
