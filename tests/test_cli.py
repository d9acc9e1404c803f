"""The `liftdata` command line: --help of every command, and expand/preview/track/demo on tiny inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

import liftdata
from liftdata.capture import Capture
from liftdata.cli import PASSTHROUGH, build_parser, main
from liftdata.dataset import captured_samples
from liftdata.io import read_parquet, read_webdataset
from liftdata.synthetic import make_capture, write_video

REPO = Path(liftdata.__file__).resolve().parent.parent
FRAMES, N, SIZE = 6, 8, 128  # faces >= 64 px across: the tracker refuses smaller ones

HELP = {  # command -> options its --help must mention
    "expand": ["--n", "--out", "--format", "--sampler", "--lifter", "--checkpoint", "--device", "--dtype", "--size",
               "--no-captured", "--overwrite"],
    "build": ["recipe", "--set", "--overwrite"],
    "preview": ["dir", "--out", "--no-sha256"],
    "verify": ["dir", "--no-sha256"],
    "avatar": ["train", "render", "compare"],  # argument parsing owned by liftdata.avatar.cli
    "push": ["repo_id", "--public", "--token"],
    "merge": ["dir", "rank-*-of-N"],
    "track": ["input", "--out", "--max-frames"],
    "demo": ["--out", "--n", "--size"],
    "info": ["usage: liftdata info"],
    "eval": ["usage: liftdata eval"],  # argument parsing owned by liftdata.eval.report
    "train-lifter": ["usage: liftdata train-lifter"],  # owned by liftdata.lifters.liftavatar.training
}


@pytest.mark.parametrize("cmd", sorted(HELP))
def test_every_command_has_useful_help(cmd, capsys):
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(HELP)
    with pytest.raises(SystemExit) as exit_info:
        main([cmd, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(word in out for word in HELP[cmd]), out


def test_help_through_the_module_entry_point():
    """`python -m liftdata.cli CMD --help` in fresh interpreters (a built-in and a passthrough command)."""
    procs = {cmd: subprocess.Popen([sys.executable, "-m", "liftdata.cli", cmd, "--help"], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in ("expand", "eval")}
    for cmd, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and all(word in out for word in HELP[cmd]), (cmd, err)
    assert set(PASSTHROUGH) == {"eval", "train-lifter"}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "selfie.mp4"
    write_video(make_capture(0, n_frames=FRAMES + 2, size=SIZE), path)
    return path


def test_expand_preview_and_rerun(tmp_path, video, capsys):
    out = tmp_path / "out"
    args = ["expand", str(video), "--n", str(N), "--out", str(out), "--max-frames", str(FRAMES), "--shard-size", "5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"({FRAMES + N} samples: {FRAMES} captured + {N} lifted)" in printed
    assert str(out / "preview" / "index.html") in printed
    manifest = json.loads((out / "webdataset" / "manifest.json").read_text())
    assert manifest["n_samples"] == FRAMES + N and [s["count"] for s in manifest["shards"]] == [5, 5, 4]
    tars = [str(out / "webdataset" / s["file"]) for s in manifest["shards"]]
    records = list(wds.WebDataset(tars, shardshuffle=False).decode("rgb8"))
    keys = [r["__key__"] for r in records]
    assert len(set(keys)) == FRAMES + N and keys == sorted(keys) and keys[0] == "selfie/000000/000"
    assert [r["json"]["meta"]["source"] for r in records] == ["captured"] * FRAMES + ["lifted"] * N
    side = records[-1]["json"]["camera"]["width"]  # --crop auto: the square head box
    assert records[-1]["png"].shape == (side, side, 3) and side <= SIZE  # inside the frame, never upsampled
    # a rerun finds the dataset complete and leaves it as it was
    assert main(args + ["--no-preview"]) == 0
    assert json.loads((out / "webdataset" / "manifest.json").read_text())["shards"] == manifest["shards"]

    assert main(["preview", str(out / "webdataset"), "--out", str(tmp_path / "pv")]) == 0
    page = (tmp_path / "pv" / "index.html").read_text()
    assert f"{FRAMES} captured and {N} lifted frames" in page
    assert (tmp_path / "pv" / "preview.png").stat().st_size > 1000 and (tmp_path / "pv" / "coverage.png").is_file()


def test_expand_parquet_lifted_only_with_sampler(tmp_path, video, capsys):
    out = tmp_path / "out"
    assert main(["expand", str(video), "--n", "5", "--out", str(out), "--max-frames", str(FRAMES), "--format",
                 "parquet", "--no-captured", "--no-preview", "--size", "64",
                 "--sampler", "{pose_sweep: {yaw: [-10, 10], clip_length: 5}}"]) == 0
    samples = list(read_parquet(out / "parquet"))
    assert len(samples) == 5 and {s.meta["sampler"]["name"] for s in samples} == {"pose_sweep"}
    assert samples[0].meta["sampler"]["params"]["yaw"] == [-10, 10]
    assert samples[0].to_arrays()["image"].shape == (64, 64, 3) and not (out / "preview").exists()
    assert "plan: 5 frames in 1 clips: pose_sweep 5" in capsys.readouterr().err  # the CLI prints plan.summary()


def test_expand_bad_input(tmp_path, video, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["expand", str(video), "--n", "0", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "--n: must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["expand", str(tmp_path / "nothing.mp4"), "--n", "4", "--out", str(tmp_path / "o")]) == 2
    assert "nothing.mp4: no such file or directory" in capsys.readouterr().err
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert main(["expand", str(text), "--n", "4", "--out", str(tmp_path / "o")]) == 2
    assert "liftdata expand: error:" in (err := capsys.readouterr().err) and "notes.mp4: cannot decode" in err
    assert main(["expand", str(video), "--n", "4", "--out", str(tmp_path / "o"), "--checkpoint", "ckpt"]) == 2
    assert "the warp lifter has no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before tracking or writing anything


def test_track(tmp_path, video, capsys):
    assert main(["track", str(video), "--out", str(tmp_path / "cap"), "--max-frames", "4"]) == 0
    assert "4 frames, face found in 4" in capsys.readouterr().out
    capture = Capture.load(tmp_path / "cap")
    assert len(capture) == 4 and capture.face_found.all() and (tmp_path / "cap" / "overlay.png").is_file()
    assert capture.camera.width == SIZE and np.nanmax(capture.landmark_residual) < 3  # pixels at 128²


def test_expand_in_two_processes_then_merge(tmp_path, video, capsys, monkeypatch):
    """`torchrun --no-python liftdata expand ...` as torchrun runs it: RANK / WORLD_SIZE per process."""
    cap = tmp_path / "cap"
    assert main(["track", str(video), "--out", str(cap), "--max-frames", str(FRAMES)]) == 0
    single, out = tmp_path / "single", tmp_path / "out"
    assert main(["expand", str(cap), "--n", str(N), "--out", str(single), "--no-preview", "--shard-size", "3"]) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        assert main(["expand", str(cap), "--n", str(N), "--out", str(out), "--shard-size", "3"]) == 0
        assert f"lifted, part {rank + 1} of 2)" in capsys.readouterr().out
    assert (out / "preview" / "index.html").is_file()  # written by rank 0 only
    flame = ["--head-model", "flame", "--flame-model", "f.pkl", "--flame-embedding", "e.npz"]  # checked later
    assert main(["expand", str(cap), "--n", "4", "--out", str(tmp_path / "v"), "--format", "vhap", *flame]) == 2
    assert "--format vhap is written by one process" in capsys.readouterr().err
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    a, b = list(read_webdataset(out / "webdataset")), list(read_webdataset(single / "webdataset"))
    assert len(a) == FRAMES + N and all(x.equals(y) for x, y in zip(a, b))
    assert main(["merge", str(out / "webdataset")]) == 0
    assert f"({FRAMES + N} samples in" in capsys.readouterr().out
    assert main(["merge", str(tmp_path)]) == 2
    assert "holds no rank-*-of-* directories" in capsys.readouterr().err


def test_vhap_format_without_flame_is_refused_before_tracking(tmp_path, video, capsys, monkeypatch):
    """The VHAP layout holds FLAME parameters: with the builtin head model the run stops before any tracking."""
    import liftdata.track

    def no_tracking(*args, **kwargs):
        raise AssertionError("tracked before the format check")

    monkeypatch.setattr(liftdata.track, "track_video", no_tracking)
    out = tmp_path / "out"
    assert main(["expand", str(video), "--n", "4", "--out", str(out), "--format", "vhap"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("liftdata expand: error: format: vhap holds FLAME parameters") and "builtin" in err
    assert err.count("\n") == 1 and not out.exists()


def test_expand_tracks_a_video_once(tmp_path, video, capsys, monkeypatch):
    """The tracked capture is saved in OUT/capture/ and reused by a rerun; other settings are refused."""
    import liftdata.track

    out = tmp_path / "out"
    args = ["expand", str(video), "--n", "4", "--out", str(out), "--max-frames", str(FRAMES), "--no-preview"]
    assert main(args) == 0
    saved = Capture.load(out / "capture")
    assert len(saved) == FRAMES and saved.extra["tracking"]["input"]["input"] == str(video.resolve())
    first = list(read_webdataset(out / "webdataset"))
    from liftdata.dataset import LiftDataset
    from liftdata.track.matte import FrameMatter

    cropped = LiftDataset(saved).crop("auto").capture  # --crop auto, matted: the saved capture, cropped
    assert "crop" in cropped.extra and "crop" not in saved.extra  # (a close-up: the box is the whole frame)
    expected = captured_samples(cropped, matter=FrameMatter(cropped))
    assert all(a.equals(b) for a, b in zip(first, expected))  # the dataset holds the saved capture

    def no_tracking(*args, **kwargs):
        raise AssertionError("tracked again")

    monkeypatch.setattr(liftdata.track, "track_video", no_tracking)
    capsys.readouterr()
    assert main(args) == 0  # a rerun finds the dataset complete
    shutil.rmtree(out / "webdataset")  # the dataset is gone, the capture is not: expanded again without tracking
    assert main(args) == 0
    again = list(read_webdataset(out / "webdataset"))
    assert len(again) == FRAMES + 4 and all(a.equals(b) for a, b in zip(first, again))
    assert main(args[:-2] + ["4", "--no-preview"]) == 2  # --max-frames 4: another tracking
    err = capsys.readouterr().err
    assert "liftdata expand: error:" in err and "capture: tracked from another input or with other settings" in err
    assert f"(max_frames: saved {FRAMES}, now 4)" in err
    assert main(args + ["--tracking", "landmarks"]) == 2  # the other tracking mode: another tracking
    err = capsys.readouterr().err
    assert "capture: tracked from another input or with other settings" in err
    assert "(tracking: saved 'photometric', now 'landmarks')" in err


def test_two_processes_track_a_video_once(tmp_path, video):
    """Under torchrun with a video input, rank 0 tracks and saves; rank 1 waits and expands the same capture."""
    import os

    out, single = tmp_path / "out", tmp_path / "single"
    cmd = [sys.executable, "-m", "liftdata.cli", "expand", str(video), "--n", str(N), "--out", str(out),
           "--max-frames", str(FRAMES), "--no-preview", "--shard-size", "3"]
    env = {**os.environ, "WORLD_SIZE": "2", "PYTHONPATH": str(REPO)}
    rank1 = subprocess.Popen(cmd, env={**env, "RANK": "1"}, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert "rank 1: waiting for rank 0 to track" in rank1.stdout.readline()  # started first: it waits
    rank0 = subprocess.run(cmd, env={**env, "RANK": "0"}, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rank0.returncode == 0, rank0.stderr
    rest, err = rank1.communicate(timeout=300)
    assert rank1.returncode == 0, err
    assert "part 1 of 2" in rank0.stdout and "part 2 of 2" in rest
    # the joined dataset equals a single-process expansion of the one saved capture
    assert main(["expand", str(out / "capture"), "--n", str(N), "--out", str(single), "--no-preview"]) == 0
    a, b = list(read_webdataset(out / "webdataset")), list(read_webdataset(single / "webdataset"))
    assert len(a) == len(b) == FRAMES + N and all(x.equals(y) for x, y in zip(a, b))


def test_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", str(N), "--size", str(SIZE)]) == 0
    printed = capsys.readouterr().out
    for name, captured in [("astronaut", 1), ("synthetic", 48)]:
        dataset = out / name / "webdataset"
        assert f"{dataset} ({captured + N} samples)" in printed
        assert str(out / name / "preview" / "index.html") in printed
        samples = list(read_webdataset(dataset))
        assert [s.meta["source"] for s in samples] == ["captured"] * captured + ["lifted"] * N
        assert samples[-1].to_arrays()["image"].shape == (SIZE, SIZE, 3)
        assert (out / name / "preview" / "preview.png").stat().st_size > 1000
    assert (out / "astronaut.png").is_file() and (out / "synthetic.mp4").is_file()


def test_captured_sample_maps_match_the_reference_rasterizer():
    cap = make_capture(2, n_frames=2, size=64)
    fast = list(captured_samples(cap))
    slow = list(captured_samples(cap, backend="torch"))
    for a, b in zip(fast, slow):
        ma, mb = a.to_arrays()["mask"] > 127, b.to_arrays()["mask"] > 127
        assert (ma == mb).mean() > 0.99 and ma.sum() > 500
        assert np.array_equal(a.to_arrays()["image"], cap.frames[int(a.key[-3:])])


def test_expand_with_a_liftavatar_checkpoint_in_bfloat16(tmp_path, capsys):
    """--lifter liftavatar --checkpoint DIR --device cpu --dtype bfloat16 on a saved capture."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from liftdata.lifters.liftavatar import LiftAvatarPipeline, LiftAvatarTransformer3DModel, coefficient_dim

    make_capture(0, n_frames=6, size=32).save(tmp_path / "capture")
    torch.manual_seed(0)
    model = LiftAvatarTransformer3DModel(num_attention_heads=2, attention_head_dim=8, ffn_dim=16, num_layers=1,
                                         text_dim=8, freq_dim=16, rope_max_seq_len=32, text_length=4,
                                         coefficient_dim=coefficient_dim(33), shading_hidden=4, shading_channels=4)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    LiftAvatarPipeline(model, vae, FlowMatchEulerDiscreteScheduler()).save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["expand", str(tmp_path / "capture"), "--n", "5", "--out", str(out), "--lifter", "liftavatar",
                 "--checkpoint", str(tmp_path / "ckpt"), "--device", "cpu", "--dtype", "bfloat16",
                 "--no-preview"]) == 0
    samples = list(read_webdataset(out / "webdataset"))
    lifted = [s for s in samples if s.meta["source"] == "lifted"]
    assert len(samples) == 6 + 5 and len(lifted) == 5
    assert all(s.meta["lifter"]["name"] == "liftavatar" and s.to_arrays()["image"].shape == (32, 32, 3) for s in lifted)
    # a checkpoint trained for another head model (here 10 coefficients) is refused before any work
    other = LiftAvatarTransformer3DModel(**{**model.config, "coefficient_dim": 10})
    LiftAvatarPipeline(other, vae, FlowMatchEulerDiscreteScheduler()).save_pretrained(tmp_path / "other")
    capsys.readouterr()
    assert main(["expand", str(tmp_path / "capture"), "--n", "5", "--out", str(tmp_path / "o2"), "--lifter",
                 "liftavatar", "--checkpoint", str(tmp_path / "other"), "--device", "cpu", "--no-preview"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"liftdata expand: error: checkpoint: {tmp_path / 'other'} reads 10 coefficients per "
                          f"frame, the head model builtin (33 expressions) gives {coefficient_dim(33)}")
    assert not (tmp_path / "o2").exists()


def test_input_kind_is_decided_once_for_expand_and_track(tmp_path):
    """.tif/.tiff photos are images (they went down the video path before); folders with a capture are tracked."""
    from liftdata.cli import _input_kind

    for name, kind in [("p.tif", "images"), ("p.TIFF", "images"), ("p.jpg", "images"), ("v.mp4", "video"),
                       ("v.mov", "video")]:
        (tmp_path / name).write_bytes(b"x")
        assert _input_kind(tmp_path / name) == kind, name
    (tmp_path / "photos").mkdir()
    assert _input_kind(tmp_path / "photos") == "images"
    (tmp_path / "cap").mkdir()
    (tmp_path / "cap" / "capture.json").write_text("{}")
    assert _input_kind(tmp_path / "cap") == "tracked"
