"""The `liftdata` command line: parse -> build -> run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    """Synthetic capture with ground truth -> captured samples with condition maps -> shards + preview."""
    import torch

    from liftdata.capture import Capture
    from liftdata.dataset import captured_samples, preview_samples
    from liftdata.io import read_parquet, read_webdataset, write_parquet, write_webdataset
    from liftdata.synthetic import make_capture, write_video

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    capture_dir = out / "capture"
    if capture_dir.exists():
        capture = Capture.load(capture_dir)
        print(f"reusing the capture in {capture_dir}")
    else:
        print(f"rendering a synthetic capture: seed {args.seed}, {args.frames} frames at {args.size}²")
        capture = make_capture(args.seed, n_frames=args.frames, size=args.size)
        capture.save(capture_dir)
        write_video(capture, out / "input.mp4")
    writer, reader = (write_webdataset, read_webdataset) if args.format == "webdataset" else (write_parquet, read_parquet)
    result = writer(captured_samples(capture), out / "dataset", name=f"{capture.capture_id}",
                    max_count=args.shard_size, expected_total=len(capture))
    preview = preview_samples(reader(out / "dataset"), out / "preview.png")
    print(f"input video : {out / 'input.mp4'}")
    print(f"capture     : {capture_dir}  ({len(capture)} frames, ground-truth kinematics)")
    print(f"dataset     : {out / 'dataset'}  ({result.n_samples} samples, {len(result.files)} {args.format} shards)")
    print(f"preview     : {preview}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import liftdata
    from liftdata.render.raster import resolve_backend

    print(f"liftdata {liftdata.__version__}")
    print(f"render backend (auto): {resolve_backend('auto')}")
    for extra, module in [("track", "mediapipe"), ("flame", "smplx"), ("train", "peft"), ("viz", "matplotlib")]:
        try:
            __import__(module)
            status = "installed"
        except ImportError:
            status = f"missing (pip install 'liftdata[{extra}]')"
        print(f"{extra:>6}: {module} {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liftdata", description=(
        "Turn a short face video into a large training set for 3D Gaussian head avatars."))
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole data path on a synthetic capture (no model files needed)",
                          description=_demo.__doc__)
    demo.add_argument("--out", required=True, help="output directory (rerun to resume)")
    demo.add_argument("--frames", type=int, default=48, help="frames of the synthetic capture (default 48)")
    demo.add_argument("--size", type=int, default=256, help="frame size in pixels (default 256)")
    demo.add_argument("--seed", type=int, default=0, help="synthetic subject and motion seed (default 0)")
    demo.add_argument("--format", choices=["webdataset", "parquet"], default="webdataset")
    demo.add_argument("--shard-size", type=int, default=16, help="samples per shard (default 16)")
    demo.set_defaults(run=_demo)
    info = sub.add_parser("info", help="versions, render backend and installed extras")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
