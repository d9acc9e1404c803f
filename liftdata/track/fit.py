"""Fitting a head model to detected landmarks: all frames at once, batched, in torch.

Unknowns: per frame the head `rotation` and `translation`, `expression` (kept inside the model's
prior bounds by projected Adam) and, for models that use them (FLAME), `jaw` and `eyes`; per clip
one identity (builtin: template offsets [V, 3]; FLAME: shape betas) and one focal length.
`neck` stays zero (the global rotation carries the head pose).

Camera convention: `Camera.frontal(fov, W, H, distance)`: world = head-model space (+y up, +z out
of the face), the OpenCV camera sits on the +z axis at `distance` metres looking at the origin,
principal point at the image centre, square pixels; only the focal length is fitted. A head at
`translation` z has depth `distance - z`.

Energy (mean over frames; landmark residuals in percent of the face size, so the weights do not
depend on the image resolution):

    E = sum_found  w_l |proj(landmark_l) - detected_l|^2 / sum w      (lips, eyes up-weighted)
      + w_expr (e - mu)^T Sigma^-1 (e - mu)                               (`expression_prior()`)
      + w_sparse sum(e)         (non-negative blendshapes only: an L1 sparsity prior. Without it the
        landmark noise spreads into many small activations: on synthetic subjects the fitted
        expressions had an MAE of 0.093, worse than predicting all zeros (0.053); half of it on
        coefficients whose truth is ~0)
      + identity prior (builtin: |L offsets|^2 Laplacian + |offsets|^2; FLAME: |betas|^2)
        (builtin offsets have their rigid part, 3 translations + 3 small rotations, projected out:
        the head pose carries it, so pose and identity do not trade a constant tilt)
      + w_jaw |jaw|^2 + w_eyes |eyes|^2
      + temporal: |d2 rotation|^2 (deg), |d2 translation|^2 (cm), |d1 expression|^2, never across
        a segment start (a shot cut or a change of face: `starts`)

Stages: (1) rigid init: per-frame PnP against the neutral template (OpenCV), neutral expression;
(2) rigid refine of pose and focal; (3) all unknowns jointly over the whole clip (the "global
passes": every Adam step sees every frame); (4) when the frames are given, a photometric term
(`liftdata.track.photometric`) joins the energy and the head pose is refined against the face's
own texture (mediapipe's landmarks carry a smooth pose-dependent error that the image does not).
Frames without a face are excluded from the landmark term; they are initialised by linear
interpolation and then held by the temporal terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from liftdata.head.base import HeadModel, neutral_kinematics
from liftdata.head.builtin import BuiltinHeadModel
from liftdata.head.lbs import axis_angle_to_matrix
from liftdata.kinematics import Camera, Kinematics
from liftdata.track.landmarks import Landmarks

__all__ = ["FitConfig", "FitResult", "fit_landmarks", "BuiltinFastLandmarks", "mesh_laplacian",
           "LIPS", "EYES", "FACE_OVAL"]

# mediapipe face-mesh regions (from mediapipe's face_mesh_connections)
LIPS = [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
        269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415]
EYES = [249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
        7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246]
FACE_OVAL = [10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251,
             284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454]
_FLIP = torch.tensor([1.0, -1.0, -1.0])  # world (model space) -> OpenCV camera axes


@dataclass
class FitConfig:
    """Weights, budgets and the camera prior of `fit_landmarks`.

    The prior weights on jaw, eyes and shape follow VHAP's; the temporal weights were tuned on
    synthetic captures and on a real photo moved in-plane at 2 Hz.
    """

    #: Initial vertical field of view. The focal length is then fitted, but landmarks of a face
    #: at arm's length constrain it only weakly: a wrong value mostly moves the head in depth
    #: (translation z) while images, rotations and expressions stay nearly the same. Pass the
    #: real field of view when it is known.
    fov_y_deg: float = 24.0
    distance: float = 0.55  #: camera distance of `Camera.frontal` in metres
    rigid_iters: int = 10  #: Adam steps on pose + focal (after the PnP init)
    #: Adam steps on everything. Not fully converged: on exact landmarks of synthetic seeds 40-51 the
    #: relative rotation within a clip is 0.91 deg mean at 60 steps, 0.72 at 200; on mediapipe's
    #: landmarks 1.95 -> 1.80 (the detector dominates; see tests/test_track_accuracy.py).
    iters: int = 60
    lr: float = 0.02  #: base learning rate (per-group scales below), decayed linearly to 5%
    lips_weight: float = 3.0
    eyes_weight: float = 3.0
    oval_weight: float = 0.5
    other_weight: float = 1.0  #: all other face-mesh points
    expression_prior: float = 0.01
    #: L1 weight on non-negative blendshape weights (builtin; see the module docstring). Chosen on
    #: synthetic seeds 40-51 (0.01 / 0.03 / 0.1 / 0.3 / 1: expression MAE 0.081 / 0.070 / 0.062 /
    #: 0.059 / 0.058, relative rotation 1.92 -> 2.00 deg); 0 switches it off.
    expression_sparsity: float = 0.3
    identity_laplacian: float = 3e4  #: builtin: |L offsets|^2, offsets in metres
    identity_magnitude: float = 3e2  #: builtin: |offsets|^2 in metres (per vertex, mean)
    shape_prior: float = 0.03  #: FLAME: |betas|^2
    jaw_prior: float = 0.3
    eyes_prior: float = 0.03
    smooth_rotation: float = 0.1  #: |second difference of rotation in degrees|^2
    smooth_translation: float = 0.1  #: |second difference of translation in cm|^2
    smooth_expression: float = 1.0  #: |first difference of expression|^2 (Mahalanobis-free)
    #: Stage 4, photometric refinement (`liftdata.track.photometric`; runs when `fit_landmarks` is
    #: given the frames; 0 switches it off). Chosen on synthetic seeds 40-51 (weights 100 / 200 /
    #: 300, 40-100 steps: relative rotation within a clip 1.3-1.6 deg, against 1.95 without).
    #: Steps: the stage converges slowly (pose, shape and albedo move together). On seeds 40-51,
    #: 80 / 160 / 240 / 320 / 480 / 640 / 960 steps: 1.27 / 1.13 / 1.00 / 0.90 / 0.78 / 0.72 / 0.64
    #: deg mean, worst 1.46 / 1.41 / 1.29 / 1.06 from 320 on (8 / 9 / 10 / 12 / 12 / 12 / 12 of 12
    #: within 1.5 deg). 960 is the most that keeps the stage near 1 s per frame on one core (~0.9 s;
    #: 320 was ~0.3 s, 80 ~0.08 s), chosen on 40-51 alone. Held out, 320 -> 960 steps, mean / worst
    #: (within 1.5 deg): 60-71 0.93 / 1.67 (10) -> 0.78 / 1.43 (12); 80-91 0.73 / 1.13 (12) -> 0.77 /
    #: 1.56 (11); 120-131 0.83 / 1.47 (12) -> 0.72 / 1.21 (12); 140-151 0.64 / 1.16 (12) -> 0.54 /
    #: 0.92 (12); 160-171 1.00 / 1.67 (10) -> 0.90 / 1.71 (11); fresh 180-191, measured once after
    #: the choice: 0.73 / 2.06 (11) -> 0.61 / 1.10 (12). 56 -> 58 of the 60 and 11 -> 12 of the 12.
    #: More steps do not move every seed towards the truth: the large errors shrink, and some small
    #: ones grow (0.4-0.5 -> 0.6-0.7 deg; the two held-out misses: seed 88 0.94 -> 1.56, 161 1.49 ->
    #: 1.71): the stage's own optimum is not the truth. (80 -> 320, earlier: 1.05 -> 0.93, 1.01 -> 0.73, 1.09 -> 0.83, 0.92 -> 0.64, 1.21 ->
    #: 1.00 deg.) `benchmarks/results/track_accuracy.json`. Not adopted: a step size 2x / 4x at 80 steps
    #: (1.22 / 1.16 on 40-51); half the samples at 320 steps (0.98); 120 steps with a 10x identity
    #: step (1.09 on 40-51, no gain held out); a term pulling the model's depth relief towards
    #: mediapipe's per-landmark z (r = 0.9-0.98 with the true depth; up to a clip-constant scale):
    #: 1.27 -> 1.17 on 40-51, held out 1.05 -> 1.03 and 1.09 -> 1.02, as many seeds within 1.5 deg.
    #: What was left at 320 steps on the seeds that missed (69, 70, 166: 1.6-1.7 deg) is a gain, not noise: the fit
    #: turns the head 18-28% too far (slope of fitted vs true yaw/pitch; 0.2-0.4 deg rms around it)
    #: on a face 15-17% flatter than the truth (depth extent / width), already after the landmark
    #: stage: less depth relief needs more rotation for the same 2D motion. The landmarks do not
    #: observe the relief: fitted to exact landmarks it stays at the template's (0.71-0.75 for true
    #: 0.67-0.80, seeds 60-62, 69, 70, 166), and mediapipe's landmarks pull it to 0.66-0.68 on every
    #: one of those seeds (a detector bias towards a flatter face). Tried on 40-51 at 320
    #: steps (0.90 deg): the identity Laplacian / magnitude prior x1/3 and x3 (0.88-0.92), a prior on
    #: the identity's depth offsets alone (3e3 to 3e6: 0.88-0.96), the oval weight 0.1 / 0 (0.94 / 0.96).
    photometric_iters: int = 960
    photometric_weight: float = 200.0  #: weight of E_photo (Charbonnier of colours in [0, 1])
    photometric_size: int = 160  #: working resolution of the face crop, pixels
    photometric_blur: float = 1.0  #: Gaussian sigma at that resolution, pixels
    photometric_samples: int = 8000  #: at most this many surface samples (whole triangles)
    #: each frame's RGB gain is estimated and divided out (a phone's auto-exposure and white balance
    #: drift during a video). On tuning seeds 40-43 with a +-20% drift (`synthetic.drift_exposure`):
    #: 1.48 deg relative rotation with it, 4.19 without (landmark fit alone 2.21); no drift 1.48 / 1.50.
    #: (Also optimising the gain, from this estimate or from 1: 1.49 / 1.53 with the drift.)
    photometric_gain: bool = True
    #: what stage 4 moves (besides the albedo and light): any of "rotation", "translation",
    #: "expression", "identity", "jaw", "eyes", "log_focal". On seeds 40-51 (weight 200): the pose
    #: alone 1.45 deg mean relative rotation, with expression and identity 1.30 (expression MAE
    #: 0.059 both; the landmark-only fit 1.95 / 0.059).
    photometric_unknowns: tuple[str, ...] = ("rotation", "translation", "expression", "identity")


@dataclass
class FitResult:
    kinematics: Kinematics
    camera: Camera
    identity: np.ndarray
    residual: np.ndarray  #: [T] mean landmark distance in pixels (NaN where no face was found)
    #: [T] mean colour error (8-bit) of the photometric stage's visible samples; None without frames
    photometric_residual: np.ndarray | None = None


def mesh_laplacian(faces: np.ndarray, n_vertices: int) -> torch.Tensor:  # [V, V]
    """Uniform graph Laplacian L = I - D^-1 A of a triangle mesh (dense; small meshes)."""
    a = np.zeros((n_vertices, n_vertices), np.float32)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        a[faces[:, i], faces[:, j]] = a[faces[:, j], faces[:, i]] = 1
    deg = np.maximum(a.sum(1, keepdims=True), 1)
    return torch.as_tensor(np.eye(n_vertices, dtype=np.float32) - a / deg)


class BuiltinFastLandmarks:
    """Fast twin of `BuiltinHeadModel.vertices` (neck = 0): landmarks in a permuted vertex order.

    The jawOpen rotation touches only vertices with a jaw weight > 0; storing them last lets the
    forward pass rotate a contiguous slice. `order[i]` is the model vertex at position i.
    """

    def __init__(self, model: BuiltinHeadModel):
        w = model.jaw_weights.numpy()
        self.order = np.r_[np.flatnonzero(w <= 0), np.flatnonzero(w > 0)]
        self.n_rigid = int((w <= 0).sum())
        self.template = model.template[self.order]
        self.basis = model.basis[:, self.order].reshape(model.n_expression, -1)  # [E, V*3]
        self.jaw_w = model.jaw_weights[self.order][self.n_rigid:, None]  # [J, 1]
        self.pivot = model.jaw_pivot
        self.max_angle = model.jaw_max_angle
        self.jaw_index = model.expression_names.index("jawOpen")

    def __call__(self, identity: torch.Tensor,  # [V, 3] template offsets, model order
                 expression: torch.Tensor,  # [T, E]
                 rotation: torch.Tensor,  # [T, 3]
                 translation: torch.Tensor,  # [T, 3]
                 ) -> torch.Tensor:  # [T, V, 3] world points in `order`
        t = len(expression)
        v = (self.template + identity[self.order]).reshape(1, -1) + expression @ self.basis
        v = v.reshape(t, -1, 3)
        rigid, jaw = v[:, :self.n_rigid], v[:, self.n_rigid:]
        angle = (expression[:, self.jaw_index] * self.max_angle)[:, None]  # rotation about +x
        c, s = torch.cos(angle), torch.sin(angle)
        y, z = jaw[..., 1] - self.pivot[1], jaw[..., 2] - self.pivot[2]
        rot = torch.stack([jaw[..., 0], c * y - s * z + self.pivot[1], s * y + c * z + self.pivot[2]], -1)
        v = torch.cat([rigid, jaw + self.jaw_w * (rot - jaw)], 1)
        return v @ axis_angle_to_matrix(rotation).transpose(-1, -2) + translation[:, None]


def rigid_free_basis(points: np.ndarray) -> torch.Tensor:  # [V, 3] -> [V*3, 6]
    """Orthonormal basis of the infinitesimal rigid motions (3 translations, 3 rotations) of `points`.

    Template offsets along these directions only move or turn the whole face, which the head pose
    already does; removing them from the identity fixes that gauge freedom.
    """
    c = points - points.mean(0)
    cols = [np.tile(np.eye(3)[i], (len(points), 1)) for i in range(3)]
    cols += [np.cross(np.eye(3)[i], c) for i in range(3)]
    q, _ = np.linalg.qr(np.stack([x.ravel() for x in cols], 1))
    return torch.as_tensor(q, dtype=torch.float32)


def _project(points: torch.Tensor, focal: torch.Tensor, distance: float, width: int, height: int) -> torch.Tensor:
    """[T, L, 3] world points -> [T, L, 2] pixels through `Camera.frontal` with focal `focal`."""
    cam = points * _FLIP.to(points)
    z = cam[..., 2:] + distance
    return cam[..., :2] / z * focal + torch.tensor([(width - 1) / 2, (height - 1) / 2]).to(points)


def _interpolate_missing(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill rows where `found` is False by linear interpolation (constant at the ends)."""
    t = np.arange(len(x))
    return np.stack([np.interp(t, t[found], x[found, j]) for j in range(x.shape[1])], 1)


