"""Avatar-ready framing: one head-centred square crop per segment, camera intrinsics adjusted.

INSTA / metrical-tracker style: the box comes from the tracked head, its side is `scale` x the
face size (the larger side of the fitted face mesh's bounding box, median over the segment), and
it is **one box per segment** (a shot, or a stretch of one face: `Segments.starts`): no per-frame
jitter, the smoothest framing there is. The box is centred on the median face centre (raised by
`raise_` x the face size, towards the hair), and grown where needed so that every frame's face
box stays inside with a `margin`.

The box then stays inside the picture (`CropConfig.inside`, default): a box larger than the
frame's shorter side is shrunk to it, and a box that reaches past an edge is moved back in. A crop
thus never holds pixels the camera did not see (black borders that a segmenter reads as a
person, and that an avatar would learn as part of the scene); the price is a tighter or
off-centre framing when the face fills the frame or sits at its edge. `inside=False` keeps the
box as computed, its parts outside the image black.

Kinematics stay exact: cropping and resizing is an affine map of pixel coordinates, which is
folded into the intrinsics (pixel centres at integers, OpenCV convention):

    u' = (u + 0.5 - x0) * s - 0.5,   s = size / side,   (x0, y0) = the box's top-left corner

so `K' = [[s fx, 0, s (cx + 0.5 - x0) - 0.5], [0, s fy, s (cy + 0.5 - y0) - 0.5], [0, 0, 1]]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from liftdata.capture import Capture, CaptureError
from liftdata.kinematics import Camera

__all__ = ["CropConfig", "Crop", "crop_boxes", "crop_camera", "crop_image", "crop_capture", "segment_starts"]


@dataclass
class CropConfig:
    """Settings of `crop_capture`."""

    size: int = 512  #: output side in pixels
    scale: float = 2.5  #: box side / face size
    raise_: float = 0.15  #: box centre above the face centre, in face sizes (room for the hair)
    margin: float = 1.1  #: every frame's face box, grown by this factor, stays inside the box
    #: one box per segment (shot); False: one box for the whole capture, so that one camera serves
    #: every frame and `Crop.capture` always works (the box then spans all shots' faces)
    per_shot: bool = True
    #: keep the box inside the frame: shrunk to the frame's shorter side and moved back in (see the
    #: module docstring); False: parts of the box outside the image are black
    inside: bool = True


def crop_camera(camera: Camera, box: np.ndarray, size: int) -> Camera:
    """The camera of the crop `box` = (x0, y0, side) (source pixels) resized to `size` x `size`."""
    x0, y0, side = (float(v) for v in box)
    s = size / side
    K = camera.K.copy()
    K[0, 0] *= s
    K[1, 1] *= s
    K[0, 2] = s * (K[0, 2] + 0.5 - x0) - 0.5
    K[1, 2] = s * (K[1, 2] + 0.5 - y0) - 0.5
    return Camera(K, camera.world_to_camera, size, size)


def crop_image(image: np.ndarray, box: np.ndarray, size: int, interpolation: int | None = None) -> np.ndarray:
    """Resample `box` = (x0, y0, side) of `image` [H, W, ...] to `size` x `size` (black outside).

    A box inside the image takes its edge pixels as they are: an upsampling interpolates the outer
    half pixel against a copy of the edge (replicated), not against black. A shrinking crop (size <
    side; default `interpolation`) is area-averaged: the image is first resized by about
    size / side with `cv2.INTER_AREA` (which `cv2.warpAffine` does not do: it would sample
    bilinearly and alias hair and skin texture), then warped by the remaining near-1 scale.
    """
    x0, y0, side = (float(v) for v in box)
    s = size / side
    h, w = image.shape[:2]
    tol = 1e-6 * max(side, 1.0)
    inside = x0 >= -tol and y0 >= -tol and x0 + side <= w + tol and y0 + side <= h + tol
    image, sx, sy = np.ascontiguousarray(image), 1.0, 1.0
    if interpolation is None and s < 1:  # area pre-shrink; (sx, sy): its exact per-axis ratios
        small = (max(1, round(w * s)), max(1, round(h * s)))
        image, sx, sy = cv2.resize(image, small, interpolation=cv2.INTER_AREA), small[0] / w, small[1] / h
    # crop pixel = s * (source edge coordinate - x0) - 0.5, with source edge coordinate = (u + 0.5) / sx
    warp = np.float32([[s / sx, 0, s * (0.5 / sx - x0) - 0.5], [0, s / sy, s * (0.5 / sy - y0) - 0.5]])
    flags = interpolation if interpolation is not None else cv2.INTER_LINEAR
    return cv2.warpAffine(image, warp, (size, size), flags=flags,
                          borderMode=cv2.BORDER_REPLICATE if inside else cv2.BORDER_CONSTANT, borderValue=0)


def segment_starts(capture: Capture) -> np.ndarray:  # [T] bool
    """Where the capture's segments start (`extra["tracking"]["segment_starts"]`; else only frame 0)."""
    starts = np.zeros(len(capture), bool)
    starts[0] = True
    starts[np.asarray(capture.extra.get("tracking", {}).get("segment_starts", []), int)] = True
    return starts


