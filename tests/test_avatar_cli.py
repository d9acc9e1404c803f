"""`liftdata avatar train | render | compare` and `benchmarks/downstream_gain.py`, end to end at a tiny size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liftdata.cli import main
from test_eval_lpips import caches  # noqa: F401  (fixture: fake LPIPS weight files)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny WebDataset (8 captured + 4 warp-lifted frames at 32^2) and the subject's identity file."""
    from liftdata.dataset import LiftDataset
    from liftdata.synthetic import make_capture

    d = tmp_path_factory.mktemp("avatar-data")
    capture = make_capture(5, n_frames=8, size=32, max_yaw_deg=5, expression_scale=0.3)
    LiftDataset(capture).expand(4, seed=0).write_webdataset(d / "ds")
    np.save(d / "identity.npy", capture.identity)
    return d / "ds", d / "identity.npy"


def test_written_dataset_carries_its_identity(dataset, tmp_path, capsys):
    """Every writer saves the subject's identity next to the manifest: consumers need no --identity."""
    ds, identity = dataset
    assert np.array_equal(np.load(ds / "identity.npy"), np.load(identity))
    assert main(["avatar", "train", str(ds), "--out", str(tmp_path / "av"), "--iterations", "2", "--size", "32"]) == 0
    assert np.array_equal(np.load(tmp_path / "av" / "identity.npy"), np.load(identity))
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ds.iterdir():
        if f.name != "identity.npy":
            (bare / f.name).symlink_to(f)
    capsys.readouterr()
    assert main(["avatar", "train", str(bare), "--out", str(tmp_path / "av2"), "--iterations", "2"]) == 2
    err = capsys.readouterr().err
    assert "no subject identity" in err and "--identity" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "av2").exists()


def test_train_render_compare(dataset, tmp_path, capsys):
    ds, identity = dataset
    common = ["--iterations", "3", "--size", "32", "--identity", str(identity)]
    assert main(["avatar", "train", str(ds), "--out", str(tmp_path / "av"), *common]) == 0
    doc = json.loads((tmp_path / "av" / "avatar.json").read_text())
    assert doc["head_model"]["id"] == "builtin" and doc["train"]["iteration"] == 3
    assert doc["train"]["n_captured"] == 8 and doc["train"]["n_lifted"] == 4
    assert (tmp_path / "av" / "checkpoint.pt").is_file() and (tmp_path / "av" / "identity.npy").is_file()
    assert main(["avatar", "train", str(ds), "--out", str(tmp_path / "av"), *common]) == 0  # resumed: done
    assert main(["avatar", "render", str(tmp_path / "av"), "--kinematics", str(ds), "--out",
                 str(tmp_path / "renders")]) == 0
    pngs = sorted((tmp_path / "renders").glob("*.png"))
    assert len(pngs) == 12
    assert main(["avatar", "compare", str(ds), "--out", str(tmp_path / "cmp"), "--backbone", "none",
                 "--holdout", "0.25", *common]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["n_test"] == 2 and result["n_captured_train"] == 6 and result["n_lifted"] == 4
    assert set(result["avatars"]) == {"captured", "lifted"}
    a, b = result["avatars"]["captured"], result["avatars"]["lifted"]
    assert result["gain"]["psnr"] == pytest.approx(b["metrics"]["psnr"] - a["metrics"]["psnr"])
    for name in ("captured", "lifted"):
        report = json.loads((tmp_path / "cmp" / name / "eval" / "report.json").read_text())
        assert report["n_frames"] == 2 and report["masked"] and "bins" in report
    assert "gain" in capsys.readouterr().out


def test_errors_are_one_line(dataset, tmp_path, capsys):
    ds, _ = dataset
    assert main(["avatar", "train", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["avatar", "render", str(tmp_path), "--kinematics", str(ds), "--out", str(tmp_path / "r")]) == 2
    assert "not a liftdata avatar" in capsys.readouterr().err


def test_compare_needs_lifted_frames(tmp_path, capsys):
    from liftdata.synthetic import make_capture

    make_capture(6, n_frames=6, size=32).save(tmp_path / "cap")
    assert main(["avatar", "compare", str(tmp_path / "cap"), "--out", str(tmp_path / "c"), "--iterations", "1",
                 "--size", "32"]) == 2
    assert "no lifted frames" in capsys.readouterr().err


@pytest.mark.slow
def test_downstream_gain_benchmark_quick(tmp_path, caches):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "downstream_gain.py"), "--quick", "--work",
                          str(tmp_path), "--lpips-weights", str(caches)], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    summary = result["summary"]
    assert set(summary) == {"a_captured", "b_warp", "d_oracle"}
    for name in ("b_warp", "d_oracle"):
        want = summary[name]["test_psnr"] - summary["a_captured"]["test_psnr"]
        assert summary[name]["gain_psnr"] == pytest.approx(want)
    assert np.isfinite(summary["a_captured"]["train_psnr_full"])
    assert result["lpips"] == "lpips_alex"  # fake weights: the metric is computed and reported, not skipped
    assert summary["b_warp"]["gain_lpips_alex"] == pytest.approx(
        summary["b_warp"]["test_lpips_alex"] - summary["a_captured"]["test_lpips_alex"])
