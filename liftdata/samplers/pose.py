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

Pose support (issue 17): a lifter can only show what its references saw, so by default no frame
is planned farther than `support_deg` (the angle of the relative rotation) from the nearest
observed head pose of the capture (any observed frame may become a reference): a frame whose
sweep would go beyond is pulled back along its sweep (the offset scaled down, by bisection) onto
the support's edge. Ranges given explicitly (`yaw=`, `pitch=`, `roll=`) win: frames are not
pulled back, and a `PoseSupportWarning` says how many lie beyond the support. Every clip's
provenance records `support` ({"support_deg", "clipped", "beyond", "max_distance_deg"}), which
`Plan.summary()` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from liftdata.kinematics import Kinematics
from liftdata.samplers.base import Context, LeafSampler, distinct_choice, smoothstep
from liftdata.samplers.plan import PlanError
from liftdata.samplers.references import ReferencePolicy

__all__ = ["PoseSweep", "sweep_rotation", "PoseSupportWarning", "DEFAULT_SUPPORT_DEG", "distance_to_nearest_pose"]

DEFAULT_SUPPORT_DEG = 25.0
"""Default pose support (degrees from the nearest observed head pose); see the module docstring."""
_DEFAULT_RANGES = {"yaw": (-40.0, 40.0), "pitch": (-15.0, 15.0), "roll": (0.0, 0.0)}


class PoseSupportWarning(UserWarning):
    """Explicit pose ranges plan frames beyond the pose support of the capture."""


def distance_to_nearest_pose(rotvecs: np.ndarray,  # [F, 3] axis-angle
                             observed: np.ndarray,  # [T, 3] axis-angle
                             ) -> np.ndarray:  # [F] degrees
    """Angle of the relative rotation between each planned pose and its nearest observed pose."""
    qa = Rotation.from_rotvec(np.asarray(rotvecs, np.float64)).as_quat()
    qb = Rotation.from_rotvec(np.asarray(observed, np.float64)).as_quat()
    dot = np.abs((qa[:, None, :] * qb[None, :, :]).sum(-1)).max(1)  # elementwise: no BLAS
    return np.degrees(2 * np.arccos(np.clip(dot, 0.0, 1.0)))


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
        support_deg: pose support in degrees (None: none); with the default ranges (yaw, pitch
            and roll all None = (-40, 40), (-15, 15), (0, 0)) frames beyond it are pulled back
            onto it; with explicit ranges they are kept and a `PoseSupportWarning` is issued.
        clip_to_support: None (the rule above), True (pull frames back even with explicit ranges:
            e.g. a default sampler's own ranges), False (never; warn).
    Distinct clips: T observed frames x 2^(active axes) directions; beyond that clips repeat.
    """

    yaw: tuple[float, float] | None = None
    pitch: tuple[float, float] | None = None
    roll: tuple[float, float] | None = None
    translation: tuple[float, float, float] | None = None
    zoom: tuple[float, float] | None = None
    clip_length: int = 21
    references: ReferencePolicy = field(default_factory=ReferencePolicy)
    support_deg: float | None = DEFAULT_SUPPORT_DEG
    clip_to_support: bool | None = None
    name: ClassVar[str] = "pose_sweep"
    provides: ClassVar[str] = "pose"

    def __post_init__(self) -> None:
        self._check_clip_length()
        if self.support_deg is not None and not 0 < float(self.support_deg) <= 180:
            raise PlanError(f"PoseSweep.support_deg: expected degrees in (0, 180] or None, got {self.support_deg!r}")
        for axis in ("yaw", "pitch", "roll"):
            if getattr(self, axis) is None:
                continue
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

    @property
    def explicit(self) -> bool:
        """True if frames beyond the support are kept (warned about) rather than pulled back: any
        rotation range given, unless `clip_to_support` says otherwise."""
        if self.clip_to_support is not None:
            return not self.clip_to_support
        return any(getattr(self, a) is not None for a in _DEFAULT_RANGES)

    def _ranges(self) -> np.ndarray:  # [A, 2]: yaw, pitch, roll, tx, ty, tz, zoom
        t = self.translation or (0.0, 0.0, 0.0)
        rot = [_DEFAULT_RANGES[a] if getattr(self, a) is None else getattr(self, a) for a in _DEFAULT_RANGES]
        return np.array([*rot, *[(-v, v) for v in t], self.zoom or (1.0, 1.0)])

    def _active(self) -> np.ndarray:
        r = self._ranges()
        return np.flatnonzero(r[:, 1] > r[:, 0])

    def capacity(self, ctx: Context) -> int:
        return len(ctx.observed) * 2 ** len(self._active())

    def _clips(self, ctx: Context, n_clips: int, rng: np.random.Generator) -> list[Kinematics]:
        return [k for k, _ in self._clips_with_notes(ctx, n_clips, rng)]

    def _clips_with_notes(self, ctx: Context, n_clips: int, rng: np.random.Generator):
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
            out.append(self._supported(ctx, frame, values))
        self._warn_beyond(out)
        return [(k, notes) for k, notes, _ in out]

    def _supported(self, ctx: Context, frame: int, values: np.ndarray):
        """The clip's frames, each sweep offset scaled back (bisection) so that it stays within the
        support; with a provenance note for its first m frames and the count of frames beyond."""
        k = self._frames(ctx, frame, values)
        if self.support_deg is None:
            return k, lambda m: {}, 0
        dist = distance_to_nearest_pose(k.rotation, ctx.observed.rotation)
        beyond = dist > self.support_deg
        clipped = np.zeros(len(dist), bool)
        if beyond.any() and not self.explicit:
            base = np.array([0, 0, 0, 0, 0, 0, 1.0])  # the held frame's own pose
            lo, hi = np.zeros(int(beyond.sum())), np.ones(int(beyond.sum()))
            for _ in range(30):  # largest scale whose pose is within the support
                mid = (lo + hi) / 2
                trial = base + mid[:, None] * (values[beyond] - base)
                ok = distance_to_nearest_pose(self._frames(ctx, frame, trial).rotation,
                                              ctx.observed.rotation) <= self.support_deg
                lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
            values = values.copy()
            values[beyond] = base + lo[:, None] * (values[beyond] - base)
            k = self._frames(ctx, frame, values)
            clipped, dist = beyond, distance_to_nearest_pose(k.rotation, ctx.observed.rotation)
        out = dist > self.support_deg + 1e-6
        support = float(self.support_deg)

        def notes(m: int) -> dict:
            return {"support": {"support_deg": support, "clipped": int(clipped[:m].sum()), "beyond": int(out[:m].sum()),
                                "max_distance_deg": round(float(dist[:m].max()), 3)}}
        return k, notes, int(out.sum())

    def _warn_beyond(self, clips: list) -> None:
        beyond = sum(n for _, _, n in clips)
        if beyond:
            frames = sum(len(k) for k, _, _ in clips)
            warnings.warn(f"PoseSweep: explicit ranges plan {beyond} of {frames} frames farther than the pose support "
                          f"({self.support_deg:g} deg from the nearest capture pose); lifted frames there are "
                          f"unreliable (support_deg=None silences this)", PoseSupportWarning, stacklevel=5)

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
