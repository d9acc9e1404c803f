import json
import subprocess
import sys

import numpy as np
import webdataset as wds

from liftdata.cli import main
from liftdata.dataset import captured_samples
from liftdata.io import read_parquet, read_webdataset
from liftdata.synthetic import make_capture


def test_demo_end_to_end_and_rerun(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "5", "--size", "64", "--shard-size", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "5 samples, 3 webdataset shards" in printed and str(out / "preview.png") in printed
    manifest = json.loads((out / "dataset" / "manifest.json").read_text())
    tars = sorted(str(p) for p in (out / "dataset").glob("*.tar"))
    assert len(tars) == 3
    records = list(wds.WebDataset(tars, shardshuffle=False).decode("rgb8"))
    assert [r["__key__"] for r in records] == [f"synthetic-0/000000/{i:03d}" for i in range(5)]
    assert records[0]["png"].shape == (64, 64, 3) and records[0]["json"]["meta"]["source"] == "captured"
    assert (out / "preview.png").stat().st_size > 1000 and (out / "input.mp4").is_file()
    # A rerun reuses the capture and leaves exactly the same dataset.
    assert main(args) == 0
    assert "reusing the capture" in capsys.readouterr().out
    assert json.loads((out / "dataset" / "manifest.json").read_text())["shards"] == manifest["shards"]
    assert [s.key for s in read_webdataset(out / "dataset")] == [r["__key__"] for r in records]


def test_demo_parquet(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "3", "--size", "48", "--format", "parquet"]) == 0
    assert len(list(read_parquet(out / "dataset"))) == 3


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "liftdata.cli", "demo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--frames" in result.stdout


def test_captured_sample_maps_match_the_reference_rasterizer():
    cap = make_capture(2, n_frames=2, size=64)
    fast = list(captured_samples(cap))
    slow = list(captured_samples(cap, backend="torch"))
    for a, b in zip(fast, slow):
        ma, mb = a.to_arrays()["mask"] > 127, b.to_arrays()["mask"] > 127
        assert (ma == mb).mean() > 0.99 and ma.sum() > 500
        assert np.array_equal(a.to_arrays()["image"], cap.frames[int(a.key[-3:])])
