"""The warp lifter: a geometric, weight-free lifter (the default, and the non-learned baseline).

For every driving frame (DESIGN.md section 8):

1. Texture the head mesh from the references: every reference maps each surface point (face id +
   barycentrics) of the driving render to a pixel of its image (its projected vertices); a
   reference contributes where that point was visible in it (depth test against its own render)
   with a weight that grows with how frontal the point was, how close the reference's head pose
   is to the driving one, and how close its local expression is (per-vertex residual after a
   rigid fit), so that smiles come from smiling references.
2. Warp the whole image of the primary reference (the best one for this frame) with a dense
   backward flow that is exact on the face and extends smoothly outside it: the rest of the head
   follows the head pose, the background far away stays (`extend_flow`). Pixels that would show
   the reference's face outside the driving face (disocclusions) are inpainted.
3. Composite: the multi-reference texture on the face, the warped primary outside, feathered.
4. Holes of the mesh (mouth, eyes) are closed by fans: their interior comes from the reference
   whose opening is closest in size, or a dark red-black gradient if none was open enough.

The background is the primary reference's pixels at the same positions, so references and driving
frames should share one camera (as in a monocular capture). Everything is deterministic; `seed`
is unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from liftdata.kinematics import Camera
from liftdata.lifters import _warp_ops as ops
from liftdata.lifters.base import Conditions, References
from liftdata.render import Fragments, interpolate, rasterize

__all__ = ["WarpLifter", "LifterInputError"]

_MOUTH_EDGE = np.array([0.30, 0.07, 0.08], np.float32)  # fill colours of never-seen hole interiors
_MOUTH_CENTRE = np.array([0.04, 0.01, 0.01], np.float32)


class LifterInputError(ValueError):
    """References or driving conditions a lifter cannot use; the message names the input."""


@dataclass(frozen=True)
class WarpLifter:
    """Geometric lifter: multi-reference texture on the head mesh + a dense warp of the rest."""

    name: str = "warp"
    version: str = "1"
    pose_sigma_deg: float = 5.0
    """Head-pose difference (degrees) at which a reference's weight drops to exp(-1/2)."""
    expression_sigma: float = 0.02
    """Per-vertex non-rigid residual, as a fraction of the head size, at which the weight drops to exp(-1/2)."""
    depth_tolerance: float = 0.04
    """Depth-test tolerance for visibility in a reference, as a fraction of the head size."""
    head_falloff: float = 0.5
    """Distance (x face size) from the face at which the head-pose flow has faded to zero."""
    residual_falloff: float = 0.12
    """Distance (x face size) within which the non-rigid face flow fades outside the face."""
    backend: str = "auto"
    """Rasterizer backend ("auto", "moderngl", "torch")."""
    chunk: int = 8
    """Driving frames processed together (bounds memory)."""

    def lift(self, references: References, driving: Conditions, *, seed: int = 0) -> np.ndarray:
        """One clip: [F, H, W, 3] uint8 RGB frames at the driving camera's size."""
        _check_inputs(references, driving)
        scene = _prepare_references(references, self)
        frames = [_lift_chunk(scene, driving, slice(s, s + self.chunk), self)
                  for s in range(0, len(driving), self.chunk)]
        return np.concatenate(frames)


# ---------------------------------------------------------------------- input checks
def _check_inputs(references: References, driving: Conditions) -> None:
    images = np.asarray(references.images)
    cam = references.conditions.camera
    if len(images) == 0:
        raise LifterInputError("references: need at least one reference frame, got 0")
    if images.dtype != np.uint8 or images.shape[1:] != (cam.height, cam.width, 3):
        raise LifterInputError(f"references.images: expected uint8 [K, {cam.height}, {cam.width}, 3], "
                               f"got {images.dtype} {list(images.shape)}")
    if len(references.conditions) != len(images):
        raise LifterInputError(f"references: {len(images)} images but {len(references.conditions)} conditions")
    if len(driving) == 0:
        raise LifterInputError("driving: need at least one frame, got 0")
    ref_v, drv_v = references.conditions.vertices, driving.vertices
    if ref_v.shape[1:] != drv_v.shape[1:] or not np.array_equal(references.conditions.faces, driving.faces):
        raise LifterInputError(f"driving: head mesh ({list(drv_v.shape[1:])} vertices) differs from the "
                               f"references' ({list(ref_v.shape[1:])}): not the same head model")


