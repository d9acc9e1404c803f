"""`PoseSweep`: head rotations (and optionally translations / zoom) the capture never showed.

Axis convention (head-model / world space, see `liftdata.head.base`): metres, +x towards the
subject's left ear, +y up, +z out of the face. Angles are in degrees:
  yaw   about +y (positive: the face turns towards +x, the subject's left),
  pitch about +x (positive: the face turns down, towards -y),
  roll  about +z (positive: counter-clockwise as seen by a frontal camera; the subject's left
        ear rises).
The sweep rotation is R_sweep = R_y(yaw) R_x(pitch) R_z(roll) (intrinsic Y-X-Z Euler angles,
scipy "YXZ"), applied in world space on top of the held frame's observed rotation:
R = R_sweep R_observed. `coverage` reads yaw/pitch/roll back with the same decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.spatial.transform import Rotation

from liftdata.kinematics import Kinematics
from liftdata.samplers.base import Context, LeafSampler, distinct_choice, smoothstep
from liftdata.samplers.plan import PlanError
from liftdata.samplers.references import ReferencePolicy

__all__ = ["PoseSweep", "sweep_rotation"]


def sweep_rotation(angles_deg: np.ndarray) -> np.ndarray:
    """[N, 3] (yaw, pitch, roll) degrees -> [N, 3, 3] R_y(yaw) R_x(pitch) R_z(roll)."""
    return Rotation.from_euler("YXZ", np.asarray(angles_deg, np.float64), degrees=True).as_matrix()


def _check_range(owner: str, name: str, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise PlanError(f"{owner}.{name}: expected a (low, high) pair, got {value!r}") from None
    if not lo <= hi:
        raise PlanError(f"{owner}.{name}: low must be <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class PoseSweep(LeafSampler):
    """Clips sweeping the head pose across a box of yaw/pitch/roll (translation, zoom) offsets.

    Each clip holds the expression (and jaw, neck, eyes) of one observed frame s and eases
    (smoothstep) every active axis from one end of its range to the other (which end first is
    random per axis), composing the sweep with s's observed rotation and translation.

    Attributes:
        yaw, pitch, roll: (low, high) offsets in degrees (an axis with low == high is held).
        translation: (x, y, z) half-ranges in metres: each axis sweeps -t..+t (None: no offset).
        zoom: (low, high) apparent-size factors (1 = unchanged, 2 = twice as large): the head is
            moved along the camera ray through it, so it stays at the same pixel; needs
            `capture.camera`.
    Distinct clips: T observed frames x 2^(active axes) directions; beyond that clips repeat.
    """

    yaw: tuple[float, float] = (-40.0, 40.0)
    pitch: tuple[float, float] = (-15.0, 15.0)
    roll: tuple[float, float] = (0.0, 0.0)
    translation: tuple[float, float, float] | None = None
    zoom: tuple[float, float] | None = None
    clip_length: int = 21
    references: ReferencePolicy = field(default_factory=ReferencePolicy)
    name: ClassVar[str] = "pose_sweep"
    provides: ClassVar[str] = "pose"

    def __post_init__(self) -> None:
        self._check_clip_length()
        for axis in ("yaw", "pitch", "roll"):
            lo, hi = _check_range("PoseSweep", axis, getattr(self, axis))
            if max(abs(lo), abs(hi)) > 180:
                raise PlanError(f"PoseSweep.{axis}: angles are in degrees within [-180, 180], got {(lo, hi)}")
            object.__setattr__(self, axis, (lo, hi))
        if self.translation is not None:
            t = tuple(float(v) for v in self.translation)
            if len(t) != 3 or min(t) < 0:
                raise PlanError(f"PoseSweep.translation: expected 3 non-negative half-ranges in metres, got {self.translation!r}")
            object.__setattr__(self, "translation", t)
        if self.zoom is not None:
            lo, hi = _check_range("PoseSweep", "zoom", self.zoom)
            if lo <= 0:
                raise PlanError(f"PoseSweep.zoom: factors must be > 0, got {self.zoom!r}")
            object.__setattr__(self, "zoom", (lo, hi))

    def _ranges(self) -> np.ndarray:  # [A, 2]: yaw, pitch, roll, tx, ty, tz, zoom
        t = self.translation or (0.0, 0.0, 0.0)
        return np.array([self.yaw, self.pitch, self.roll, *[(-v, v) for v in t], self.zoom or (1.0, 1.0)])

    def _active(self) -> np.ndarray:
        r = self._ranges()
        return np.flatnonzero(r[:, 1] > r[:, 0])

    def capacity(self, ctx: Context) -> int:
        return len(ctx.observed) * 2 ** len(self._active())

    def _clips(self, ctx: Context, n_clips: int, rng: np.random.Generator) -> list[Kinematics]:
        if self.zoom is not None and ctx.camera is None:
            raise PlanError("PoseSweep.zoom: the capture has no camera to zoom along")
        ranges, active = self._ranges(), self._active()
        patterns = 2 ** len(active)
        picks = distinct_choice(rng, len(ctx.observed) * patterns, n_clips)
        frames, bits = np.divmod(picks, patterns)
        s = smoothstep(np.arange(self.clip_length) / (self.clip_length - 1))  # [F]
        out = []
        for frame, pattern in zip(frames.tolist(), bits.tolist()):
            start, end = ranges[:, 0].copy(), ranges[:, 0].copy()
            for a_i, a in enumerate(active):  # bit set: sweep high -> low
                lo, hi = ranges[a]
                start[a], end[a] = (hi, lo) if (pattern >> a_i) & 1 else (lo, hi)
            values = start + s[:, None] * (end - start)  # [F, 7]
            out.append(self._frames(ctx, frame, values))
        return out

    def _frames(self, ctx: Context, frame: int, values: np.ndarray) -> Kinematics:
        obs = ctx.observed
        r_obs = Rotation.from_rotvec(obs.rotation[frame].astype(np.float64))
        rot = (Rotation.from_euler("YXZ", values[:, :3], degrees=True) * r_obs).as_rotvec()
        trans = obs.translation[frame].astype(np.float64) + values[:, 3:6]
        if self.zoom is not None:  # scale the camera-space position: same pixel, 1/zoom the depth
            r, t = ctx.camera.world_to_camera[:3, :3], ctx.camera.world_to_camera[:3, 3]
            cam = (trans[:, None, :] * r[None]).sum(-1) + t  # r @ p + t, elementwise (no BLAS)
            trans = ((cam / values[:, 6:7] - t)[:, :, None] * r[None]).sum(1)  # r.T @ (q - t)
        f = len(values)
        hold = lambda name: np.broadcast_to(getattr(obs, name)[frame], (f, getattr(obs, name).shape[1]))  # noqa: E731
        return Kinematics(hold("expression"), hold("jaw"), hold("neck"), hold("eyes"), rot, trans,
                          obs.head_model, obs.head_model_version)
