"""Array helpers of the warp lifter: closing the mesh holes, rigid fits, blend weights, flow extension.

Conventions: camera-space points are OpenCV (x right, y down, z forward, metres); pixel
coordinates have their centres at integers; a backward map gives, for every output pixel, the
(x, y) pixel of the source image to sample; a displacement is `map - pixel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from liftdata.kinematics import Camera
from liftdata.head.base import boundary_loops
from liftdata.samplers.base import smoothstep

__all__ = ["ClosedMesh", "close_holes", "to_camera", "project", "vertex_normals", "frontality", "extend_colours",
           "fit_shading", "shading_ratio", "rigid_fit", "rotation_angle", "hole_areas", "choose_hole_references",
           "extend_flow", "extend_flow_slow", "map_jacobian_det"]


# ---------------------------------------------------------------------- mesh holes
@dataclass(frozen=True)
class ClosedMesh:
    """The head mesh with each hole (mouth, eyes) closed by a fan around its centroid, optionally
    extended by a whole-head proxy (`liftdata.head.builtin.HeadProxy`) beyond its outer rim.

    Vertex layout of a closed mesh: the V open-mesh vertices, one centre per hole, then the P
    proxy vertices (posed rigidly with the face by `pose_head_proxy`).
    """

    faces: np.ndarray  # [F + sum(len(loop)) + F_p, 3] mesh triangles, the fans, the proxy's triangles
    loops: tuple[np.ndarray, ...]  # vertex loops of the holes, longest (the mouth on the builtin mesh) first
    hole_of_face: np.ndarray  # [F'] int: -1 for mesh faces, the hole index for fans, -2 for the proxy
    n_open: int  # V, vertices of the open mesh
    proxy: Any = None  # HeadProxy or None

    def vertices(self, open_vertices: np.ndarray) -> np.ndarray:  # [N, V, 3] -> [N, V + L (+ P), 3]
        centres = [open_vertices[:, loop].mean(1, keepdims=True) for loop in self.loops]
        parts = [open_vertices, *centres]
        if self.proxy is not None:
            from liftdata.head.builtin import pose_head_proxy

            parts.append(pose_head_proxy(self.proxy, open_vertices))
        return np.concatenate(parts, 1)

    @property
    def hole_faces(self) -> list[np.ndarray]:
        return [self.faces[self.hole_of_face == h] for h in range(len(self.loops))]

    @property
    def n_core(self) -> int:
        """Vertices of the face mesh and its hole centres (the proxy's come after)."""
        return self.n_open + len(self.loops)


def close_holes(faces: np.ndarray, n_vertices: int, proxy: Any = None) -> ClosedMesh:
    """Fan-triangulate every inner boundary loop (all but the longest loop, the outer rim); append
    the proxy's triangles (its vertex indices moved past the hole centres) when one is given.

    A loop follows its triangles' own edge direction, so each fan triangle runs that edge backwards:
    the caps are wound like the surface around them and their normals point outwards (frontality,
    and the rim vertices' normals, depend on it)."""
    loops = tuple(boundary_loops(np.asarray(faces))[1:])
    fans, owner = [np.asarray(faces, np.int64)], [np.full(len(faces), -1)]
    for h, loop in enumerate(loops):
        centre = n_vertices + h
        fans.append(np.stack([np.roll(loop, -1), loop, np.full(len(loop), centre)], 1))
        owner.append(np.full(len(loop), h))
    if proxy is not None:
        pf = np.asarray(proxy.faces, np.int64)
        fans.append(np.where(pf >= n_vertices, pf + len(loops), pf))
        owner.append(np.full(len(pf), -2))
    return ClosedMesh(np.concatenate(fans), loops, np.concatenate(owner), n_vertices, proxy)


# ---------------------------------------------------------------------- per-vertex geometry
def to_camera(points: np.ndarray, camera: Camera) -> np.ndarray:  # [..., 3] world -> camera space
    return points @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]


def project(cam_points: np.ndarray, camera: Camera) -> np.ndarray:  # [..., 3] camera space -> [..., 2] pixels
    uv = (cam_points / cam_points[..., 2:3]) @ camera.K.T
    return uv[..., :2]


def vertex_normals(cam_points: np.ndarray,  # [N, V, 3]
                   faces: np.ndarray) -> np.ndarray:  # [N, V, 3] unit, area-weighted, outwards for CCW faces
    a, b, c = (cam_points[:, faces[:, i]] for i in range(3))
    face_n = np.cross(b - a, c - a)
    normals = np.zeros_like(cam_points)
    for i in range(3):
        np.add.at(normals, (slice(None), faces[:, i]), face_n)
    return normals / (np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-20)


def frontality(cam_points: np.ndarray,  # [N, V, 3] camera space
               faces: np.ndarray) -> np.ndarray:  # [N, V] in [0, 1]
    """cos of the angle between each vertex normal and the direction towards the camera (0 if away)."""
    normals = vertex_normals(cam_points, faces)
    to_camera_dir = -cam_points / np.linalg.norm(cam_points, axis=-1, keepdims=True)
    return np.clip((normals * to_camera_dir).sum(-1), 0, 1)


