"""`liftdata avatar train | render | compare` (registered by `liftdata.cli.build_parser`).

    liftdata avatar train DATASET --out AVATAR [--iterations N] [--size S] [--seed S] [--backend B]
    liftdata avatar render AVATAR --kinematics DATASET --out DIR [--size S]
    liftdata avatar compare DATASET --out DIR [--split extremes|last30|last350|last500] [--holdout F]

DATASET: a liftdata WebDataset/Parquet directory, a saved capture, or a VHAP directory (`--flame`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

__all__ = ["add_parser"]


def _progress_bar(label: str):
    """A one-line progress bar on stderr (tqdm when installed, else plain text)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the datasets extra
        tqdm = None
    state: dict[str, Any] = {}

    def update(i: int, n: int, info: dict) -> None:
        if tqdm is not None:
            bar = state.get("bar") or state.setdefault("bar", tqdm(total=n, initial=i - 1, desc=label, file=sys.stderr))
            bar.update(1)
            bar.set_postfix(loss=f"{info['loss']:.4f}", gaussians=info["n"], refresh=False)
            if i == n:
                bar.close()
        elif i % 50 == 0 or i == n:
            print(f"{label}: {i}/{n} loss {info['loss']:.4f} gaussians {info['n']}", file=sys.stderr, flush=True)

    return update


def _head_model(args: argparse.Namespace):
    if getattr(args, "flame", None):
        from liftdata.head import load_head_model

        return load_head_model("flame", path=args.flame)
    return None


def _config(args: argparse.Namespace):
    from liftdata.avatar.model import AvatarConfig
    from liftdata.avatar.train import TrainConfig

    cfg = TrainConfig(iterations=args.iterations, seed=args.seed, size=args.size, backend=args.backend)
    return replace(cfg, avatar=AvatarConfig(sh_degree=args.sh_degree, mesh=args.mesh))


def _train(args: argparse.Namespace) -> int:
    """Train an avatar on a dataset (resumes from OUT/checkpoint.pt when present)."""
    from liftdata.avatar.data import load_frames
    from liftdata.avatar.train import train

    frames = load_frames(args.dataset, _head_model(args), args.identity, args.size)
    avatar = train(frames, args.out, _config(args), progress=_progress_bar("train"))
    print(f"trained {len(avatar)} Gaussians on {len(frames)} frames -> {args.out}")
    return 0


def _render(args: argparse.Namespace) -> int:
    """Render an avatar under the kinematics and cameras of a dataset's frames."""
    from pathlib import Path

    from liftdata.avatar.compare import _save_pngs
    from liftdata.avatar.data import load_frames
    from liftdata.avatar.model import GaussianAvatar
    from liftdata.avatar.train import render_frames

    avatar, doc = GaussianAvatar.load(args.avatar, _head_model(args))
    size = args.size or doc.get("train", {}).get("config", {}).get("size", 128)
    frames = load_frames(args.kinematics, avatar.head_model, args.identity or Path(args.avatar) / "identity.npy", size)
    renders = render_frames(avatar, frames, size, args.backend)
    _save_pngs(Path(args.out), frames.names, renders)
    print(f"rendered {len(renders)} frames -> {args.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Captured only vs captured + lifted: same seed and budget, scored on held-out captured frames."""
    from liftdata.avatar.compare import compare
    from liftdata.avatar.data import load_frames

    frames = load_frames(args.dataset, _head_model(args), args.identity, args.size)
    result = compare(frames, args.out, _config(args), split=args.split, holdout=args.holdout,
                     backbone=args.backbone, lpips_weights=args.lpips_weights, progress=_progress_bar)
    for name, r in result["avatars"].items():
        print(f"{name:>9}: " + ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items()))
    print("     gain: " + ", ".join(f"{k} {v:+.4f}" for k, v in result["gain"].items()))
    print(f"wrote {args.out}/compare.json and the two eval reports")
    return 0


def _common(p: argparse.ArgumentParser, training: bool) -> None:
    p.add_argument("--identity", help="subject identity .npy (default: DATASET/capture/identity.npy)")
    p.add_argument("--flame", help="FLAME model file, for VHAP directories and FLAME avatars")
    p.add_argument("--backend", choices=["auto", "torch", "gsplat"], default="auto",
                   help="rasterizer (gsplat: CUDA only)")
    if training:
        p.add_argument("--iterations", type=int, default=1500)
        p.add_argument("--size", type=int, default=128, help="longer image side to train at")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--sh-degree", type=int, default=0, choices=[0, 1, 2, 3])
        p.add_argument("--mesh", choices=["auto", "face", "whole_head"], default="auto",
                       help="triangles the Gaussians bind to (auto: whole_head when the dataset has alpha mattes "
                            "and the head model a proxy, else face)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `avatar` with its three subcommands on the `liftdata` subparsers."""
    avatar = subparsers.add_parser("avatar", help="train / render / compare the reference Gaussian avatar",
                                   description=__doc__.splitlines()[0])
    sub = avatar.add_subparsers(dest="avatar_command", required=True)
    p = sub.add_parser("train", help="train an avatar on a dataset", description=_train.__doc__)
    p.add_argument("dataset")
    p.add_argument("--out", required=True, help="avatar directory (rerun to resume)")
    _common(p, True)
    p.set_defaults(run=_train)
    p = sub.add_parser("render", help="render an avatar under a dataset's kinematics", description=_render.__doc__)
    p.add_argument("avatar")
    p.add_argument("--kinematics", required=True, help="dataset / capture whose kinematics and cameras to render")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, help="longer image side (default: the training size)")
    _common(p, False)
    p.set_defaults(run=_render)
    p = sub.add_parser("compare", help="captured-only vs captured + lifted avatars", description=_compare.__doc__)
    p.add_argument("dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=["extremes", "last30", "last350", "last500"], default="extremes")
    p.add_argument("--holdout", type=float, default=0.1, help="extremes: fraction of captured frames held out")
    p.add_argument("--backbone", choices=["alex", "vgg", "none"], default="alex", help="LPIPS backbone")
    p.add_argument("--lpips-weights", help="directory with LPIPS weights (skipped with a note when missing)")
    _common(p, True)
    p.set_defaults(run=_compare)
    return avatar
