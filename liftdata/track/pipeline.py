"""`track_video` / `track_images`: frames -> landmarks -> fit -> `Capture`; and `overlay`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from liftdata.capture import Capture
from liftdata.head.base import HeadModel
from liftdata.track.decode import TrackingError, read_images, read_video
from liftdata.track.fit import FitConfig, fit_landmarks
from liftdata.track.landmarks import Landmarks, detect_landmarks
from liftdata.track.segment import SegmentConfig, segment_video

__all__ = ["track_video", "track_images", "track_frames", "overlay", "SubsetFrames", "face_size_px",
           "MIN_FACE_PX", "TRACKING_MODES"]

MIN_FACE_PX = 64  #: faces narrower than this (median, pixels) are refused by `track_video` / `track_images`
#: "photometric": the landmark fit, then refined against the frames (`liftdata.track.photometric`);
#: "landmarks": the landmark fit alone
TRACKING_MODES = ("photometric", "landmarks")


def _head_model(head_model: str | HeadModel) -> HeadModel:
    if isinstance(head_model, str):
        from liftdata.head import load_head_model

        head_model = load_head_model(head_model)
    if len(np.asarray(head_model.landmark_mediapipe_index)) == 0:
        raise ValueError(f"{head_model!r} has no landmarks; tracking needs a landmark embedding "
                         "(FLAME: FlameHeadModel.from_file(..., landmark_embedding=...))")
    return head_model


class SubsetFrames:
    """Frames `indices` of another frame source, in order (`len`, getitem)."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.source[int(self.indices[index])]


def face_size_px(lmk: Landmarks, frames: np.ndarray | None = None) -> float:
    """Median width of the face mesh's bounding box in pixels over the frames with a face."""
    sel = np.arange(len(lmk.found)) if frames is None else np.asarray(frames)
    pts = lmk.points[sel[lmk.found[sel]], :468]
    return float(np.median(np.ptp(pts[..., 0], axis=1))) if len(pts) else 0.0


def _subset(lmk: Landmarks, keep: np.ndarray) -> Landmarks:
    return Landmarks(lmk.points[keep], lmk.depth[keep], lmk.found[keep], lmk.width, lmk.height)


def _sharpness(frames, lmk: Landmarks) -> list[float | None]:
    """Variance of the Laplacian of each frame's detected face region (None: no face found)."""
    from liftdata.track.quality import face_sharpness

    return [face_sharpness(np.asarray(frames[t]), lmk.points[t]) if lmk.found[t] else None
            for t in range(len(lmk.found))]


