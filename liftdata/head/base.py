"""The `HeadModel` protocol every parametric head model implements.

A head model maps an *identity* (per-subject shape) and per-frame `Kinematics` to mesh vertices.

Model space (all models, as FLAME): metres, +x towards the subject's left ear (image right in a
frontal view), +y up, +z out of the face. `Kinematics.rotation`/`translation` place the head in
world space; `Camera.world_to_camera` (OpenCV) maps world to camera. A frontal camera therefore
flips y and z: see `Camera.frontal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from liftdata.kinematics import Kinematics

__all__ = ["HeadModel", "ExpressionPrior", "kinematics_tensors", "neutral_kinematics", "boundary_loops"]


@dataclass(frozen=True)
class ExpressionPrior:
    """What samplers and fitters treat as a plausible expression.

    Attributes:
        mean: [E] mean coefficients.
        covariance: [E, E] covariance of plausible expressions.
        lower, upper: [E] hard per-coefficient bounds (the builtin model: 0 and 1).
    """

    mean: np.ndarray
    covariance: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@runtime_checkable
class HeadModel(Protocol):
    """A parametric head model (see `liftdata.head.builtin` and `liftdata.head.flame`)."""

    name: str  #: id written into every Kinematics ("builtin", "flame")
    version: str  #: model version ("1", "2020", "2023", ...)
    faces: np.ndarray  #: [F, 3] int64 triangle vertex indices, counter-clockwise seen from outside
    n_expression: int  #: E, the width of `Kinematics.expression`
    expression_names: Sequence[str] | None  #: names of the E directions, or None (e.g. FLAME PCA)
    landmark_mediapipe_index: np.ndarray  #: [L] mediapipe face-mesh index of each model landmark

    def vertices(self, identity: torch.Tensor, kinematics: Kinematics | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Posed world-space vertices [T, V, 3] (differentiable in identity and kinematics)."""
        ...

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """[T, V, 3] vertices -> [T, L, 3] landmarks, ordered as `landmark_mediapipe_index`."""
        ...

    def expression_prior(self) -> ExpressionPrior:
        ...

    def neutral_identity(self) -> torch.Tensor:
        """The identity of the mean subject (builtin: template offsets of zeros; FLAME: zero betas)."""
        ...


def kinematics_tensors(kinematics: Kinematics | Mapping[str, torch.Tensor], model: HeadModel,
                       device: torch.device | str | None = None) -> Mapping[str, torch.Tensor]:
    """Accept `Kinematics` (checked against `model`) or a mapping of tensors (used as is)."""
    if isinstance(kinematics, Kinematics):
        if (kinematics.head_model, kinematics.head_model_version) != (model.name, model.version):
            raise ValueError(f"kinematics belong to {kinematics.head_model} v{kinematics.head_model_version}, "
                             f"not to {model.name} v{model.version}")
        if kinematics.n_expression != model.n_expression:
            raise ValueError(f"kinematics have {kinematics.n_expression} expression coefficients, "
                             f"{model.name} has {model.n_expression}")
        return kinematics.as_tensors(device=device)
    return kinematics


def neutral_kinematics(model: HeadModel, n_frames: int = 1) -> Kinematics:
    """T frames of the neutral expression at the origin for `model`."""
    k = Kinematics.zeros(n_frames, model.n_expression, model.name, model.version)
    prior = model.expression_prior()
    return k.replace(expression=np.broadcast_to(np.clip(0.0, prior.lower, prior.upper),
                                                (n_frames, model.n_expression)).copy())


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops of the mesh boundary (edges used by one triangle), longest first."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    directed = edges[counts[inverse.ravel()] == 1]
    nxt = {int(a): int(b) for a, b in directed}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.array(loop))
    return sorted(loops, key=len, reverse=True)
