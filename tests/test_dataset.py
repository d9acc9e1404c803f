"""LiftDataset end to end: expand -> WebDataset / Parquet / VHAP, resume, inputs, bad-input errors.

References: the synthetic capture's frames and kinematics (ground truth), the sampler's plan
(what each lifted sample must say about itself), the warp lifter called directly on the plan's
clips, and plain `webdataset` / `datasets` readers.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest
import webdataset as wds
from flame_fixtures import make_flame_arrays, write_npz

import liftdata
from liftdata.cli import main
from liftdata.config import ConfigError
from liftdata.dataset import LiftDataset, process_rank
from liftdata.io import DatasetDirError, make_key, read_parquet, read_webdataset, resume_state
from liftdata.io.schema import decode_png
from liftdata.io.shards import merge_ranks
from liftdata.io.vhap import export_vhap, import_vhap
from liftdata.kinematics import Kinematics
from liftdata.lifters import Lifter, References, WarpLifter, render_conditions
from liftdata.samplers import mine_extremes
from liftdata.synthetic import make_capture, write_video
from liftdata.track import TrackingError

REPO = Path(liftdata.__file__).resolve().parent.parent
T, SIZE, N, CLIP = 6, 64, 10, 4  # captured frames, image size, lifted frames, clip length


@dataclass
class CountingLifter:
    """The real warp lifter behind the `Lifter` protocol, recording every clip it lifts."""

    inner: WarpLifter = field(default_factory=WarpLifter)
    calls: list[Kinematics] = field(default_factory=list)
    fail_after: int | None = None  # raise on this call (a crash in the middle of a write)
    name: str = "warp"
    version: str = "1"

    def lift(self, references, driving, *, seed=0):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("lifter crashed")
        self.calls.append(driving.kinematics)
        return self.inner.lift(references, driving, seed=seed)


@pytest.fixture(scope="module")
def capture():
    return make_capture(0, n_frames=T, size=SIZE)


def expansion(capture, lifter=None, n=N, seed=3, quality_gate="off", **kwargs):
    """The write mechanics under test count lifter calls: the quality gate (tests/test_quality_gate.py) is off."""
    return LiftDataset(capture).expand(n, mine_extremes(clip_length=CLIP), lifter or CountingLifter(), seed=seed,
                                       quality_gate=quality_gate, **kwargs)


def expected_keys(capture, n=N, include_captured=True):
    captured = [make_key(capture.capture_id, 0, i) for i in range(T)] if include_captured else []
    return captured + [make_key(capture.capture_id, 1 + i // CLIP, i % CLIP) for i in range(n)]


def clips_needed(exp, start):
    """Plan clips holding samples at or after stream index `start` (the ones a resume must lift)."""
    ends = np.cumsum([len(c.kinematics) for c in exp.plan.clips]) + exp.n_captured
    return int((ends > start).sum())


def write(exp, fmt, out, **kwargs):
    kwargs.setdefault("progress", False)
    return (exp.write_webdataset if fmt == "webdataset" else exp.write_parquet)(out, **kwargs)


def plain_records(fmt, out, tmp_path):
    """(key, image, meta, expression) per sample, read with plain webdataset / datasets."""
    if fmt == "webdataset":
        urls = sorted(str(p) for p in out.glob("*.tar"))
        return [(r["__key__"], r["png"], plain_meta(r["json"]["meta"]),
                 np.float32(r["json"]["kinematics"]["expression"]))
                for r in wds.WebDataset(urls, shardshuffle=False).decode("rgb8")]
    ds = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf"))["train"]
    return [(r["key"], np.asarray(r["image"]), plain_meta(r["meta"]), np.float32(r["kinematics"]["expression"]))
            for r in ds]


def plain_meta(meta):
    """Schema v2 stores the sampler's params and meta.extra as JSON texts (one shape for every sample)."""
    return {**meta, "sampler": {**meta["sampler"], "params": json.loads(meta["sampler"]["params"])},
            "extra": json.loads(meta["extra"])}


def shard_digests(out):
    manifest = json.loads((out / "manifest.json").read_text())
    for s in manifest["shards"]:  # the manifest's sha256 are those of the files
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    return [(s["file"], s["sha256"]) for s in manifest["shards"]]