def _rigid_init(template_lmk: np.ndarray, points: np.ndarray, found: np.ndarray, focal: float,
                distance: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PnP of the neutral template: rotation, translation [T, 3] in our convention."""
    k = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])
    rot, trans = np.zeros((len(points), 3)), np.zeros((len(points), 3))
    obj = template_lmk.astype(np.float64)
    for t in np.flatnonzero(found):
        ok, rvec, tvec = cv2.solvePnP(obj, points[t].astype(np.float64), k, None, flags=cv2.SOLVEPNP_EPNP)
        ok, rvec, tvec = cv2.solvePnP(obj, points[t].astype(np.float64), k, None, rvec, tvec, True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        r_cv = cv2.Rodrigues(rvec)[0]  # x_cam = R_cv x + t_cv = F (R x + t) + [0, 0, d]
        rot[t] = cv2.Rodrigues(flip @ r_cv)[0].ravel()
        trans[t] = flip @ (tvec.ravel() - [0, 0, distance])
    return _interpolate_missing(rot, found), _interpolate_missing(trans, found)


class _Energy:
    """The fitting energy of one clip (see the module docstring); `__call__(params) -> terms`."""

    def __init__(self, model: HeadModel, lmk: Landmarks, cfg: FitConfig, starts: np.ndarray | None = None,
                 fixed_identity: bool = False):
        self.model, self.cfg = model, cfg
        new = np.zeros(len(lmk.found), bool) if starts is None else np.asarray(starts, bool)
        self.pairs = torch.as_tensor(~new[1:], dtype=torch.float32)  # (t-1, t) inside one segment
        self.triples = torch.as_tensor(~(new[1:-1] | new[2:]), dtype=torch.float32)  # (t-1, t, t+1)
        self.width, self.height = lmk.width, lmk.height
        self.fast = BuiltinFastLandmarks(model) if isinstance(model, BuiltinHeadModel) else None
        mp_index = np.asarray(model.landmark_mediapipe_index)
        if self.fast is not None:
            mp_index = mp_index[self.fast.order]  # builtin landmarks are its vertices, permuted
            self._unorder = torch.as_tensor(np.argsort(self.fast.order))  # fast order -> model order
        weights = np.full(len(mp_index), cfg.other_weight, np.float32)
        weights[np.isin(mp_index, LIPS)] = cfg.lips_weight
        weights[np.isin(mp_index, EYES)] = cfg.eyes_weight
        weights[np.isin(mp_index, FACE_OVAL)] = cfg.oval_weight
        self.weights = torch.as_tensor(weights / weights.sum())
        self.found = torch.as_tensor(lmk.found)
        self.target = torch.as_tensor(np.nan_to_num(lmk.points[:, mp_index]))  # [T, L, 2]
        self.mp_index = mp_index
        pts = lmk.points[lmk.found][:, mp_index]
        self.face_px = float(np.median(np.linalg.norm(np.ptp(pts, axis=1), axis=-1)))  # bbox diagonal
        prior = model.expression_prior()
        self.prior_mean = torch.as_tensor(prior.mean, dtype=torch.float32)
        self.prior_prec = torch.as_tensor(np.linalg.inv(prior.covariance), dtype=torch.float32)
        self.lower = torch.as_tensor(prior.lower, dtype=torch.float32)
        self.upper = torch.as_tensor(prior.upper, dtype=torch.float32)
        self.sparse = bool((self.lower >= 0).all()) and cfg.expression_sparsity > 0
        self.uses_jaw_eyes = not isinstance(model, BuiltinHeadModel)
        self.offsets = model.neutral_identity().ndim == 2  # builtin-style template offsets
        # unknowns no stage moves; fit_landmarks(identity=...): the identity, held as given
        self.frozen = {"identity"} if fixed_identity else set()
        if self.offsets:
            self.laplacian = mesh_laplacian(np.asarray(model.faces), model.neutral_identity().shape[0])
            with torch.no_grad():
                rest = model.vertices(model.neutral_identity(), neutral_kinematics(model, 1))[0]
            self.rigid = rigid_free_basis(rest.numpy().astype(np.float64))

    def identity(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """The identity without its rigid part (template offsets) or as is (betas; or a known
        identity held fixed, in `frozen`: no gauge freedom to remove)."""
        x = p["identity"]
        if not self.offsets or "identity" in self.frozen:
            return x
        flat = x.reshape(-1)
        return (flat - self.rigid @ (self.rigid.T @ flat)).reshape(x.shape)

    def landmarks_world(self, p: dict[str, torch.Tensor]) -> torch.Tensor:  # [T, L, 3]
        if self.fast is not None:
            return self.fast(self.identity(p), p["expression"], p["rotation"], p["translation"])
        return self.model.landmarks(self.model.vertices(self.identity(p), self.kinematics_tensors(p)))

    def vertices(self, p: dict[str, torch.Tensor]) -> torch.Tensor:  # [T, V, 3] world, model order
        if self.fast is not None:
            return self.fast(self.identity(p), p["expression"], p["rotation"], p["translation"])[:, self._unorder]
        return self.model.vertices(self.identity(p), self.kinematics_tensors(p))

    def kinematics_tensors(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t = len(p["rotation"])
        zeros = lambda w: torch.zeros(t, w)  # noqa: E731
        return {"expression": p["expression"], "rotation": p["rotation"], "translation": p["translation"],
                "neck": zeros(3), "jaw": p.get("jaw", zeros(3)), "eyes": p.get("eyes", zeros(6))}

    def project(self, p: dict[str, torch.Tensor]) -> torch.Tensor:  # [T, L, 2] pixels
        return _project(self.landmarks_world(p), p["log_focal"].exp(), self.cfg.distance, self.width, self.height)

    def __call__(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, found = self.cfg, self.found
        r = (self.project(p) - self.target) * (100.0 / self.face_px)  # percent of the face size
        lmk = ((r * r).sum(-1) * self.weights).sum(-1)
        terms = {"landmarks": (lmk * found).sum() / found.sum()}
        d = p["expression"] - self.prior_mean
        terms["expression"] = cfg.expression_prior * ((d @ self.prior_prec) * d).sum(-1).mean()
        if self.sparse:  # blendshape weights in [0, 1]: most are ~0 in any frame (L1 = their sum)
            terms["expression"] = terms["expression"] + cfg.expression_sparsity * p["expression"].sum(-1).mean()
        ident = self.identity(p)
        if self.offsets:
            terms["identity"] = (cfg.identity_laplacian * (self.laplacian @ ident).square().sum(-1).mean()
                                 + cfg.identity_magnitude * ident.square().sum(-1).mean())
        else:
            terms["identity"] = cfg.shape_prior * ident.square().sum()
        if self.uses_jaw_eyes:
            terms["jaw_eyes"] = (cfg.jaw_prior * p["jaw"].square().sum(-1).mean()
                                 + cfg.eyes_prior * p["eyes"].square().sum(-1).mean())
        if len(found) > 2:
            m1, m2 = self.pairs, self.triples  # differences that do not cross a segment start
            d2 = lambda x: ((x[2:] - 2 * x[1:-1] + x[:-2]).square().sum(-1) * m2).sum() / len(m2)  # noqa: E731
            d1 = ((p["expression"][1:] - p["expression"][:-1]).square().sum(-1) * m1).sum() / len(m1)
            terms["temporal"] = (cfg.smooth_rotation * d2(torch.rad2deg(p["rotation"]))
                                 + cfg.smooth_translation * d2(100 * p["translation"])
                                 + cfg.smooth_expression * d1)
        return terms


def _adam(energy: _Energy, params: dict[str, torch.Tensor], names: list[str], iters: int, lr: float,
          desc: str, progress: bool, extra=None) -> None:
    """Projected Adam on `params[names]` (in place), learning rate decayed linearly to 5%.

    Written out (a few lines) rather than `torch.optim.Adam`, whose first use imports
    torch._dynamo (~2 s, as long as the whole fit).
    """
    from tqdm.auto import tqdm

    scale = {"rotation": 0.5, "translation": 0.05, "expression": 1.0, "jaw": 0.5, "eyes": 0.5,
             "identity": 0.05 if energy.offsets else 1.0, "log_focal": 0.5, "albedo": 1.0, "light": 1.0}
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = {n: torch.zeros_like(params[n]) for n in names}
    v = {n: torch.zeros_like(params[n]) for n in names}
    for n in names:
        params[n].requires_grad_(True)
    for i in tqdm(range(iters), desc=desc, disable=not progress, leave=False):
        loss = sum(energy(params).values()) + (extra(params) if extra is not None else 0.0)
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        step = lr * (1.0 - 0.95 * i / max(iters, 1)) * math.sqrt(1 - b2 ** (i + 1)) / (1 - b1 ** (i + 1))
        with torch.no_grad():
            for n, g in zip(names, grads):
                m[n].mul_(b1).add_(g, alpha=1 - b1)
                v[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                params[n].addcdiv_(m[n], v[n].sqrt().add_(eps), value=-step * scale[n])
            params["expression"].clamp_(energy.lower, energy.upper)
    for n in names:
        params[n].requires_grad_(False)


def fit_landmarks(lmk: Landmarks, model: HeadModel, cfg: FitConfig | None = None,
                  progress: bool = True, starts: np.ndarray | None = None, frames=None,
                  identity: np.ndarray | torch.Tensor | None = None) -> FitResult:
    """Fit `model` to the landmarks of a clip (see the module docstring).

    `frames` (len + getitem -> RGB uint8 [H, W, 3], one per landmark frame): the images the
    landmarks were detected on; given, the head pose is refined photometrically (stage 4,
    `FitConfig.photometric_iters`).

    `starts` [T] bool marks frames where a new segment begins (a shot cut or another face,
    `Segments.starts`): no temporal term links a frame to the frames before its segment's start.

    `identity`: a known identity (e.g. an earlier fit of the same person), held fixed as given
    (its rigid part is not removed); default: fitted. On synthetic subjects the true identity
    lowers the relative rotation within a clip from 0.90 / 0.93 / 0.73 / 0.83 / 0.64 / 1.00 to 0.56 /
    0.69 / 0.64 / 0.69 / 0.54 / 0.62 deg mean (seeds 40-51 / 60-71 / 80-91 / 120-131 / 140-151 /
    160-171;
    `benchmarks/track_accuracy.py --oracle-identity`): part of the rotation error left is the
    fitted head's shape, which the pose compensates.
    """
    cfg = cfg or FitConfig()
    if starts is not None and np.shape(starts) != lmk.found.shape:
        raise ValueError(f"starts: expected shape {lmk.found.shape}, got {np.shape(starts)}")
    if identity is not None and tuple(np.shape(identity)) != tuple(model.neutral_identity().shape):
        raise ValueError(f"identity: expected shape {list(model.neutral_identity().shape)} ({model.name}), "
                         f"got {list(np.shape(identity))}")
    energy = _Energy(model, lmk, cfg, starts, fixed_identity=identity is not None)
    t = len(lmk.found)
    neutral = neutral_kinematics(model, 1)
    f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32).clone()  # noqa: E731
    start = model.neutral_identity().float().clone() if identity is None else f32(identity)
    with torch.no_grad():
        template = model.landmarks(model.vertices(start, neutral))[0].numpy()
    focal = 0.5 * lmk.height / math.tan(math.radians(cfg.fov_y_deg) / 2)
    rot, trans = _rigid_init(template, lmk.points[:, model.landmark_mediapipe_index], lmk.found, focal,
                             cfg.distance, lmk.width, lmk.height)
    params = {"rotation": f32(rot), "translation": f32(trans),
              "expression": f32(np.repeat(neutral.expression, t, 0)), "identity": start,
              "log_focal": f32(math.log(focal))}
    if energy.uses_jaw_eyes:
        params["jaw"], params["eyes"] = torch.zeros(t, 3), torch.zeros(t, 6)
    _adam(energy, params, ["rotation", "translation", "log_focal"], cfg.rigid_iters, cfg.lr, "fit (rigid)", progress)
    moving = [n for n in params if n not in energy.frozen | {"log_focal"}] + ["log_focal"]
    _adam(energy, params, moving, cfg.iters, cfg.lr, "fit", progress)
    photo = None
    if frames is not None and cfg.photometric_iters > 0 and lmk.found.any():
        photo = _photometric_stage(energy, params, frames, lmk, cfg, progress)
    return _result(energy, params, model, lmk, photo)


def _photometric_stage(energy: _Energy, params: dict[str, torch.Tensor], frames, lmk: Landmarks, cfg: FitConfig,
                       progress: bool):
    """Stage 4: refine `cfg.photometric_unknowns` with E_photo added (see `liftdata.track.photometric`)."""
    from liftdata.track.photometric import PhotometricTerm

    if len(frames) and frames[0].shape[:2] != (lmk.height, lmk.width):
        raise ValueError(f"frames: {frames[0].shape[1]}x{frames[0].shape[0]} pixels, but the landmarks were "
                         f"detected on {lmk.width}x{lmk.height} frames")
    focal = params["log_focal"].exp()
    with torch.no_grad():
        term = PhotometricTerm(frames, energy.vertices(params), np.asarray(energy.model.faces), float(focal),
                               cfg.distance, lmk.width, lmk.height, lmk.found, size=cfg.photometric_size,
                               blur=cfg.photometric_blur, max_samples=cfg.photometric_samples,
                               gain=cfg.photometric_gain)
    params.update(term.initial())

    def e_photo(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return cfg.photometric_weight * term(energy.vertices(p), focal, p["albedo"], p["light"])

    unknowns = [n for n in cfg.photometric_unknowns if n in params and n not in energy.frozen]
    _adam(energy, params, unknowns + ["albedo", "light"], cfg.photometric_iters, cfg.lr,
          "fit (photometric)", progress, extra=e_photo)
    residual = term.residual(energy.vertices(params), focal, params.pop("albedo"), params.pop("light"))
    residual[~lmk.found] = np.nan
    return residual


def _result(energy: _Energy, p: dict[str, torch.Tensor], model: HeadModel, lmk: Landmarks,
            photometric_residual: np.ndarray | None = None) -> FitResult:
    with torch.no_grad():
        uv = energy.project(p)
        residual = (uv - energy.target).norm(dim=-1).mean(-1).numpy()
    residual[~lmk.found] = np.nan
    k = energy.kinematics_tensors(p)
    kin = Kinematics(**{n: v.detach().numpy() for n, v in k.items()}, head_model=model.name,
                     head_model_version=model.version)
    fov = math.degrees(2 * math.atan(0.5 * lmk.height / float(p["log_focal"].exp())))
    camera = Camera.frontal(fov, lmk.width, lmk.height, energy.cfg.distance)
    return FitResult(kin, camera, energy.identity(p).detach().numpy(), residual.astype(np.float32),
                     photometric_residual)
