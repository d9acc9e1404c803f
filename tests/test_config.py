"""Settings are the dataset's identity: `ExpandConfig`, recipe keys, and the rerun matrix.

The rerun matrix runs `liftdata expand` on a tiny saved capture (no tracking): an interrupted run
resumed with the same settings gives the bytes of an uninterrupted run (the reference); each
changed setting is refused with one line naming it, and leaves the folder untouched.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from liftdata.cli import main
from liftdata.config import MAX_SIZE, ConfigError, ExpandConfig, recipe_paths
from liftdata.io.shards import read_manifest
from liftdata.lifters.warp import WarpLifter
from liftdata.synthetic import make_capture

FRAMES, N, SIZE = 4, 4, 64


# ---------------------------------------------------------------------- the config itself
def test_recipe_round_trip_and_identity():
    config = ExpandConfig(video="/v.mp4", n=10, seed=3, size=128, sampler={"interpolate": {}}, out="/o",
                          flame_model=None, shard_size=7, device="cuda", preview=False)
    assert ExpandConfig.from_recipe(config.to_recipe()) == config
    identity = config.identity()
    assert identity["n"] == 10 and identity["sampler"] == {"interpolate": {}} and identity["video"] == "/v.mp4"
    assert not {"out", "device", "preview"} & set(identity)  # runtime only
    assert json.loads(json.dumps(identity)) == identity
    paths = recipe_paths()
    assert paths["expand.lifter.name"] == "lifter" and paths["input.flame.model"] == "flame_model"
    assert paths["output.dir"] == "out" and len(paths) == len(dataclasses.fields(ExpandConfig))


@pytest.mark.parametrize("changes, message", [
    ({"n": 0}, "n: expected a positive integer"),
    ({"n": True}, "n: expected a positive integer"),  # n=True is not a count
    ({"n": 2.5}, "n: expected a positive integer"),
    ({"seed": -1}, "seed: expected an integer in [0, "),
    ({"size": MAX_SIZE + 1}, f"size: expected a positive integer up to {MAX_SIZE}"),
    ({"stride": 0}, "stride: expected a positive integer"),
    ({"format": "tiff"}, "format: expected one of webdataset, parquet, vhap"),
    ({"format": "vhap"}, "format: vhap holds FLAME parameters (the VHAP/GaussianAvatars layout), the head model is "
                         "builtin"),
    ({"lifter": "liftavatar"}, "checkpoint: the liftavatar lifter needs a checkpoint directory"),
    ({"head_model": "flame"}, "flame_model: head_model flame needs the FLAME model file"),
    ({"images": "a.png"}, "input: give exactly one of video, images, tracked, synthetic (got video and images)"),
    ({"include_captured": "yes"}, "include_captured: expected true or false"),
    ({"sampler": "mine_extremes"}, "sampler: expected a sampler spec mapping"),
])
def test_bad_values_name_the_field(changes, message):
    with pytest.raises(ConfigError) as info:
        ExpandConfig(**{"video": "v.mp4", "n": 4, **changes})
    assert str(info.value).startswith(message.split(" (")[0]) and message in str(info.value)


def test_unknown_recipe_keys_name_the_closest_valid_one():
    base = {"input": {"video": "v.mp4"}, "expand": {"n": 4}, "output": {"dir": "o"}}
    for section, key, hint in [("expand", "smapler", "expand.sampler"), ("input", "max_frame", "input.max_frames"),
                               ("output", "seed", "expand.seed")]:
        recipe = json.loads(json.dumps(base))
        recipe[section][key] = 1
        with pytest.raises(ConfigError, match=rf"unknown key {section}\.{key}; did you mean {hint}\?"):
            ExpandConfig.from_recipe(recipe)
    with pytest.raises(ConfigError, match="unknown key outptu; did you mean output?"):
        ExpandConfig.from_recipe({**base, "outptu": {}})


# ---------------------------------------------------------------------- the rerun matrix
@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cap") / "capture"
    make_capture(0, n_frames=FRAMES, size=SIZE).save(d)
    return d


def expand(capture_dir: Path, out: Path, *extra: str) -> int:
    return main(["expand", str(capture_dir), "--n", str(N), "--out", str(out), "--shard-size", "3", "--no-preview",
                 *extra])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(directory).items() if k.endswith(".tar")}


@pytest.fixture(scope="module")
def reference(capture_dir, tmp_path_factory):
    """An uninterrupted run: the bytes every resume must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert expand(capture_dir, out) == 0
    return shard_bytes(out / "webdataset")


@pytest.fixture
def interrupted(capture_dir, tmp_path, monkeypatch):
    """A run killed in the first lifter call: the captured frames' complete shard is on disk."""
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(WarpLifter, "lift_detailed", _crash)  # what the expand path calls (frames + quality terms)
        with pytest.raises(RuntimeError, match="killed"):
            expand(capture_dir, out)
    assert not (out / "webdataset" / "manifest.json").exists() and shard_bytes(out / "webdataset")
    return out


def _crash(*args, **kwargs):
    raise RuntimeError("killed")


CHANGES = [  # (options, the field the refusal must name, recorded, now)
    (["--seed", "7"], "seed", "0", "7"),
    (["--size", "48"], "size", "None", "48"),
    (["--n", "5"], "n", "4", "5"),
    (["--no-captured"], "include_captured", "True", "False"),
    (["--shard-size", "2"], "shard_size", "3", "2"),
    (["--sampler", "{interpolate: {}}"], "sampler", "None", "{'interpolate': {}}"),
]