def direct_lift(capture, clip):
    """The warp lifter called by hand on one plan clip (no LiftDataset code involved)."""
    refs = list(clip.reference_indices)
    ref_cond = render_conditions(capture.head_model, capture.identity, capture.kinematics[np.array(refs)],
                                 capture.camera)
    references = References(np.stack([capture.frames[i] for i in refs]), ref_cond)
    driving = render_conditions(capture.head_model, capture.identity, clip.kinematics, capture.camera)
    return WarpLifter().lift(references, driving)


# ---------------------------------------------------------------------- expand -> shards
@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_expand_writes_captured_then_lifted(tmp_path, capture, fmt):
    lifter = CountingLifter()
    assert isinstance(lifter, Lifter)
    exp = expansion(capture, lifter)
    assert len(exp) == T + N and lifter.calls == []  # lazy: nothing lifted yet
    result = write(exp, fmt, tmp_path / "ds", max_count=5)
    clips = exp.plan.clips
    assert result.n_samples == T + N and len(lifter.calls) == len(clips)  # every clip lifted once
    records = plain_records(fmt, tmp_path / "ds", tmp_path)
    keys = [r[0] for r in records]
    assert keys == expected_keys(capture) and len(set(keys)) == len(keys) and keys == sorted(keys)
    for i, (key, image, meta, expression) in enumerate(records[:T]):
        assert meta["source"] == "captured"
        np.testing.assert_array_equal(image, capture.frames[i])
        np.testing.assert_array_equal(expression, capture.kinematics.expression[i])
    lifted = iter(records[T:])
    for j, clip in enumerate(clips):
        ref_keys = [make_key(capture.capture_id, 0, i) for i in clip.reference_indices]
        provenance = json.loads(json.dumps(clip.provenance))
        images = direct_lift(capture, clip) if j == 0 else None
        for f in range(len(clip.kinematics)):
            key, image, meta, expression = next(lifted)
            assert key == make_key(capture.capture_id, 1 + j, f) and meta["source"] == "lifted"
            assert meta["sampler"] == {"name": provenance["sampler"], "params": provenance["params"]}
            assert meta["sampler"]["name"] == "extreme_expression_mining"
            assert meta["sampler"]["params"]["clip_length"] == CLIP
            assert meta["lifter"] == {"name": "warp", "version": "1"} and meta["seed"] == 3
            assert meta["reference_keys"] == ref_keys and set(ref_keys) <= set(keys[:T])
            np.testing.assert_array_equal(expression, clip.kinematics.expression[f])
            if images is not None:
                np.testing.assert_array_equal(image, images[f])  # exactly what the lifter made
                assert all(np.abs(image.astype(int) - capture.frames[i]).mean() > 0.5 for i in clip.reference_indices)


def test_lifted_only_and_plain_reader(tmp_path, capture):
    exp = expansion(capture, include_captured=False)
    assert len(exp) == N and exp.n_captured == 0
    write(exp, "webdataset", tmp_path / "ds", max_count=4)
    got = [s.key for s in read_webdataset(tmp_path / "ds")]
    assert got == expected_keys(capture, include_captured=False)
    assert {s.meta["source"] for s in read_webdataset(tmp_path / "ds")} == {"lifted"}


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_same_seed_same_bytes(tmp_path, capture, fmt):
    write(expansion(capture), fmt, tmp_path / "a", max_count=5)
    write(expansion(capture), fmt, tmp_path / "b", max_count=5)
    assert shard_digests(tmp_path / "a") == shard_digests(tmp_path / "b")
    plans = [LiftDataset(capture).expand(N, seed=seed).plan for seed in (3, 3, 4)]  # the default sampler
    kins = [Kinematics.concat([c.kinematics for c in p.clips]) for p in plans]
    assert kins[0].equals(kins[1]) and not kins[0].equals(kins[2])


