"""`track_video` / `track_images`: frames -> landmarks -> fit -> `Capture`; and `overlay`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from liftdata.capture import Capture
from liftdata.head.base import HeadModel
from liftdata.track.decode import read_images, read_video
from liftdata.track.fit import FitConfig, fit_landmarks
from liftdata.track.landmarks import detect_landmarks

__all__ = ["track_video", "track_images", "track_frames", "overlay"]


def _head_model(head_model: str | HeadModel) -> HeadModel:
    if isinstance(head_model, str):
        from liftdata.head import load_head_model

        head_model = load_head_model(head_model)
    if len(np.asarray(head_model.landmark_mediapipe_index)) == 0:
        raise ValueError(f"{head_model!r} has no landmarks; tracking needs a landmark embedding "
                         "(FLAME: FlameHeadModel.from_file(..., landmark_embedding=...))")
    return head_model


def track_frames(frames, head_model: str | HeadModel = "builtin", *, static: bool = False, fps: float = 25.0,
                 name: str = "frames", config: FitConfig | None = None, progress: bool = True) -> Capture:
    """Track a frame source (len + getitem -> RGB uint8 [H, W, 3]) into a `Capture`."""
    model = _head_model(head_model)
    lmk = detect_landmarks((frames[i] for i in range(len(frames))), len(frames), static=static, name=name,
                           progress=progress)
    fit = fit_landmarks(lmk, model, config, progress=progress)
    stem = Path(name).stem or "capture"
    return Capture(frames=frames, kinematics=fit.kinematics, camera=fit.camera, identity=fit.identity,
                   head_model=model, capture_id=stem, subject_id=stem, fps=float(fps),
                   landmark_residual=fit.residual, face_found=lmk.found,
                   extra={"tracking": {"source": str(name), "landmarks": "mediapipe-0.10.14-facemesh-478"}})


def track_video(path: str | os.PathLike, head_model: str | HeadModel = "builtin", fps: float | None = None,
                stride: int = 1, max_frames: int | None = None, progress: bool = True,
                config: FitConfig | None = None) -> Capture:
    """Track a monocular video into a `Capture` (see `liftdata.track` for the pipeline).

    Args:
        path: a video file (mp4, mov, webm, avi, ...).
        head_model: "builtin" or a `HeadModel` instance; for FLAME pass
            `FlameHeadModel.from_file(model_path, landmark_embedding=...)` (the embedding maps
            its landmarks to mediapipe ids).
        fps, stride, max_frames: frame selection (see `read_video`).
    Returns:
        A `Capture` whose `face_found` flags frames without a detected face (their kinematics
        are interpolated) and whose `landmark_residual` is the mean landmark error in pixels.
    """
    frames = read_video(path, fps=fps, stride=stride, max_frames=max_frames)
    return track_frames(frames, head_model, static=False, fps=frames.fps, name=str(path), config=config,
                        progress=progress)


def track_images(paths: str | os.PathLike | Sequence[str | os.PathLike], head_model: str | HeadModel = "builtin",
                 progress: bool = True, config: FitConfig | None = None) -> Capture:
    """Track a folder of images, a list of image files or one image (static landmark mode).

    The images are treated as frames of one subject under one camera (same size), in order.
    """
    frames = read_images(paths)
    name = str(paths) if isinstance(paths, (str, os.PathLike)) else str(frames.paths[0].parent)
    return track_frames(frames, head_model, static=True, fps=25.0, name=name, config=config, progress=progress)


def overlay(capture: Capture, path: str | os.PathLike | None = None, frames: Sequence[int] | None = None,
            columns: int = 4, alpha: float = 0.5, crop: int | None = None) -> np.ndarray:
    """Draw the fitted mesh wireframe over frames; returns (and writes to `path`) an RGB grid.

    Green: a face was found; orange: interpolated. `crop`: cut a square around the fitted face
    and resize it to `crop` pixels.
    """
    idx = list(range(min(len(capture), 8))) if frames is None else list(frames)
    with torch.no_grad():
        verts = capture.head_model.vertices(torch.as_tensor(capture.identity), capture.kinematics[np.asarray(idx)])
    uv = capture.camera.project(verts.numpy())[..., :2]
    faces = np.asarray(capture.head_model.faces)
    tiles = []
    for j, t in enumerate(idx):
        img, pts = np.ascontiguousarray(capture.frames[t]), uv[j]
        if crop is not None:  # square around the fitted face, resized to `crop` pixels
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
            half, cx, cy = 0.75 * max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
            box = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
            warp = cv2.getAffineTransform(box, np.float32([[0, 0], [crop, 0], [0, crop]]))
            img = cv2.warpAffine(img, warp, (crop, crop), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            pts = pts @ warp[:, :2].T + warp[:, 2]
        lines = img.copy()
        edges = np.round(pts[faces] * 4).astype(np.int32)  # [F, 3, 2], 2 bits of subpixel precision
        color = (0, 255, 0) if capture.face_found[t] else (255, 80, 0)
        cv2.polylines(lines, list(edges), True, color, 1, cv2.LINE_AA, shift=2)
        tiles.append(cv2.addWeighted(lines, alpha, img, 1 - alpha, 0))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[r:r + columns], 1) for r in range(0, len(tiles), columns)], 0)
    if path is not None:
        cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return grid
