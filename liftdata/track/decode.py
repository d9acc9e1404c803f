"""Decoding: a video file, a folder of images or a single image -> RGB uint8 frames.

`read_video` decodes with PyAV (the `track` extra) when it is installed, else with OpenCV. Both
respect the container's rotation metadata (the display matrix): frames come out upright, as a
player shows them. Selected frames are decoded once and cached as uint8 (T x H x W x 3 bytes;
use `max_frames` / `stride` / `fps` to bound memory for long videos; frames that are not
selected are never converted to RGB and decoding stops at `max_frames`).

Every unreadable input raises `TrackingError` naming the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from liftdata.capture import ImageFolderFrames
from liftdata.errors import LiftdataError

__all__ = ["TrackingError", "VideoFrames", "read_video", "read_images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: a video may decode a few frames fewer than its container's (estimated) count; more missing means damage
MISSING_FRAMES_TOLERANCE = 0.02


class TrackingError(LiftdataError, ValueError):
    """Input that cannot be tracked (unreadable video, no images, no face); names the input."""


class VideoFrames:
    """Decoded frames of a video: `len`, `frames[i]` -> [H, W, 3] uint8 RGB, iteration; `.fps`."""

    def __init__(self, frames: list[np.ndarray], fps: float, path: Path, source_indices: np.ndarray):
        self._frames = frames
        self.fps = float(fps)
        self.path = path
        self.source_indices = source_indices  #: [T] index of each frame in the decoded stream

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._frames[index]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._frames)

    def __repr__(self) -> str:
        h, w = self._frames[0].shape[:2]
        return f"VideoFrames({self.path.name}, T={len(self)}, {w}x{h}, fps={self.fps:g})"


class _Selection:
    """Causal frame selection: resample to `fps` (never up), then every `stride`-th, at most `max_frames`.

    Called once per decoded frame, in order, with its time in seconds; frames not kept are never
    converted to RGB, and decoding stops once `max_frames` are kept.
    """

    def __init__(self, fps: float | None, stride: int, max_frames: int | None):
        self.fps, self.stride, self.max_frames = fps, stride, max_frames
        self.next_t = -np.inf
        self.n_resampled = 0
        self.kept: list[int] = []

    def __call__(self, index: int, t: float) -> bool:
        if self.fps is not None:
            if t < self.next_t - 1e-6:
                return False
            self.next_t = (t if self.next_t == -np.inf else self.next_t) + 1.0 / self.fps
        self.n_resampled += 1
        if (self.n_resampled - 1) % self.stride:
            return False
        self.kept.append(index)
        return True

    @property
    def full(self) -> bool:
        return self.max_frames is not None and len(self.kept) >= self.max_frames


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, multiples of 90)."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _decode_pyav(path: Path, keep: _Selection) -> tuple[list[np.ndarray], float, int, int]:
    """(kept frames, frame rate, frames decoded, frames the container claims (0: unknown))."""
    import av

    frames: list[np.ndarray] = []
    rate, decoded, claimed = 25.0, 0, 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise TrackingError(f"{path}: no video stream in the file")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 25)
            legacy = int(stream.metadata.get("rotate", 0) or 0)  # old ffmpeg tag: degrees clockwise
            claimed = int(stream.frames or 0)
            if not claimed and stream.duration and stream.time_base:
                claimed = int(round(float(stream.duration * stream.time_base) * rate))
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if keep(i, float(frame.time) if frame.time is not None else i / rate):
                    rotation = frame.rotation if frame.rotation else -legacy
                    frames.append(_upright(frame.to_ndarray(format="rgb24"), rotation))
                if keep.full:
                    break
    except av.error.FFmpegError as e:
        if not frames:
            raise TrackingError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from None
        # a damaged tail: read_video compares what decoded with what the container claims
    return frames, rate, decoded, claimed


def _decode_opencv(path: Path, keep: _Selection) -> tuple[list[np.ndarray], float, int, int]:
    cap = cv2.VideoCapture(str(path))  # applies the rotation metadata (CAP_PROP_ORIENTATION_AUTO)
    if not cap.isOpened():
        raise TrackingError(f"{path}: cannot open video (not a video file or unsupported codec)")
    rate = cap.get(cv2.CAP_PROP_FPS) or 25.0
    claimed = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    frames, i = [], 0
    while not keep.full and cap.grab():
        if keep(i, i / rate):
            frames.append(cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return frames, float(rate), i, claimed


def read_video(path: str | os.PathLike, fps: float | None = None, stride: int = 1,
               max_frames: int | None = None, backend: str = "auto") -> VideoFrames:
    """Decode a video (mp4, mov, webm, avi, ...) into upright RGB uint8 frames.

    Args:
        fps: resample to this frame rate (frames are dropped, never duplicated); None keeps all.
        stride: keep every `stride`-th frame (after `fps`).
        max_frames: keep at most this many frames.
        backend: "pyav", "opencv" or "auto" (PyAV if installed).
    Returns:
        `VideoFrames`; its `.fps` is the frame rate of the returned frames.
    """
    path = Path(path)
    if stride < 1 or (max_frames is not None and max_frames < 1) or (fps is not None and fps <= 0):
        raise TrackingError(f"{path}: stride and max_frames must be >= 1 and fps > 0 "
                            f"(got stride={stride}, max_frames={max_frames}, fps={fps})")
    if not path.is_file():
        raise TrackingError(f"{path}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise TrackingError(f"{path}: the file is empty")
    if backend == "auto":
        try:
            import av  # noqa: F401
            backend = "pyav"
        except ImportError:
            backend = "opencv"
    keep = _Selection(fps, stride, max_frames)
    frames, rate, decoded, claimed = (_decode_pyav if backend == "pyav" else _decode_opencv)(path, keep)
    if not frames:
        raise TrackingError(f"{path}: no decodable video frames (corrupt, truncated or not a video)")
    if not keep.full and claimed and decoded < claimed - max(2, MISSING_FRAMES_TOLERANCE * claimed):
        raise TrackingError(f"{path}: damaged or truncated video: decoded {decoded} of the {claimed} frames the "
                            f"container claims; re-encode or re-copy it, or use --max-frames to take only frames "
                            f"that decode")
    out_fps = (min(fps, rate) if fps is not None else rate) / stride
    return VideoFrames(frames, out_fps, path, np.asarray(keep.kept, np.int64))


def read_images(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> ImageFolderFrames:
    """A folder of images (sorted by name), a list of image files, or one image -> lazy frames.

    All images are read once here to check them (unreadable -> `TrackingError`).
    """
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise TrackingError(f"{p}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            files = [p]
    else:
        files = [Path(f) for f in paths]
        if not files:
            raise TrackingError("track_images: empty list of images")
    shape = None
    for f in files:
        if not f.is_file():
            raise TrackingError(f"{f}: no such image file")
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise TrackingError(f"{f}: cannot read image (corrupt or not an image)")
        if shape is not None and img.shape != shape:
            raise TrackingError(f"{f}: size {img.shape[1]}x{img.shape[0]} differs from the first image "
                                f"{shape[1]}x{shape[0]}; one capture needs one image size")
        shape = img.shape
    return ImageFolderFrames(files)