# ---------------------------------------------------------------------- several processes (DESIGN 10)
def read(fmt, out):
    return list(read_webdataset(out) if fmt == "webdataset" else read_parquet(out))


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_multi_process_write_equals_single_process(tmp_path, capture, fmt):
    single = read(fmt, write(expansion(capture), fmt, tmp_path / "single", max_count=3).out_dir)
    out, calls = tmp_path / "ranks", 0
    for i, rank in enumerate([2, 0, 1]):  # any finishing order; the last one joins the parts
        assert not (out / "manifest.json").exists()
        lifter = CountingLifter()
        result = write(expansion(capture, lifter), fmt, out, max_count=3, rank=rank, world_size=3)
        assert result.out_dir == out / f"rank-{rank:05d}-of-00003"
        calls += len(lifter.calls)
        if i < 2:
            with pytest.raises(DatasetDirError, match="parts of a multi-process write are not joined"):
                read(fmt, out)
    merged = read(fmt, out)
    assert [s.key for s in merged] == [s.key for s in single] == expected_keys(capture)
    assert all(a.equals(b) for a, b in zip(merged, single))  # bytes, arrays and meta
    assert calls == len(expansion(capture).plan.clips)  # each clip lifted by exactly one process
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ranks"] == 3 and manifest["n_samples"] == T + N
    assert all((out / s["file"]).is_file() for s in manifest["shards"])
    if fmt == "parquet":  # the dataset card's data_files glob finds every part, in order
        ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))["train"]
        assert list(ds["key"]) == expected_keys(capture)


def test_rank_bounds_follow_clips_and_balance(capture):
    exp = expansion(capture, n=25)  # 6 captured + 7 clips (6 x 4 + 1)
    clip_ends = set(T + np.cumsum([0] + [len(c.kinematics) for c in exp.plan.clips]))
    for world in (1, 2, 3, 5, 16):
        b = exp.rank_bounds(world)
        assert len(b) == world + 1 and b[0] == 0 and b[-1] == len(exp) and b == sorted(b)
        assert all(x < T or x in clip_ends for x in b)  # lifted parts start and end at clip boundaries
        assert max(np.diff(b)) - min(np.diff(b)) <= CLIP + 1 or world > 7  # as even as clips allow
    with pytest.raises(ValueError, match="world_size"):
        exp.rank_bounds(0)


def test_more_processes_than_clips_and_a_rerun_rank(tmp_path, capture):
    out, world = tmp_path / "ds", 12  # 6 captured + 3 clips: some parts are empty
    bounds = expansion(capture).rank_bounds(world)
    assert 0 in np.diff(bounds) and bounds[-2] < T + N  # empty parts; the last part lifts a clip
    for rank in range(world):
        lifter = CountingLifter(fail_after=0) if rank == world - 1 else CountingLifter()
        if rank == world - 1:
            with pytest.raises(RuntimeError, match="lifter crashed"):  # the last rank crashes ...
                write(expansion(capture, lifter), "webdataset", out, rank=rank, world_size=world)
            with pytest.raises(DatasetDirError, match=r"ranks \[11\] of 12 have not finished"):
                merge_ranks(out, strict=True)
            lifter = CountingLifter()  # ... and is run again
        write(expansion(capture, lifter), "webdataset", out, rank=rank, world_size=world)
    assert [s.key for s in read_webdataset(out)] == expected_keys(capture)
    assert main(["merge", str(out)]) == 0  # idempotent: joining again gives the same dataset
    assert [s.key for s in read_webdataset(out)] == expected_keys(capture)


def test_process_rank_from_the_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert process_rank() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert process_rank() == (2, 4) and process_rank(0, 1) == (0, 1)  # arguments win
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="need 0 <= rank < world_size"):
        process_rank()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x'"):
        process_rank()
    with pytest.raises(ValueError, match="both or neither"):
        process_rank(rank=1)


PART_EXPAND = f"""
import sys, torch
torch.set_num_threads(1)
from liftdata.cli import main
from liftdata.dataset import LiftDataset, process_rank
from liftdata.samplers import mine_extremes
from liftdata.synthetic import make_capture

exp = LiftDataset(make_capture(0, n_frames={T}, size={SIZE})).expand({N}, mine_extremes(clip_length={CLIP}), seed=3,
                                                             quality_gate="off")
exp.write_parquet(sys.argv[1], max_count=3, progress=False)  # RANK / WORLD_SIZE from the environment
"""


