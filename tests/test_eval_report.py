"""`liftdata eval` on tiny synthetic cases: image folders, a capture with a split, a dataset, errors."""

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from liftdata.dataset import captured_samples
from liftdata.eval.lpips import LpipsWeightsError
from liftdata.eval.report import evaluate, main
from liftdata.eval.sources import EvalInputError, open_frames
from liftdata.io import write_webdataset
from liftdata.synthetic import make_capture
from test_eval_lpips import fake_heads, fake_torchvision_checkpoint


def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def noisy(frame, sigma, seed):
    noise = np.random.default_rng(seed).normal(0, sigma, frame.shape)
    return np.clip(frame.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def capture():
    return make_capture(1, n_frames=10, size=32)


@pytest.fixture
def folders(tmp_path, capture):
    """gt/ = the capture's frames, renders/ = the same with noise growing with the frame index."""
    for i in range(len(capture)):
        write_png(tmp_path / "gt" / f"{i:06d}.png", capture.frames[i])
        write_png(tmp_path / "renders" / f"{i:06d}.png", noisy(capture.frames[i], 2 + 3 * i, i))
    return tmp_path / "renders", tmp_path / "gt"


def test_image_folders_report_matches_skimage(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.setattr("liftdata.eval.lpips._lpips_package_dir", lambda: None)
    renders, gt = folders
    assert main(["--renders", str(renders), "--gt", str(gt), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert "binning skipped" in printed.out and "skipping LPIPS" in printed.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n_frames"] == 10 and "LPIPS skipped" in report["lpips"] and "skipped" in report["binning"]
    for row in report["per_frame"]:
        p, g = (cv2.imread(str(d / f"{row['name']}.png"))[..., ::-1] / 255.0 for d in (renders, gt))
        assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=1), rel=1e-4)
        assert row["ssim"] == pytest.approx(structural_similarity(
            g, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1), abs=1e-4)
    assert report["metrics"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in report["per_frame"]]))
    assert report["worst_frames"][0] == "000009"  # the noisiest render
    assert (tmp_path / "out" / "summary.png").stat().st_size > 5000
    html = (tmp_path / "out" / "report.html").read_text()
    assert "summary.png" in html and "000009" in html


def test_capture_with_split_bins_by_extremeness_and_names_lpips_backbone(tmp_path, capture):
    capture.save(tmp_path / "cap")
    for i in range(len(capture)):
        write_png(tmp_path / "renders" / f"{i:06d}.png", noisy(capture.frames[i], 4, i))
    weights = tmp_path / "w"
    (weights / "weights" / "v0.1").mkdir(parents=True)
    torch.save(fake_torchvision_checkpoint("vgg"), weights / "vgg16-397923af.pth")
    torch.save(fake_heads("vgg"), weights / "weights" / "v0.1" / "vgg.pth")
    out = tmp_path / "out"
    assert main(["--renders", str(tmp_path / "renders"), "--gt", str(tmp_path / "cap"), "--split", "last30",
                 "--backbone", "vgg", "--lpips-weights", str(weights), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["lpips"] == "lpips_vgg" and report["split"] == "last30"
    assert [r["name"] for r in report["per_frame"]] == ["000007", "000008", "000009"]
    assert all(r["lpips_vgg"] > 0 for r in report["per_frame"])
    assert report["binning"]["n_training_frames"] == 7
    assert sum(b["n_frames"] for b in report["bins"]) == 3
    assert {r["bin"] for r in report["per_frame"]} <= {b["bin"] for b in report["bins"]}


def test_dataset_ground_truth_with_masks_and_a_tracker(tmp_path, capture):
    write_webdataset(captured_samples(capture), tmp_path / "ds", progress=False)
    gt = open_frames(tmp_path / "ds")
    assert gt.kind == "webdataset" and gt.names[0] == "synthetic-1_000000_000"
    rendered = []
    for name, i in zip(gt.names, range(len(capture))):
        rendered.append(noisy(capture.frames[i], 6, i))
        write_png(tmp_path / "renders" / f"{name}.png", rendered[-1])
        write_png(tmp_path / "masks" / f"{name}.png", np.repeat((np.arange(32) < 16)[None, :, None] * 255, 32, 0)
                  .repeat(3, -1).astype(np.uint8))
    from liftdata.eval.sources import open_masks
    from test_eval_kinematic import GroundTruthTracker

    expr = capture.kinematics.expression.copy()
    expr[:, 2] += 0.05  # what a perfect tracker would read off renders with a slightly wrong expression
    renders_truth = SimpleNamespace(frames=rendered, kinematics=capture.kinematics.replace(expression=expr))
    report = evaluate(open_frames(tmp_path / "renders"), gt, masks=open_masks(tmp_path / "masks"),
                      backbone="none", train=str(tmp_path / "ds"),
                      tracker=GroundTruthTracker(capture, renders_truth))
    assert report["masked"] and report["binning"]["n_training_frames"] == 10
    r = report["per_frame"][3]
    p = cv2.imread(str(tmp_path / "renders" / f"{r['name']}.png"))[:, :16].astype(float) / 255
    g = capture.frames[3][:, :16, ::-1] / 255.0  # BGR like p
    assert r["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((p - g) ** 2)), rel=1e-5)
    assert report["kinematic"]["mean"]["aed_l2"] == pytest.approx(0.05, rel=1e-5) and "same tracker" in report["kinematic"]["note"]


def test_errors_name_the_files(folders, tmp_path, capture):
    renders, gt = folders
    (renders / "000003.png").unlink()
    with pytest.raises(EvalInputError, match=r"1 ground-truth frame\(s\) have no render.*000003\.png"):
        main(["--renders", str(renders), "--gt", str(gt), "--backbone", "none"])
    write_png(renders / "000003.png", np.zeros((20, 32, 3), np.uint8))
    with pytest.raises(EvalInputError, match=r"size mismatch: render .*000003\.png is 32x20, ground truth .*000003\.png is 32x32"):
        main(["--renders", str(renders), "--gt", str(gt), "--backbone", "none"])
    write_png(renders / "extra.png", capture.frames[0])
    with pytest.raises(EvalInputError, match=r"render\(s\) have no ground truth.*extra\.png"):
        main(["--renders", str(renders), "--gt", str(gt), "--backbone", "none"])
    (renders / "extra.png").unlink()
    write_png(renders / "000003.png", capture.frames[3])
    (tmp_path / "masks").mkdir()
    with pytest.raises(EvalInputError, match="no mask named '000000'"):
        main(["--renders", str(renders), "--gt", str(gt), "--backbone", "none", "--mask-dir", str(tmp_path / "masks")])
    with pytest.raises(LpipsWeightsError, match="not a directory"):
        main(["--renders", str(renders), "--gt", str(gt), "--lpips-weights", str(tmp_path / "nope")])
    with pytest.raises(EvalInputError, match="holds images only"):
        main(["--renders", str(renders), "--gt", str(gt), "--backbone", "none", "--train", str(gt)])
    with pytest.raises(EvalInputError, match="not a directory"):
        main(["--renders", str(tmp_path / "missing"), "--gt", str(gt)])
