"""Tracking: a monocular video (or images) -> per-frame kinematics of a head model (`Capture`).

Pipeline: decode (`decode`: PyAV or OpenCV, rotation metadata respected) -> mediapipe 0.10.14 face
mesh, 478 points (`landmarks`) -> a batched fit of pose, expression, identity and focal length
over all frames with priors and temporal terms (`fit`) -> the head pose, expression and identity
refined against the frames' pixels (`photometric`; `tracking="landmarks"` skips it) -> `Capture`
with per-frame quality (`landmark_residual` in pixels, `face_found`). Needs the `track` extra (mediapipe, av).

Real videos: `segment` splits shots and subjects (one subject is kept; temporal terms never cross
a cut), `quality` says which frames are usable samples and references, `crop` frames the head
(square, per shot, camera intrinsics adjusted), `matte` gives a foreground alpha per frame.
"""

from liftdata.track.decode import TrackingError, read_images, read_video
from liftdata.track.fit import FitConfig, fit_landmarks
from liftdata.track.landmarks import Landmarks, detect_landmarks
from liftdata.track.pipeline import TRACKING_MODES, overlay, track_frames, track_images, track_video
from liftdata.track.segment import SegmentConfig, Segments, segment_video

__all__ = ["track_video", "track_images", "track_frames", "overlay", "TrackingError", "read_video", "read_images",
           "detect_landmarks", "Landmarks", "fit_landmarks", "FitConfig", "segment_video", "Segments",
           "SegmentConfig", "TRACKING_MODES"]
