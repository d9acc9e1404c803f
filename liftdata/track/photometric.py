"""Photometric refinement of a landmark fit: the head pose that makes the face's own texture agree.

mediapipe's landmarks carry a smooth, pose-dependent error (on synthetic subjects the landmark
fit's relative rotation within a clip is ~1.9 deg; the same fit on exact landmarks ~0.7 deg). The
image itself has no such bias: a point of the skin keeps its colour as the head moves. This stage
adds that constraint to the landmark energy (`fit_landmarks`' stage 4, on when frames are given):

    E_photo = mean over visible (frame t, surface sample s) of
              rho( I_t(proj(x_t(s))) - g_t * albedo(s) * (l0 + l . n_t(s)) )

* surface samples `x_t(s)`: fixed barycentric points of the posed mesh's triangles (at most
  `FitConfig.photometric_samples`); `n_t(s)` their face normals in camera axes;
* `I_t`: frame t cut to a square box around the fitted face, resampled to
  `FitConfig.photometric_size` pixels (area-averaged) and blurred (`photometric_blur`), sampled
  bilinearly, so the energy is differentiable in the pose;
* `albedo [S, 3]` (initialised with the median observed colour) and one light `l0, l [4]` in camera
  axes (Lambertian, no clamp) per clip are unknowns too; `rho` is the Charbonnier penalty
  sqrt(r^2 + 0.02^2), robust to occluders, speculars and compression;
* `g_t [T, 3]`, each frame's RGB gain (`FitConfig.photometric_gain`): real cameras change
  exposure and white balance during a clip. Estimated once at the landmark fit's pose (the median
  over visible samples of the frame's colour / the median colour over frames, normalised to a
  median of 1) and held fixed. Without it a +-20% drift made the stage worse than no stage at all
  (relative rotation 4.2 deg against 2.2 deg for the landmark fit alone, tuning seeds 40-43; with
  it 1.5 deg, as without the drift);
* visibility: a sample counts in frame t when the mesh rasterized at the landmark fit's pose shows
  it (depth test, 4 mm tolerance), its face is turned to the camera (cos > 0.3), it projects
  inside the frame (a face at the edge of the picture) and a face was detected in the frame.

By default the pose, expression and identity move (with the albedo and light;
`FitConfig.photometric_unknowns`); the focal length stays that of the landmark fit, whose energy
terms (landmarks, priors, temporal) stay in the sum and anchor the solution.
Settings were chosen on synthetic seeds 40-51 (`benchmarks/track_accuracy.py` measures held-out
seeds). Memory: `photometric_size`^2 x 12 bytes per frame (~300 KB at 160 px).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from liftdata.kinematics import Camera
from liftdata.track.fit import _FLIP, _project

__all__ = ["PhotometricTerm"]

#: barycentric sample pattern of one triangle: the centroid and two rings of three points
_PATTERN = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6],
                         [0.1, 0.45, 0.45], [0.45, 0.1, 0.45], [0.45, 0.45, 0.1]])
_EPS = 0.02  #: Charbonnier scale (colours in [0, 1])
_DEPTH_TOL = 0.004  #: metres
_MIN_FACING = 0.3  #: cos of the angle between a sample's normal and the ray to the camera


def _crop(frame: np.ndarray, centre: np.ndarray, half: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square of side 2 * half around `centre`, area-resampled to `size`^2 (edges replicated).

    Returns the crop (float32 [size, size, 3] in [0, 1]) and the affine [2, 3] that maps a frame
    pixel (centres at integer coordinates) to crop pixels.
    """
    n = max(int(round(2 * half)), 2)
    x0, y0 = int(round(centre[0] - n / 2)), int(round(centre[1] - n / 2))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + n - w, y0 + n - h)
    src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else frame
    box = src[y0 + pad:y0 + pad + n, x0 + pad:x0 + pad + n]
    out = cv2.resize(box, (size, size), interpolation=cv2.INTER_AREA if n > size else cv2.INTER_LINEAR)
    s = size / n  # cv2.resize: dst = (src + 0.5) * s - 0.5
    affine = np.array([[s, 0, 0.5 * s - 0.5 - s * x0], [0, s, 0.5 * s - 0.5 - s * y0]], np.float32)
    return out.astype(np.float32) / 255.0, affine


