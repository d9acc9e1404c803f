"""The `liftdata` command line: parse -> build -> run (each command is a thin shell over the API)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _set_threads() -> None:
    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 4) if torch.cuda.is_available() else 1)


def _load_model(args: argparse.Namespace):
    from liftdata.head import load_head_model

    return (load_head_model("flame", model_path=args.flame_model, landmark_embedding=args.flame_embedding)
            if args.head_model == "flame" else load_head_model(args.head_model))


def _is_tracked(path: Path) -> bool:
    return path.is_dir() and ((path / "capture.json").is_file() or any(path.glob("transforms_*.json")))


def _open_input(args: argparse.Namespace, model=None):
    """A LiftDataset from a video, an image / folder of images, or a tracked directory."""
    from liftdata.dataset import LiftDataset

    path = Path(args.input)
    if not path.exists():
        raise SystemExit(f"liftdata: {path}: no such file or directory")
    model = _load_model(args) if model is None else model
    if _is_tracked(path):
        return LiftDataset.from_tracked(path, model)
    if path.is_dir() or path.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"}:
        return LiftDataset.from_images(path, model)
    return LiftDataset.from_video(path, model, max_frames=args.max_frames, stride=args.stride)


def _sampler(spec: str | None):
    if spec is None:
        return None
    import yaml

    from liftdata.recipes import RecipeError, sampler_from_spec

    text = Path(spec).read_text() if os.path.isfile(spec) else spec  # isfile: False for over-long YAML text
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"--sampler: not valid YAML ({e})") from None
    return sampler_from_spec(parsed, "--sampler")


def _expand(args: argparse.Namespace) -> int:
    """Track INPUT, plan n novel kinematics, lift them, write shards (+ a preview)."""
    from liftdata.dataset import process_rank
    from liftdata.lifters import load_lifter

    try:  # torchrun / accelerate launch: each process writes one part of the sample stream
        rank, world_size = process_rank()
        if world_size > 1 and args.format == "vhap":
            raise ValueError("--format vhap is written by one process; run it without torchrun/accelerate")
    except ValueError as e:
        print(f"liftdata expand: error: {e}", file=sys.stderr)
        return 2
    _set_threads()
    lifter = load_lifter(args.lifter, args.checkpoint, device=args.device, torch_dtype=args.dtype)
    sampler = _sampler(args.sampler)  # both fail before tracking
    out = Path(args.out)
    path = Path(args.input)
    if not path.exists():
        raise SystemExit(f"liftdata: {path}: no such file or directory")
    model = _load_model(args)
    if _is_tracked(path):
        dataset = _open_input(args, model)
    else:  # track once into out/capture/: reused on resume and by every process
        from liftdata.dataset import input_fingerprint, track_once

        fingerprint = input_fingerprint(path, head_model=args.head_model, max_frames=args.max_frames,
                                        stride=args.stride)
        dataset = track_once(out / "capture", fingerprint, lambda: _open_input(args, model), model, rank)
    expansion = dataset.expand(args.n, sampler, lifter,
                               seed=args.seed, size=args.size, include_captured=not args.no_captured)
    if args.format == "vhap":
        where = expansion.write_vhap(out / "vhap")
    else:
        write = expansion.write_webdataset if args.format == "webdataset" else expansion.write_parquet
        where = write(out / args.format, max_count=args.shard_size).out_dir
    part = f", part {rank + 1} of {world_size}" if world_size > 1 else ""
    print(f"dataset : {where}  ({len(expansion)} samples: {expansion.n_captured} captured + {args.n} lifted{part})")
    if not args.no_preview and rank == 0:
        print(f"preview : {expansion.preview(out / 'preview')}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    """Join the per-process parts (rank-*-of-N/) of a multi-process write into one dataset."""
    from liftdata.io.shards import merge_ranks

    result = merge_ranks(args.dir, strict=True)
    print(f"dataset : {result.out_dir}  ({result.n_samples} samples in {len(result.files)} shards, "
          f"{result.manifest['ranks']} parts)")
    return 0


def _build(args: argparse.Namespace) -> int:
    """Run a dataset-building recipe (YAML)."""
    from liftdata.recipes import load_recipe, run_recipe

    _set_threads()
    for what, where in run_recipe(load_recipe(args.recipe, args.set)).items():
        print(f"{what:8}: {where}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    """Contact sheet + coverage plot + HTML page of a written dataset."""
    from liftdata.preview import preview_dataset

    print(preview_dataset(args.dir, args.out))
    return 0


def _push(args: argparse.Namespace) -> int:
    """Upload a written dataset folder to the Hugging Face Hub (needs the `hub` extra)."""
    from liftdata.io.hub import push_folder

    print(push_folder(args.dir, args.repo_id, private=not args.public, token=args.token))
    return 0


def _track(args: argparse.Namespace) -> int:
    """Track a video / images into a saved capture (frames + kinematics + camera + identity) and an overlay."""
    from liftdata.track import overlay

    _set_threads()
    capture = _open_input(args).capture
    out = capture.save(args.out)
    overlay(capture, out / "overlay.png")
    found = int(capture.face_found.sum())
    print(f"capture : {out}  ({len(capture)} frames, face found in {found}; overlay.png)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Expand a real portrait (the astronaut photo bundled with scikit-image) and a synthetic video."""
    from liftdata.demo import run_demo

    _set_threads()
    for what, where in run_demo(Path(args.out), n=args.n, size=args.size).items():
        print(f"{what:22}: {where}")
    return 0


