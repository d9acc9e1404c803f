"""Is streaming training memory flat in the number of subjects? Peak RSS at 64 vs 8 subjects.

Writes two WebDataset datasets of synthetic subjects (8 and 64 subjects, --frames frames each,
shading/normal maps included), then in a fresh process per dataset trains a tiny pixel-space
LiftAvatar for one full pass over it from the stream (`TrainConfig.stream`) and records the
process' peak RSS. Baseline, same run: a process that reads the whole dataset into memory (what
precomputing every subject's tensors amounts to). Prints ONE JSON line with both ratios.

Target (issue 14): stream RSS at 64 subjects <= 1.2 x RSS at 8 subjects.
Usage: python benchmarks/lifter_stream_memory.py [--frames 16] [--size 128] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUBJECTS = (8, 64)


def write_dataset(out: Path, n_subjects: int, frames: int, size: int) -> None:
    import numpy as np

    from liftdata.io.schema import Sample, make_key, make_meta
    from liftdata.io.webdataset import write_webdataset
    from liftdata.lifters.base import render_conditions
    from liftdata.synthetic import make_capture

    def samples():
        for seed in range(9000, 9000 + n_subjects):
            cap = make_capture(seed, frames, size=size)
            cond = render_conditions(cap.head_model, cap.identity, cap.kinematics, cap.camera)
            for i in range(frames):
                key = make_key(cap.capture_id, 0, i)
                yield Sample.from_arrays(key, np.asarray(cap.frames[i]), cap.kinematics[[i]], cap.camera,
                                         make_meta(key, cap.kinematics[[i]]), shading=cond.maps["shading"][i].numpy(),
                                         normal=cond.maps["normal"][i].numpy())

    write_webdataset(samples(), out, max_count=4 * frames, progress=False)


def child(args) -> None:
    """One measurement in a fresh process: stream-train one pass, or (--hold) read everything into memory."""
    import torch

    torch.set_num_threads(1)
    if args.hold:
        from liftdata.io.webdataset import read_webdataset

        held = [s.to_arrays() for s in read_webdataset(args.child)]
        n = len(held)
    else:
        from liftdata.lifters.liftavatar.training import TrainConfig, train

        model = dict(in_channels=48, out_channels=48, num_attention_heads=2, attention_head_dim=16, ffn_dim=64,
                     num_layers=2, text_dim=8, freq_dim=16, text_length=4, rope_max_seq_len=64, coefficient_dim=51,
                     shading_hidden=8, shading_channels=8, temporal_compression=1, spatial_compression=4)
        cfg = TrainConfig(output_dir=tempfile.mkdtemp(), autoencoder="pixel", vae={"patch": 4}, model=model,
                          stream=[args.child], stream_buffer=args.frames, size=args.size, num_frames=1,
                          max_references=2, steps=args.steps, checkpoint_every=0, log_every=0, save_final=False)
        n = train(cfg).steps
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak_mb, "count": n}))


def measure(directory: Path, args, hold: bool, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(directory), "--frames", str(args.frames), "--size", str(args.size),
           "--steps", str(steps)] + (["--hold"] if hold else [])
    tic = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": round(time.time() - tic, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="8 frames at 32^2")
    p.add_argument("--child")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--steps", type=int, default=0)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.quick:
        args.frames, args.size = 8, 32
    work = Path(tempfile.mkdtemp(prefix="lifter_stream_memory_"))
    report = {"benchmark": "lifter_stream_memory", "frames_per_subject": args.frames, "size": args.size}
    for n in SUBJECTS:
        write_dataset(work / f"s{n}", n, args.frames, args.size)
        steps = n * 8  # 8 items per buffered subject: one pass over every subject
        report[f"stream_{n}"] = measure(work / f"s{n}", args, False, steps)
        report[f"hold_{n}"] = measure(work / f"s{n}", args, True, 0)
    lo, hi = SUBJECTS
    report["stream_rss_ratio"] = report[f"stream_{hi}"]["peak_rss_mb"] / report[f"stream_{lo}"]["peak_rss_mb"]
    report["hold_rss_ratio"] = report[f"hold_{hi}"]["peak_rss_mb"] / report[f"hold_{lo}"]["peak_rss_mb"]
    report["target_met"] = report["stream_rss_ratio"] <= 1.2
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
