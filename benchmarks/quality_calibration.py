"""Calibrate the lifted-frame quality score against ground-truth head-mask PSNR (issue 17).

Synthetic subjects, one frontal neutral closed-mouth reference (or --references K), each driven
by --frames independent random frames (yaw up to +-50 deg, pitch +-25, random expressions incl. an
open jaw): the warp lifter's per-frame quality terms, the score `liftdata.lifters.quality.
quality_score` and the ground-truth PSNR inside the head mask. Reports Spearman's rank
correlation of the score (and of every term) with the PSNR on the --seeds, and how a threshold
splits frames (share kept, PSNR of kept vs dropped, share of bad frames caught). Prints ONE JSON
line; --out also writes it; --dump writes the raw table (npz) for fitting.

Usage: python benchmarks/quality_calibration.py --seeds 8100:8140 [--out results/quality_calibration.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from liftdata.eval.lifter_cases import _reference_kinematics, head_mask
from liftdata.eval.metrics import psnr, to_nchw
from liftdata.head.base import neutral_kinematics
from liftdata.kinematics import Camera
from liftdata.lifters.base import References, render_conditions
from liftdata.lifters.quality import QUALITY_THRESHOLD, quality_score
from liftdata.lifters.warp import WarpLifter
from liftdata.synthetic import make_subject, render_subject


def random_driving(model, n: int, rng: np.random.Generator):
    """Independent frames over a wide pose range with random expressions (a third with an open jaw)."""
    k = neutral_kinematics(model, n)
    rot = np.stack([rng.uniform(-25, 25, n), rng.uniform(-50, 50, n), rng.uniform(-10, 10, n)], 1)
    expr = np.zeros((n, model.n_expression), np.float32)
    for i in range(n):
        idx = rng.choice(model.n_expression, size=rng.integers(0, 4), replace=False)
        expr[i, idx] = rng.uniform(0.2, 1.0, len(idx))
        if rng.random() < 0.33:
            expr[i, model.expression_index("jawOpen")] = rng.uniform(0.3, 1.0)
    return k.replace(rotation=np.radians(rot).astype(np.float32), expression=expr)


def gather(seeds, size: int, frames: int, references: int) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {}
    for seed in seeds:
        subject = make_subject(seed, size=size)
        model, camera = subject.head_model, Camera.frontal(24.0, size, size, 0.55)
        ref_k = _reference_kinematics(model, references, seed)
        drv_k = random_driving(model, frames, np.random.default_rng([seed, 23]))
        refs = References(render_subject(subject, ref_k, camera),
                          render_conditions(model, subject.identity, ref_k, camera))
        details = WarpLifter().lift_detailed(refs, render_conditions(model, subject.identity, drv_k, camera))
        truth, mask = render_subject(subject, drv_k, camera), head_mask(subject, drv_k, camera)
        p = psnr(to_nchw(details.frames, dtype=torch.float64), to_nchw(truth, dtype=torch.float64),
                 torch.from_numpy(mask).double()).numpy()
        for key, v in {**details.quality, "psnr": p, "seed": np.full(frames, seed)}.items():
            rows.setdefault(key, []).extend(np.asarray(v).tolist())
    return {k: np.array(v) for k, v in rows.items()}


def split(score: np.ndarray, truth: np.ndarray, threshold: float, bad_db: float) -> dict:
    keep = score >= threshold
    bad = truth < bad_db
    return {"threshold": threshold, "kept_share": float(keep.mean()),
            "psnr_kept": float(truth[keep].mean()) if keep.any() else None,
            "psnr_dropped": float(truth[~keep].mean()) if (~keep).any() else None,
            "min_psnr_kept": float(truth[keep].min()) if keep.any() else None,
            f"share_of_frames_under_{bad_db:g}db_dropped": float((~keep)[bad].mean()) if bad.any() else None,
            f"share_of_kept_under_{bad_db:g}db": float(bad[keep].mean()) if keep.any() else None}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="8100:8140")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--references", type=int, default=1)
    p.add_argument("--bad-db", type=float, default=20.0, help="a frame under this head PSNR counts as bad")
    p.add_argument("--dump", help="write the raw per-frame table here (npz)")
    p.add_argument("--quick", action="store_true", help="8 subjects (for run_all.py --quick)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    a, b = (int(x) for x in args.seeds.split(":"))
    b = min(b, a + 8) if args.quick else b
    t0 = time.time()
    table = gather(range(a, b), args.size, args.frames, args.references)
    if args.dump:
        np.savez(args.dump, **table)
    terms = [k for k in table if k not in ("psnr", "seed")]
    score = quality_score({k: table[k] for k in terms})
    report = {"benchmark": "quality_calibration", "seeds": args.seeds, "frames": int(len(score)),
              "size": args.size, "references": args.references,
              "spearman_score_vs_psnr": float(spearmanr(score, table["psnr"])[0]),
              "spearman_terms_vs_psnr": {k: float(spearmanr(table[k], table["psnr"])[0]) for k in terms},
              "psnr_mean": float(table["psnr"].mean()),
              "default_threshold": split(score, table["psnr"], QUALITY_THRESHOLD, args.bad_db),
              "thresholds": [split(score, table["psnr"], t, args.bad_db) for t in (0.3, 0.4, 0.5, 0.6, 0.7)],
              "seconds": round(time.time() - t0, 1)}
    print(json.dumps(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
