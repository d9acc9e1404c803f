"""Does the quality gate make an expanded dataset better? Ground truth on held-out synthetic subjects.

For each seed: a synthetic capture (ground-truth kinematics, no tracking), expanded with the warp
lifter under the same plan three times: gate off, resample (the default) and drop. Every lifted
sample is compared with the ground-truth render of the subject at the sample's own kinematics
(PSNR inside the head mask). Reports, per policy: lifted frames written, mean head PSNR, the share
of frames under --bad-db, and the worst frame; with --sampler wide (yaw +-45 deg, explicit, beyond
the pose support) and default (the default sampler, pose support 25 deg).

    python benchmarks/quality_gate.py [--seeds 9000:9008] [--n 24] [--sampler default|wide] [--out F]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from liftdata.dataset import LiftDataset
from liftdata.eval.lifter_cases import head_mask
from liftdata.eval.metrics import psnr, to_nchw
from liftdata.kinematics import Kinematics
from liftdata.synthetic import make_capture, make_subject, render_subject

POLICIES = ("off", "resample", "drop")


def sampler(name: str):
    from liftdata.samplers import interpolate, mine_extremes, mix, pose_sweep

    if name == "default":
        return None
    return mix([mine_extremes(clip_length=8), pose_sweep(yaw=(-45, 45), pitch=(-15, 15), clip_length=8) * interpolate(clip_length=8)],
               [0.5, 0.5])


def lifted_psnr(seed: int, size: int, frames: int, n: int, policy: str, sampler_name: str) -> np.ndarray:
    capture = make_capture(seed, n_frames=frames, size=size)
    subject = make_subject(seed, size=size)
    with warnings.catch_warnings():  # the wide sampler warns that it plans beyond the pose support: known
        warnings.simplefilter("ignore")
        samples = [s for s in LiftDataset(capture).expand(n, sampler(sampler_name), seed=seed, quality_gate=policy,
                                                          matte=False, include_captured=False)]
    kin = Kinematics.concat([s.kinematics for s in samples]) if samples else None
    if kin is None:
        return np.zeros(0)
    truth = render_subject(subject, kin, capture.camera)
    mask = head_mask(subject, kin, capture.camera)
    pred = np.stack([s.to_arrays()["image"] for s in samples])
    return psnr(to_nchw(pred, dtype=torch.float64), to_nchw(truth, dtype=torch.float64),
                torch.from_numpy(mask).double()).numpy()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="9000:9008")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=16, help="captured frames per subject")
    p.add_argument("--n", type=int, default=24, help="lifted frames per subject")
    p.add_argument("--sampler", choices=["default", "wide"], default="wide")
    p.add_argument("--bad-db", type=float, default=20.0)
    p.add_argument("--quick", action="store_true", help="2 subjects, n=8 (numbers meaningless)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    a, b = (int(x) for x in args.seeds.split(":"))
    if args.quick:
        b, args.n = min(b, a + 2), 8
    t0 = time.time()
    report = {"benchmark": "quality_gate", "seeds": args.seeds, "size": args.size, "captured_frames": args.frames,
              "n": args.n, "sampler": args.sampler, "bad_db": args.bad_db, "policies": {}}
    for policy in POLICIES:
        per_seed = [lifted_psnr(seed, args.size, args.frames, args.n, policy, args.sampler) for seed in range(a, b)]
        allp = np.concatenate(per_seed)
        report["policies"][policy] = {
            "lifted_written": int(len(allp)), "lifted_planned": args.n * (b - a),
            "psnr_mean": float(allp.mean()), "psnr_min": float(allp.min()),
            f"share_under_{args.bad_db:g}db": float((allp < args.bad_db).mean()),
            "psnr_mean_per_seed": [round(float(x.mean()), 3) for x in per_seed]}
    off = report["policies"]["off"]["psnr_mean"]
    report["gain_db_vs_off"] = {k: v["psnr_mean"] - off for k, v in report["policies"].items() if k != "off"}
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
