"""The `liftdata` command line: parse -> build -> run (each command is a thin shell over the API)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from pathlib import Path

from liftdata.config import ConfigError, ExpandConfig
from liftdata.errors import LiftdataError


def _set_threads() -> None:
    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 4) if torch.cuda.is_available() else 1)


def _load_model(args: argparse.Namespace):
    from liftdata.head import load_head_model

    if args.head_model == "flame" and not args.flame_model:
        raise ConfigError("--head-model flame needs --flame-model PATH (a FLAME .pkl/.npz file)")
    return (load_head_model("flame", model_path=args.flame_model, landmark_embedding=args.flame_embedding)
            if args.head_model == "flame" else load_head_model(args.head_model))


def _input_kind(path: Path) -> str:
    """`tracked` (a liftdata capture or VHAP/GaussianAvatars folder), `images` or `video`."""
    from liftdata.track.decode import IMAGE_SUFFIXES

    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_dir():
        return "tracked" if (path / "capture.json").is_file() or any(path.glob("transforms*.json")) else "images"
    return "images" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def _open_input(args: argparse.Namespace):
    """A LiftDataset from a video, an image / folder of images, or a tracked directory; uncropped
    (`liftdata track` saves the input's framing; `expand` crops the saved capture)."""
    from liftdata.dataset import LiftDataset

    path = Path(args.input)
    kind = _input_kind(path)
    model = _load_model(args)
    if kind == "tracked" and args.camera is not None:  # one camera of a multi-camera VHAP folder
        from liftdata.io.vhap import import_vhap

        return LiftDataset(import_vhap(path, model, args.camera))
    if kind == "tracked":
        return LiftDataset.from_tracked(path, model)
    if kind == "images":
        return LiftDataset.from_images(path, model, crop=None, tracking=args.tracking)
    return LiftDataset.from_video(path, model, max_frames=args.max_frames, stride=args.stride, subject=args.subject,
                                  crop=None, tracking=args.tracking)


def _sampler_spec(spec: str | None) -> dict | None:
    """--sampler: YAML text or a YAML file -> the spec mapping (built and checked by the run)."""
    if spec is None:
        return None
    import yaml

    from liftdata.recipes import RecipeError

    try:
        text = Path(spec).read_text() if os.path.isfile(spec) else spec  # isfile: False for over-long YAML text
        parsed = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise RecipeError(f"--sampler {spec}: not a text (YAML) file") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"--sampler: not valid YAML ({e})") from None
    if not isinstance(parsed, dict):
        raise RecipeError(f"--sampler: expected a mapping like {{mine_extremes: {{}}}}, got {parsed!r}")
    return parsed


def _config_from_args(args: argparse.Namespace) -> ExpandConfig:
    """The `ExpandConfig` of `liftdata expand`'s options (paths made absolute)."""
    from liftdata.config import resolve_paths

    path = Path(args.input)
    config = ExpandConfig(
        **{_input_kind(path): str(path)}, head_model=args.head_model, flame_model=args.flame_model,
        flame_embedding=args.flame_embedding, max_frames=args.max_frames, stride=args.stride, subject=args.subject,
        tracking=args.tracking, camera=args.camera,
        n=args.n, seed=args.seed, size=args.size, crop=args.crop, include_captured=not args.no_captured,
        quality_gate=args.quality_gate, quality_threshold=args.quality_threshold, pose_support=args.pose_support,
        keep_unfit=args.keep_unfit, matte=args.matte,
        sampler=_sampler_spec(args.sampler), lifter=args.lifter, checkpoint=args.checkpoint, dtype=args.dtype,
        device=args.device, out=args.out, format=args.format, shard_size=args.shard_size,
        preview=not args.no_preview, split=args.split, background=args.background)
    return resolve_paths(config, Path.cwd())


def _expand(args: argparse.Namespace) -> int:
    """Track INPUT, plan n novel kinematics, lift them, write shards (+ a preview).

    Rerun the same command to resume; a rerun with other settings into the same --out is refused
    (naming the settings that differ) unless --overwrite."""
    from liftdata.run import run_expand

    config = _config_from_args(args)
    _set_threads()
    print("\n".join(run_expand(config, overwrite=args.overwrite).lines()))
    return 0


