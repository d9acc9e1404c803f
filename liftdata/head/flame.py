"""FLAME from a user-supplied file (research grade), skinned with `smplx.lbs`.

FLAME (Li et al. 2017) is a linear blend-skinned head: 5023 vertices, 5 joints (global, neck,
jaw, left eye, right eye), identity and expression PCA bases and pose-corrective blend shapes.
The user supplies the model (`generic_model.pkl` / `FLAME_NEUTRAL.pkl` from FLAME 2020,
`flame2023.pkl`, `flame2023_Open.pkl`, or a converted `.npz`) and, for tracking, the
`mediapipe_landmark_embedding.npz` from the FLAME download page. We never ship FLAME data.

Kinematics -> FLAME full pose (15 values, smplx order): [rotation (global), neck, jaw,
eyes[0:3] (left eye), eyes[3:6] (right eye)], axis-angle; `translation` is added after skinning.
Identity = the first `n_shape` shape coefficients (betas). Expression = `n_expression`
coefficients of the expression basis. FLAME 2020 and 2023 bases are not interchangeable: the
model's `version` goes into every `Kinematics` and `kinematics_tensors` refuses a mismatch.

Needs the `flame` extra (`pip install 'liftdata[flame]'`, i.e. smplx), imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from liftdata.head.base import ExpressionPrior, kinematics_tensors
from liftdata.head.flame_file import (FlameFileError, check_flame_arrays, read_flame_file,
                                      read_landmark_embedding)
from liftdata.kinematics import Kinematics, axis_angle_to_matrix

__all__ = ["FlameHeadModel", "FlameFileError", "reference_lbs", "flame_pose"]

#: FLAME's PCA components have unit variance; samplers treat |coefficient| <= 3 as plausible.
EXPRESSION_BOUND = 3.0
_FULL_SHAPE, _FULL_EXPRESSION = 300, 100  # the split of FLAME's 400 blend shapes


def _blend_split(n_total: int, n_shape: int) -> int:
    """Where expression starts in `shapedirs`: 300 in FLAME's 400 blend shapes, else `n_shape`."""
    return _FULL_SHAPE if n_total >= _FULL_SHAPE + _FULL_EXPRESSION else min(n_shape, n_total)


def _smplx_lbs() -> Callable:
    try:
        from smplx.lbs import lbs
    except ImportError as e:
        raise ImportError("the FLAME head model skins with smplx, which is not installed: "
                          "pip install 'liftdata[flame]'") from e
    return lbs