def crop_boxes(face_uv: np.ndarray,  # [T, L, 2] projected face landmarks (pixels)
               starts: np.ndarray,  # [T] bool, True where a segment starts
               cfg: CropConfig | None = None,
               valid: np.ndarray | None = None,  # [T] bool: frames whose face counts (default all)
               frame: tuple[int, int] | None = None,  # (width, height) of the source frames
               ) -> np.ndarray:  # [T, 3] (x0, y0, side)
    """One square box per segment (see the module docstring), from the segment's `valid` frames
    (all of its frames when none is valid); with `frame` and `cfg.inside`, inside the frame."""
    cfg = cfg or CropConfig()
    lo, hi = face_uv.min(1), face_uv.max(1)  # [T, 2]
    centre, size = (lo + hi) / 2, (hi - lo).max(-1)
    seg = np.cumsum(np.asarray(starts, bool)) - (1 if starts[0] else 0)
    valid = np.ones(len(face_uv), bool) if valid is None else np.asarray(valid, bool)
    boxes = np.zeros((len(face_uv), 3))
    for k in np.unique(seg):
        members = seg == k
        idx = members & valid if (members & valid).any() else members
        s = float(np.median(size[idx]))
        c = np.median(centre[idx], 0) - [0, cfg.raise_ * s]
        reach = np.abs(np.concatenate([lo[idx] - c, hi[idx] - c])).max()  # farthest face-box edge
        side = max(cfg.scale * s, 2 * cfg.margin * reach)
        inside = cfg.inside and frame is not None  # the image spans edges [0, width] x [0, height]
        if inside:
            side = min(side, *frame)
        x0, y0 = c[0] - side / 2 + 0.5, c[1] - side / 2 + 0.5  # box edges; pixel centres at integers
        if inside:
            x0, y0 = min(max(x0, 0.0), frame[0] - side), min(max(y0, 0.0), frame[1] - side)
        boxes[members] = [x0, y0, side]
    return boxes


class CroppedFrames:
    """Frames of another source cropped by per-frame boxes and resized (`len`, getitem)."""

    def __init__(self, source, boxes: np.ndarray, size: int):
        self.source, self.boxes, self.size = source, np.asarray(boxes), int(size)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        return crop_image(np.asarray(self.source[index]), self.boxes[index], self.size)


@dataclass
class Crop:
    """The framing of a capture: per-frame boxes, cropped frames and per-frame cameras."""

    boxes: np.ndarray  #: [T, 3] (x0, y0, side) in source pixels (edges; pixel centres at integers)
    size: int
    frames: CroppedFrames
    cameras: list[Camera]  #: [T] the camera of each cropped frame (kinematics unchanged)

    def capture(self, source: Capture) -> Capture:
        """`source` with cropped frames, when one camera serves every frame (one box)."""
        distinct = np.unique(self.boxes, axis=0)
        if len(distinct) != 1:
            raise CaptureError(f"capture {source.capture_id!r}: {len(distinct)} crop boxes (one per shot) need a "
                               f"camera per frame; a Capture holds one: use Crop.frames and Crop.cameras")
        import dataclasses

        extra = {**source.extra, "crop": {"box": distinct[0].tolist(), "size": self.size}}
        return dataclasses.replace(source, frames=self.frames, camera=self.cameras[0], extra=extra)


def crop_capture(capture: Capture, cfg: CropConfig | None = None, starts: np.ndarray | None = None) -> Crop:
    """Head-centred square crops of a tracked capture (one box per segment; `starts` default:
    `segment_starts(capture)`; with `cfg.per_shot=False` one box for all frames)."""
    cfg = cfg or CropConfig()
    if cfg.size < 1 or cfg.scale <= 0:
        raise ValueError(f"crop: size must be >= 1 and scale > 0, got size={cfg.size}, scale={cfg.scale}")
    model = capture.head_model
    with torch.no_grad():
        verts = model.vertices(torch.as_tensor(capture.identity), capture.kinematics)
    uv = capture.camera.project(model.landmarks(verts).numpy())[..., :2]
    if not cfg.per_shot:
        starts = np.eye(1, len(capture), dtype=bool)[0]
    boxes = crop_boxes(uv, segment_starts(capture) if starts is None else starts, cfg, valid=capture.face_found,
                       frame=(capture.camera.width, capture.camera.height))
    cams = [crop_camera(capture.camera, b, cfg.size) for b in boxes]
    return Crop(boxes, cfg.size, CroppedFrames(capture.frames, boxes, cfg.size), cams)