def test_concurrent_processes_from_the_environment(tmp_path, capture):
    """Two processes started as torchrun would (RANK, WORLD_SIZE): one dataset, no coordination."""
    out = tmp_path / "ds"
    procs = [subprocess.Popen([sys.executable, "-c", PART_EXPAND, str(out)],
                              env={**os.environ, "PYTHONPATH": str(REPO), "RANK": str(r), "WORLD_SIZE": "2"})
             for r in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    single = read("parquet", write(expansion(capture), "parquet", tmp_path / "single", max_count=3).out_dir)
    merged = read("parquet", out)
    assert [s.key for s in merged] == [s.key for s in single]
    assert all(a.image == b.image for a, b in zip(merged, single))


def test_push_to_hub_refuses_a_multi_process_run(capture):
    with pytest.raises(ValueError, match="runs in one process"):
        expansion(capture).push_to_hub("user/name", rank=0, world_size=2)


# ---------------------------------------------------------------------- resume
def test_samples_from_start_lift_only_the_clips_needed(capture):
    full = list(expansion(capture))
    assert [s.key for s in full] == expected_keys(capture)
    for start in (0, 4, T, T + 1, T + CLIP, T + N - 1):
        lifter = CountingLifter()
        exp = expansion(capture, lifter)
        got = list(exp.samples(start))
        assert len(lifter.calls) == clips_needed(exp, start)
        assert len(got) == T + N - start and all(a.equals(b) for a, b in zip(got, full[start:]))


SLOW_EXPAND = f"""
import sys, time, torch
torch.set_num_threads(1)
from liftdata.cli import main
from liftdata.dataset import LiftDataset, process_rank
from liftdata.lifters import WarpLifter
from liftdata.samplers import mine_extremes
from liftdata.synthetic import make_capture, write_video

class SlowLifter:
    name, version = "warp", "1"
    def lift(self, references, driving, *, seed=0):
        time.sleep(0.4)
        return WarpLifter().lift(references, driving, seed=seed)

exp = LiftDataset(make_capture(0, n_frames={T}, size={SIZE})).expand(
    int(sys.argv[2]), mine_extremes(clip_length={CLIP}), SlowLifter(), seed=3, quality_gate="off")
exp.write_webdataset(sys.argv[1], max_count=4, progress=False)
"""


def test_killed_expansion_resumes_without_relifting(tmp_path, capture):
    out, n = tmp_path / "ds", 20
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXPAND, str(out), str(n)], env=env)
    deadline = time.time() + 90
    while not (out.exists() and resume_state(out) >= T + CLIP):  # captured frames + a lifted clip in shards
        assert proc.poll() is None and time.time() < deadline, "the expansion ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = resume_state(out)
    assert T < done < T + n and not (out / "manifest.json").exists()

    lifter = CountingLifter()
    exp = expansion(capture, lifter, n=n)
    result = exp.write_webdataset(out, max_count=4, progress=False)
    assert result.n_resumed == done and result.n_samples == T + n
    assert len(lifter.calls) == clips_needed(exp, done) < len(exp.plan.clips)  # finished clips not re-lifted
    keys = [s.key for s in read_webdataset(out)]
    assert keys == expected_keys(capture, n=n)  # exactly n lifted samples, no duplicates
    expansion(capture, n=n).write_webdataset(tmp_path / "fresh", max_count=4, progress=False)
    assert shard_digests(out) == shard_digests(tmp_path / "fresh")  # same bytes as an uninterrupted write


def test_crashed_parquet_expansion_resumes(tmp_path, capture):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="lifter crashed"):
        expansion(capture, CountingLifter(fail_after=2)).write_parquet(out, max_count=4, progress=False)
    done = resume_state(out)
    # 6 captured + 2 clips of 4 lifted -> 3 complete shards of 4, the 4th shard dropped
    assert done == 12 and not (out / "manifest.json").exists()
    lifter = CountingLifter()
    exp = expansion(capture, lifter)
    result = exp.write_parquet(out, max_count=4, progress=False)
    # clip 0 (samples 6-9) is in complete shards and not lifted again; clip 1 (10-13) holds 12, 13
    assert result.n_resumed == 12 and len(lifter.calls) == clips_needed(exp, 12) == 2
    assert [s.key for s in read_parquet(out)] == expected_keys(capture)
    expansion(capture).write_parquet(tmp_path / "fresh", max_count=4, progress=False)
    assert shard_digests(out) == shard_digests(tmp_path / "fresh")


