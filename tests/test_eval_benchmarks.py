"""benchmarks/run_all.py on a folder of tiny stand-in scripts: quick flag, timeout, failures, table."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {
    "fast": 'import json, sys\nprint("warming up")\nprint(json.dumps({"n": 1}))\n'
            'print(json.dumps({"benchmark": "fast", "quick": "--quick" in sys.argv, "ratio": 1.25, '
            '"nested": {"fps": 30.5, "curve": [1, 2]}, "rows": [{"x": 7}]}))\nprint("done")\n',
    "noquick": 'import json, sys\nprint(json.dumps({"args": len(sys.argv)}))\n',
    "slow": 'import time\ntime.sleep(30)\n',
    "broken": 'raise SystemExit("boom")\n',
    "silent": 'print("no json here")\n',
}


def test_run_all_collects_the_last_json_line(tmp_path, capsys):
    run_all = load_run_all()
    for name, code in SCRIPTS.items():
        (tmp_path / f"{name}.py").write_text(code + ("# accepts --quick\n" if name == "fast" else ""))
    (tmp_path / "run_all.py").write_text("raise SystemExit('must not run itself')\n")
    out = tmp_path / "report.json"
    rc = run_all.main(["--dir", str(tmp_path), "--quick", "--timeout", "3", "--out", str(out)])
    assert rc == 1  # some scripts failed
    report = json.loads(out.read_text())["benchmarks"]
    assert set(report) == {"fast", "noquick", "slow", "broken", "silent"}
    assert report["fast"]["status"] == "ok" and report["fast"]["result"]["quick"] is True
    assert report["noquick"]["result"] == {"args": 1}  # --quick only where the script accepts it
    assert report["slow"]["status"] == "timeout" and report["slow"]["seconds"] < 20
    assert report["broken"]["status"] == "failed" and "boom" in report["broken"]["stderr_tail"]
    assert report["silent"]["status"] == "no-json"
    printed = capsys.readouterr().out
    assert "nested.fps" in printed and "30.5" in printed and "ratio" in printed and "(timeout after" in printed
    assert "curve" not in printed and "rows[0].x" in printed


def test_only_and_skip(tmp_path):
    run_all = load_run_all()
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.py").write_text("")
    assert [p.stem for p in run_all.scripts(tmp_path, only=["a", "c"], skip=["c"])] == ["a"]
    assert run_all.last_json_line('x\n{"a": 1}\n{broken\n[1]\n') == {"a": 1}


def test_expand_throughput_parts_do_the_work_expand_does(tmp_path):
    """The benchmark's stage-by-stage parts write the very samples `expand` writes (same plan, gate off):
    the ratio it reports compares like with like."""
    import torch

    from liftdata.dataset import LiftDataset
    from liftdata.io import read_webdataset
    from liftdata.synthetic import make_capture

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("expand_throughput", ROOT / "benchmarks" / "expand_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    dataset = LiftDataset(make_capture(0, n_frames=8, size=64))
    bench.end_to_end(dataset, 6, tmp_path / "e2e")
    times = bench.parts(dataset, 6, tmp_path / "parts")
    assert {"plan", "render", "warp", "encode", "write"} <= set(times) and all(t > 0 for t in times.values())
    pipeline, by_parts = list(read_webdataset(tmp_path / "e2e")), list(read_webdataset(tmp_path / "parts"))
    assert len(pipeline) == len(by_parts) == 6
    for a, b in zip(pipeline, by_parts):
        assert a.key == b.key and a.image == b.image and a.mask == b.mask and a.alpha == b.alpha
        assert a.meta["reference_keys"] == b.meta["reference_keys"]


def test_lifter_quality_headroom_against_a_hand_computation():
    """Left half at confidence 0, right half at 1, a constant error in each half and a masked-out
    strip: the shares and the ceiling follow from the two errors alone."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("lifter_quality", ROOT / "benchmarks" / "lifter_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    truth = np.full((8, 10, 3), 100, np.uint8)
    mask = np.ones((8, 10), bool)
    mask[:, 8:] = False  # outside the head: its huge error must not count
    confidence = np.zeros((8, 10), np.float32)
    confidence[:, 4:] = 1.0
    warp, lifted = truth.copy(), truth.copy()
    warp[:, :4], warp[:, 4:8], warp[:, 8:] = 130, 110, 255  # error 30 where unsure, 10 where sure
    lifted[:, :4], lifted[:, 4:8] = 120, 110  # 20 where unsure, the warp's 10 where sure
    got = bench.headroom(lifted, warp, confidence, truth, mask)
    assert np.isclose(got["low_area"], 0.5)
    assert np.isclose(got["warp_error_low"], 900 / (900 + 100))
    assert np.isclose(got["lifted_error_low"], 400 / (400 + 100))
    assert np.isclose(got["ceiling_db"], 10 * np.log10((900 + 100) / 100))
    assert bench.headroom(lifted, truth, confidence, truth, mask)["ceiling_db"] == float("inf")
