"""The quality gate in `expand` and the clean captured frames (issues 17 and 16).

References: the same expansion with the gate off (every frame kept, every score recorded) is the
independent reference: with "drop" the written dataset must be exactly its passing frames; with
"resample" its passing frames stay byte-identical and only the failing slots change, each to a
frame whose own recorded score passes (or, flagged, the best candidate). Thresholds are the
median of the ungated scores (about half the frames fail), not values picked to make a case pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest

from liftdata.cli import main
from liftdata.dataset import GATE_ROUNDS, LiftDataset
from liftdata.errors import ConfigError
from liftdata.io import read_webdataset
from liftdata.lifters import WarpLifter
from liftdata.lifters.quality import QUALITY_TERMS
from liftdata.samplers import mine_extremes, pose_sweep
from liftdata.synthetic import make_capture

T, SIZE, N, CLIP = 6, 64, 12, 4


def sampler():  # poses far from the (near-frontal) capture: a spread of scores
    return mine_extremes(clip_length=CLIP) * pose_sweep(yaw=(-45, 45), clip_to_support=False)


@dataclass
class CrashingLifter:
    """The warp lifter, raising on call `fail_after` (a crash in the middle of a write)."""

    fail_after: int | None = None
    calls: list = field(default_factory=list)
    inner: WarpLifter = field(default_factory=WarpLifter)
    name: str = "warp"
    version: str = "1"

    def lift_detailed(self, references, driving, *, seed=0):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("lifter crashed")
        self.calls.append(len(driving.kinematics))
        return self.inner.lift_detailed(references, driving, seed=seed)

    def lift_with_quality(self, references, driving, *, seed=0):
        d = self.lift_detailed(references, driving, seed=seed)
        return d.frames, d.quality


@dataclass
class HashScoredLifter:
    """Warp frames with a quality that is a pseudo-random function of each driving frame's
    kinematics (independent per frame, about uniform): the gate's mechanics, not the score's
    calibration, under test, with every re-planned candidate an independent draw."""

    inner: WarpLifter = field(default_factory=WarpLifter)
    name: str = "warp"
    version: str = "1"

    def lift_with_quality(self, references, driving, *, seed=0):
        k = driving.kinematics
        draws = [np.random.default_rng(list(np.frombuffer(np.concatenate([k.expression[f], k.rotation[f]]).tobytes(),
                                                          np.uint32))).uniform() for f in range(len(k))]
        terms = {name: np.zeros(len(k)) for name in QUALITY_TERMS}
        terms["pose_distance_deg"] = 100.0 * np.array(draws)
        return self.inner.lift(references, driving, seed=seed), terms


@pytest.fixture(scope="module")
def capture():
    return make_capture(5, n_frames=T, size=SIZE)


@pytest.fixture(scope="module")
def ungated(capture):
    """Every lifted sample with the gate off, and the median score as the threshold."""
    samples = list(LiftDataset(capture).expand(N, sampler(), seed=2, quality_gate="off"))
    scores = np.array([s.meta["extra"]["quality"]["score"] for s in samples[T:]])
    assert len(np.unique(scores)) > 3  # a spread to gate on
    return samples, float(np.median(scores))


def same_frame(a, b) -> bool:
    """Equal samples up to the gate's own record (the threshold, and passed, depend on the setting)."""
    def strip(meta):
        extra = dict(meta.get("extra") or {})
        if "quality" in extra:
            extra["quality"] = {k: v for k, v in extra["quality"].items() if k not in ("threshold", "passed")}
        return {**meta, "extra": extra}
    return (a.key == b.key and a.image == b.image and a.shading == b.shading and a.mask == b.mask
            and a.kinematics.equals(b.kinematics) and strip(a.meta) == strip(b.meta))


def score(sample):
    return sample.meta["extra"]["quality"]["score"]


def test_drop_writes_exactly_the_passing_frames(capture, ungated):
    reference, threshold = ungated
    exp = LiftDataset(capture).expand(N, sampler(), seed=2, quality_gate="drop", quality_threshold=threshold)
    got = list(exp)
    passing = reference[:T] + [s for s in reference[T:] if score(s) >= threshold]
    assert 0 < len(passing) - T < N  # some dropped, some kept
    assert [s.key for s in got] == [s.key for s in passing]
    assert all(same_frame(a, b) for a, b in zip(got, passing))
    assert exp.gate_stats["dropped"] == N - (len(passing) - T)
    assert f"{N - (len(passing) - T)} dropped" in exp.gate_summary()


