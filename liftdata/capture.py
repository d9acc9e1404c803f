"""`Capture`: the frames of one subject with their per-frame kinematics, camera and identity.

A capture is what tracking produces (`liftdata.track`) and what synthetic data generates
(`liftdata.synthetic`); samplers plan new kinematics from it and lifters take their reference
frames from it. Frames are RGB uint8 [H, W, 3] and may be decoded lazily: any object with
`__len__` and `__getitem__(i) -> ndarray` works (a [T, H, W, 3] array, `ImageFolderFrames`, a
video reader).

On disk (`Capture.save(dir)`)::

    dir/capture.json      ids, fps, head model id/version, camera, kinematics, quality
    dir/identity.npy      the head model's identity (builtin: template offsets [V, 3])
    dir/static_offset.npy FLAME only, when the head model carries VHAP's static offset [1, V, 3]
    dir/frames/000000.png ... one PNG per frame
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np

from liftdata.errors import LiftdataError
from liftdata.kinematics import KINEMATIC_FIELDS, Camera, Kinematics, KinematicsError

__all__ = ["Capture", "FrameSource", "ImageFolderFrames", "ResizedFrames", "CaptureError"]

CAPTURE_FORMAT_VERSION = 1


class CaptureError(LiftdataError, ValueError):
    """A capture on disk or in memory is malformed; the message names the path or field."""


class FrameSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...  # [H, W, 3] uint8 RGB


class ImageFolderFrames:
    """Lazily decoded frames from a list of image files (PNG/JPEG), RGB uint8."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CaptureError(f"{path}: cannot read image (missing, unreadable or not an image)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ResizedFrames:
    """Frames of another source resampled to `width` x `height` on access (area filter)."""

    def __init__(self, source: FrameSource, width: int, height: int):
        self.source, self.width, self.height = source, width, height

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        frame = np.asarray(self.source[index])
        if frame.shape[:2] == (self.height, self.width):
            return frame
        return cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)


