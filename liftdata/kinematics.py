"""Core types: per-frame head-model parameters (`Kinematics`) and a pinhole `Camera`.

Conventions
-----------
* Rotations are axis-angle vectors in radians (the direction is the axis, the norm the angle).
* `Kinematics.rotation` / `translation` place the head model in *world* space; the camera then
  maps world to camera space. In a monocular capture the world frame is usually the camera frame
  (`world_to_camera = I`) and the head pose carries all motion, as in VHAP.
* `Camera` uses the OpenCV convention: x right, y down, z forward (looking down +z), pixel
  centres at integer coordinates, `K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`.
  GaussianAvatars / NeRF `transforms.json` files store OpenGL camera-to-world matrices
  (x right, y up, z backward); `Camera.to_transforms_frame` / `Camera.from_transforms` convert.
* Units are metres.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from liftdata.errors import LiftdataError

__all__ = ["Kinematics", "Camera", "KinematicsError", "axis_angle_to_matrix", "matrix_to_axis_angle"]

#: Fields of `Kinematics` that hold per-frame arrays, with their trailing width (None = E).
KINEMATIC_FIELDS: dict[str, int | None] = {
    "expression": None,
    "jaw": 3,
    "neck": 3,
    "eyes": 6,
    "rotation": 3,
    "translation": 3,
}

# OpenCV camera axes (x right, y down, z forward) -> OpenGL (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


class KinematicsError(LiftdataError, ValueError):
    """Raised for invalid kinematics or camera data; the message names the field."""


def _as_f32(name: str, value: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise KinematicsError(f"{name}: expected shape {want}, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise KinematicsError(f"{name}: non-finite value at index {bad}")
    return arr


@dataclass(frozen=True, eq=False)
class Kinematics:
    """Per-frame parameters of one head model, batched over T frames (float32 numpy arrays).

    Attributes:
        expression: [T, E] expression coefficients (builtin model: ARKit-style in [0, 1]).
        jaw: [T, 3] jaw rotation, axis-angle.
        neck: [T, 3] neck rotation, axis-angle.
        eyes: [T, 6] left then right eyeball rotation, axis-angle.
        rotation: [T, 3] global head rotation, axis-angle.
        translation: [T, 3] global head translation in metres.
        head_model: id of the head model these coefficients belong to (e.g. "builtin", "flame").
        head_model_version: its version (e.g. "1", "2023"); coefficients of different
            models or versions never mix.
    """

    expression: np.ndarray
    jaw: np.ndarray
    neck: np.ndarray
    eyes: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    head_model: str
    head_model_version: str

    def __post_init__(self) -> None:
        if not isinstance(self.head_model, str) or not self.head_model:
            raise KinematicsError("head_model: expected a non-empty string")
        if not isinstance(self.head_model_version, str) or not self.head_model_version:
            raise KinematicsError("head_model_version: expected a non-empty string")
        expression = _as_f32("expression", self.expression, (None, None))
        n = expression.shape[0]
        object.__setattr__(self, "expression", expression)
        for name, width in KINEMATIC_FIELDS.items():
            if name == "expression":
                continue
            arr = _as_f32(name, getattr(self, name), (None, width))
            if arr.shape[0] != n:
                raise KinematicsError(f"{name}: has {arr.shape[0]} frames, expression has {n}")
            object.__setattr__(self, name, arr)

    # ------------------------------------------------------------------ construction
    @classmethod
    def zeros(cls, n_frames: int, n_expression: int, head_model: str, head_model_version: str) -> Kinematics:
        """T frames of the neutral expression at the origin."""
        z = lambda w: np.zeros((n_frames, w), np.float32)  # noqa: E731
        return cls(z(n_expression), z(3), z(3), z(6), z(3), z(3), head_model, head_model_version)

    @classmethod
    def concat(cls, items: Sequence[Kinematics]) -> Kinematics:
        """Concatenate along frames; all items must belong to the same head model."""
        if not items:
            raise KinematicsError("concat: need at least one Kinematics")
        first = items[0]
        for other in items[1:]:
            first.check_compatible(other)
        arrays = {f: np.concatenate([getattr(k, f) for k in items]) for f in KINEMATIC_FIELDS}
        return cls(**arrays, head_model=first.head_model, head_model_version=first.head_model_version)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Kinematics:
        """Inverse of `to_dict`; a missing field raises an error naming it."""
        missing = [k for k in (*KINEMATIC_FIELDS, "head_model", "head_model_version") if k not in d]
        if missing:
            raise KinematicsError(f"kinematics: missing field(s) {missing}")
        return cls(**{k: d[k] for k in KINEMATIC_FIELDS}, head_model=d["head_model"],
                   head_model_version=str(d["head_model_version"]))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return self.expression.shape[0]

    @property
    def n_expression(self) -> int:
        return self.expression.shape[1]

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Kinematics:
        """Select frames. An integer keeps the frame axis (returns T=1), like `k[i:i+1]`."""
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"frame {i} out of range for {len(self)} frames")
            index = slice(i, i + 1) if i != -1 else slice(i, None)
        return dataclasses.replace(self, **{f: getattr(self, f)[index] for f in KINEMATIC_FIELDS})

    def replace(self, **changes: Any) -> Kinematics:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def check_compatible(self, other: Kinematics) -> None:
        """Raise unless `other` belongs to the same head model, version and expression space."""
        if (self.head_model, self.head_model_version) != (other.head_model, other.head_model_version):
            raise KinematicsError(
                f"head_model: cannot mix {self.head_model} v{self.head_model_version} with "
                f"{other.head_model} v{other.head_model_version}")
        if self.n_expression != other.n_expression:
            raise KinematicsError(
                f"expression: {self.n_expression} vs {other.n_expression} coefficients")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested lists of float32 values, exact through `from_dict`)."""
        d: dict[str, Any] = {f: getattr(self, f).tolist() for f in KINEMATIC_FIELDS}
        d["head_model"] = self.head_model
        d["head_model_version"] = self.head_model_version
        return d

    def as_tensors(self, device: Any = None, dtype: Any = None) -> dict[str, Any]:
        """The per-frame arrays as torch tensors (for head models and fitting)."""
        import torch

        dtype = dtype or torch.float32
        return {f: torch.tensor(getattr(self, f), device=device, dtype=dtype) for f in KINEMATIC_FIELDS}

    def equals(self, other: Kinematics) -> bool:
        """Exact equality of all arrays and of the head model."""
        return (self.head_model, self.head_model_version) == (other.head_model, other.head_model_version) and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in KINEMATIC_FIELDS)

    def __repr__(self) -> str:
        return (f"Kinematics(T={len(self)}, E={self.n_expression}, "
                f"head_model={self.head_model!r} v{self.head_model_version})")


