"""Face landmarks: mediapipe 0.10.14 legacy FaceMesh with iris refinement (478 points).

Points 0..467 are the face mesh (the builtin head model's vertices), 468..477 the irises.
Videos run in tracking mode (`static_image_mode=False`: the detector runs only when tracking is
lost, ~4.6 ms/frame on one CPU core), image sets in static mode. The models ship in the wheel.

FaceMesh finds faces with mediapipe's short-range detector, made for selfies: a face that fills
less than about a fifth of the frame's width (someone filmed from a few metres, a portrait-format
phone video) is not found at all. For every frame where FaceMesh finds no face, the full-range
face detector (`FaceDetection(model_selection=1)`, also in the wheel) looks for one, and FaceMesh
runs again on a square crop around its box (`FALLBACK_SCALE` x the box, resized to
`FALLBACK_SIZE` px); the landmarks are mapped back to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from liftdata.track.decode import TrackingError

__all__ = ["Landmarks", "detect_landmarks", "N_LANDMARKS"]

N_LANDMARKS = 478
FALLBACK_SCALE = 2.0  #: crop side / the full-range detector's face box side
FALLBACK_SIZE = 256  #: the crop's side in pixels


@dataclass(frozen=True)
class Landmarks:
    """Detected landmarks of T frames.

    Attributes:
        points: [T, 478, 2] pixel coordinates (x right, y down, pixel centres at integers);
            NaN where no face was found.
        depth: [T, 478] mediapipe's relative z in pixels (negative = closer to the camera).
        found: [T] whether a face was found.
        width, height: the frame size.
    """

    points: np.ndarray
    depth: np.ndarray
    found: np.ndarray
    width: int
    height: int


def _mediapipe():
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ImportError("face tracking needs mediapipe==0.10.14, which is not installed: "
                          "pip install 'liftdata[track]'") from e
    return mp


def _face_mesh(static: bool):
    return _mediapipe().solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                                     refine_landmarks=True, min_detection_confidence=0.5,
                                                     min_tracking_confidence=0.5)


def _mesh_points(result, w: int, h: int) -> tuple[np.ndarray, np.ndarray] | None:
    """FaceMesh's first face as pixel points [478, 2] (centres at integers) and depth [478] in pixels."""
    if not result.multi_face_landmarks:
        return None
    xyz = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float32)
    return xyz[:, :2] * (w, h) - 0.5, xyz[:, 2] * w


def uncrop_points(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:  # [..., 2] -> [..., 2]
    """Pixels of a `track.crop.crop_image(frame, box, size)` crop back to the frame's pixels (the
    inverse of u' = (u + 0.5 - x0) * size / side - 0.5; centres at integers)."""
    x0, y0, side = (float(v) for v in box)
    return (np.asarray(points) + 0.5) * (side / size) - 0.5 + np.array([x0, y0], np.float32)


class _Fallback:
    """Full-range face detection, then FaceMesh (static) on a square crop around the face."""

    def __init__(self):
        mp = _mediapipe()
        self.detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        self.mesh = _face_mesh(static=True)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        from liftdata.track.crop import crop_image

        h, w = frame.shape[:2]
        found = self.detector.process(frame).detections
        if not found:
            return None
        rel = max(found, key=lambda d: d.score[0]).location_data.relative_bounding_box  # in [0, 1]
        cx, cy = (rel.xmin + rel.width / 2) * w, (rel.ymin + rel.height / 2) * h  # in pixel edges
        side = FALLBACK_SCALE * max(rel.width * w, rel.height * h)
        if side < 2:
            return None
        box = np.array([cx - side / 2, cy - side / 2, side])  # (x0, y0, side), as `track.crop` boxes
        mesh = _mesh_points(self.mesh.process(crop_image(frame, box, FALLBACK_SIZE)), FALLBACK_SIZE, FALLBACK_SIZE)
        if mesh is None:
            return None
        points, depth = mesh
        return uncrop_points(points, box, FALLBACK_SIZE), depth * side / FALLBACK_SIZE

    def close(self) -> None:
        self.detector.close()
        self.mesh.close()


def detect_landmarks(frames: Iterable[np.ndarray], n_frames: int, static: bool = False,
                     name: str = "input", progress: bool = True) -> Landmarks:
    """Run the face mesh over `frames` (RGB uint8 [H, W, 3]) in order.

    Raises `TrackingError` naming `name` when no frame has a face.
    """
    from tqdm.auto import tqdm

    points = np.full((n_frames, N_LANDMARKS, 2), np.nan, np.float32)
    depth = np.full((n_frames, N_LANDMARKS), np.nan, np.float32)
    found = np.zeros(n_frames, bool)
    h = w = 0
    fallback = None  # made on the first frame FaceMesh misses
    try:
        with _face_mesh(static) as mesh:
            for t, frame in enumerate(tqdm(frames, total=n_frames, desc="landmarks", disable=not progress)):
                h, w = frame.shape[:2]
                frame = np.ascontiguousarray(frame)
                got = _mesh_points(mesh.process(frame), w, h)
                if got is None:  # a face too small for FaceMesh's own detector, or none
                    fallback = fallback or _Fallback()
                    got = fallback(frame)
                if got is not None:
                    points[t], depth[t] = got
                    found[t] = True
    finally:
        if fallback is not None:
            fallback.close()
    if not found.any():
        raise TrackingError(f"{name}: no face found in any of its {n_frames} frame(s)")
    return Landmarks(points, depth, found, w, h)
