"""VHAP / GaussianAvatars interop (issue 19): a multi-camera VHAP folder built here by hand (VHAP's
field names and file layout, not liftdata's writer) is never flattened; our export is read back by
a small reader that follows VHAP's `NeRFDataset` and GaussianAvatars' `readDynamicNerfInfo`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from flame_fixtures import make_flame_arrays, write_npz

from liftdata.capture import Capture
from liftdata.cli import main
from liftdata.config import ConfigError, ExpandConfig
from liftdata.dataset import LiftDataset
from liftdata.head.flame import FlameHeadModel, reference_lbs
from liftdata.io.vhap import VhapError, captured_splits, export_vhap, import_vhap
from liftdata.kinematics import Camera, axis_angle_to_matrix
from liftdata.samplers import mine_extremes
from liftdata.synthetic import make_capture

T, SIZE, EXTRA_ROWS = 6, 64, 5  # timesteps, image side, static-offset rows beyond FLAME's vertices (VHAP's teeth)
GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes


# ---------------------------------------------------------------------- a VHAP folder, written by hand
def _camera(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(K [3,3], OpenCV world-to-camera [4,4]) of camera `index`: 0 frontal, 1 turned 30 deg and zoomed."""
    f = 0.5 * SIZE / math.tan(math.radians(24) / 2) * (1.0 if index == 0 else 1.15)
    K = np.array([[f, 0, (SIZE - 1) / 2 + 2 * index], [0, f, (SIZE - 1) / 2 - index], [0, 0, 1]])
    w2c = np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 1.5], [0, 0, 0, 1]], dtype=np.float64)  # head ~1/2 image
    turn = np.eye(4)
    turn[:3, :3] = axis_angle_to_matrix(np.array([0, math.radians(30 * index), 0]))
    return K, w2c @ turn


def _vhap_folder(d: Path, capture: Capture, static_offset: np.ndarray, n_cameras: int = 2) -> Path:
    """What VHAP's export_as_nerf_dataset writes for `n_cameras` cameras: images/fg_masks
    {t:05d}_{c:02d}.png, flame_param/{t:05d}.npz, transforms.json and its split_json division
    (train: first 70% of timesteps minus the last camera, val: the last camera, test: the rest)."""
    for sub in ("images", "fg_masks", "flame_param"):
        (d / sub).mkdir(parents=True)
    k, frames = capture.kinematics, []
    for t in range(T):
        np.savez(d / "flame_param" / f"{t:05d}.npz", translation=k.translation[[t]], rotation=k.rotation[[t]],
                 neck_pose=k.neck[[t]], jaw_pose=k.jaw[[t]], eyes_pose=k.eyes[[t]], shape=capture.identity,
                 expr=k.expression[[t]], static_offset=static_offset)
        for c in range(n_cameras):
            K, w2c = _camera(c)
            rgb = np.asarray(capture.frames[t]) if c == 0 else 255 - np.asarray(capture.frames[t])
            mask = np.zeros((SIZE, SIZE), np.uint8)
            cv2.circle(mask, (SIZE // 2 + 3 * c, SIZE // 2), SIZE // 3, 255, -1)
            rgb = np.where(mask[..., None] > 0, rgb, 255).astype(np.uint8)  # VHAP's images are white-background
            cv2.imwrite(str(d / "images" / f"{t:05d}_{c:02d}.png"), rgb[..., ::-1])
            cv2.imwrite(str(d / "fg_masks" / f"{t:05d}_{c:02d}.png"), mask)
            frames.append({"timestep_index": t, "timestep_index_original": 100 + t, "timestep_id": f"frame_{100 + t}",
                           "camera_index": c, "camera_id": f"cam{c}", "cx": K[0, 2], "cy": K[1, 2], "fl_x": K[0, 0],
                           "fl_y": K[1, 1], "h": SIZE, "w": SIZE,
                           "camera_angle_x": 2 * math.atan(SIZE / (2 * K[0, 0])),
                           "camera_angle_y": 2 * math.atan(SIZE / (2 * K[1, 1])),
                           "transform_matrix": (np.linalg.inv(w2c) @ GL).tolist(),
                           "file_path": f"images/{t:05d}_{c:02d}.png", "fg_mask_path": f"fg_masks/{t:05d}_{c:02d}.png",
                           "flame_param_path": f"flame_param/{t:05d}.npz"})
    shared = {key: frames[0][key] for key in ("cx", "cy", "fl_x", "fl_y", "h", "w", "camera_angle_x", "camera_angle_y")}
    cams = list(range(n_cameras))
    (d / "transforms.json").write_text(json.dumps(dict(shared, frames=frames, timestep_indices=list(range(T)),
                                                       camera_indices=cams)))
    n_train = math.ceil(0.7 * T)
    val_cams = [cams[-1]] if n_cameras > 1 else []
    parts = {"train": [f for f in frames if f["timestep_index"] < n_train and f["camera_index"] not in val_cams],
             "val": [f for f in frames if f["timestep_index"] < n_train and f["camera_index"] in val_cams],
             "test": [f for f in frames if f["timestep_index"] >= n_train]}
    for split, fs in parts.items():
        (d / f"transforms_{split}.json").write_text(json.dumps(dict(shared, frames=fs)))
    return d


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory):
    arrays = make_flame_arrays(n_shape=300, n_expression=100)  # FLAME's split: the CLI's defaults load it
    return write_npz(tmp_path_factory.mktemp("flame") / "flame.npz", arrays)


@pytest.fixture(scope="module")
def flame(flame_file):
    return FlameHeadModel.from_file(flame_file)


@pytest.fixture(scope="module")
def source(flame):
    capture = make_capture(3, n_frames=T, size=SIZE, head_model=flame)
    offset = np.random.default_rng(5).normal(size=(1, len(flame.arrays["v_template"]) + EXTRA_ROWS, 3)) * 0.004
    return capture, offset.astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, source):
    return _vhap_folder(tmp_path_factory.mktemp("vhap") / "subject_2cam", *source)