def test_same_settings_resume_byte_identically(capture_dir, interrupted, reference, capsys):
    assert expand(capture_dir, interrupted) == 0
    assert shard_bytes(interrupted / "webdataset") == reference
    manifest = read_manifest(interrupted / "webdataset")
    assert manifest["config"]["n"] == N and manifest["config"]["tracked"] == str(capture_dir)
    assert {"capture", "plan", "lifter_version"} <= set(manifest["config"])
    assert expand(capture_dir, interrupted) == 0  # a finished dataset: rerunning changes nothing
    assert shard_bytes(interrupted / "webdataset") == reference


@pytest.mark.parametrize("options, field, recorded, now", CHANGES)
def test_changed_setting_is_refused_by_name(capture_dir, interrupted, reference, capsys, options, field, recorded,
                                            now):
    before = snapshot(interrupted)
    assert expand(capture_dir, interrupted, *options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"holds a dataset made with other settings ({field}: recorded {recorded}, " \
                                      f"now {now})" in err and "--overwrite" in err, err
    assert snapshot(interrupted) == before  # nothing written, nothing removed
    assert expand(capture_dir, interrupted) == 0 and shard_bytes(interrupted / "webdataset") == reference
    assert expand(capture_dir, interrupted, *options) == 2  # a finished dataset is protected the same way
    assert shard_bytes(interrupted / "webdataset") == reference


def test_overwrite_starts_over(capture_dir, interrupted, reference, tmp_path):
    assert expand(capture_dir, interrupted, "--seed", "7", "--overwrite") == 0
    assert read_manifest(interrupted / "webdataset")["config"]["seed"] == 7
    fresh = tmp_path / "fresh"
    assert expand(capture_dir, fresh, "--seed", "7") == 0
    assert shard_bytes(interrupted / "webdataset") == shard_bytes(fresh / "webdataset") != reference


def test_another_capture_under_the_same_path_is_refused(capture_dir, interrupted, tmp_path, capsys):
    """Same settings, same input path, different subject: caught by the capture's fingerprint."""
    moved = tmp_path / "capture"
    shutil.copytree(capture_dir, moved)
    assert expand(moved, tmp_path / "o1") == 0
    other = dataclasses.replace(make_capture(1, n_frames=FRAMES, size=SIZE), capture_id="synthetic-0")
    shutil.rmtree(moved)
    other.save(moved)
    capsys.readouterr()
    assert expand(moved, tmp_path / "o1", "--n", str(N)) == 2
    err = capsys.readouterr().err
    assert "holds a dataset made with other settings (capture: recorded '" in err and err.count("\n") == 1


def test_a_part_of_a_multi_process_write_is_protected_too(capture_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert expand(capture_dir, out) == 0  # rank 1 of 2 finished its part; rank 0 has not run
    assert expand(capture_dir, out, "--seed", "7") == 2
    err = capsys.readouterr().err
    assert f"{out / 'webdataset' / 'rank-00001-of-00002'}: holds a dataset made with other settings (seed: " in err
    monkeypatch.setenv("RANK", "0")
    assert expand(capture_dir, out) == 0
    assert read_manifest(out / "webdataset")["ranks"] == 2  # joined by the last rank to finish


def test_crop_frames_and_cameras_agree(tmp_path, capsys):
    """`--crop S`: captured and lifted samples are S x S head-centred crops whose cameras project the head
    onto the same pixels as the original camera mapped by the crop (checked through the frames themselves:
    the original frame warped by that map reproduces the cropped image); another crop is refused.
    The subject is filmed wide (60 deg field of view) so that its head box is a real part of the frame."""
    import cv2
    import numpy as np
    import torch

    from liftdata.capture import Capture
    from liftdata.io import read_webdataset

    capture_dir = tmp_path / "wide"
    make_capture(0, n_frames=FRAMES, size=SIZE, fov_y_deg=60.0).save(capture_dir)
    crop = 96  # an upsampling crop: the box is smaller than the 64-px frame
    out = tmp_path / "out"
    assert expand(capture_dir, out, "--crop", str(crop)) == 0
    capture = Capture.load(capture_dir)
    samples = list(read_webdataset(out / "webdataset"))
    assert len(samples) == FRAMES + N and {s.to_arrays()["image"].shape for s in samples} == {(crop, crop, 3)}
    with torch.no_grad():
        verts = capture.head_model.vertices(torch.as_tensor(capture.identity), capture.kinematics).numpy()
    for i, sample in enumerate(samples[:FRAMES]):  # captured: same kinematics, new camera
        uv = capture.camera.project(verts[i])[..., :2]
        uv_crop = sample.camera.project(verts[i])[..., :2]
        assert (uv_crop > 0).all() and (uv_crop < crop - 1).all()  # the whole face mesh is inside the crop
        # the crop is a scale + shift of the source pixels: solve it from the points, check it is one map
        A = np.concatenate([uv[:, :1], np.ones((len(uv), 1))], 1)
        (sx, tx), *_ = np.linalg.lstsq(A, uv_crop[:, 0], rcond=None)
        (sy, ty), *_ = np.linalg.lstsq(np.concatenate([uv[:, 1:], np.ones((len(uv), 1))], 1), uv_crop[:, 1], rcond=None)
        assert abs(sx - sy) < 1e-6 * sx and np.abs(uv * sx + [tx, ty] - uv_crop).max() < 1e-3
        assert sx > crop / SIZE * 1.2  # a real head crop (box < 0.83 x the frame), not a resize of the frame
        warped = cv2.warpAffine(np.asarray(capture.frames[i]), np.float32([[sx, 0, tx], [0, sy, ty]]), (crop, crop),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        err = warped.astype(float) - sample.to_arrays()["image"].astype(float)
        assert 10 * np.log10(255**2 / np.mean(err**2)) > 24, i  # resampled the same pixels (not another region)
    capsys.readouterr()
    assert expand(capture_dir, out, "--crop", "128") == 2
    assert "crop: recorded 96, now 128" in capsys.readouterr().err
