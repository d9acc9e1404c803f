"""Every user error is one line and exit status 2, checked before tracking where it can be.

Each case was a traceback (some only after minutes of tracking). "Before tracking" is observed:
the video input is never decoded (no `out/capture/` appears) and nothing is written.
"""

from __future__ import annotations

import errno
import importlib
import json

import pytest

import liftdata.io.shards as shards
from liftdata.cli import main
from liftdata.errors import LiftdataError
from liftdata.synthetic import make_capture, write_video
from liftdata.tracking_cache import track_once

ERROR_CLASSES = {  # module -> error classes that describe bad input
    "liftdata.capture": ["CaptureError"], "liftdata.kinematics": ["KinematicsError"],
    "liftdata.track.decode": ["TrackingError"], "liftdata.io.shards": ["DatasetDirError"],
    "liftdata.io.schema": ["SampleError"], "liftdata.io.vhap": ["VhapError"], "liftdata.io.hub": ["HubError"],
    "liftdata.recipes": ["RecipeError"], "liftdata.samplers.plan": ["PlanError"],
    "liftdata.lifters.warp": ["LifterInputError"], "liftdata.head.flame_file": ["FlameFileError"],
    "liftdata.render.raster": ["RenderError", "EGLUnavailableError"], "liftdata.eval.metrics": ["MetricError"],
    "liftdata.eval.sources": ["EvalInputError"], "liftdata.eval.lpips": ["LpipsWeightsError"],
    "liftdata.config": ["ConfigError"],
}


def test_every_error_class_has_one_base():
    for module, names in ERROR_CLASSES.items():
        for name in names:
            assert issubclass(getattr(importlib.import_module(module), name), LiftdataError), (module, name)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "selfie.mp4"
    write_video(make_capture(0, n_frames=4, size=128), path)
    return path


def one_line(capsys, command: str) -> str:
    """The error line: the last line of stderr (progress bars may come before it), no traceback."""
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith(f"liftdata {command}: error: ") and "Traceback" not in err, err
    return last


@pytest.mark.parametrize("options, message", [
    (["--head-model", "flame"], "flame_model: head_model flame needs the FLAME model file (--flame-model PATH"),
    (["--head-model", "flame", "--flame-model", "/nonexistent/flame.pkl"], "/nonexistent/flame.pkl: no such FLAME"),
    (["--seed", "-1"], "seed: expected an integer in [0, 9223372036854775807], got -1"),
    (["--size", "100000"], "size: expected a positive integer up to 4096 (pixels), or none, got 100000"),
    (["--sampler", "{mine_extreme: {}}"], "sampler: unknown sampler 'mine_extreme'"),
    (["--sampler", "[1, 2]"], "--sampler: expected a mapping like {mine_extremes: {}}, got [1, 2]"),
    (["--lifter", "liftavatar"], "checkpoint: the liftavatar lifter needs a checkpoint directory"),
    (["--lifter", "liftavatar", "--checkpoint", "/nonexistent/ckpt"], "/nonexistent/ckpt: no such checkpoint"),
])
def test_bad_options_fail_before_tracking(tmp_path, video, capsys, options, message):
    out = tmp_path / "out"
    assert main(["expand", str(video), "--n", "4", "--out", str(out), *options]) == 2
    assert message in one_line(capsys, "expand")
    assert not out.exists()


def test_unusable_output_fails_before_tracking(tmp_path, video, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "out"):
        assert main(["expand", str(video), "--n", "4", "--out", str(out)]) == 2
        assert f"{out}: cannot write there ({a_file} is a file, not a directory)" in one_line(capsys, "expand")
    assert main(["track", str(video), "--out", str(a_file / "cap")]) == 2
    assert "is a file, not a directory" in one_line(capsys, "track")
    assert main(["track", str(video), "--out", str(a_file)]) == 2
    assert "already exists; choose a new capture directory" in one_line(capsys, "track")
    sampler = tmp_path / "sampler.yaml"
    sampler.write_bytes(bytes(range(256)))
    assert main(["expand", str(video), "--n", "4", "--out", str(tmp_path / "o"), "--sampler", str(sampler)]) == 2
    assert f"--sampler {sampler}: not a text (YAML) file" in one_line(capsys, "expand")