def flame_pose(k: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Kinematics tensors -> FLAME full pose [T, 15]: global, neck, jaw, left eye, right eye."""
    return torch.cat([k["rotation"], k["neck"], k["jaw"], k["eyes"]], dim=-1)


def reference_lbs(betas: np.ndarray,  # [T, K] identity then expression coefficients
                  pose: np.ndarray,  # [T, 5, 3] axis-angle per joint
                  v_template: np.ndarray,  # [V, 3]
                  shapedirs: np.ndarray,  # [V, 3, K]
                  posedirs: np.ndarray,  # [V, 3, 36]
                  j_regressor: np.ndarray,  # [5, V]
                  parents: np.ndarray,  # [5], root -1
                  weights: np.ndarray,  # [V, 5]
                  ) -> np.ndarray:  # [T, V, 3]
    """Slow, obvious linear blend skinning in float64 numpy (the twin of `smplx.lbs.lbs`)."""
    out = []
    for b, p in zip(betas, pose):
        v_shaped = v_template + np.einsum("vck,k->vc", shapedirs, b)  # 1. shape blend shapes
        joints = j_regressor @ v_shaped  # 2. joint locations [5, 3]
        rot = axis_angle_to_matrix(p)  # [5, 3, 3]
        feature = np.concatenate([(rot[j] - np.eye(3)).ravel() for j in range(1, len(rot))])
        v_posed = v_shaped + np.einsum("vcp,p->vc", posedirs, feature)  # 3. pose blend shapes
        world = []  # 4. rigid transforms along the kinematic chain
        for j, parent in enumerate(parents):
            local = np.eye(4)
            local[:3, :3] = rot[j]
            local[:3, 3] = joints[j] - (joints[parent] if parent >= 0 else 0)
            world.append(local if parent < 0 else world[parent] @ local)
        skin = []  # remove the rest-pose joint location: A_j = G_j [I, -J_j]
        for j, g in enumerate(world):
            a = g.copy()
            a[:3, 3] = g[:3, 3] - g[:3, :3] @ joints[j]
            skin.append(a)
        blended = np.einsum("vj,jab->vab", weights, np.stack(skin))  # 5. skinning
        out.append(np.einsum("vab,vb->va", blended[:, :3, :3], v_posed) + blended[:, :3, 3])
    return np.stack(out)


class FlameHeadModel:
    """FLAME as a `HeadModel` (see `liftdata.head.base`). Build with `from_file`."""

    name = "flame"
    expression_names = None  # PCA components have no names

    def __init__(self, arrays: dict[str, np.ndarray], version: str, n_shape: int, n_expression: int,
                 landmark_embedding: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 device: torch.device | str = "cpu") -> None:
        """`arrays` as returned by `check_flame_arrays`; most users call `from_file` instead."""
        self.arrays = arrays
        self.version = version
        self.n_shape, self.n_expression = n_shape, n_expression
        self.faces = arrays["f"]
        self.device = torch.device(device)
        split = _blend_split(arrays["shapedirs"].shape[2], n_shape)
        self.blend_index = np.r_[0:n_shape, split:split + n_expression]  # columns of shapedirs used
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        n_vertices = arrays["v_template"].shape[0]
        self._v_template = t(arrays["v_template"])
        self._shapedirs = t(arrays["shapedirs"][:, :, self.blend_index])
        self._posedirs = t(arrays["posedirs"].reshape(n_vertices * 3, -1).T)  # smplx layout [36, V*3]
        self._j_regressor = t(arrays["J_regressor"])
        self._weights = t(arrays["weights"])
        self._parents = torch.as_tensor(arrays["parents"], device=self.device)
        self._lbs = _smplx_lbs()
        if landmark_embedding is None:
            landmark_embedding = (np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0, np.int64))
        face_idx, bary, self.landmark_mediapipe_index = landmark_embedding
        self.has_landmarks = len(face_idx) > 0
        self._lmk_faces = torch.as_tensor(self.faces[face_idx], device=self.device)  # [L, 3]
        self._lmk_bary = t(bary)  # [L, 3]

    @classmethod
    def from_file(cls, model_path: str | Path, landmark_embedding: str | Path | None = None,
                  n_shape: int = 300, n_expression: int = 100, version: str | None = None,
                  device: torch.device | str = "cpu") -> FlameHeadModel:
        """Load a FLAME `.pkl` (2020 with chumpy objects, 2023, 2023-Open) or converted `.npz`.

        Args:
            model_path: the FLAME model file.
            landmark_embedding: `mediapipe_landmark_embedding.npz` (needed for `landmarks`).
            n_shape, n_expression: how many identity / expression components to use. A file with
                400 blend shapes holds 300 identity then 100 expression components; a file with
                fewer holds identity then expression, split after `n_shape`. Both are clamped to
                what the file has.
            version: overrides the detected version ("2020" for chumpy pickles, else "2023").
        """
        raw, detected = read_flame_file(model_path)
        arrays = check_flame_arrays(raw, model_path)
        n_total = arrays["shapedirs"].shape[2]
        split = _blend_split(n_total, n_shape)
        n_shape, n_expression = min(n_shape, split), min(n_expression, n_total - split)
        if n_expression == 0:
            raise FlameFileError(f"{model_path}: `shapedirs` has {n_total} blend shapes and none is left "
                                 f"for expression after {split} identity components; pass a smaller n_shape")
        embedding = (None if landmark_embedding is None
                     else read_landmark_embedding(landmark_embedding, len(arrays["f"])))
        return cls(arrays, version or detected, n_shape, n_expression, embedding, device)

    def save_npz(self, path: str | Path) -> None:
        """Write the (validated, full) model as a `.npz` that `from_file` reads back, version included."""
        a = self.arrays
        kintree = np.stack([a["parents"], np.arange(len(a["parents"]))])
        np.savez(path, v_template=a["v_template"], f=a["f"], shapedirs=a["shapedirs"], posedirs=a["posedirs"],
                 J_regressor=a["J_regressor"], weights=a["weights"], kintree_table=kintree,
                 flame_version=np.str_(self.version))

    # ------------------------------------------------------------------ HeadModel
    def vertices(self, identity: torch.Tensor,  # [n_shape] or [T, n_shape] betas
                 kinematics: Kinematics | Mapping[str, torch.Tensor]) -> torch.Tensor:  # [T, V, 3]
        """Posed world-space vertices (differentiable in identity and kinematics)."""
        k = kinematics_tensors(kinematics, self, device=self.device)
        expression = k["expression"]
        identity = identity.to(expression).reshape(-1, self.n_shape).expand(len(expression), -1)
        betas = torch.cat([identity, expression], dim=-1)
        verts, _ = self._lbs(betas, flame_pose(k), self._v_template, self._shapedirs, self._posedirs,
                             self._j_regressor, self._parents, self._weights)
        return verts + k["translation"][:, None, :]

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:  # [T, V, 3] -> [T, L, 3]
        """Barycentric points of the landmark embedding, ordered as `landmark_mediapipe_index`."""
        if not self.has_landmarks:
            raise ValueError("this FLAME model has no landmark embedding; tracking needs one: pass "
                             "landmark_embedding='mediapipe_landmark_embedding.npz' (from the FLAME "
                             "download page) to FlameHeadModel.from_file")
        corners = vertices[:, self._lmk_faces]  # [T, L, 3 corners, 3]
        return torch.einsum("tlkc,lk->tlc", corners, self._lmk_bary.to(vertices))

    def expression_prior(self) -> ExpressionPrior:
        """Unit-variance PCA: mean 0, covariance I, bounds +-3 standard deviations."""
        e = self.n_expression
        return ExpressionPrior(np.zeros(e, np.float32), np.eye(e, dtype=np.float32),
                               np.full(e, -EXPRESSION_BOUND, np.float32), np.full(e, EXPRESSION_BOUND, np.float32))

    def neutral_identity(self) -> torch.Tensor:  # [n_shape]
        return torch.zeros(self.n_shape, device=self.device)

    def __repr__(self) -> str:
        return (f"FlameHeadModel(version={self.version!r}, V={len(self.arrays['v_template'])}, "
                f"F={len(self.faces)}, n_shape={self.n_shape}, n_expression={self.n_expression}, "
                f"landmarks={len(self.landmark_mediapipe_index)})")