def _merge(args: argparse.Namespace) -> int:
    """Join the per-process parts (rank-*-of-N/) of a multi-process write into one dataset."""
    from liftdata.io.shards import merge_ranks

    result = merge_ranks(args.dir, strict=True)
    print(f"dataset : {result.out_dir}  ({result.n_samples} samples in {len(result.files)} shards, "
          f"{result.manifest['ranks']} parts)")
    return 0


def _build(args: argparse.Namespace) -> int:
    """Run a dataset-building recipe (YAML): the same run as `liftdata expand` with the recipe's settings."""
    from liftdata.recipes import load_recipe, recipe_config
    from liftdata.run import run_expand

    config = recipe_config(load_recipe(args.recipe, args.set))  # every key checked before any work
    _set_threads()
    print("\n".join(run_expand(config, overwrite=args.overwrite).lines()))
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Check every shard of a written dataset against its manifest (presence, size, sha256)."""
    from liftdata.io.shards import DatasetDirError
    from liftdata.io.verify import verify_dataset

    report = verify_dataset(args.dir, sha256=not args.no_sha256)
    for problem in report.problems:
        print(f"bad shard: {problem}")
    checked = "size and sha256" if report.sha256 else "size"
    if not report.ok:
        raise DatasetDirError(f"{report.in_dir}: {len(report.problems)} bad shard file(s); the manifest lists "
                              f"{report.n_shards} shards")
    print(f"ok      : {report.in_dir}  ({report.n_shards} shards, {report.n_samples} samples; {checked} checked)")
    return 0


def _preview(args: argparse.Namespace) -> int:
    """Contact sheet + coverage plot + HTML page of a written dataset."""
    from liftdata.preview import preview_dataset

    print(preview_dataset(args.dir, args.out, verify=not args.no_sha256))
    return 0


def _push(args: argparse.Namespace) -> int:
    """Upload a written dataset folder to the Hugging Face Hub (needs the `hub` extra)."""
    from liftdata.io.hub import push_folder

    print(push_folder(args.dir, args.repo_id, private=not args.public, token=args.token))
    return 0


def _track(args: argparse.Namespace) -> int:
    """Track a video / images into a saved capture (frames + kinematics + camera + identity) and an overlay."""
    from liftdata.io.shards import check_writable
    from liftdata.track import overlay

    if Path(args.out).exists():
        raise ConfigError(f"{args.out}: already exists; choose a new capture directory")
    check_writable(args.out)
    _set_threads()
    capture = _open_input(args).capture
    out = capture.save(args.out)
    overlay(capture, out / "overlay.png")
    found = int(capture.face_found.sum())
    if "segments" in capture.extra:  # a video: its shots and subjects (--subject N picks another)
        from liftdata.track.segment import segment_lines

        print("\n".join(segment_lines(capture.extra["segments"])))
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
    """Versions, render backend and installed extras; with DIR, what a written dataset holds."""
    import liftdata
    from liftdata.render.raster import resolve_backend

    if args.dir is not None:  # format, schema version, counts, shards, complete or not, members
        from liftdata.io.verify import dataset_summary

        print("\n".join(dataset_summary(args.dir).lines()))
        return 0

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
    p.add_argument("--subject", type=int, default=0, help="which person of a video to keep (0: most frames)")
    p.add_argument("--tracking", choices=["photometric", "landmarks"], default="photometric",
                   help="photometric (default): refine the landmark fit against the face's texture "
                        "(more accurate head pose; ~0.3 s per frame on one CPU thread, ~50x the landmark fit); "
                        "landmarks: the landmark fit alone")
    p.add_argument("--camera", type=int, help="a VHAP folder with several cameras: the camera_index to use")


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
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="liftavatar: transformer dtype (default float32; bfloat16 on recent GPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, help="longer image side of the output (default: the input's)")
    p.add_argument("--crop", type=_crop, default="auto", metavar="S|auto|none",
                   help="head-centred square crop (2.5 x the face size, one box for the capture) resized to S px; "
                   "auto (default): 512, or the box's own side if smaller, for videos and images; none: keep "
                   "the input's framing")
    p.add_argument("--quality-gate", choices=["resample", "drop", "off"], default="resample",
                   help="lifted frames under the quality threshold: replaced by re-planned ones that pass "
                   "(resample, n honoured), not written (drop), or kept (off)")
    p.add_argument("--quality-threshold", type=float, default=_default("quality_threshold"),
                   help="quality score in [0, 1] a lifted frame must reach (default 0.425, calibrated)")
    p.add_argument("--pose-support", type=_support, default=_default("pose_support"), metavar="DEG|none",
                   help="default sampler: plan no pose farther than DEG from the nearest captured pose (default 25)")
    p.add_argument("--no-matte", dest="matte", action="store_false", default=None,
                   help="no foreground alpha (default: every sample gets {key}.alpha.png when mediapipe is installed)")
    p.add_argument("--keep-unfit", action="store_true",
                   help="also write captured frames without a face or with an outlier fit (flagged)")
    p.add_argument("--shard-size", type=_positive_int, default=1000, help="samples per shard")
    p.add_argument("--no-captured", action="store_true", help="write only the lifted frames")
    p.add_argument("--no-preview", action="store_true")
    p.add_argument("--split", choices=["auto", "none", "source", "extremes", "last30", "last350", "last500"],
                   default="auto", help="--format vhap: captured frames held out in transforms_test.json (auto: a "
                   "VHAP input's own test split, else none; extremes: the 10%% most extreme, as avatar compare)")
    p.add_argument("--background", choices=["white", "black", "keep"], default="white",
                   help="--format vhap: composite images on this background with their matte (default white)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: delete what an earlier run left in --out (capture, dataset, preview)")
    p.set_defaults(run=_expand)

    p = sub.add_parser("build", help="run a recipe YAML", description=_build.__doc__)
    p.add_argument("recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set expand.n=64 --set input.video=clip.mp4")
    p.add_argument("--overwrite", action="store_true", help="start over in output.dir (see expand --overwrite)")
    p.set_defaults(run=_build)

    p = sub.add_parser("preview", help="preview a written dataset", description=_preview.__doc__)
    p.add_argument("dir")
    p.add_argument("--out", help="where to write (default: DIR/preview)")
    p.add_argument("--no-sha256", action="store_true", help="check shard sizes only, not their sha256")
    p.set_defaults(run=_preview)

    p = sub.add_parser("verify", help="check a dataset's shards against its manifest", description=_verify.__doc__)
    p.add_argument("dir", help="a dataset directory (holding manifest.json)")
    p.add_argument("--no-sha256", action="store_true", help="check presence and sizes only (fast)")
    p.set_defaults(run=_verify)

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

    from liftdata.avatar.cli import add_parser as add_avatar_parser  # liftdata avatar train|render|compare

    add_avatar_parser(sub)
    for name, (_, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text, add_help=False)
    p = sub.add_parser("info", help="versions, render backend and installed extras; or what dataset DIR holds",
                       description=_info.__doc__)
    p.add_argument("dir", nargs="?", help="a dataset directory: print its format, schema version, sample counts "
                                          "(captured/lifted), shards, completeness and members")
    p.set_defaults(run=_info)
    return parser


def _error_line(error: BaseException) -> str:
    """One line for a user error: the message of a LiftdataError; path + cause for an OSError."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename or ""
        return f"{where}: {error.strerror}" if where else error.strerror
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _default(name: str) -> Any:
    """The `ExpandConfig` default of a field (one place for it)."""
    return ExpandConfig.__dataclass_fields__[name].default


def _crop(text: str) -> int | str | None:
    """--crop: a side in pixels, `auto` or `none`."""
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    return _positive_int(text)


def _support(text: str) -> float | None:
    """--pose-support: degrees, or `none` for no limit."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected degrees or 'none', got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        return importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (LiftdataError, OSError) as e:  # bad input, or a file we cannot read or write: one line, exit 2
        print(f"liftdata {args.command}: error: {_error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
