"""Tracking speed: frames/s of landmarks alone and of the whole `track_video` (one JSON line).

    python benchmarks/track_speed.py [--frames 300] [--size 256]

Renders a synthetic capture (`make_capture`), writes it to mp4, then times (1) decoding +
mediapipe landmarks alone, (2) the whole `track_video` (decode + landmarks + fit with the
photometric stage) and (3) `track_video(..., tracking="landmarks")` on the same file, in one
process, single-threaded torch. `fit_over_landmarks` = fit time / landmark time, where fit time =
track_video time - landmark time (`*_landmarks_only`: the same for (3)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from liftdata.synthetic import make_capture, write_video
    from liftdata.track import detect_landmarks, fit_landmarks, read_video, track_video
    from liftdata.head import load_head_model

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(make_capture(0, n_frames=args.frames, size=args.size), os.path.join(tmp, "bench.mp4"))
        track_video(path, max_frames=8, progress=False)  # warm up: imports, mediapipe graph, caches
        t0 = time.perf_counter()
        frames = read_video(path)
        lmk = detect_landmarks(frames, len(frames), progress=False)
        t_landmarks = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_landmarks(lmk, load_head_model("builtin"), progress=False)
        t_fit_only = time.perf_counter() - t0
        t0 = time.perf_counter()
        capture = track_video(path, progress=False)
        t_total = time.perf_counter() - t0
        t0 = time.perf_counter()
        track_video(path, progress=False, tracking="landmarks")
        t_total_lm = time.perf_counter() - t0
    n = len(capture)
    print(json.dumps({
        "frames": n, "size": args.size, "landmarks_fps": round(n / t_landmarks, 1),
        "track_video_fps": round(n / t_total, 1), "fit_only_fps": round(n / t_fit_only, 1),
        "landmarks_ms_per_frame": round(1000 * t_landmarks / n, 2),
        "fit_ms_per_frame": round(1000 * (t_total - t_landmarks) / n, 2),
        "fit_over_landmarks": round((t_total - t_landmarks) / t_landmarks, 2),
        "fit_only_over_landmarks": round(t_fit_only / t_landmarks, 2),
        "track_video_fps_landmarks_only": round(n / t_total_lm, 1),
        "fit_over_landmarks_landmarks_only": round((t_total_lm - t_landmarks) / t_landmarks, 2),
        "mean_residual_px": round(float(capture.landmark_residual[capture.face_found].mean()), 3),
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