# ---------------------------------------------------------------------- references
@dataclass
class _Scene:
    """Everything about the references that does not depend on the driving frame."""

    mesh: ops.ClosedMesh
    camera: Camera  # the references' camera
    images: list[np.ndarray]  # K x [H_r, W_r, 3] float32 in [0, 1]
    cam_vertices: np.ndarray  # [K, V', 3] closed-mesh vertices in reference camera space
    frontal: np.ndarray  # [K, V'] how frontal each vertex was in its reference
    depth: list[np.ndarray]  # K x [H_r, W_r] float32 camera z of the closed mesh, 0 off it
    covered: list[np.ndarray]  # K x [H_r, W_r] uint8, 1 on the closed mesh
    hole_areas: np.ndarray  # [K, L] how open each hole (mouth, eyes) was
    head_size: float  # metres, mean bounding-box side of the head mesh


def _prepare_references(references: References, cfg: WarpLifter) -> _Scene:
    cond = references.conditions
    mesh = ops.close_holes(np.asarray(cond.faces), cond.vertices.shape[1])
    world = mesh.vertices(cond.vertices.detach().cpu().double().numpy())
    cam = ops.to_camera(world, cond.camera)
    frags = rasterize(torch.from_numpy(world), mesh.faces, cond.camera, backend=cfg.backend)
    return _Scene(mesh=mesh, camera=cond.camera,
                  images=[im.astype(np.float32) / 255 for im in np.asarray(references.images)],
                  cam_vertices=cam, frontal=ops.frontality(cam, mesh.faces),
                  depth=list(frags.depth.numpy().astype(np.float32)),
                  covered=list(frags.mask.numpy().astype(np.uint8)),
                  hole_areas=ops.hole_areas(cam, mesh),
                  head_size=float(np.ptp(cam[0, :mesh.n_open], axis=0).mean()))