def test_resample_honours_n_and_keeps_the_passing_frames(capture):
    reference = list(LiftDataset(capture).expand(N, sampler(), HashScoredLifter(), seed=2, quality_gate="off"))
    threshold = float(np.median([score(s) for s in reference[T:]]))
    exp = LiftDataset(capture).expand(N, sampler(), HashScoredLifter(), seed=2, quality_threshold=threshold)
    got = list(exp)  # resample: the default
    assert len(got) == T + N and [s.key for s in got] == [s.key for s in reference]
    replaced = 0
    for old, new in zip(reference[T:], got[T:]):
        q = new.meta["extra"]["quality"]
        assert q["passed"] == (q["score"] >= threshold) and q["threshold"] == threshold
        if score(old) >= threshold:  # a passing frame is untouched
            assert same_frame(new, old) and q["round"] == 0
        else:  # a failing slot holds a re-planned frame (round >= 1), or its best candidate, flagged
            assert 1 <= q["round"] <= GATE_ROUNDS or (q["round"] == 0 and not q["passed"])
            assert q["score"] >= score(old)
            assert not new.kinematics.equals(old.kinematics) or q["round"] == 0  # re-planned
            replaced += q["passed"]
    # ~half the slots fail and each candidate passes with p ~ 1/2: P(none replaced) ~ 2^-24
    assert replaced == exp.gate_stats["resampled"] > 0
    assert exp.gate_stats["resampled"] + exp.gate_stats["kept_below"] == exp.gate_stats["failed"] >= 1


@pytest.mark.parametrize("gate", ["resample", "drop"])
def test_interrupted_gated_write_resumes_exactly(tmp_path, capture, ungated, gate):
    _, threshold = ungated
    whole = LiftDataset(capture).expand(N, sampler(), CrashingLifter(), seed=2, quality_gate=gate,
                                        quality_threshold=threshold)
    whole.write_webdataset(tmp_path / "whole", max_count=3, progress=False)
    crash = CrashingLifter(fail_after=2)
    with pytest.raises(RuntimeError, match="lifter crashed"):
        LiftDataset(capture).expand(N, sampler(), crash, seed=2, quality_gate=gate,
                                    quality_threshold=threshold).write_webdataset(tmp_path / "ds", max_count=3,
                                                                                  progress=False)
    resumed = LiftDataset(capture).expand(N, sampler(), CrashingLifter(), seed=2, quality_gate=gate,
                                          quality_threshold=threshold)
    resumed.write_webdataset(tmp_path / "ds", max_count=3, progress=False)
    a, b = list(read_webdataset(tmp_path / "whole")), list(read_webdataset(tmp_path / "ds"))
    assert len(a) == len(b) and all(x.equals(y) for x, y in zip(a, b))


def test_resample_gate_splits_across_processes_like_one(tmp_path, capture, ungated):
    _, threshold = ungated

    def exp():
        return LiftDataset(capture).expand(N, sampler(), seed=2, quality_threshold=threshold)
    exp().write_webdataset(tmp_path / "one", max_count=4, progress=False)
    for rank in (1, 0):
        exp().write_webdataset(tmp_path / "two", rank=rank, world_size=2, max_count=4, progress=False)
    a, b = list(read_webdataset(tmp_path / "one")), list(read_webdataset(tmp_path / "two"))
    assert len(a) == len(b) == T + N and all(x.equals(y) for x, y in zip(a, b))
    with pytest.raises(ConfigError, match="drop: the dataset is written by one process"):
        LiftDataset(capture).expand(N, sampler(), seed=2, quality_gate="drop").write_webdataset(
            tmp_path / "x", rank=0, world_size=2, progress=False)


def test_gate_settings_are_checked(capture):
    with pytest.raises(Exception, match="gate policy: expected one of"):
        LiftDataset(capture).expand(4, quality_gate="maybe")
    with pytest.raises(Exception, match=r"quality threshold: expected a score in \[0, 1\]"):
        LiftDataset(capture).expand(4, quality_threshold=1.5)