class PhotometricTerm:
    """E_photo of one clip (see the module docstring), set up at the landmark fit's pose.

    Args:
        frames: the clip's frames (len + getitem -> RGB uint8 [H, W, 3]).
        vertices: [T, V, 3] world vertices of the landmark fit (model order).
        faces: [F, 3] the head model's triangles.
        focal, distance, width, height: the fitted `Camera.frontal` camera.
        found: [T] frames with a detected face (the others carry no photometric term).
        gain: estimate each frame's RGB gain (see the module docstring); False: one for the clip.
    """

    def __init__(self, frames, vertices: torch.Tensor, faces: np.ndarray, focal: float, distance: float,
                 width: int, height: int, found: np.ndarray, size: int = 160, blur: float = 1.0,
                 max_samples: int = 8000, gain: bool = True, seed: int = 0):
        from liftdata.render.raster import rasterize

        t_len = len(vertices)
        if len(frames) != t_len:
            raise ValueError(f"frames: expected {t_len} frames (one per landmark frame), got {len(frames)}")
        faces = all_faces = np.asarray(faces, np.int64)
        k = len(_PATTERN)
        if len(faces) * k > max_samples:  # a fixed random subset of whole triangles
            keep = np.sort(np.random.default_rng(seed).choice(len(faces), max(max_samples // k, 1), replace=False))
            faces = faces[keep]
        self.faces = torch.as_tensor(faces)
        self.distance, self.width, self.height, self.size = distance, width, height, size
        with torch.no_grad():
            uv = self._project(vertices, focal)
        lo, hi = uv.min(1).values.numpy(), uv.max(1).values.numpy()
        centre, half = (lo + hi) / 2, 0.6 * (hi - lo).max(1)  # the face box, 20% margin
        crops = np.empty((t_len, 3, size, size), np.float32)
        affine = np.empty((t_len, 2, 3), np.float32)
        for t in range(t_len):
            img, affine[t] = _crop(np.asarray(frames[t]), centre[t], half[t], size)
            if blur > 0:
                img = cv2.GaussianBlur(img, (0, 0), blur)
            crops[t] = img.transpose(2, 0, 1)
        self.crops, self.affine = torch.as_tensor(crops), torch.as_tensor(affine)
        # visibility at the landmark fit's pose, rasterized at the crop resolution (per-frame cameras)
        w2c = Camera.frontal(30.0, width, height, distance).world_to_camera
        K = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
        cams = [Camera(np.r_[a, [[0, 0, 1]]] @ K, w2c, size, size) for a in affine.astype(np.float64)]
        with torch.no_grad():
            frag = rasterize(vertices, torch.as_tensor(all_faces), cams)  # every face occludes
            pts, normals = self.samples(vertices)
            cuv = self._crop_pixels(pts, focal)
            ij = cuv.round().long()
            uv = self._project(pts, focal)  # outside the frame the crop holds replicated edge pixels
            in_frame = (uv >= -0.5).all(-1) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] <= height - 0.5)
            inside = ((ij >= 0) & (ij < size)).all(-1) & in_frame
            ij.clamp_(0, size - 1)
            depth = frag.depth[torch.arange(t_len)[:, None], ij[..., 1], ij[..., 0]]
            cam = pts * _FLIP + torch.tensor([0.0, 0.0, distance])
            facing = (normals * -F.normalize(cam, dim=-1)).sum(-1)
            self.visible = (inside & (depth > 0) & (cam[..., 2] <= depth + _DEPTH_TOL) & (facing > _MIN_FACING)
                            & torch.as_tensor(np.asarray(found, bool))[:, None])
            observed = self._sample(cuv)
            observed[~self.visible] = float("nan")
            self.albedo0 = torch.nan_to_num(torch.nanmedian(observed, 0).values, 0.5)  # [S, 3]
            self.gain = None
            if gain:  # each frame's exposure / white balance: the median ratio of its colours to the albedo
                clipped = (observed.amax(-1, keepdim=True) > 0.98) | (observed.amin(-1, keepdim=True) < 0.02)
                usable = torch.where(clipped, float("nan"), observed)  # saturated or black samples left out
                self.gain = torch.ones(t_len, 3)
                for _ in range(3):  # alternate: albedo given the gains, gains given the albedo
                    albedo = torch.nanmedian(usable / self.gain[:, None], 0).values.clamp(min=0.02)
                    ratio = torch.nanmedian(usable / albedo, 1).values  # [T, 3]
                    self.gain = torch.nan_to_num(ratio / torch.nanmedian(ratio, 0).values, 1.0)
                self.albedo0 = torch.nan_to_num(torch.nanmedian(observed / self.gain[:, None], 0).values, 0.5)
        self.weight = self.visible.float()
        self.n_visible = float(self.weight.sum())

    def _project(self, points: torch.Tensor, focal: torch.Tensor | float) -> torch.Tensor:  # -> frame pixels
        return _project(points, focal, self.distance, self.width, self.height)

    def _crop_pixels(self, points: torch.Tensor, focal: torch.Tensor | float) -> torch.Tensor:  # [T, S, 2]
        uv = self._project(points, focal)
        return uv @ self.affine[:, :, :2].transpose(1, 2) + self.affine[:, None, :, 2]

    def _sample(self, cuv: torch.Tensor) -> torch.Tensor:  # [T, S, 2] crop pixels -> [T, S, 3] colours
        grid = (cuv + 0.5) / self.size * 2 - 1
        out = F.grid_sample(self.crops, grid[:, None], mode="bilinear", padding_mode="border", align_corners=False)
        return out[:, :, 0].transpose(1, 2)

    def samples(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[T, V, 3] -> surface sample points [T, S, 3] (world) and their unit normals (camera axes)."""
        tri = vertices[:, self.faces]  # [T, F, 3, 3]
        pts = torch.einsum("kj,tfjc->tfkc", _PATTERN.to(tri), tri).reshape(len(vertices), -1, 3)
        n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
        n = F.normalize(n * _FLIP.to(n), dim=-1)
        return pts, n.repeat_interleave(len(_PATTERN), 1)

    def initial(self) -> dict[str, torch.Tensor]:
        """The appearance unknowns: per-sample albedo and the light (l0, l)."""
        return {"albedo": self.albedo0.clone(), "light": torch.tensor([1.0, 0.0, 0.0, 0.0])}

    def _error(self, vertices: torch.Tensor, focal: torch.Tensor | float, albedo: torch.Tensor,
               light: torch.Tensor) -> torch.Tensor:  # [T, S, 3]
        pts, normals = self.samples(vertices)
        shade = light[0] + (normals * light[1:]).sum(-1, keepdim=True)
        model = albedo * shade if self.gain is None else albedo * shade * self.gain[:, None]
        return self._sample(self._crop_pixels(pts, focal)) - model

    def __call__(self, vertices: torch.Tensor, focal: torch.Tensor, albedo: torch.Tensor,
                 light: torch.Tensor) -> torch.Tensor:
        r = self._error(vertices, focal, albedo, light)
        rho = (r.square() + _EPS ** 2).sqrt().sum(-1)
        return (rho * self.weight).sum() / max(self.n_visible, 1.0)

    def residual(self, vertices: torch.Tensor, focal: torch.Tensor, albedo: torch.Tensor,
                 light: torch.Tensor) -> np.ndarray:
        """[T] mean absolute colour error (8-bit units) over each frame's visible samples (NaN: none)."""
        with torch.no_grad():
            err = self._error(vertices, focal, albedo, light).abs().mean(-1) * 255
            n = self.weight.sum(1)
            out = (err * self.weight).sum(1) / n.clamp(min=1)
        return torch.where(n > 0, out, torch.tensor(math.nan)).numpy().astype(np.float32)
