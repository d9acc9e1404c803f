"""Does lifting help a downstream avatar? Synthetic subjects, where any kinematics has ground truth.

Per subject (seed):
* a monotonous capture: a selfie-like video with narrow expressions and small head motion;
* a test set: the same subject under held-out extreme expressions and poses (ground truth rendered);
* a plan of lifted kinematics (liftdata's default sampler on the capture), lifted three ways:
  (b) the warp lifter, (c) LiftAvatar when `--checkpoint` is given, (d) the oracle: the plan
  rendered as ground truth (the most any lifter could give).
Avatars with the same seed, iteration budget and size: (a) captured only, (b)/(c)/(d) captured +
the same number of lifted frames. Scored with `liftdata eval`'s report (masked to the head region,
binned by expression extremeness relative to the captured frames): PSNR / SSIM per bin, gains
b-a, c-a, d-a; the avatar's speed (iterations/s, torch; gsplat when CUDA) and its training-frame
PSNR (full image over the fixed background, and head-masked).

Prints ONE JSON line (per subject and means over subjects); `--out` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch

METRICS = ("psnr", "ssim")


def _frames(capture, source, masks=None):
    from liftdata.avatar.data import frames_from_capture

    return frames_from_capture(capture, source, masks=masks)


def _lifted(capture, n, seed, lifter=None):
    """(kinematics, frames) of n lifted frames from the default plan of `capture`."""
    import cv2

    from liftdata.dataset import LiftDataset
    from liftdata.io.schema import decode_png
    from liftdata.kinematics import Kinematics

    samples = list(LiftDataset(capture).expand(n, lifter=lifter, seed=seed, include_captured=False))
    kin = Kinematics.concat([s.kinematics for s in samples])
    images = np.stack([decode_png(s.image) for s in samples])
    if images.shape[1:3] != (capture.camera.height, capture.camera.width):
        images = np.stack([cv2.resize(im, (capture.camera.width, capture.camera.height)) for im in images])
    return kin, images


def _as_frames(subject_capture, kin, images, source):
    import dataclasses

    cap = dataclasses.replace(subject_capture, frames=images, kinematics=kin, landmark_residual=None, face_found=None)
    return _frames(cap, source)


def _metrics(args: argparse.Namespace) -> tuple[str, ...]:
    """PSNR, SSIM and, when its weights were found, masked LPIPS (`lpips_alex` / `lpips_vgg`)."""
    return METRICS + ((args.lpips_metric,) if args.lpips_metric else ())


def _resolve_lpips(args: argparse.Namespace) -> None:
    """Sets args.lpips_metric (the metric's name, or None) and args.lpips_note (that name or why not)."""
    args.lpips_metric, args.lpips_note = None, "LPIPS disabled (--lpips-backbone none)"
    if args.lpips_backbone != "none":
        from liftdata.eval.lpips import LpipsWeightsError, find_weights

        try:
            find_weights(args.lpips_backbone, args.lpips_weights)
            args.lpips_metric = args.lpips_note = f"lpips_{args.lpips_backbone}"
        except LpipsWeightsError as e:
            args.lpips_note = f"LPIPS skipped: {e}"


def _tercile_bins(report: dict, metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """The test frames split in three by their own extremeness (the same frames for every avatar):
    with a monotonous capture nearly all test frames land in eval's ">p99" bin, so these resolve
    "how extreme" within it."""
    per = report["per_frame"]
    if not per or "extremeness" not in per[0]:
        return []
    d = np.array([f["extremeness"] for f in per])
    edges = np.quantile(d, [1 / 3, 2 / 3])
    idx = np.searchsorted(edges, d, side="right")
    out = []
    for b, label in enumerate(("test-tercile-1 (least extreme)", "test-tercile-2", "test-tercile-3 (most extreme)")):
        sel = [f for f, i in zip(per, idx) if i == b]
        out.append({"bin": label, "n": len(sel), **{k: _mean([f[k] for f in sel if np.isfinite(f[k])])
                                                    for k in metrics}})
    return out


def run_subject(seed: int, args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    metrics = _metrics(args)
    from liftdata.avatar.compare import evaluate_renders
    from liftdata.avatar.data import AvatarFrames, composite
    from liftdata.avatar.train import TrainConfig, render_frames, train
    from liftdata.eval.metrics import psnr, to_nchw
    from liftdata.synthetic import make_capture, sample_kinematics

    t0 = time.perf_counter()
    capture = make_capture(seed, n_frames=args.n_captured, size=args.size, max_yaw_deg=8, max_pitch_deg=4,
                           max_roll_deg=2, expression_scale=0.3)
    model = capture.head_model
    test_kin = sample_kinematics(model, args.n_test, np.random.default_rng([seed, 99]), max_yaw_deg=25,
                                 max_pitch_deg=12, max_roll_deg=5, expression_scale=1.0)
    test = _frames(make_capture(seed, kinematics=test_kin, size=args.size), "captured")
    captured = _frames(capture, "captured")
    plan_kin, warp_images = _lifted(capture, args.n_lifted, seed)
    oracle = make_capture(seed, kinematics=plan_kin, size=args.size)
    conditions = {"a_captured": captured,
                  "b_warp": AvatarFrames.concat([captured, _as_frames(capture, plan_kin, warp_images, "lifted")]),
                  "d_oracle": AvatarFrames.concat([captured, _frames(oracle, "lifted")])}
    if args.checkpoint:
        from liftdata.lifters import load_lifter

        lifter = load_lifter("liftavatar", args.checkpoint)
        kin_c, img_c = _lifted(capture, args.n_lifted, seed, lifter)
        conditions["c_liftavatar"] = AvatarFrames.concat([captured, _as_frames(capture, kin_c, img_c, "lifted")])
    data_s = time.perf_counter() - t0
    cfg = TrainConfig(iterations=args.iterations, seed=0, size=args.size, backend=args.backend,
                      checkpoint_every=10 ** 9)
    out = {"seed": seed, "data_seconds": round(data_s, 1), "avatars": {}}
    work = Path(args.work) / f"subject{seed}"
    for name, frames in sorted(conditions.items()):
        stamps: list[float] = []
        t, cpu = time.perf_counter(), time.process_time()
        avatar = train(frames, work / name, cfg, resume=False, progress=lambda i, n, info: stamps.append(
            time.perf_counter()))
        train_s, train_cpu = time.perf_counter() - t, time.process_time() - cpu
        report = evaluate_renders(render_frames(avatar, test, args.size, args.backend), test, capture.kinematics,
                                  args.size, avatar.config.background,
                                  backbone=args.lpips_backbone if args.lpips_metric else "none",
                                  lpips_weights=args.lpips_weights)
        entry = {"n_frames": len(frames), "n_gaussians": len(avatar), "train_seconds": round(train_s, 1),
                 "train_cpu_seconds": round(train_cpu, 1),
                 "iterations_per_s": round((len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9), 3),
                 "test": {k: report["metrics"][k] for k in metrics},
                 "bins": [{"bin": b["bin"], "n": b["n_frames"], **{k: b.get(k) for k in metrics}}
                          for b in report.get("bins", [])] + _tercile_bins(report, metrics)}
        if name == "a_captured":  # how well it fits what it was trained on
            r = to_nchw(render_frames(avatar, captured, args.size, args.backend))
            gt = to_nchw(composite(captured.images, captured.masks, avatar.config.background))
            m = torch.as_tensor(captured.masks)
            entry["train_psnr_full"] = float(psnr(r, gt).mean())
            entry["train_psnr_masked"] = float(psnr(r, gt, m).mean())
        out["avatars"][name] = entry
        print(f"subject {seed} {name}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    base = out["avatars"]["a_captured"]
    for name, entry in out["avatars"].items():
        if name != "a_captured":
            entry["gain"] = {k: entry["test"][k] - base["test"][k] for k in metrics}
            entry["gain_per_bin"] = [{"bin": x["bin"], **{k: (y[k] - x[k]) if x[k] is not None and y[k] is not None
                                                          else None for k in metrics}}
                                     for x, y in zip(base["bins"], entry["bins"])]
    return out


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def summarize(subjects: list[dict], metrics: tuple[str, ...] = METRICS) -> dict:
    names = subjects[0]["avatars"].keys()
    summary = {}
    for name in names:
        entries = [s["avatars"][name] for s in subjects]
        summary[name] = {"test_" + k: _mean([e["test"][k] for e in entries]) for k in metrics}
        summary[name]["iterations_per_s"] = _mean([e["iterations_per_s"] for e in entries])
        if "gain" in entries[0]:
            summary[name].update({"gain_" + k: _mean([e["gain"][k] for e in entries]) for k in metrics})
            labels = [b["bin"] for b in entries[0]["gain_per_bin"]]
            summary[name]["gain_psnr_per_bin"] = {
                lab: _mean([e["gain_per_bin"][i]["psnr"] for e in entries]) for i, lab in enumerate(labels)}
            summary[name]["gain_psnr_per_bin_per_subject"] = {
                lab: [e["gain_per_bin"][i]["psnr"] for e in entries] for i, lab in enumerate(labels)}
        if "train_psnr_full" in entries[0]:
            summary[name]["train_psnr_full"] = _mean([e["train_psnr_full"] for e in entries])
            summary[name]["train_psnr_masked"] = _mean([e["train_psnr_masked"] for e in entries])
            summary[name]["train_seconds"] = _mean([e["train_seconds"] for e in entries])
            summary[name]["train_cpu_seconds"] = _mean([e["train_cpu_seconds"] for e in entries])
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, nargs="+", default=[0, 1, 2], help="synthetic subject seeds")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n-captured", type=int, default=60)
    p.add_argument("--n-lifted", type=int, default=60)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--checkpoint", help="LiftAvatar checkpoint directory: adds condition (c)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "gsplat"])
    p.add_argument("--jobs", type=int, default=1, help="subjects trained in parallel (one torch thread each)")
    p.add_argument("--work", default="/tmp/liftdata-downstream-gain", help="where avatars are written")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, figures meaningless)")
    p.add_argument("--out", help="also write the JSON line to this file")
    p.add_argument("--lpips-backbone", choices=["alex", "vgg", "none"], default="alex",
                   help="masked LPIPS when its weights are found (see liftdata.eval.lpips)")
    p.add_argument("--lpips-weights", help="directory with the LPIPS weight files")
    args = p.parse_args(argv)
    _resolve_lpips(args)
    if args.quick:
        args.subjects, args.iterations, args.size = args.subjects[:1], 4, 32
        args.n_captured, args.n_lifted, args.n_test = 8, 4, 4
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.jobs > 1 and len(args.subjects) > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            subjects = pool.starmap(run_subject, [(s, args) for s in args.subjects])
    else:
        subjects = [run_subject(s, args) for s in args.subjects]
    from liftdata.eval.splits import bin_labels

    result = {"benchmark": "downstream_gain", "quick": args.quick, "device": "cuda" if torch.cuda.is_available()
              else "cpu", "backend": args.backend, "subjects": args.subjects, "iterations": args.iterations,
              "size": args.size, "n_captured": args.n_captured, "n_lifted": args.n_lifted, "n_test": args.n_test,
              "metrics_masked_to_head": True, "bins": bin_labels(), "lifters": {"b": "warp (WarpLifter defaults)",
                                                                                "c": args.checkpoint},
              "lpips": args.lpips_note, "summary": summarize(subjects, _metrics(args)), "per_subject": subjects,
              "seconds": round(time.perf_counter() - t0, 1)}
    line = json.dumps(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    print(line)
    return result


if __name__ == "__main__":
    main()