# ---------------------------------------------------------------------- inputs
def test_from_images_real_photo(tmp_path):
    from skimage import data

    photo = data.astronaut()
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    ds = LiftDataset.from_images(path, progress=False, crop=None)  # the photo's own framing
    assert len(ds.capture) == 1 and ds.capture.face_found.all()
    samples = list(ds.expand(8, size=128))  # the default sampler on a single photo
    assert len(samples) == 9 and [s.meta["source"] for s in samples] == ["captured"] + ["lifted"] * 8
    image = samples[0].to_arrays()["image"]
    assert image.shape == (128, 128, 3)
    assert np.abs(image.astype(int) - cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA)).mean() < 1
    # the fitted head lies on her face: hand-annotated in the 512² photo, face x 180-265, y 65-175
    ys, xs = np.nonzero(samples[0].to_arrays()["mask"] > 127)
    assert 190 < xs.mean() * 4 < 255 and 85 < ys.mean() * 4 < 160 and len(xs) * 16 > 0.5 * 85 * 110
    assert xs.min() * 4 > 150 and xs.max() * 4 < 300 and ys.min() * 4 > 30 and ys.max() * 4 < 215
    for s in samples[1:]:
        assert s.to_arrays()["image"].shape == (128, 128, 3) and s.meta["reference_keys"] == [samples[0].key]


def test_from_images_crops_like_the_cli(tmp_path):
    """The Python API's default is `liftdata expand`'s: crop "auto", the head-centred box at its own side."""
    from skimage import data

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    whole = LiftDataset.from_images(path, progress=False, crop=None)
    ds = LiftDataset.from_images(path, progress=False)
    by_hand = whole.crop("auto").capture
    assert ds.capture.camera.width == by_hand.camera.width < 512  # the box's side: a ~40 px face, not upsampled
    assert np.array_equal(np.asarray(ds.capture.frames[0]), np.asarray(by_hand.frames[0]))
    assert ds.capture.extra["crop"]["size"] == ds.capture.camera.width
    sample = next(iter(ds.expand(1, size=None))).to_arrays()
    ys, xs = np.nonzero(sample["mask"] > 127)
    w = ds.capture.camera.width
    assert 0.3 * w < xs.mean() < 0.7 * w and 0.3 * w < ys.mean() < 0.7 * w  # head-centred
    assert 0.2 * w < xs.max() - xs.min() < 0.7 * w  # 2.5 x the face size: the face spans ~40% of the side
    with pytest.raises(ConfigError, match=r"crop: expected an integer in \[64, 4096\] \(pixels\), 'auto' or None, "
                                          r"got 32"):
        whole.crop(32)


def test_from_tracked_capture_dir(tmp_path, capture):
    saved = capture.save(tmp_path / "cap")
    again = LiftDataset.from_tracked(saved)
    direct = list(expansion(capture, n=5))
    assert all(a.equals(b) for a, b in zip(list(expansion(again.capture, n=5)), direct)) and len(direct) == T + 5


@pytest.fixture
def flame(tmp_path):
    from liftdata.head.flame import FlameHeadModel

    return FlameHeadModel.from_file(write_npz(tmp_path / "flame.npz", make_flame_arrays()), n_shape=20,
                                    n_expression=10)