@dataclass
class Capture:
    """Frames of one subject plus what the head model says about each of them.

    Attributes:
        frames: T RGB uint8 frames [H, W, 3] (lazily decoded sources welcome).
        kinematics: [T] per-frame head-model parameters.
        camera: the camera shared by all frames (OpenCV; image size = frame size).
        identity: the head model's per-subject identity (builtin: [V, 3] template offsets).
        head_model: the model the kinematics belong to (`liftdata.head.HeadModel`).
        capture_id, subject_id: ids written into every sample's meta.
        fps: frame rate of the source.
        landmark_residual: [T] mean landmark reprojection error in pixels (NaN if unknown).
        face_found: [T] whether a face was detected (False: kinematics were interpolated).
        extra: JSON-safe notes on where the frames came from (e.g. "crop"; "vhap": the source
            folder's camera, timestep indices, splits and mask paths, see `liftdata.io.vhap`).
    """

    frames: FrameSource
    kinematics: Kinematics
    camera: Camera
    identity: np.ndarray
    head_model: Any
    capture_id: str = "capture"
    subject_id: str = "subject"
    fps: float = 25.0
    landmark_residual: np.ndarray | None = None
    face_found: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.kinematics)
        if len(self.frames) != t:
            raise CaptureError(f"capture {self.capture_id!r}: {len(self.frames)} frames but {t} kinematics")
        if (self.kinematics.head_model, self.kinematics.head_model_version) != (
                self.head_model.name, self.head_model.version):
            raise CaptureError(f"capture {self.capture_id!r}: kinematics belong to "
                               f"{self.kinematics.head_model} v{self.kinematics.head_model_version}, "
                               f"head model is {self.head_model.name} v{self.head_model.version}")
        self.identity = np.asarray(self.identity, dtype=np.float32)
        self.landmark_residual = (np.full(t, np.nan, np.float32) if self.landmark_residual is None
                                  else np.asarray(self.landmark_residual, np.float32))
        self.face_found = (np.ones(t, bool) if self.face_found is None else np.asarray(self.face_found, bool))
        if self.landmark_residual.shape != (t,) or self.face_found.shape != (t,):
            raise CaptureError(f"capture {self.capture_id!r}: quality arrays must have shape [{t}]")

    def __len__(self) -> int:
        return len(self.kinematics)

    def fingerprint(self) -> str:
        """sha256 (hex) of what identifies this capture's samples apart from the pixels: ids, head
        model, camera, identity, per-frame kinematics and quality flags. Two trackings of different
        frames give different kinematics, so this names the capture without hashing every frame."""
        h = hashlib.sha256(json.dumps({"capture_id": self.capture_id, "subject_id": self.subject_id,
                                       "head_model": [self.head_model.name, self.head_model.version],
                                       "camera": self.camera.to_dict(), "frames": len(self)}).encode())
        for array in (self.identity, self.face_found, *(getattr(self.kinematics, f) for f in KINEMATIC_FIELDS)):
            h.update(np.ascontiguousarray(array, np.float32).tobytes())
        offset = getattr(self.head_model, "static_offset", None)  # a VHAP subject's template offsets
        if offset is not None:
            h.update(np.ascontiguousarray(offset, np.float32).tobytes())
        return h.hexdigest()

    def resized(self, long_side: int) -> Capture:
        """The same capture with frames and camera scaled so the longer image side is `long_side`."""
        w, h = self.camera.width, self.camera.height
        scale = long_side / max(w, h)
        width, height = max(1, round(w * scale)), max(1, round(h * scale))
        if (width, height) == (w, h):
            return self
        return dataclasses.replace(self, frames=ResizedFrames(self.frames, width, height),
                                   camera=self.camera.resized(width, height))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the capture to `directory` atomically (temp dir, then rename)."""
        out = Path(directory)
        if out.exists():
            raise CaptureError(f"{out}: already exists; choose a new directory")
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "frames").mkdir(parents=True)
        for i in range(len(self)):
            frame = np.asarray(self.frames[i])
            if not cv2.imwrite(str(tmp / "frames" / f"{i:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                raise CaptureError(f"{tmp}: failed to write frame {i} (disk full or not writable?)")
        np.save(tmp / "identity.npy", self.identity)
        if getattr(self.head_model, "static_offset", None) is not None:  # FLAME with VHAP's static offset
            np.save(tmp / "static_offset.npy", self.head_model.static_offset)
        doc = {
            "format_version": CAPTURE_FORMAT_VERSION,
            "capture_id": self.capture_id, "subject_id": self.subject_id, "fps": self.fps,
            "head_model": {"id": self.head_model.name, "version": self.head_model.version},
            "camera": self.camera.to_dict(), "kinematics": self.kinematics.to_dict(),
            "landmark_residual": [None if np.isnan(x) else float(x) for x in self.landmark_residual],
            "face_found": self.face_found.tolist(), "extra": self.extra,
        }
        (tmp / "capture.json").write_text(json.dumps(doc))
        tmp.rename(out)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, head_model: Any = None) -> Capture:
        """Read a capture written by `save`. `head_model` defaults to loading it by id (builtin)."""
        d = Path(directory)
        meta_path = d / "capture.json"
        if not meta_path.is_file():
            raise CaptureError(f"{d}: not a liftdata capture (no capture.json)")
        try:
            doc = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise CaptureError(f"{meta_path}: corrupt JSON ({e})") from None
        if head_model is None:
            from liftdata.head import load_head_model

            head_model = load_head_model(doc["head_model"]["id"])
        if (d / "static_offset.npy").is_file():
            from liftdata.io.vhap import with_static_offset

            head_model = with_static_offset(head_model, np.load(d / "static_offset.npy"))
        frames = ImageFolderFrames(sorted((d / "frames").glob("*.png")))
        residual = np.array([np.nan if x is None else x for x in doc["landmark_residual"]], np.float32)
        try:
            kinematics, camera = Kinematics.from_dict(doc["kinematics"]), Camera.from_dict(doc["camera"])
        except (KinematicsError, KeyError, TypeError, ValueError) as e:
            raise CaptureError(f"{meta_path}: invalid kinematics or camera ({e})") from None
        return cls(frames=frames, kinematics=kinematics,
                   camera=camera, identity=np.load(d / "identity.npy"),
                   head_model=head_model, capture_id=doc["capture_id"], subject_id=doc["subject_id"],
                   fps=doc["fps"], landmark_residual=residual, face_found=np.array(doc["face_found"]),
                   extra=doc.get("extra", {}))