def track_frames(frames, head_model: str | HeadModel = "builtin", *, static: bool = False, fps: float = 25.0,
                 name: str = "frames", config: FitConfig | None = None, progress: bool = True,
                 segment: SegmentConfig | bool | None = None, subject: int = 0,
                 min_face_px: float | None = None, tracking: str = "photometric") -> Capture:
    """Track a frame source (len + getitem -> RGB uint8 [H, W, 3]) into a `Capture`.

    Args:
        segment: split the frames into shots and subjects and keep one subject (`segment_video`);
            a `SegmentConfig`, True, False, or None: True for videos, False for `static` images.
        subject: the subject to keep (0 = the one with most frames; see `Segments`).
        min_face_px: raise `TrackingError` when the kept face is narrower (median, pixels).
        tracking: "photometric" (default): the landmark fit is refined against the frames (head
            pose, expression and identity; `FitConfig.photometric_*`); "landmarks": the landmark
            fit alone (~50x faster fit, less accurate head rotation).
    The capture holds the kept frames only; `extra["tracking"]["source_frames"]` maps them to
    the input, `extra["segments"]` says what was dropped. Temporal terms of the fit never cross a
    shot cut or a change of face.
    """
    if tracking not in TRACKING_MODES:
        raise ValueError(f"tracking: expected one of {', '.join(TRACKING_MODES)}, got {tracking!r}")
    model = _head_model(head_model)
    lmk = detect_landmarks((frames[i] for i in range(len(frames))), len(frames), static=static, name=name,
                           progress=progress)
    keep, starts, extra = np.arange(len(frames)), None, {}
    if segment is None:
        segment = not static
    if segment:
        seg = segment_video(frames, lmk, segment if isinstance(segment, SegmentConfig) else None)
        if not 0 <= subject < seg.n_subjects:
            raise TrackingError(f"{name}: subject {subject} does not exist; the video has {seg.n_subjects} "
                                f"subject(s): {seg.summary()['frames']} frames, {len(seg.cuts)} shot cut(s)")
        keep = seg.frames_of(subject)
        starts = seg.starts[keep]
        starts[1:] |= np.diff(keep) != 1  # dropped frames in between: the kept neighbours are not adjacent
        extra["segments"] = seg.to_dict(subject)
        if progress:
            print(f"{name}: {seg.describe(subject)}", file=sys.stderr)
    if min_face_px is not None and (size := face_size_px(lmk, keep)) < min_face_px:
        raise TrackingError(f"{name}: the face is {size:.0f} px across (median); tracking needs at least "
                            f"{min_face_px:.0f} px: use a sharper/closer video")
    sub = _subset(lmk, keep)
    kept = frames if len(keep) == len(frames) else SubsetFrames(frames, keep)
    fit = fit_landmarks(sub, model, config, progress=progress, starts=starts,
                        frames=kept if tracking == "photometric" else None)
    stem = Path(name).stem or "capture"
    record = {"source": str(name), "landmarks": "mediapipe-0.10.14-facemesh-478", "fit": tracking,
              "sharpness": _sharpness(kept, sub)}  # motion blur: blurred frames are not references
    if fit.photometric_residual is not None:  # stage 4 ran: mean colour error per frame (8-bit)
        record["photometric_residual"] = [None if np.isnan(r) else round(float(r), 3)
                                            for r in fit.photometric_residual]
    if len(keep) < len(frames):
        record["source_frames"] = keep.tolist()
    if starts is not None and starts.any():
        record["segment_starts"] = np.flatnonzero(starts).tolist()  # no temporal link to the frame before
    return Capture(frames=kept, kinematics=fit.kinematics, camera=fit.camera, identity=fit.identity,
                   head_model=model, capture_id=stem, subject_id=stem if subject == 0 else f"{stem}-{subject}",
                   fps=float(fps), landmark_residual=fit.residual, face_found=sub.found,
                   extra={"tracking": record, **extra})


def track_video(path: str | os.PathLike, head_model: str | HeadModel = "builtin", fps: float | None = None,
                stride: int = 1, max_frames: int | None = None, progress: bool = True,
                config: FitConfig | None = None, subject: int = 0, segment: SegmentConfig | bool = True,
                min_face_px: float | None = MIN_FACE_PX, tracking: str = "photometric") -> Capture:
    """Track a monocular video into a `Capture` (see `liftdata.track` for the pipeline).

    Args:
        path: a video file (mp4, mov, webm, avi, ...).
        head_model: "builtin" or a `HeadModel` instance; for FLAME pass
            `FlameHeadModel.from_file(model_path, landmark_embedding=...)` (the embedding maps
            its landmarks to mediapipe ids).
        fps, stride, max_frames: frame selection (see `read_video`).
        subject, segment, min_face_px, tracking: see `track_frames` (one subject is kept: by default
            the one with most frames; "photometric" tracking by default).
    Returns:
        A `Capture` of the kept subject's frames, whose `face_found` flags frames without a
        detected face (their kinematics are interpolated) and whose `landmark_residual` is the
        mean landmark error in pixels.
    """
    frames = read_video(path, fps=fps, stride=stride, max_frames=max_frames)
    return track_frames(frames, head_model, static=False, fps=frames.fps, name=str(path), config=config,
                        progress=progress, segment=segment, subject=subject, min_face_px=min_face_px,
                        tracking=tracking)


def track_images(paths: str | os.PathLike | Sequence[str | os.PathLike], head_model: str | HeadModel = "builtin",
                 progress: bool = True, config: FitConfig | None = None,
                 min_face_px: float | None = MIN_FACE_PX, tracking: str = "photometric") -> Capture:
    """Track a folder of images, a list of image files or one image (static landmark mode).

    The images are treated as frames of one subject under one camera (same size), in order.
    """
    frames = read_images(paths)
    name = str(paths) if isinstance(paths, (str, os.PathLike)) else str(frames.paths[0].parent)
    return track_frames(frames, head_model, static=True, fps=25.0, name=name, config=config, progress=progress,
                        min_face_px=min_face_px, tracking=tracking)


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
