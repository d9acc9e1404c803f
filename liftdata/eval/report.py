"""Downstream evaluation: renders of any avatar method against ground-truth frames.

    liftdata eval --renders DIR --gt DIR [--out DIR] [--mask-dir DIR] [--train DIR]
                  [--split last30|last350|last500] [--backbone alex|vgg|none] [--lpips-weights DIR]

`--gt` is an image folder, a liftdata capture or a liftdata dataset (see `sources`); renders
are matched to it by file name. Every selected ground-truth frame needs a render of the same
size; a render without ground truth is an error. Metrics per frame: PSNR, SSIM, LPIPS (named
by backbone: `lpips_alex` / `lpips_vgg`), masked to the head region with `--mask-dir`.
When the ground truth carries kinematics and training kinematics are known (`--train`, or
the frames before the split of a ground-truth capture/dataset), frames are binned by
expression extremeness (`splits.ExtremenessModel`) and metrics reported per bin; else binning
is skipped and the report says why. `--kinematic` adds AED/APD/LMD by re-tracking renders and
ground truth with liftdata's tracker (numbers only comparable under the same tracker).

Writes `report.json`, `report.html` and `summary.png` into `--out` (default: `<renders>/eval`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from liftdata.eval.kinematic import Landmarker, Tracker, kinematic_metrics
from liftdata.eval.metrics import mean_finite, psnr, ssim, to_nchw
from liftdata.eval.sources import EvalInputError, FrameSet, load_kinematics, open_frames, open_masks
from liftdata.eval.splits import SPLITS, ExtremenessModel, bin_labels, monocular_split

__all__ = ["match_frames", "evaluate", "write_report", "main", "EvalInputError"]

WORST_K = 4


def match_frames(renders: FrameSet, gt: FrameSet, split: str | None = None) -> tuple[FrameSet, FrameSet, FrameSet | None]:
    """(renders, gt) restricted to the evaluated frames, in gt order, plus gt's training part under `split`."""
    extra = [n for n in renders.names if n not in gt.where]
    if extra:
        raise EvalInputError(f"{len(extra)} render(s) have no ground truth in {gt.root}: "
                             f"{', '.join(renders.where[n] for n in extra[:5])}")
    names, train = gt.names, None
    if split is not None:
        train_idx, test_idx = monocular_split(len(gt), split)
        names, train = [gt.names[i] for i in test_idx], gt.subset([gt.names[i] for i in train_idx])
    missing = [n for n in names if n not in renders.where]
    if missing:
        raise EvalInputError(f"{len(missing)} ground-truth frame(s) have no render in {renders.root}: "
                             f"{', '.join(gt.where[n] for n in missing[:5])}")
    return renders.subset(names), gt.subset(names), train


def lpips_network(backbone: str, weights: str | None, device: str = "cpu"):
    """(name, network or None, note): a missing weight file is an error only if `weights` was given."""
    if backbone == "none":
        return None, None, "LPIPS disabled (--backbone none)"
    from liftdata.eval.lpips import LpipsWeightsError, load_lpips

    try:
        return f"lpips_{backbone}", load_lpips(backbone, weights, device), None
    except LpipsWeightsError as e:
        if weights is not None:
            raise
        print(f"warning: skipping LPIPS: {e}", file=sys.stderr)
        return None, None, f"LPIPS skipped: {e}"


def _load_pairs(renders: FrameSet, gt: FrameSet, names: Sequence[str], masks) -> list[tuple]:
    """[(render, gt, mask or None)] uint8 / bool arrays, sizes checked (the message names the files)."""
    pairs = []
    for n in names:
        p, g = renders.load(n), gt.load(n)
        if p.shape != g.shape:
            raise EvalInputError(f"size mismatch: render {renders.where[n]} is {p.shape[1]}x{p.shape[0]}, "
                                 f"ground truth {gt.where[n]} is {g.shape[1]}x{g.shape[0]}")
        m = None
        if masks is not None:
            files, load = masks
            if n not in files:
                raise EvalInputError(f"no mask named {n!r} (for {gt.where[n]}) in the mask directory")
            m = load(n)
            if m.shape != g.shape[:2]:
                raise EvalInputError(f"mask {files[n]} is {m.shape[1]}x{m.shape[0]}, frame {gt.where[n]} is "
                                     f"{g.shape[1]}x{g.shape[0]}")
        pairs.append((p, g, m))
    return pairs