def _gt_pixels(flame: FlameHeadModel, capture: Capture, offset: np.ndarray, camera: int) -> np.ndarray:  # [T, V, 2]
    """Ground truth, independent of liftdata's camera and skinning code: the slow numpy LBS on
    FLAME's template + VHAP's static offset (VHAP's FlameHead.forward), then a plain pinhole."""
    a, k = flame.arrays, capture.kinematics
    v_template = a["v_template"] + offset[0, :len(a["v_template"])]
    betas = np.concatenate([np.repeat(capture.identity[None], T, 0), k.expression], 1)
    pose = np.concatenate([k.rotation, k.neck, k.jaw, k.eyes], 1).reshape(T, 5, 3)
    shapedirs = a["shapedirs"][:, :, flame.blend_index]
    verts = reference_lbs(betas, pose, v_template, shapedirs, a["posedirs"], a["J_regressor"], a["parents"],
                          a["weights"]) + k.translation[:, None]
    K, w2c = _camera(camera)
    cam = verts @ w2c[:3, :3].T + w2c[:3, 3]
    return (cam[..., :2] / cam[..., 2:]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


# ---------------------------------------------------------------------- VHAP in
def test_multi_camera_folder_is_refused_naming_the_cameras(folder, flame, flame_file, tmp_path, capsys):
    with pytest.raises(VhapError, match=r"holds 2 cameras \(camera_index \[0, 1\]\).*--camera N"):
        import_vhap(folder, flame)
    with pytest.raises(VhapError, match=r"has no camera 2 \(camera_index \[0, 1\]\)"):
        import_vhap(folder, flame, camera=2)
    args = ["expand", str(folder), "--head-model", "flame", "--flame-model", str(flame_file), "--n", "2",
            "--out", str(tmp_path / "out"), "--format", "vhap", "--no-preview"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "holds 2 cameras" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("camera", [0, 1])
def test_picked_camera_uses_its_own_pose_and_frames(folder, flame, source, camera):
    capture, offset = source
    cap = import_vhap(folder, flame, camera=camera)
    assert len(cap) == T and cap.extra["vhap"]["camera_index"] == camera
    with torch.no_grad():
        verts = cap.head_model.vertices(torch.as_tensor(cap.identity), cap.kinematics).double().numpy()
    pixels = cap.camera.project(verts)[..., :2]
    gt = _gt_pixels(flame, capture, offset, camera)
    assert np.abs(pixels - gt).max() < 1e-3  # px: this camera's pose, intrinsics and the static offset
    other = _gt_pixels(flame, capture, offset, 1 - camera)
    assert np.abs(pixels - other).max() > 1.0  # the other camera would land elsewhere
    assert cap.extra["vhap"]["timestep_index_original"] == [100 + t for t in range(T)]
    assert cap.extra["vhap"]["split"] == (["train"] * 5 + ["test"] if camera == 0 else ["val"] * 5 + ["test"])
    mask = cv2.imread(str(folder / "fg_masks" / f"00002_{camera:02d}.png"), cv2.IMREAD_GRAYSCALE)
    expected = np.asarray(capture.frames[2]) if camera == 0 else 255 - np.asarray(capture.frames[2])
    np.testing.assert_array_equal(cap.frames[2][mask > 0], expected[mask > 0])


def test_static_offset_is_applied_and_kept_through_save(folder, flame, source, tmp_path):
    capture, offset = source
    cap = import_vhap(folder, flame, camera=0)
    np.testing.assert_array_equal(cap.head_model.static_offset, offset)
    assert not hasattr(flame, "static_offset")  # the caller's model is untouched
    zero = capture.kinematics[[0]].replace(rotation=np.zeros((1, 3)), neck=np.zeros((1, 3)), jaw=np.zeros((1, 3)),
                                           eyes=np.zeros((1, 6)), expression=np.zeros((1, flame.n_expression)),
                                           translation=np.zeros((1, 3)))
    shape = torch.as_tensor(cap.identity)
    with torch.no_grad():  # at rest pose the offset is a plain displacement of every vertex
        moved = (cap.head_model.vertices(shape, zero) - flame.vertices(shape, zero))[0].numpy()
    np.testing.assert_allclose(moved, offset[0, :len(moved)], atol=1e-6)
    back = Capture.load(cap.save(tmp_path / "cap"), flame)
    np.testing.assert_array_equal(back.head_model.static_offset, offset)
    assert back.fingerprint() == cap.fingerprint()
    again = Capture.load(tmp_path / "cap", cap.head_model)  # a model that already carries it: applied once
    np.testing.assert_array_equal(again.head_model.arrays["v_template"], cap.head_model.arrays["v_template"])
    plain = Capture(cap.frames, cap.kinematics, cap.camera, cap.identity, flame, capture_id=cap.capture_id,
                    subject_id=cap.subject_id, extra=cap.extra)
    assert plain.fingerprint() != cap.fingerprint()  # the offset is part of what the capture is


def test_moving_camera_is_refused(tmp_path, flame, source):
    d = _vhap_folder(tmp_path / "moving", *source, n_cameras=1)
    doc = json.loads((d / "transforms.json").read_text())
    doc["frames"][3]["transform_matrix"][0][3] += 0.01  # camera 0 moves 1 cm at timestep 3
    (d / "transforms.json").write_text(json.dumps(doc))
    with pytest.raises(VhapError, match=r"camera 0 changes pose or intrinsics over its frames \(timestep 3"):
        import_vhap(d, flame)


# ---------------------------------------------------------------------- VHAP out, read as VHAP / GaussianAvatars do
def _read_like_gaussian_avatars(d: Path) -> dict:
    """A reader following VHAP's NeRFDataset and GaussianAvatars' readDynamicNerfInfo field names."""
    full = json.loads((d / "transforms.json").read_text())
    assert len(full["timestep_indices"]) == max(full["timestep_indices"]) + 1  # NeRFDataset's assertion
    assert (d / "canonical_flame_param.npz").is_file()  # GaussianAvatars picks its DynamicNerf loader by it
    out = {"full": full}
    for split in ("train", "val", "test"):
        doc = json.loads((d / f"transforms_{split}.json").read_text())
        frames = []
        for fr in doc["frames"]:
            c2w = np.array(fr["transform_matrix"])
            c2w[:3, 1:3] *= -1  # OpenGL -> COLMAP axes, as readCamerasFromTransforms does
            w2c = np.linalg.inv(c2w)
            K = np.array([[fr["fl_x"], 0, fr["cx"]], [0, fr["fl_y"], fr["cy"]], [0, 0, 1]])
            rgb = cv2.imread(str(d / fr["file_path"]))[..., ::-1]
            mask = cv2.imread(str(d / fr["fg_mask_path"]), cv2.IMREAD_GRAYSCALE)
            with np.load(d / fr["flame_param_path"]) as z:
                param = dict(z)
            assert abs(fr["camera_angle_x"] - 2 * math.atan(fr["w"] / (2 * fr["fl_x"]))) < 1e-9
            frames.append(dict(fr, w2c=w2c, K=K, rgb=rgb, mask=mask, param=param))
        out[split] = dict(doc, frames=frames)
    return out


def test_export_read_back_by_vhap_and_gaussian_avatars_names(folder, flame, source, tmp_path):
    capture, offset = source
    cap = import_vhap(folder, flame, camera=1)
    exp = LiftDataset(cap).expand(4, mine_extremes(clip_length=4), seed=1)
    with pytest.warns(UserWarning, match=r"principal point is up to 2.0 px off the image centre; GaussianAvatars"):
        out = exp.write_vhap(tmp_path / "out", split="source", background="black")
    assert json.loads((out / "liftdata.json").read_text())["principal_point_offset_px"] == pytest.approx(2.0, abs=1e-4)
    r = _read_like_gaussian_avatars(out)
    assert r["full"]["timestep_indices"] == list(range(T + 4)) and r["full"]["camera_indices"] == [1]
    train, test = r["train"]["frames"], r["test"]["frames"]
    assert r["val"]["frames"] == []  # one camera: no novel view to validate on
    assert [f["timestep_index"] for f in test] == [5] and test[0]["timestep_index_original"] == 105
    assert [f["timestep_index"] for f in train] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert [f["synthetic"] for f in train] == [False] * 5 + [True] * 4
    assert [f["timestep_id"] for f in train[:5]] == [f"frame_{100 + t}" for t in range(5)]
    assert r["test"]["timestep_indices"] == [5] and r["train"]["camera_indices"] == [1]
    gt = _gt_pixels(flame, capture, offset, 1)
    for f in train[:5] + test:
        t = f["timestep_index"]
        p = f["param"]
        np.testing.assert_array_equal(p["static_offset"], offset)  # teeth rows included
        assert p["expr"].shape == (1, flame.n_expression) and p["eyes_pose"].shape == (1, 6)
        np.testing.assert_array_equal(p["expr"][0], capture.kinematics.expression[t])
        K, w2c = f["K"], f["w2c"]
        verts = _gt_world(flame, capture, offset, t)
        c = verts @ w2c[:3, :3].T + w2c[:3, 3]
        np.testing.assert_allclose((c[:, :2] / c[:, 2:]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]], gt[t], atol=1e-3)
        src_mask = cv2.imread(str(folder / "fg_masks" / f"{t:05d}_01.png"), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(f["mask"], src_mask)  # the source's matte, not the head mask
        src = cv2.imread(str(folder / "images" / f"{t:05d}_01.png"))[..., ::-1]
        assert (f["rgb"][src_mask == 0] == 0).all()  # composited on black
        np.testing.assert_array_equal(f["rgb"][src_mask == 255], src[src_mask == 255])
    for f, sample in zip(train[5:], exp.samples(exp.n_captured)):  # lifted: the sample's alpha, else its head mask
        a = sample.to_arrays()
        matte = a["alpha"] if a["alpha"] is not None else a["mask"]
        assert (matte == 0).any() and (matte > 0).any()  # some background: the composite below is a real check
        assert f["key"] == sample.key and f["timestep_index_original"] is None
        np.testing.assert_array_equal(f["mask"], matte)
        expected = np.round(a["image"] * (matte[..., None] / 255.0)).astype(np.uint8)
        assert np.abs(f["rgb"].astype(int) - expected).max() <= 1
        np.testing.assert_array_equal(f["param"]["static_offset"], offset)
        np.testing.assert_array_equal(f["param"]["expr"], sample.kinematics.expression)
    assert not (out / "progress.jsonl").exists()
    back = import_vhap(out, flame)  # and liftdata reads its own export: captured kinematics exact
    assert back.kinematics[np.arange(5)].equals(cap.kinematics[np.arange(5)])
    assert captured_splits(back, "source") == ["train"] * 5 + ["test"] + ["train"] * 4
    assert back.extra["vhap"]["synthetic"] == [False] * 6 + [True] * 4


def _gt_world(flame, capture, offset, t):
    a, k = flame.arrays, capture.kinematics
    betas = np.concatenate([capture.identity, k.expression[t]])[None]
    pose = np.concatenate([k.rotation[t], k.neck[t], k.jaw[t], k.eyes[t]]).reshape(1, 5, 3)
    return reference_lbs(betas, pose, a["v_template"] + offset[0, :len(a["v_template"])],
                         a["shapedirs"][:, :, flame.blend_index], a["posedirs"], a["J_regressor"], a["parents"],
                         a["weights"])[0] + k.translation[t]


# ---------------------------------------------------------------------- splits
def test_splits_match_avatar_compare(flame):
    from liftdata.avatar.compare import holdout_split
    from liftdata.avatar.data import frames_from_capture
    from liftdata.eval.splits import monocular_split

    for seed in range(4):
        cap = make_capture(seed, n_frames=23, size=32, head_model=flame)
        frames = frames_from_capture(cap, masks=np.ones((23, 32, 32), np.float32))
        _, test = holdout_split(frames, "extremes", 0.1)
        assert np.flatnonzero(np.array(captured_splits(cap, "extremes")) == "test").tolist() == test.tolist()
        assert np.flatnonzero(np.array(captured_splits(cap, "last30")) == "test").tolist() == \
            monocular_split(23, "last30")[1].tolist()
    assert captured_splits(cap, "none") == captured_splits(cap, "auto") == ["train"] * 23
    with pytest.raises(VhapError, match="not from a VHAP folder with splits"):
        captured_splits(cap, "source")


def test_export_splits_round_trip(tmp_path, flame, source):
    capture = source[0]
    out = export_vhap(capture, tmp_path / "e", splits={"val": [1], "test": [4, 5]})
    back = import_vhap(out, flame)
    assert back.extra["vhap"]["split"] == ["train", "val", "train", "train", "test", "test"]
    assert captured_splits(back) == ["train"] * 4 + ["test"] * 2  # val (a novel camera) has no meaning for one


# ---------------------------------------------------------------------- rerun: resume, refuse
@pytest.mark.parametrize("gate", ["resample", "drop"])
def test_interrupted_export_resumes_to_the_same_folder(folder, flame, tmp_path, monkeypatch, gate):
    import liftdata.io.vhap as vhap

    cap = import_vhap(folder, flame, camera=0)

    def expansion():
        # a threshold above some of this toy head's scores, so "drop" drops (asserted below) and "resample" resamples
        return LiftDataset(cap).expand(8, mine_extremes(clip_length=4), quality_gate=gate, quality_threshold=0.6)
    whole = expansion().write_vhap(tmp_path / "whole")
    kept = json.loads((whole / "liftdata.json").read_text())["synthetic"]
    assert kept > 2 and (kept < 8) == (gate == "drop")  # the drop gate dropped some: positions depend on it
    real, calls = vhap.sample_frame, []

    def crash_at_eighth(*args):  # two frames into the lifted ones
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(vhap, "sample_frame", crash_at_eighth)
    with pytest.raises(KeyboardInterrupt):
        expansion().write_vhap(tmp_path / "part")
    monkeypatch.setattr(vhap, "sample_frame", real)
    assert not (tmp_path / "part").exists() and (tmp_path / ".part.tmp" / "progress.jsonl").is_file()
    part = expansion().write_vhap(tmp_path / "part")
    for name in ("transforms.json", "transforms_train.json", "transforms_test.json", "liftdata.json"):
        assert (part / name).read_text() == (whole / name).read_text()
    for f in sorted((whole / "images").iterdir()) + sorted((whole / "fg_masks").iterdir()):
        assert (part / f.parent.name / f.name).read_bytes() == f.read_bytes()
    with pytest.raises(VhapError, match=r"other settings \(.*background: recorded 'white', now 'black'"):
        expansion().write_vhap(tmp_path / "part", background="black")


def test_cli_rerun_resumes_or_refuses(folder, flame_file, tmp_path, capsys):
    args = ["expand", str(folder), "--head-model", "flame", "--flame-model", str(flame_file), "--camera", "1",
            "--n", "2", "--out", str(tmp_path / "out"), "--format", "vhap", "--no-preview"]
    with pytest.warns(UserWarning, match="principal point"):  # camera 1's is off-centre
        assert main(args) == 0
    first = (tmp_path / "out" / "vhap" / "transforms.json").read_text()
    K, w2c = _camera(1)
    for fr in json.loads(first)["frames"]:  # camera 1's pose and intrinsics on every frame, lifted ones too
        np.testing.assert_allclose(np.linalg.inv(np.array(fr["transform_matrix"]) @ GL), w2c, atol=1e-6)
        np.testing.assert_allclose([fr["fl_x"], fr["fl_y"], fr["cx"], fr["cy"]],
                                   [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], atol=1e-4)
        assert fr["camera_index"] == 1 and fr["camera_id"] == "cam1"
    assert main(args) == 0  # finished, same settings: nothing to do
    assert (tmp_path / "out" / "vhap" / "transforms.json").read_text() == first
    capsys.readouterr()
    assert main(args + ["--split", "last30"]) == 2
    assert "holds a VHAP export made with other settings (split: recorded 'auto', now 'last30')" in \
        capsys.readouterr().err
    with pytest.warns(UserWarning, match="principal point"):
        assert main(args + ["--split", "last30", "--overwrite"]) == 0
    test = json.loads((tmp_path / "out" / "vhap" / "transforms_test.json").read_text())
    assert [f["timestep_index"] for f in test["frames"]] == [4, 5]  # ceil(0.3 * 6) = 2 last captured frames
    assert [f["timestep_index_original"] for f in test["frames"]] == [104, 105]


def test_preview_of_a_vhap_folder(folder, tmp_path, capsys):
    assert main(["preview", str(folder), "--out", str(tmp_path / "p")]) == 0
    page = (tmp_path / "p" / "index.html").read_text()
    assert "&quot;test&quot;: 2" in page and "[0, 1]" in page
    assert cv2.imread(str(tmp_path / "p" / "preview.png")).shape[0] > 100
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "transforms_train.json").write_text("{not json")
    assert main(["preview", str(tmp_path / "broken")]) == 2
    assert "transforms_train.json: corrupt JSON" in capsys.readouterr().err


def test_config_checks():
    with pytest.raises(ConfigError, match="camera: only a VHAP .* the input is video"):
        ExpandConfig(video="a.mp4", n=1, camera=1)
    with pytest.raises(ConfigError, match="camera: expected a non-negative integer"):
        ExpandConfig(tracked="d", n=1, camera=-1)
    with pytest.raises(ConfigError, match="split: source keeps a VHAP input's own splits, the input is video"):
        ExpandConfig(video="a.mp4", n=1, format="vhap", split="source")
    with pytest.raises(ConfigError, match="split/background: only the vhap format"):
        ExpandConfig(tracked="d", n=1, split="extremes")
    with pytest.raises(ConfigError, match="background: expected one of white, black, keep"):
        ExpandConfig(tracked="d", n=1, format="vhap", background="green")
    with pytest.raises(ConfigError, match="format: vhap holds FLAME parameters .* the head model is builtin"):
        ExpandConfig(tracked="d", n=1, format="vhap")
    cfg = ExpandConfig.from_recipe({"input": {"tracked": "d", "camera": 1, "head_model": "flame",
                                              "flame": {"model": "f.pkl"}}, "expand": {"n": 2},
                                    "output": {"format": "vhap", "split": "extremes", "background": "black"}})
    assert (cfg.camera, cfg.split, cfg.background) == (1, "extremes", "black")


def test_source_masks_follow_crop_and_resize(folder, flame):
    """The VHAP source's masks line up with cropped / resized frames: where the matte is background
    (away from its edge) the frame shows the source's white background."""
    import dataclasses

    from liftdata.io.vhap import source_alpha
    from liftdata.track.crop import crop_camera, crop_image

    cap = import_vhap(folder, flame, camera=1)
    box, size = np.array([9.0, 5.0, 41.0]), 48  # (x0, y0, side) in source pixels
    cropped = dataclasses.replace(cap, frames=[crop_image(np.asarray(cap.frames[i]), box, size) for i in range(T)],
                                  camera=crop_camera(cap.camera, box, size),
                                  extra={**cap.extra, "crop": {"box": box.tolist(), "size": size}})
    for c in (cropped, cropped.resized(32)):
        for i in range(T):
            frame = np.asarray(c.frames[i])
            alpha = source_alpha(c, i, frame.shape[:2])
            background = cv2.erode((alpha == 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            person = cv2.erode((alpha == 255).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            assert background.sum() > 20 and person.sum() > 20
            assert (frame[background] == 255).all()  # white background exactly where the matte says so
            assert (frame[person] < 250).any(axis=-1).mean() > 0.9  # and the head where it says person

