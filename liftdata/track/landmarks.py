"""Face landmarks: mediapipe 0.10.14 legacy FaceMesh with iris refinement (478 points).

Points 0..467 are the face mesh (the builtin head model's vertices), 468..477 the irises.
Videos run in tracking mode (`static_image_mode=False`: the detector runs only when tracking is
lost, ~4.6 ms/frame on one CPU core), image sets in static mode. The models ship in the wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from liftdata.track.decode import TrackingError

__all__ = ["Landmarks", "detect_landmarks", "N_LANDMARKS"]

N_LANDMARKS = 478


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


def _face_mesh(static: bool):
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ImportError("face tracking needs mediapipe==0.10.14, which is not installed: "
                          "pip install 'liftdata[track]'") from e
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=True,
                                           min_detection_confidence=0.5, min_tracking_confidence=0.5)


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
    with _face_mesh(static) as mesh:
        for t, frame in enumerate(tqdm(frames, total=n_frames, desc="landmarks", disable=not progress)):
            h, w = frame.shape[:2]
            result = mesh.process(np.ascontiguousarray(frame))
            if not result.multi_face_landmarks:
                continue
            lm = result.multi_face_landmarks[0].landmark
            xyz = np.array([(p.x, p.y, p.z) for p in lm], np.float32)
            # normalised [0, 1] image coordinates -> pixels with centres at integers
            points[t] = xyz[:, :2] * (w, h) - 0.5
            depth[t] = xyz[:, 2] * w
            found[t] = True
    if not found.any():
        raise TrackingError(f"{name}: no face found in any of its {n_frames} frame(s)")
    return Landmarks(points, depth, found, w, h)
