"""The `Lifter` protocol: references (+ their conditions) and driving conditions -> new frames.

A lifter synthesizes one clip at a time (DESIGN.md section 8). Its inputs, as in the paper:

* references: K captured frames of the subject with their shading / normal / mask maps,
  coefficients (`Kinematics`) and head-model geometry;
* driving: F frames of the same kinds of conditions for the kinematics to synthesize (no images).

Both carry the posed head-model vertices so that geometric lifters (warp) can use them; learned
lifters (liftavatar) read the maps and coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from liftdata.kinematics import Camera, Kinematics

__all__ = ["Conditions", "References", "Lifter", "render_conditions"]


@dataclass(frozen=True, eq=False)
class Conditions:
    """Condition maps, geometry and coefficients of N frames of one subject.

    Attributes:
        kinematics: [N] head-model parameters.
        camera: the camera of all N frames (image size = camera.width x camera.height).
        vertices: [N, V, 3] posed world-space head-model vertices.
        faces: [F, 3] the head model's triangles.
        maps: "shading" [N,H,W,1], "normal" [N,H,W,3] (0.5 n + 0.5), "depth" [N,H,W,1],
            "mask" [N,H,W,1]; float32 tensors from `liftdata.render.condition_maps`.
    """

    kinematics: Kinematics
    camera: Camera
    vertices: torch.Tensor
    faces: np.ndarray
    maps: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.kinematics)


@dataclass(frozen=True, eq=False)
class References:
    """K reference frames: RGB images [K, H, W, 3] uint8, their conditions and sample keys."""

    images: np.ndarray
    conditions: Conditions
    keys: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)


def render_conditions(head_model: Any, identity: np.ndarray | torch.Tensor, kinematics: Kinematics,
                      camera: Camera, backend: str = "auto") -> Conditions:
    """Pose the head model and render its condition maps for every frame of `kinematics`."""
    from liftdata.render import condition_maps

    with torch.no_grad():
        vertices = head_model.vertices(torch.as_tensor(np.asarray(identity)), kinematics).float()
    maps = condition_maps(vertices, head_model.faces, camera, backend=backend)
    return Conditions(kinematics, camera, vertices, np.asarray(head_model.faces), maps)


@runtime_checkable
class Lifter(Protocol):
    """Synthesizes frames of the referenced subject under driving conditions."""

    name: str  #: written into every lifted sample's meta
    version: str

    def lift(self, references: References, driving: Conditions, *, seed: int = 0) -> np.ndarray:
        """One clip: [F, H, W, 3] uint8 RGB frames at the driving camera's size."""
        ...
