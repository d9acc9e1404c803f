"""The preview shows the floor of a dataset: the lowest-scoring lifted frames."""

from __future__ import annotations

import numpy as np
import pytest

from liftdata.io.schema import Sample, make_key, make_meta
from liftdata.kinematics import Camera, Kinematics
from liftdata.preview import _write_worst, quality_of, worst_samples


def sample(i: int, score: float | None, where: str = "quality") -> Sample:
    key = make_key("cap", 1 + i // 10, i % 10)
    kin = Kinematics.zeros(1, 4, "builtin", "1")[0]
    quality = None if score is None else {"score": score, "threshold": 0.4}
    meta = make_meta(key, kin, source="lifted", extra={"quality": quality} if where == "extra" and quality else None)
    if where == "quality" and quality:
        meta["quality"] = quality
    image = np.full((24, 24, 3), int(255 * (score or 0)), np.uint8)
    return Sample.from_arrays(key, image, kin, Camera.frontal(24.0, 24, 24, 0.55), meta,
                              mask=np.pad(np.ones((12, 12), bool), 6))


def test_worst_samples_are_the_k_lowest_scores_worst_first(rng):
    scores = rng.uniform(0, 1, 40)
    samples = [sample(i, float(s), "quality" if i % 2 else "extra") for i, s in enumerate(scores)]
    samples.insert(7, sample(99, None))  # unscored samples are ignored
    worst = worst_samples(iter(samples), 5)
    assert [quality_of(s) for s in worst] == pytest.approx(sorted(scores)[:5])
    assert worst_samples(iter(samples), 100)[-1] is not None and len(worst_samples(samples, 100)) == 40
    assert worst_samples([sample(1, None)], 3) == []


def test_worst_png_is_written_only_for_scored_frames(tmp_path):
    assert not _write_worst([sample(0, None)], tmp_path, 4) and not (tmp_path / "worst.png").exists()
    assert _write_worst([sample(i, i / 10) for i in range(6)], tmp_path, 4)
    assert (tmp_path / "worst.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