# ---------------------------------------------------------------------- per-vertex terms
def _vertex_terms(scene: _Scene, drv_cam: np.ndarray,  # [F, V', 3] driving camera space
                  cfg: WarpLifter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend weights [F, K, V'], primary reference [F], and the driving vertices moved rigidly
    into the primary reference's camera space [F, V', 3] (the head-pose-only correspondence)."""
    n_open, K = scene.mesh.n_open, len(scene.images)
    src = np.broadcast_to(scene.cam_vertices[None, :, :n_open], (len(drv_cam), K, n_open, 3))
    dst = np.broadcast_to(drv_cam[:, None, :n_open], src.shape)
    R, t = ops.rigid_fit(src, dst)  # [F, K]: reference camera space -> driving camera space
    aligned = scene.cam_vertices[None] @ np.swapaxes(R, -1, -2) + t[:, :, None]  # [F, K, V', 3]
    residual = np.linalg.norm(aligned - drv_cam[:, None], axis=-1)
    pose = np.exp(-0.5 * (np.degrees(ops.rotation_angle(R)) / cfg.pose_sigma_deg) ** 2)  # [F, K]
    expression = np.exp(-0.5 * (residual / (cfg.expression_sigma * scene.head_size)) ** 2)
    weights = scene.frontal[None] ** 2 * pose[..., None] * expression + 1e-6
    seen = ops.frontality(drv_cam, scene.mesh.faces) > 0  # [F, V'] vertices facing the driving camera
    primary = (weights * seen[:, None]).sum(-1).argmax(1)
    f = np.arange(len(drv_cam))
    R_p, t_p = R[f, primary], t[f, primary]
    rigid = (drv_cam - t_p[:, None]) @ R_p  # rows: R^T (x - t)
    return weights, primary, rigid


# ---------------------------------------------------------------------- driving frames
def _lift_chunk(scene: _Scene, driving: Conditions, frames: slice, cfg: WarpLifter) -> np.ndarray:
    mesh, K = scene.mesh, len(scene.images)
    world = mesh.vertices(driving.vertices[frames].detach().cpu().double().numpy())
    drv_cam = ops.to_camera(world, driving.camera)
    frags = rasterize(torch.from_numpy(world), mesh.faces, driving.camera, backend=cfg.backend)
    weights, primary, rigid = _vertex_terms(scene, drv_cam, cfg)
    choice = ops.choose_hole_references(scene.hole_areas, ops.hole_areas(drv_cam, mesh))  # [F, L]
    centre = np.zeros((*drv_cam.shape[:2], 1))
    centre[:, mesh.n_open:] = 1  # 1 at hole centres, 0 on the rims: the fill gradient
    f = np.arange(len(drv_cam))
    attrs = np.concatenate([np.moveaxis(np.broadcast_to(scene.cam_vertices, (len(f), *scene.cam_vertices.shape)),
                                        1, 2).reshape(len(f), -1, 3 * K),  # surface points in each reference
                            np.moveaxis(weights, 1, 2), rigid, drv_cam[..., 2:], centre], -1)
    values = interpolate(frags, mesh.faces, torch.from_numpy(attrs.astype(np.float32))).numpy()
    return np.stack([_compose(scene, frags, i, values[i], primary[i], choice[i], cfg) for i in f])


def _compose(scene: _Scene, frags: Fragments, i: int, values: np.ndarray,  # [H, W, 4K + 5]
             primary: int, choice: np.ndarray, cfg: WarpLifter) -> np.ndarray:  # [H, W, 3] uint8
    K = len(scene.images)
    face = frags.mask[i].numpy()
    hole = np.where(face, scene.mesh.hole_of_face[frags.face_id[i].numpy()], -1)
    H, W = face.shape
    grid = np.stack(np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32)), -1)
    # 1. texture from every reference where the surface point was visible in it
    colour, total, maps = np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.float32), []
    for k in range(K):
        points = values[..., 3 * k:3 * k + 3]
        xy = np.where(face[..., None], ops.project(np.where(face[..., None], points, 1.0), scene.camera), -1e4)
        xy = xy.astype(np.float32)
        maps.append(xy)
        depth = cv2.remap(scene.depth[k], xy[..., 0], xy[..., 1], cv2.INTER_NEAREST)
        visible = face & (depth > 0) & (np.abs(depth - points[..., 2]) < cfg.depth_tolerance * scene.head_size)
        hole_weight = np.append(choice == k, False)[hole].astype(np.float32)  # index -1 -> False
        w = np.where(hole >= 0, hole_weight, values[..., 3 * K + k]) * visible
        sample = cv2.remap(scene.images[k], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        colour += w[..., None] * sample
        total += w
    textured = total > 0
    colour = np.where(textured[..., None], colour / np.maximum(total, 1e-12)[..., None], 0)
    # 4. hole interiors never seen open enough: a dark red-black gradient
    fill = (hole >= 0) & ~textured
    c = values[..., -1:]
    colour = np.where(fill[..., None], (1 - c) * _MOUTH_EDGE + c * _MOUTH_CENTRE, colour)
    # 2. dense backward flow of the primary reference: exact on the face, smooth outside
    rigid = ops.project(np.where(face[..., None], values[..., 4 * K:4 * K + 3], 1.0), scene.camera) - grid
    disp = ops.extend_flow(maps[primary] - grid, rigid.astype(np.float32), face, cfg.head_falloff, cfg.residual_falloff)
    xy = grid + disp
    warped = cv2.remap(scene.images[primary], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ghost = ~face & (cv2.remap(scene.covered[primary], xy[..., 0], xy[..., 1], cv2.INTER_NEAREST) > 0)
    # 3. composite, feathered at the face border; inpaint what no reference saw
    alpha = (face & (textured | fill)) * cv2.GaussianBlur(face.astype(np.float32), (0, 0), 1.0)
    out = alpha[..., None] * colour + (1 - alpha[..., None]) * warped
    out = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    holes = ghost | (face & ~textured & ~fill)
    if holes.any():
        out = cv2.inpaint(out, holes.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return out