def rigid_fit(src: np.ndarray,  # [..., V, 3]
              dst: np.ndarray,  # [..., V, 3]
              iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:  # R [..., 3, 3], t [..., 3]
    """Robust Kabsch: `dst ~ src @ R.T + t`, refit on the vertices that moved least non-rigidly.

    The first fit uses all vertices; later fits drop vertices whose residual exceeds twice the
    median (jaw, lips, lids), so the fit follows the skull rather than the expression.
    """
    w = np.ones(src.shape[:-1])
    for _ in range(iterations):
        wn = w[..., None] / w.sum(-1)[..., None, None]
        mu_s, mu_d = (src * wn).sum(-2), (dst * wn).sum(-2)
        cov = np.swapaxes(src - mu_s[..., None, :], -1, -2) @ ((dst - mu_d[..., None, :]) * wn)
        u, _, vt = np.linalg.svd(cov)
        d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
        flip = np.ones(cov.shape[:-1])
        flip[..., -1] = d
        R = np.swapaxes(vt, -1, -2) @ (flip[..., :, None] * np.swapaxes(u, -1, -2))
        t = mu_d - (R @ mu_s[..., None])[..., 0]
        res = np.linalg.norm(src @ np.swapaxes(R, -1, -2) + t[..., None, :] - dst, axis=-1)
        w = (res <= 2 * np.median(res, axis=-1, keepdims=True) + 1e-9).astype(np.float64)
    return R, t


def rotation_angle(R: np.ndarray) -> np.ndarray:  # [..., 3, 3] -> [...] radians
    return np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1))


def hole_areas(vertices: np.ndarray,  # [N, V + L, 3] closed-mesh vertices
               mesh: ClosedMesh) -> np.ndarray:  # [N, L] fan areas (m^2): how open each hole is
    areas = []
    for f in mesh.hole_faces:
        a, b, c = (vertices[:, f[:, i]] for i in range(3))
        areas.append(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=-1).sum(-1))
    return np.stack(areas, -1) if areas else np.zeros((len(vertices), 0))


def choose_hole_references(ref_areas: np.ndarray,  # [K, L]
                           drv_areas: np.ndarray,  # [F, L]
                           min_ratio: float = 0.3, eps: float = 1e-7) -> np.ndarray:  # [F, L] int, -1 = fill
    """Per driving frame and hole, the reference whose opening is closest in size (log ratio).

    -1 where even that reference is much more closed than the driving frame (its interior was
    never seen open enough): the caller fills the hole instead.
    """
    ratio = np.log((ref_areas[None] + eps) / (drv_areas[:, None] + eps))  # [F, K, L]
    best = np.abs(ratio).argmin(1)
    best_ratio = np.take_along_axis(ratio, best[:, None], 1)[:, 0]
    return np.where(best_ratio < np.log(min_ratio), -1, best)