def test_nan_in_a_saved_capture_names_the_file(tmp_path, capsys):
    cap = tmp_path / "cap"
    make_capture(0, n_frames=3, size=64).save(cap)
    doc = json.loads((cap / "capture.json").read_text())
    doc["kinematics"]["jaw"][1][0] = float("nan")
    (cap / "capture.json").write_text(json.dumps(doc))
    assert main(["expand", str(cap), "--n", "4", "--out", str(tmp_path / "o")]) == 2
    err = one_line(capsys, "expand")
    assert f"{cap / 'capture.json'}: invalid kinematics or camera (" in err and "jaw" in err


def test_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    """ENOSPC while committing the second shard; after "freeing space" the rerun gives the bytes of a clean run."""
    cap = tmp_path / "cap"
    make_capture(0, n_frames=4, size=64).save(cap)
    args = ["--n", "4", "--shard-size", "3", "--no-preview"]
    assert main(["expand", str(cap), "--out", str(tmp_path / "clean"), *args]) == 0
    commit, calls = shards.ShardLog.commit, []

    def full_disk(self, filename, keys):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.temp_path(filename)))
        return commit(self, filename, keys)

    monkeypatch.setattr(shards.ShardLog, "commit", full_disk)
    out = tmp_path / "out"
    assert main(["expand", str(cap), "--out", str(out), *args]) == 2
    err = one_line(capsys, "expand")
    assert ".synthetic-0-000001.tar.tmp: No space left on device; complete shards are kept" in err
    monkeypatch.setattr(shards.ShardLog, "commit", commit)
    assert main(["expand", str(cap), "--out", str(out), *args]) == 0
    tars = sorted((out / "webdataset").glob("*.tar"))
    assert len(tars) == 3 and [p.read_bytes() for p in tars] == [
        p.read_bytes() for p in sorted((tmp_path / "clean" / "webdataset").glob("*.tar"))]


def test_truncated_video_says_how_many_frames_decoded(tmp_path, capsys):
    av = pytest.importorskip("av")  # the `track` extra; CI installs it
    src, fast = tmp_path / "v.mp4", tmp_path / "fast.mp4"
    write_video(make_capture(0, n_frames=40, size=64), src)
    with av.open(str(src)) as i, av.open(str(fast), "w", options={"movflags": "faststart"}) as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                o.mux(packet)
    cut = tmp_path / "cut.mp4"  # index first, then half of the frame data: decodes about half the frames
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    assert main(["track", str(cut), "--out", str(tmp_path / "cap")]) == 2
    err = one_line(capsys, "track")
    assert f"{cut}: damaged or truncated video: decoded " in err and " of the 40 frames the container claims" in err


def test_a_waiting_rank_times_out(tmp_path):
    from liftdata.capture import CaptureError

    with pytest.raises(CaptureError, match=r"rank 1 waited 0.2 s for rank 0 to save the tracked capture"):
        track_once(tmp_path / "capture", {"input": "x"}, lambda: None, rank=1, poll_s=0.05, timeout_s=0.2)


def test_size_beyond_this_machines_memory_fails_before_tracking(tmp_path, video, capsys, monkeypatch):
    import liftdata.run

    monkeypatch.setattr(liftdata.run, "physical_memory", lambda: 4 * 2**30)  # a 4 GiB machine
    out = tmp_path / "out"
    assert main(["expand", str(video), "--n", "4", "--out", str(out), "--size", "1024"]) == 2
    assert ("size: 1024 needs about 5 GiB of memory to expand (~5.4 kB per output pixel), this machine has 4 GiB"
            in one_line(capsys, "expand"))
    assert not out.exists()