def _image_metrics(renders: FrameSet, gt: FrameSet, masks, lpips_name, lpips_net, device: str,
                   batch_size: int) -> dict[str, list[float]]:
    names = ["psnr", "ssim"] + ([lpips_name] if lpips_name else [])
    out: dict[str, list[float]] = {k: [math.nan] * len(gt) for k in names}
    with torch.no_grad():
        for s in range(0, len(gt), batch_size):
            pairs = _load_pairs(renders, gt, gt.names[s:s + batch_size], masks)
            for shape in {p.shape for p, _, _ in pairs}:  # frames of different sizes: one batch per size
                idx = [i for i, (p, _, _) in enumerate(pairs) if p.shape == shape]
                pred = to_nchw(np.stack([pairs[i][0] for i in idx]), device)
                target = to_nchw(np.stack([pairs[i][1] for i in idx]), device)
                m = None if masks is None else torch.as_tensor(np.stack([pairs[i][2] for i in idx]),
                                                               dtype=torch.float32, device=device)
                values = {"psnr": psnr(pred, target, m), "ssim": ssim(pred, target, m)}
                if lpips_net is not None:
                    values[lpips_name] = lpips_net(pred, target, m)
                for k, v in values.items():
                    for i, x in zip(idx, v.cpu().tolist()):
                        out[k][s + i] = x
    return out


def _summaries(values: dict[str, list[float]], index: np.ndarray | None = None) -> dict[str, float]:
    return {k: mean_finite(np.asarray(v)[index] if index is not None else v) for k, v in values.items()}


def _binning(gt: FrameSet, train_kin, train_note: str) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    if gt.kinematics is None:
        return {"skipped": f"ground truth {gt.root} is an image folder: no kinematics to bin by"}, None, None
    if train_kin is None:
        return {"skipped": "no training kinematics given (--train, or --split with a capture/dataset)"}, None, None
    model = ExtremenessModel(train_kin)
    dist = model.distance(gt.kinematics)
    info = {"measure": "Mahalanobis distance of (expression, jaw) from the training frames",
            "training": train_note, "n_training_frames": len(train_kin),
            "edges": {f"p{q:g}": float(e) for q, e in zip((50, 90, 99), model.edges)}}
    return info, dist, model.bins(dist)


