"""Planning speed: seconds to plan n frames with each sampler and with the composed example.

Prints ONE JSON line: for each sampler, the best of `--repeats` wall times (seconds) to plan
`--n` frames (default 10,000) from a capture of `--frames` observed frames (real builtin-model
kinematics from `synthetic.sample_kinematics`; no rendering), the frames planned per second,
and the time of `coverage(capture + plan)` for the composed plan. Target: < 1 s per 10,000
frames (planning must be negligible next to lifting).

Usage: python benchmarks/plan_speed.py [--n 10000] [--frames 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from types import SimpleNamespace

import numpy as np
import torch

from liftdata.head import load_head_model
from liftdata.samplers import RepeatedClipsWarning, coverage, interpolate, mine_extremes, pose_sweep
from liftdata.synthetic import sample_kinematics


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RepeatedClipsWarning)  # mining targets may exceed a short capture
    model = load_head_model("builtin")
    capture = SimpleNamespace(kinematics=sample_kinematics(model, args.frames, np.random.default_rng(0)),
                              head_model=model, camera=None)
    samplers = {
        "expression_interpolation": interpolate(extrapolation=0.3),
        "extreme_expression_mining": mine_extremes(),
        "extreme_expression_mining_prior": mine_extremes(targets="prior"),
        "pose_sweep": pose_sweep(yaw=(-40, 40)),
        "composed": mine_extremes() + pose_sweep(yaw=(-40, 40)) * interpolate(),
    }
    result = {"benchmark": "plan_speed", "n": args.n, "observed_frames": args.frames,
              "python": platform.python_version(), "numpy": np.__version__, "seconds": {}, "frames_per_s": {}}
    plan = None
    for name, sampler in samplers.items():
        seconds, plan = best_time(lambda: sampler.sample(capture, args.n, np.random.default_rng(0)), args.repeats)
        assert plan.n == args.n
        result["seconds"][name] = round(seconds, 4)
        result["frames_per_s"][name] = round(args.n / seconds)
    seconds, rep = best_time(lambda: coverage([capture, plan]), args.repeats)
    result["coverage_seconds"] = round(seconds, 4)
    result["json_mb"] = round(len(plan.to_json()) / 1e6, 2)
    result["all_under_1s"] = max(result["seconds"].values()) < 1.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