# ---------------------------------------------------------------------- rotations
def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    """[..., 3] axis-angle -> [..., 3, 3] rotation matrices (float64)."""
    aa = np.asarray(aa, dtype=np.float64)
    return Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(aa.shape[:-1] + (3, 3))


def matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 3] axis-angle with angle in [0, pi] (float64)."""
    r = np.asarray(r, dtype=np.float64)
    return Rotation.from_matrix(r.reshape(-1, 3, 3)).as_rotvec().reshape(r.shape[:-2] + (3,))


# ---------------------------------------------------------------------- camera
@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera in the OpenCV convention.

    Attributes:
        K: [3, 3] intrinsics in pixels.
        world_to_camera: [4, 4] rigid transform from world to camera coordinates.
        width, height: image size in pixels.
    """

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        K = _as_f32("camera.K", self.K, (3, 3)).astype(np.float64)
        w2c = _as_f32("camera.world_to_camera", self.world_to_camera, (4, 4)).astype(np.float64)
        if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1 or K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0:
            raise KinematicsError(f"camera.K: not a pinhole intrinsic matrix: {K.tolist()}")
        if not np.allclose(w2c[3], [0, 0, 0, 1]):
            raise KinematicsError(f"camera.world_to_camera: last row must be [0, 0, 0, 1], got {w2c[3].tolist()}")
        r = w2c[:3, :3]
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
            raise KinematicsError("camera.world_to_camera: rotation part is not a proper rotation")
        if int(self.width) <= 0 or int(self.height) <= 0 or int(self.width) != self.width or int(self.height) != self.height:
            raise KinematicsError(f"camera: width/height must be positive integers, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "world_to_camera", w2c)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_fov(cls, fov_y_deg: float, width: int, height: int,
                 world_to_camera: np.ndarray | None = None) -> Camera:
        """A centred camera with square pixels and the given vertical field of view."""
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
        return cls(K, np.eye(4) if world_to_camera is None else world_to_camera, width, height)

    @classmethod
    def frontal(cls, fov_y_deg: float, width: int, height: int, distance: float) -> Camera:
        """A camera on the model's +z axis at `distance` metres, looking at the face.

        World = head-model space (+y up, +z out of the face), so the OpenCV camera flips y and z.
        """
        w2c = np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, distance], [0, 0, 0, 1]], dtype=np.float64)
        return cls.from_fov(fov_y_deg, width, height, w2c)

    @classmethod
    def from_c2w_opengl(cls, c2w: np.ndarray, K: np.ndarray, width: int, height: int) -> Camera:
        """From an OpenGL camera-to-world matrix (GaussianAvatars' `transform_matrix`)."""
        c2w_cv = np.asarray(c2w, dtype=np.float64) @ _CV_TO_GL  # flip camera axes back to OpenCV
        return cls(K, np.linalg.inv(c2w_cv), width, height)

    @classmethod
    def from_transforms(cls, meta: Mapping[str, Any], frame: Mapping[str, Any]) -> Camera:
        """From a GaussianAvatars/VHAP `transforms_*.json` (its top level and one frame entry).

        Per-frame intrinsics (`fl_x`, ... inside the frame) override the top-level ones.
        """
        get = lambda k: frame.get(k, meta.get(k))  # noqa: E731
        try:
            K = np.array([[get("fl_x"), 0, get("cx")], [0, get("fl_y"), get("cy")], [0, 0, 1]], dtype=np.float64)
            return cls.from_c2w_opengl(np.asarray(frame["transform_matrix"]), K, int(get("w")), int(get("h")))
        except (KeyError, TypeError) as e:
            raise KinematicsError(f"transforms.json: missing or bad camera field ({e})") from e

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Camera:
        try:
            return cls(np.asarray(d["K"]), np.asarray(d["world_to_camera"]), d["width"], d["height"])
        except KeyError as e:
            raise KinematicsError(f"camera: missing field {e.args[0]!r}") from None

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        return {"K": self.K.tolist(), "world_to_camera": self.world_to_camera.tolist(),
                "width": self.width, "height": self.height}

    @property
    def camera_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_camera)

    def c2w_opengl(self) -> np.ndarray:
        """[4, 4] OpenGL camera-to-world (x right, y up, z backward), as in transforms.json."""
        return self.camera_to_world @ _CV_TO_GL

    def to_transforms_frame(self) -> dict[str, Any]:
        """Camera fields of one `transforms.json` frame entry (intrinsics per frame)."""
        fx, fy = self.K[0, 0], self.K[1, 1]
        return {
            "transform_matrix": self.c2w_opengl().tolist(),
            "fl_x": float(fx), "fl_y": float(fy), "cx": float(self.K[0, 2]), "cy": float(self.K[1, 2]),
            "w": self.width, "h": self.height,
            "camera_angle_x": 2 * math.atan(self.width / (2 * fx)),
            "camera_angle_y": 2 * math.atan(self.height / (2 * fy)),
        }

    def resized(self, width: int, height: int) -> Camera:
        """The same camera for an image resampled to `width` x `height` (pixel centres kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return Camera(K, self.world_to_camera, width, height)

    def world_to_camera_points(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] world points -> [..., 3] OpenCV camera-space points (x right, y down, z forward)."""
        return points @ self.world_to_camera[:3, :3].T + self.world_to_camera[:3, 3]

    @property
    def centre(self) -> np.ndarray:
        """[3] the camera centre in world space."""
        return -self.world_to_camera[:3, :3].T @ self.world_to_camera[:3, 3]

    def project(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] world points -> [..., 3] (u, v, z): pixel coordinates and camera depth."""
        cam = self.world_to_camera_points(np.asarray(points, dtype=np.float64))
        z = cam[..., 2:3]
        uv = (cam / z) @ self.K.T
        return np.concatenate([uv[..., :2], z], axis=-1)

    def equals(self, other: Camera, atol: float = 0.0) -> bool:
        return (self.width, self.height) == (other.width, other.height) and np.allclose(
            self.K, other.K, rtol=0, atol=atol) and np.allclose(
            self.world_to_camera, other.world_to_camera, rtol=0, atol=atol)

    def __repr__(self) -> str:
        return f"Camera({self.width}x{self.height}, fx={self.K[0, 0]:.1f}, fy={self.K[1, 1]:.1f})"