def evaluate(renders: FrameSet, gt: FrameSet, *, masks=None, backbone: str = "alex", lpips_weights: str | None = None,
             train: FrameSet | str | None = None, split: str | None = None, device: str = "cpu",
             batch_size: int = 8, tracker: Tracker | None = None, landmarker: Landmarker | None = None,
             kinematic: bool = False) -> dict[str, Any]:
    """Compute the report dict (see module doc). `train`: a FrameSet / path with kinematics."""
    renders, gt, train_part = match_frames(renders, gt, split)
    lpips_name, lpips_net, lpips_note = lpips_network(backbone, lpips_weights, device)
    per_frame = _image_metrics(renders, gt, masks, lpips_name, lpips_net, device, batch_size)
    if isinstance(train, (str, Path)):
        train_kin, note = load_kinematics(train), str(train)
    elif train is not None:
        train_kin, note = train.kinematics, str(train.root)
    elif train_part is not None and train_part.kinematics is not None:
        train_kin, note = train_part.kinematics, f"the frames of {gt.root} before the {split} test split"
    else:
        train_kin, note = None, ""
    binning, dist, bins = _binning(gt, train_kin, note)
    report: dict[str, Any] = {
        "renders": str(renders.root), "gt": str(gt.root), "gt_kind": gt.kind, "split": split or "all",
        "n_frames": len(gt), "masked": masks is not None, "lpips": lpips_name or lpips_note,
        "metrics": _summaries(per_frame), "binning": binning,
    }
    if bins is not None:
        report["bins"] = [{"bin": label, "n_frames": int((bins == b).sum()),
                           **(_summaries(per_frame, bins == b) if (bins == b).any() else {})}
                          for b, label in enumerate(bin_labels())]
    if kinematic or tracker is not None:
        k = kinematic_metrics(renders.frames(), gt.frames(), tracker=tracker, landmarker=landmarker)
        report["kinematic"] = {"mean": k["mean"], "note": "renders and ground truth re-tracked with the same "
                               "tracker; only comparable between methods under the same tracker"}
        per_frame.update(k["per_frame"])
    order = np.argsort(np.nan_to_num(np.asarray(per_frame["psnr"]), posinf=1e9))
    report["worst_frames"] = [gt.names[i] for i in order[:WORST_K]]
    report["per_frame"] = [{"name": n, **{k: v[i] for k, v in per_frame.items()},
                            **({} if dist is None else {"extremeness": float(dist[i]), "bin": bin_labels()[bins[i]]})}
                           for i, n in enumerate(gt.names)]
    return report


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def write_report(report: dict[str, Any], out_dir: str | Path, renders: FrameSet, gt: FrameSet) -> dict[str, Path]:
    """Write report.json, summary.png and report.html into `out_dir`; returns their paths."""
    from liftdata.eval.summary import write_html, write_summary_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "png": out / "summary.png", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(_json_safe(report), indent=1) + "\n")
    write_summary_png(report, renders, gt, paths["png"])
    write_html(report, paths["html"], paths["png"].name)
    return paths


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="liftdata eval", description=__doc__.splitlines()[0])
    p.add_argument("--renders", required=True, help="folder of rendered frames (PNG/JPEG), named like the ground truth")
    p.add_argument("--gt", required=True, help="ground truth: image folder, liftdata capture or dataset directory")
    p.add_argument("--out", help="output directory (default: <renders>/eval)")
    p.add_argument("--mask-dir", help="head masks (grey images, > 127 = head) named like the frames")
    p.add_argument("--train", help="training kinematics (liftdata capture or dataset) for extremeness bins")
    p.add_argument("--split", choices=SPLITS, help="evaluate only the standard monocular test frames of --gt")
    p.add_argument("--backbone", choices=("alex", "vgg", "none"), default="alex", help="LPIPS backbone")
    p.add_argument("--lpips-weights", help="directory with the LPIPS weight files (see liftdata.eval.lpips)")
    p.add_argument("--kinematic", action="store_true", help="also AED/APD/LMD by re-tracking (slow)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=8)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """`liftdata eval`: parse -> evaluate -> write; prints the metric table and output paths."""
    args = parse_args(argv)
    renders = open_frames(args.renders)
    gt = open_frames(args.gt)
    masks = open_masks(args.mask_dir) if args.mask_dir else None
    report = evaluate(renders, gt, masks=masks, backbone=args.backbone, lpips_weights=args.lpips_weights,
                      train=args.train, split=args.split, device=args.device, batch_size=args.batch_size,
                      kinematic=args.kinematic)
    paths = write_report(report, args.out or Path(args.renders) / "eval", renders, gt)
    print(f"{report['n_frames']} frames ({report['split']}); " +
          ", ".join(f"{k} {v:.4f}" for k, v in report["metrics"].items()))
    if "bins" in report:
        for b in report["bins"]:
            print(f"  bin {b['bin']:>8}: {b['n_frames']} frames" +
                  "".join(f", {k} {b[k]:.4f}" for k in report["metrics"] if k in b))
    else:
        print(f"  binning skipped: {report['binning']['skipped']}")
    print(f"wrote {paths['json']}, {paths['html']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
