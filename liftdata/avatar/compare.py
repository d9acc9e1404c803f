"""Does this expansion help? Two avatars, same seed and budget: captured frames only vs captured + lifted.

Both are scored on the same held-out *captured* frames (never trained on by either) with
`liftdata eval`'s report (PSNR / SSIM / LPIPS if its weights are present, masked to the head
region, binned by expression extremeness relative to the captured training frames):

* split "extremes" (default): the `holdout` fraction of captured frames farthest (Mahalanobis
  distance of expression + jaw, `liftdata.eval.splits`) from the capture's own distribution;
* split "last30" / "last350" / "last500": the standard monocular tails (`monocular_split`).

Caveat written into the report: lifted frames made from references that include the held-out
frames leak them; for a clean answer expand from the training part of the capture only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from liftdata.avatar.data import AvatarFrames, composite, reachable_masks
from liftdata.avatar.model import AvatarError
from liftdata.avatar.train import TrainConfig, render_frames, train
from liftdata.eval.splits import SPLITS, ExtremenessModel, monocular_split

__all__ = ["COMPARE_SPLITS", "holdout_split", "evaluate_renders", "compare"]

COMPARE_SPLITS = ("extremes",) + SPLITS


def holdout_split(frames: AvatarFrames, split: str = "extremes", holdout: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into `frames`' captured frames (module docstring)."""
    captured = frames.where("captured")
    if split not in COMPARE_SPLITS:
        raise AvatarError(f"split: expected one of {COMPARE_SPLITS}, got {split!r}")
    if len(captured) < 4:
        raise AvatarError(f"{len(captured)} captured frames: need at least 4 to hold some out")
    if split == "extremes":
        dist = ExtremenessModel(frames.kinematics[captured]).train_distances
        n_test = max(1, math.ceil(holdout * len(captured)))
        order = np.argsort(-dist, kind="stable")
        return np.sort(captured[order[n_test:]]), np.sort(captured[order[:n_test]])
    try:
        tr, te = monocular_split(len(captured), split)
    except ValueError as e:
        raise AvatarError(str(e)) from None
    return captured[tr], captured[te]


def _frameset(root: Path, names: list[str], images: np.ndarray, kinematics, kind: str):
    from liftdata.eval.sources import FrameSet

    index = {n: i for i, n in enumerate(names)}
    return FrameSet(root, list(names), {n: f"{root} {n}" for n in names}, lambda n: images[index[n]], kinematics, kind)


def evaluate_renders(renders: np.ndarray,  # [T, H, W, 3] uint8
                     test: AvatarFrames, train_kinematics, size: int, background, out_dir: Path | None = None,
                     backbone: str = "alex", lpips_weights: str | None = None) -> dict[str, Any]:
    """`liftdata eval`'s report of renders against the test frames (composited as the targets, head mask)."""
    from liftdata.eval.report import evaluate, write_report

    h, w = renders.shape[1:3]
    gt_imgs = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in test.images])
    masks = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in test.masks])
    gt = (composite(gt_imgs, masks, background) * 255 + 0.5).astype(np.uint8)
    root = out_dir or Path(".")
    r_fs = _frameset(root / "renders", test.names, renders, None, "images")
    g_fs = _frameset(root / "gt", test.names, gt, test.kinematics, "capture")
    t_fs = _frameset(root / "train", ["t"] * 0, gt[:0], train_kinematics, "capture")
    index = {n: i for i, n in enumerate(test.names)}
    mask_src = ({n: n for n in test.names}, lambda n: masks[index[n]] > 0.5)
    report = evaluate(r_fs, g_fs, masks=mask_src, backbone=backbone, lpips_weights=lpips_weights, train=t_fs)
    if out_dir is not None:
        write_report(report, out_dir, r_fs, g_fs)
    return report


def _save_pngs(directory: Path, names: list[str], images: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n, im in zip(names, images):
        cv2.imwrite(str(directory / f"{n}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))


def compare(frames: AvatarFrames, out_dir: str | Path, cfg: TrainConfig | None = None, *, split: str = "extremes",
            holdout: float = 0.1, backbone: str = "alex", lpips_weights: str | None = None,
            progress: Callable[[str], Callable] | None = None) -> dict[str, Any]:
    """Train the two avatars into OUT/captured and OUT/lifted, evaluate both, write OUT/compare.json."""
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    lifted = frames.where("lifted")
    if len(lifted) == 0:
        raise AvatarError("the dataset holds no lifted frames (meta.source == 'lifted'): nothing to compare")
    train_idx, test_idx = holdout_split(frames, split, holdout)
    test = frames.subset(test_idx)
    train_kin = frames.kinematics[train_idx]
    result: dict[str, Any] = {
        "split": split, "holdout": holdout if split == "extremes" else None, "n_test": len(test_idx),
        "n_captured_train": len(train_idx), "n_lifted": len(lifted), "train_config": json.loads(json.dumps(
            cfg, default=lambda o: o.__dict__)),
        "caveat": "lifted frames whose references include held-out frames leak them; expand from the training "
                  "frames only for a clean comparison", "avatars": {}}
    for name, idx in (("captured", train_idx), ("lifted", np.concatenate([train_idx, lifted]))):
        avatar = train(frames.subset(idx), out / name, cfg, progress=progress(name) if progress else None)
        scored = reachable_masks(test, avatar)  # as the avatar was trained: what its mesh can represent
        renders = render_frames(avatar, scored, cfg.size, cfg.backend)
        _save_pngs(out / name / "renders", scored.names, renders)
        report = evaluate_renders(renders, scored, train_kin, cfg.size, avatar.config.background,
                                  out / name / "eval", backbone, lpips_weights)
        result["avatars"][name] = {"n_train_frames": len(idx), "n_gaussians": len(avatar),
                                   "metrics": report["metrics"], "bins": report.get("bins", []),
                                   "report": str(out / name / "eval" / "report.json")}
    a, b = result["avatars"]["captured"], result["avatars"]["lifted"]
    result["gain"] = {k: b["metrics"][k] - a["metrics"][k] for k in a["metrics"] if k in b["metrics"]}
    result["gain_per_bin"] = [{"bin": x["bin"], **{k: y[k] - x[k] for k in a["metrics"] if k in x and k in y}}
                              for x, y in zip(a["bins"], b["bins"])]
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result