def test_vhap_in_vhap_out(tmp_path, flame):
    cap = make_capture(1, n_frames=5, size=SIZE, head_model=flame)
    src = export_vhap(cap, tmp_path / "subject_vhap")
    with pytest.raises(ValueError, match="subject_vhap.*FLAME"):
        LiftDataset.from_tracked(src)
    exp = LiftDataset.from_tracked(src, flame).expand(6, mine_extremes(clip_length=4))
    out = exp.write_vhap(tmp_path / "out", background="keep")  # frames as captured (default: white background)
    frames = json.loads((out / "transforms_train.json").read_text())["frames"]
    assert len(frames) == 5 + 6
    assert [f["synthetic"] for f in frames] == [False] * 5 + [True] * 6
    assert [f["key"] for f in frames[5:]] == [make_key("subject_vhap", 1 + i // 4, i % 4) for i in range(6)]
    assert all((out / f["file_path"]).is_file() and (out / f["flame_param_path"]).is_file() for f in frames)
    back = import_vhap(out, flame)
    assert len(back) == 11
    assert back.kinematics[np.arange(5)].equals(cap.kinematics)
    plan = Kinematics.concat([c.kinematics for c in exp.plan.clips])
    np.testing.assert_array_equal(back.kinematics.expression[5:], plan.expression)
    np.testing.assert_array_equal(back.frames[0], cap.frames[0])


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", [0, -3, 2.5, "4"])
def test_bad_n(capture, n):
    with pytest.raises(ValueError, match=r"n must be a positive integer, got"):
        LiftDataset(capture).expand(n)


def test_video_without_face_and_unreadable_video(tmp_path):
    noise = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(noise), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 96))
    rng = np.random.default_rng(0)
    for _ in range(4):
        writer.write(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    writer.release()
    with pytest.raises(TrackingError, match=r"noise\.mp4: no face found in any of its 4 frame"):
        LiftDataset.from_video(noise, progress=False)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(TrackingError, match=r"notes\.mp4: (cannot|no decodable)"):
        LiftDataset.from_video(text, progress=False)


def test_unwritable_output_dir(tmp_path, capture):
    lifter = CountingLifter()
    if os.geteuid() == 0:  # root ignores permission bits; a path under a regular file fails for everyone
        (tmp_path / "a_file").write_text("x")
        target, expected = tmp_path / "a_file" / "out", DatasetDirError
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target, expected = locked / "out", PermissionError
    try:
        with pytest.raises(expected, match=f"{target}.*(not writable|cannot write)"):
            expansion(capture, lifter).write_webdataset(target, progress=False)
    finally:
        if os.geteuid() != 0:
            locked.chmod(0o700)
    assert lifter.calls == []


def test_incompatible_output_dir(tmp_path, capture):
    out = tmp_path / "ds"
    expansion(capture).write_parquet(out, progress=False)
    lifter = CountingLifter()
    with pytest.raises(DatasetDirError, match=f"{out}: holds a parquet dataset.*cannot write a webdataset"):
        expansion(capture, lifter).write_webdataset(out, progress=False)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DatasetDirError, match=f"{foreign}: not empty"):
        expansion(capture, lifter).write_parquet(foreign, progress=False)
    assert lifter.calls == []
    # a complete dataset asked to hold more samples than it has: other settings, refused by name
    with pytest.raises(DatasetDirError, match=rf"{out}: holds a dataset made with other settings \(n: recorded {N}, "
                                              rf"now {N + 4}; plan: recorded '[0-9a-f]+\.\.\.[0-9a-f]+', now '"):
        expansion(capture, n=N + 4).write_parquet(out, progress=False)
    assert decode_png(next(read_parquet(out)).image).shape == (SIZE, SIZE, 3)


def test_from_video_with_an_unusual_file_name(tmp_path, capture):
    path = tmp_path / "My selfie.v2.mp4"  # space and dots: not allowed in sample keys or shard names
    write_video(make_capture(0, n_frames=T, size=128), path)  # the tracker needs faces >= 64 px across
    ds = LiftDataset.from_video(path, progress=False)
    assert ds.capture.capture_id == "My_selfie_v2" and len(ds.capture) == T and ds.capture.face_found.all()
    result = ds.expand(4, mine_extremes(clip_length=4)).write_webdataset(tmp_path / "ds", progress=False)
    assert [p.name for p in result.files] == ["My_selfie_v2-000000.tar"]
    assert [s.key for s in read_webdataset(tmp_path / "ds")][T:] == [make_key("My_selfie_v2", 1, f) for f in range(4)]


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_resuming_with_another_capture_of_the_same_name_is_refused(tmp_path, capture, fmt):
    """Same keys, same settings, another subject: the capture's fingerprint in the manifest tells them apart."""
    import dataclasses

    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="lifter crashed"):  # killed mid-write: complete shards stay
        write(expansion(capture, CountingLifter(fail_after=1)), fmt, out, max_count=3)
    other = dataclasses.replace(make_capture(1, n_frames=T, size=SIZE), capture_id=capture.capture_id)
    lifter = CountingLifter()
    with pytest.raises(DatasetDirError, match=rf"{out}: holds a dataset made with other settings \(capture: recorded"):
        write(expansion(other, lifter), fmt, out, max_count=3)
    assert lifter.calls == [] and resume_state(out) > 0
    write(expansion(capture), fmt, out, max_count=3)  # the right capture resumes
    assert [s.key for s in read(fmt, out)] == expected_keys(capture)
