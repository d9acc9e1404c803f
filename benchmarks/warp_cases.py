"""The warp lifter on the named lifter cases (issue 17): head-mask PSNR/SSIM per case, with baselines.

Held-out synthetic subjects (`--seeds A:B`), one frontal neutral closed-mouth reference (or
`--references K`), `liftdata.eval.lifter_cases`. Reports, in one run and on the same seeds: the
warp lifter as configured, the warp lifter without relighting (`relight=False`, the ablation) and
the reference returned unchanged. Prints ONE JSON line; --out also writes it.

Usage: python benchmarks/warp_cases.py --seeds 7000:7020 [--size 128] [--out results/warp_cases.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from liftdata.eval.lifter_cases import CASES, evaluate_cases
from liftdata.lifters.warp import WarpLifter

METRICS = ("psnr", "ssim", "psnr_clip", "temporal")


def summary(result: dict, suffix: str = "") -> dict:
    out = {}
    for case, r in result.items():
        v = np.array(r["per_seed"][f"psnr{suffix}"])
        out[case] = {m: round(r[f"{m}{suffix}"], 4) for m in METRICS}
        out[case].update(psnr_std=round(float(v.std()), 3), psnr_min=round(float(v.min()), 3))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="7000:7020")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--references", type=int, default=1)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--head", default="face", choices=["face", "proxy"])
    p.add_argument("--no-ablation", action="store_true", help="skip the relight=False / head_proxy=False runs")
    p.add_argument("--quick", action="store_true", help="4 subjects, no ablations (for run_all.py --quick)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    a, b = (int(x) for x in args.seeds.split(":"))
    if args.quick:
        b, args.no_ablation = min(b, a + 4), True
    seeds, cases = list(range(a, b)), args.cases.split(",")
    kw = dict(size=args.size, cases=cases, frames=args.frames, references=args.references, head=args.head)
    t0 = time.time()
    full = evaluate_cases(WarpLifter(), seeds, **kw)
    t_full = time.time() - t0
    report = {"benchmark": "warp_cases", "seeds": args.seeds, "size": args.size, "frames": args.frames,
              "head": args.head,
              "references": args.references, "warp": summary(full), "reference_unchanged": summary(full, "_reference"),
              "seconds_warp": round(t_full, 1)}
    if not args.no_ablation:
        report["warp_no_relight"] = summary(evaluate_cases(WarpLifter(relight=False), seeds, **kw))
        report["warp_no_head_proxy"] = summary(evaluate_cases(WarpLifter(head_proxy=False), seeds, **kw))
    report["hardware"] = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": 1}
    print(json.dumps(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