# ---------------------------------------------------------------------- unfit captured frames
@pytest.fixture(scope="module")
def unfit_capture():
    """8 frames: no face in frames 2 and 5, an outlier fit in frame 6 (residuals otherwise ~1 px)."""
    cap = make_capture(6, n_frames=8, size=SIZE)
    found = np.ones(8, bool)
    found[[2, 5]] = False
    residual = np.array([1.0, 1.1, np.nan, 0.9, 1.2, np.nan, 9.0, 1.0], np.float32)
    return dataclasses.replace(cap, face_found=found, landmark_residual=residual)


def test_unfit_frames_are_not_written_nor_references(unfit_capture):
    exp = LiftDataset(unfit_capture).expand(8, mine_extremes(clip_length=4), seed=1, quality_gate="off")
    samples = list(exp)
    captured = [s for s in samples if s.meta["source"] == "captured"]
    assert [s.meta["frame"] for s in captured] == [0, 1, 3, 4, 7]
    assert all(s.meta["extra"]["fit"]["ok"] for s in captured)
    used = {k for s in samples[len(captured):] for k in s.meta["reference_keys"]}
    assert used and not used & {s for s in (f"{unfit_capture.capture_id}/000000/{i:03d}" for i in (2, 5, 6))}
    assert "3 unfit frames not written (2 without a face, 1 with an outlier fit" in exp.captured_summary()
    kept = LiftDataset(unfit_capture).expand(8, mine_extremes(clip_length=4), seed=1, quality_gate="off",
                                             keep_unfit=True)
    captured = [s for s in kept if s.meta["source"] == "captured"]
    assert [s.meta["frame"] for s in captured] == list(range(8))
    assert [s.meta["extra"]["fit"]["ok"] for s in captured] == [True, True, False, True, True, False, False, True]
    assert [s.meta["extra"]["face_found"] for s in captured][2] is False


def test_cli_gate_flags_and_notes(tmp_path, capsys, capture):
    out = tmp_path / "out"
    capture.save(tmp_path / "capture")
    capture = tmp_path / "capture"
    assert main(["expand", str(capture), "--n", "6", "--out", str(out), "--quality-gate", "drop",
                 "--quality-threshold", "0.99", "--no-preview"]) == 0
    printed = capsys.readouterr().out
    assert "note    : quality gate: " in printed and "dropped (not written)" in printed
    n_written = len(list(read_webdataset(out / "webdataset")))
    assert f"({n_written} samples:" in printed
    with pytest.raises(SystemExit):
        main(["expand", str(capture), "--n", "6", "--out", str(out), "--quality-gate", "sometimes"])
    assert main(["expand", str(capture), "--n", "6", "--out", str(out), "--quality-threshold", "0.5",
                 "--quality-gate", "drop", "--no-preview"]) == 2
    assert "quality_threshold: recorded 0.99, now 0.5" in capsys.readouterr().err


# ---------------------------------------------------------------------- held-out frames
def test_held_out_frames_never_reach_the_plan(capture):
    """The plan of an expansion holding frames out is blind to them: changing the held-out frames'
    kinematics and pixels changes nothing, and none of them is a reference."""
    from liftdata.samplers import interpolate, mix

    held = np.zeros(T, bool)
    held[[1, 4]] = True
    spec = lambda: mix([mine_extremes(clip_length=CLIP), interpolate(clip_length=CLIP)], [0.5, 0.5])  # noqa: E731
    exp = LiftDataset(capture).expand(N, spec(), seed=4)
    exp.hold_out(held)
    plan = exp.plan
    assert not {i for c in plan.clips for i in c.reference_indices} & {1, 4}
    kin = capture.kinematics
    wild = dataclasses.replace(kin, expression=np.where(held[:, None], 3.0 * np.abs(kin.expression) + 0.5,
                                                        kin.expression).astype(np.float32))
    frames = np.stack([np.asarray(capture.frames[i]) for i in range(T)])
    frames[held] = 255 - frames[held]
    other = LiftDataset(dataclasses.replace(capture, kinematics=wild, frames=frames)).expand(N, spec(), seed=4)
    other.hold_out(held)
    for a, b in zip(plan.clips, other.plan.clips):
        assert a.kinematics.equals(b.kinematics) and a.reference_indices == b.reference_indices
    free = LiftDataset(dataclasses.replace(capture, kinematics=wild)).expand(N, spec(), seed=4).plan
    assert not all(a.kinematics.equals(b.kinematics) for a, b in zip(plan.clips, free.clips))  # it would leak
    with pytest.raises(ValueError, match="the plan is already made"):
        exp.hold_out(np.zeros(T, bool))