def _info(args: argparse.Namespace) -> int:
    """Versions, render backend and installed extras."""
    import liftdata
    from liftdata.render.raster import resolve_backend

    print(f"liftdata {liftdata.__version__}")
    print(f"render backend (auto): {resolve_backend('auto')}")
    for extra, module in [("track", "mediapipe"), ("flame", "smplx"), ("train", "peft"), ("hub", "huggingface_hub"),
                          ("viz", "matplotlib")]:
        try:
            __import__(module)
            status = "installed"
        except ImportError:
            status = f"missing (pip install 'liftdata[{extra}]')"
        print(f"{extra:>6}: {module} {status}")
    return 0


#: Commands whose argument parsing lives with their module (they own their --help).
PASSTHROUGH = {"train-lifter": ("liftdata.lifters.liftavatar.training", "train the diffusion lifter (CONFIG)"),
               "eval": ("liftdata.eval.report", "PSNR/SSIM/LPIPS report: --renders DIR --gt DIR")}


def _input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="a video, an image or folder of images, or a tracked directory "
                                 "(liftdata capture or VHAP/GaussianAvatars layout)")
    p.add_argument("--head-model", choices=["builtin", "flame"], default="builtin")
    p.add_argument("--flame-model", help="FLAME .pkl/.npz (with --head-model flame)")
    p.add_argument("--flame-embedding", help="mediapipe_landmark_embedding.npz (with --head-model flame)")
    p.add_argument("--max-frames", type=int, help="use at most this many video frames")
    p.add_argument("--stride", type=int, default=1, help="use every k-th video frame")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liftdata", description=(
        "Turn a short face video into a large training set for 3D Gaussian head avatars."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("expand", help="video/photos -> expanded dataset", description=_expand.__doc__)
    _input_args(p)
    p.add_argument("--n", type=_positive_int, required=True, help="lifted frames to synthesize")
    p.add_argument("--out", required=True, help="output directory (rerun to resume)")
    p.add_argument("--format", choices=["webdataset", "parquet", "vhap"], default="webdataset")
    p.add_argument("--sampler", help="a sampler spec as YAML text or a YAML file, e.g. "
                                     "'{mix: [{mine_extremes: {}}, {pose_sweep: {yaw: [-40, 40]}}]}' "
                                     "(default: extremes + pose sweeps + interpolation)")
    p.add_argument("--lifter", choices=["warp", "liftavatar"], default="warp")
    p.add_argument("--checkpoint", help="liftavatar checkpoint directory")
    p.add_argument("--device", default="auto", help="liftavatar: torch device (default: cuda when available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="liftavatar: transformer dtype (bfloat16 on recent GPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, help="longer image side of the output (default: the input's)")
    p.add_argument("--shard-size", type=_positive_int, default=1000, help="samples per shard")
    p.add_argument("--no-captured", action="store_true", help="write only the lifted frames")
    p.add_argument("--no-preview", action="store_true")
    p.set_defaults(run=_expand)

    p = sub.add_parser("build", help="run a recipe YAML", description=_build.__doc__)
    p.add_argument("recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set expand.n=64 --set input.video=clip.mp4")
    p.set_defaults(run=_build)

    p = sub.add_parser("preview", help="preview a written dataset", description=_preview.__doc__)
    p.add_argument("dir")
    p.add_argument("--out", help="where to write (default: DIR/preview)")
    p.set_defaults(run=_preview)

    p = sub.add_parser("push", help="upload a dataset to the Hugging Face Hub", description=_push.__doc__)
    p.add_argument("dir")
    p.add_argument("repo_id", help="user/name")
    p.add_argument("--public", action="store_true", help="make the dataset public (default: private)")
    p.add_argument("--token", help="Hugging Face token (default: the cached login / HF_TOKEN)")
    p.set_defaults(run=_push)

    p = sub.add_parser("merge", help="join the parts of a multi-process write", description=_merge.__doc__)
    p.add_argument("dir", help="the dataset directory holding rank-*-of-N/ parts")
    p.set_defaults(run=_merge)

    p = sub.add_parser("track", help="track a video/photos into a saved capture", description=_track.__doc__)
    _input_args(p)
    p.add_argument("--out", required=True, help="capture directory to create")
    p.set_defaults(run=_track)

    p = sub.add_parser("demo", help="the whole pipeline on bundled inputs (no model files needed)",
                       description=_demo.__doc__)
    p.add_argument("--out", required=True, help="output directory (rerun to resume)")
    p.add_argument("--n", type=_positive_int, default=64, help="lifted frames per input (default 64)")
    p.add_argument("--size", type=_positive_int, default=256, help="output image size (default 256)")
    p.set_defaults(run=_demo)

    for name, (_, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("info", help="versions, render backend and installed extras").set_defaults(run=_info)
    return parser


#: Errors that describe bad input: printed as one line (exit status 2) instead of a traceback.
#: Checked only for modules already imported (an error class can only be raised once its module is).
USER_ERRORS = {"liftdata.track.decode": "TrackingError", "liftdata.io.shards": "DatasetDirError",
               "liftdata.io.schema": "SampleError", "liftdata.io.vhap": "VhapError",
               "liftdata.recipes": "RecipeError", "liftdata.samplers.plan": "PlanError",
               "liftdata.lifters.warp": "LifterInputError", "liftdata.capture": "CaptureError",
               "liftdata.head.flame_file": "FlameFileError", "liftdata.io.hub": "HubError",
               "builtins": "PermissionError"}


def _is_user_error(error: BaseException) -> bool:
    return any(isinstance(error, getattr(sys.modules[module], name))
               for module, name in USER_ERRORS.items() if module in sys.modules)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        return importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"liftdata {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