# ---------------------------------------------------------------------- texture
def extend_colours(image: np.ndarray,  # [H, W, 3] float32
                   mask: np.ndarray,  # [H, W] bool: pixels to keep
                   sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)) -> np.ndarray:  # [H, W, 3] float32
    """The image with every pixel outside `mask` replaced by the masked colours around it
    (normalized convolution at growing scales), so that bilinear samples near a silhouette do
    not blend in the background."""
    out, filled = image.astype(np.float32).copy(), mask.copy()
    for sigma in sigmas:
        f = filled.astype(np.float32)
        num = cv2.GaussianBlur(out * f[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(f, (0, 0), sigma)
        new = ~filled & (den > 1e-3)
        out[new] = num[new] / den[new, None]
        filled |= new
    return out


# ---------------------------------------------------------------------- shading
def fit_shading(image: np.ndarray,  # [H, W, 3] float in [0, 1]
                normals: np.ndarray,  # [H, W, 3] camera-space unit normals
                mask: np.ndarray,  # [H, W] bool: pixels to fit on (skin of the head mesh)
                iterations: int = 3) -> np.ndarray:  # [4, 3]
    """First-order spherical-harmonic shading per channel: image ~ [1, n] @ beta, by robust least squares.

    With a light fixed in camera space and a roughly uniform albedo, beta holds albedo x lighting;
    `shading_ratio` uses it to relight a surface point seen with another normal. Later iterations
    drop pixels whose residual exceeds 2.5 x the median (lips, brows, eyes: other albedos).
    """
    design = np.concatenate([np.ones((int(mask.sum()), 1)), normals[mask]], 1)
    target = image[mask].astype(np.float64)
    keep = np.ones(len(target), bool)
    beta = np.zeros((4, 3))
    if len(target) < 16:
        return beta
    for _ in range(iterations):
        beta = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
        res = np.abs(design @ beta - target).sum(-1)
        keep = res <= 2.5 * np.median(res[keep]) + 1e-9
    return beta


def shading_ratio(beta: np.ndarray,  # [4, 3] from `fit_shading`
                  to_normals: np.ndarray,  # [..., 3]
                  from_normals: np.ndarray,  # [..., 3]
                  limits: tuple[float, float] = (0.5, 2.0)) -> np.ndarray:  # [..., 3]
    """Per-channel factor that relights a colour seen under `from_normals` to `to_normals`."""
    def shade(n):
        return beta[0] + n @ beta[1:]
    num, den = shade(to_normals), shade(from_normals)
    ratio = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 1.0)
    return np.clip(ratio, *limits)


# ---------------------------------------------------------------------- flow outside the face
def _affine_fit(pixels: np.ndarray, disp: np.ndarray) -> np.ndarray:  # [N, 2], [N, 2] -> [3, 2]
    step = max(1, len(pixels) // 4000)
    design = np.concatenate([pixels[::step], np.ones((len(pixels[::step]), 1))], 1)
    return np.linalg.lstsq(design, disp[::step], rcond=None)[0]


def extend_flow(exact: np.ndarray,  # [H, W, 2] displacement, valid on `face`
                rigid: np.ndarray,  # [H, W, 2] displacement of the head pose alone, valid on `face`
                face: np.ndarray,  # [H, W] bool: pixels covered by the (closed) head mesh
                head_falloff: float, residual_falloff: float) -> np.ndarray:  # [H, W, 2] float32
    """A dense displacement: exact on the face, smooth outside it, zero far from the head.

    Outside the face = affine fit of the head-pose flow (the rest of the head follows the pose),
    fading to zero at `head_falloff` x face size from the face, plus the residual (exact - affine)
    extended by normalized convolution and fading within `residual_falloff` x face size, which
    keeps the field continuous at the face border without dragging the neck along with the jaw.
    """
    H, W = face.shape
    if face.sum() < 16:
        return np.zeros((H, W, 2), np.float32)
    ys, xs = np.nonzero(face)
    A = _affine_fit(np.stack([xs, ys], 1).astype(np.float64), rigid[ys, xs])
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    affine = gx[..., None] * A[0] + gy[..., None] * A[1] + A[2]
    size = float(np.sqrt(face.sum()))
    m = face.astype(np.float32)
    residual = (exact - affine) * m[..., None]
    sigma = max(residual_falloff * size / 2, 0.5)
    num = cv2.GaussianBlur(residual.astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(m, (0, 0), sigma)[..., None]
    dist = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 5)
    a_head = smoothstep(1 - dist / (head_falloff * size))[..., None]
    a_res = smoothstep(1 - dist / (residual_falloff * size))[..., None]
    out = a_head * affine + a_res * num / np.maximum(den, 1e-6)
    out[face] = exact[face]
    return out.astype(np.float32)


def map_jacobian_det(disp: np.ndarray) -> np.ndarray:  # [H, W, 2] displacement -> [H, W]
    """det of the Jacobian of the backward map p -> p + disp(p) (central differences): 1 = area kept,
    > 1 stretched (one output pixel reads a larger source area), <= 0 folded."""
    dx_dy, dx_dx = np.gradient(disp[..., 0].astype(np.float64))  # np.gradient: d/d(row), d/d(column)
    dy_dy, dy_dx = np.gradient(disp[..., 1].astype(np.float64))
    return (1 + dx_dx) * (1 + dy_dy) - dx_dy * dy_dx


def extend_flow_slow(exact: np.ndarray, rigid: np.ndarray, face: np.ndarray,
                     head_falloff: float, residual_falloff: float) -> np.ndarray:
    """Pixel-by-pixel twin of `extend_flow` (exact Euclidean distance, explicit Gaussian sums).

    Slow (O(pixels x face pixels)); for tests at tiny sizes only.
    """
    H, W = face.shape
    ys, xs = np.nonzero(face)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    # the affine fit by the normal equations, on every face pixel
    design = np.concatenate([pts, np.ones((len(pts), 1))], 1)
    A = np.linalg.solve(design.T @ design, design.T @ rigid[ys, xs])
    size = np.sqrt(len(pts))
    sigma = max(residual_falloff * size / 2, 0.5)
    out = np.zeros((H, W, 2))
    for y in range(H):
        for x in range(W):
            if face[y, x]:
                out[y, x] = exact[y, x]
                continue
            affine = np.array([x, y, 1.0]) @ A
            g = np.exp(-((pts - [x, y]) ** 2).sum(1) / (2 * sigma ** 2))
            residual = exact[ys, xs] - design @ A
            nc = (g[:, None] * residual).sum(0) / max(g.sum(), 1e-300)
            dist = np.sqrt(((pts - [x, y]) ** 2).sum(1).min())
            out[y, x] = (smoothstep(1 - dist / (head_falloff * size)) * affine
                         + smoothstep(1 - dist / (residual_falloff * size)) * nc)
    return out.astype(np.float32)
