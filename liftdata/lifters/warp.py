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
from typing import NamedTuple

import cv2
import numpy as np
import torch

from liftdata.errors import LiftdataError
from liftdata.kinematics import Camera, axis_angle_to_matrix
from liftdata.lifters import _warp_ops as ops
from liftdata.lifters.base import Conditions, References
from liftdata.render import Fragments, interpolate, rasterize

__all__ = ["WarpLifter", "WarpDetails", "LifterInputError"]

_MOUTH_EDGE = np.array([0.30, 0.07, 0.08], np.float32)  # fill colours of never-seen hole interiors
_MOUTH_CENTRE = np.array([0.04, 0.01, 0.01], np.float32)


class LifterInputError(LiftdataError, ValueError):
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
    confidence_shift: float = 0.03
    """Outside the face, the confidence is exp(-(shift / (this x face size))^2) of the flow's shift."""
    grazing_cos: float = 0.5
    """On the face, the confidence is min(1, cos(view angle in the best reference) / this)."""
    relight: bool = True
    """Relight the face texture from each reference's fitted first-order shading (light fixed to the camera)."""
    head_proxy: bool = True
    """Builtin model: extend the face mesh by the whole-head proxy (skull, ears' region, neck stub), so
    that hair and skull are warped exactly with the head instead of by the extrapolated flow."""

    def lift(self, references: References, driving: Conditions, *, seed: int = 0) -> np.ndarray:
        """One clip: [F, H, W, 3] uint8 RGB frames at the driving camera's size."""
        return self.lift_detailed(references, driving, seed=seed).frames

    def lift_detailed(self, references: References, driving: Conditions, *, seed: int = 0) -> WarpDetails:
        """One clip with a per-pixel confidence and per-frame quality terms (see `WarpDetails`)."""
        _check_inputs(references, driving)
        scene = _prepare_references(references, self)
        out = [fr for s in range(0, len(driving), self.chunk)
               for fr in _lift_chunk(scene, driving, slice(s, s + self.chunk), self)]
        quality = {key: np.array([fr.quality[key] for fr in out]) for key in out[0].quality}
        return WarpDetails(np.stack([fr.image for fr in out]), np.stack([fr.confidence for fr in out]), quality)


class WarpDetails(NamedTuple):
    """What `WarpLifter.lift_detailed` returns for a clip of F frames.

    confidence: per pixel, 1 where the frame is what the references show. On the face (head mesh
    with its holes closed): min(1, cos / grazing_cos) of the view angle the surface point had in
    the best reference that saw it (depth test), 0 where no reference saw it (inpainted); inside a
    mouth/eye opening, times the fraction of the driving opening's area that the chosen reference
    showed open (0 where it was filled because no reference showed it open enough). Outside the face:
    exp(-(shift / (confidence_shift x face size))^2) of the dense flow's shift (an unmoved pixel
    is the reference's own; a moved one is extrapolated), 0 where inpainted (disoccluded).

    quality: per-frame terms, each an array [F]: seen_fraction (face pixels some reference saw),
    face_confidence (mean confidence on the face), fill_fraction / disoccluded_fraction (filled
    hole / inpainted pixels, as a fraction of the face area), flow_stretch (mean |log det J| of the
    backward map in the ring outside the face where the flow is extrapolated), flow_fold_fraction
    (ring pixels where det J <= 0), pose_distance_deg (head-pose angle to the nearest reference),
    head_confidence (mean confidence over the face and that ring), proxy_unseen_fraction (head
    proxy surface no reference saw, filled with the mean colour of the proxy seen; / face area).
    Face-area terms are measured on the face mesh (not the proxy); the ring is outside the whole head.
    """

    frames: np.ndarray  # [F, H, W, 3] uint8
    confidence: np.ndarray  # [F, H, W] float32 in [0, 1]
    quality: dict[str, np.ndarray]  # name -> [F] float


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
    textures: list[np.ndarray]  # K x [H_r, W_r, 3]: the images with the face's colours extended past its silhouette
    cam_vertices: np.ndarray  # [K, V', 3] closed-mesh vertices in reference camera space
    frontal: np.ndarray  # [K, V'] how frontal each vertex was in its reference
    depth: list[np.ndarray]  # K x [H_r, W_r] float32 camera z of the closed mesh, 0 off it
    covered: list[np.ndarray]  # K x [H_r, W_r] uint8, 1 on the closed mesh
    hole_areas: np.ndarray  # [K, L] how open each hole (mouth, eyes) was
    head_size: float  # metres, mean bounding-box side of the head mesh
    normals: np.ndarray  # [K, V', 3] closed-mesh vertex normals in reference camera space
    shading: np.ndarray  # [K, 4, 3] first-order shading fitted on each reference (`ops.fit_shading`)


def _head_proxy(cond: Conditions) -> object | None:
    """The builtin model's whole-head proxy, fitted to the first reference's face (un-posed by its
    global rotation and translation); None for other head models (FLAME is a whole head already)."""
    from liftdata.head.builtin import build_head_proxy, load_builtin

    model = load_builtin()
    if cond.kinematics.head_model != model.name or cond.vertices.shape[1] != model.n_vertices:
        return None
    R = axis_angle_to_matrix(np.asarray(cond.kinematics.rotation[0], np.float64))
    face = cond.vertices[0].detach().cpu().double().numpy()
    neutral = (face - np.asarray(cond.kinematics.translation[0], np.float64)) @ R  # R^T (v - t), row-wise
    return build_head_proxy(neutral, np.asarray(cond.faces), model.jaw_weights.numpy())


def _prepare_references(references: References, cfg: WarpLifter) -> _Scene:
    cond = references.conditions
    proxy = _head_proxy(cond) if cfg.head_proxy else None
    mesh = ops.close_holes(np.asarray(cond.faces), cond.vertices.shape[1], proxy)
    world = mesh.vertices(cond.vertices.detach().cpu().double().numpy())
    cam = ops.to_camera(world, cond.camera)
    frags = rasterize(torch.from_numpy(world), mesh.faces, cond.camera, backend=cfg.backend)
    images = [im.astype(np.float32) / 255 for im in np.asarray(references.images)]
    normals = ops.vertex_normals(cam, mesh.faces)
    pixel_n = interpolate(frags, mesh.faces, torch.from_numpy(normals.astype(np.float32))).numpy()
    skin = frags.mask.numpy() & (mesh.hole_of_face[frags.face_id.numpy()] < 0) & (-pixel_n[..., 2] > 0.3)
    shading = np.stack([ops.fit_shading(im, n, m) for im, n, m in zip(images, pixel_n, skin, strict=True)])
    inner = [cv2.erode(m, np.ones((3, 3), np.uint8)) > 0 for m in frags.mask.numpy().astype(np.uint8)]
    return _Scene(mesh=mesh, camera=cond.camera, images=images,
                  textures=[ops.extend_colours(im, m) for im, m in zip(images, inner, strict=True)],
                  cam_vertices=cam, frontal=ops.frontality(cam, mesh.faces),
                  depth=list(frags.depth.numpy().astype(np.float32)),
                  covered=list(frags.mask.numpy().astype(np.uint8)),
                  hole_areas=ops.hole_areas(cam, mesh),
                  head_size=float(np.ptp(cam[0, :mesh.n_open], axis=0).mean()),
                  normals=normals, shading=shading)


# ---------------------------------------------------------------------- per-vertex terms
def _vertex_terms(scene: _Scene, drv_cam: np.ndarray,  # [F, V', 3] driving camera space
                  cfg: WarpLifter) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blend weights [F, K, V'], primary reference [F], the driving vertices moved rigidly into the
    primary reference's camera space [F, V', 3] (the head-pose-only correspondence), and the
    head-pose angle to the nearest reference [F] (degrees)."""
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
    return weights, primary, rigid, np.degrees(ops.rotation_angle(R)).min(1)


# ---------------------------------------------------------------------- driving frames
def _lift_chunk(scene: _Scene, driving: Conditions, frames: slice, cfg: WarpLifter) -> list[_Frame]:
    mesh, K = scene.mesh, len(scene.images)
    world = mesh.vertices(driving.vertices[frames].detach().cpu().double().numpy())
    drv_cam = ops.to_camera(world, driving.camera)
    frags = rasterize(torch.from_numpy(world), mesh.faces, driving.camera, backend=cfg.backend)
    weights, primary, rigid, pose_deg = _vertex_terms(scene, drv_cam, cfg)
    drv_areas = ops.hole_areas(drv_cam, mesh)
    choice = ops.choose_hole_references(scene.hole_areas, drv_areas)  # [F, L]
    # how much of each driving opening the chosen reference showed open (1: as open or more)
    seen_open = np.clip(np.take_along_axis(scene.hole_areas.T[None].repeat(len(choice), 0), choice[:, :, None],
                                           2)[..., 0] / np.maximum(drv_areas, 1e-12), 0, 1) * (choice >= 0)
    centre = np.zeros((*drv_cam.shape[:2], 1))
    centre[:, mesh.n_open:mesh.n_core] = 1  # 1 at hole centres, 0 on the rims: the fill gradient
    f = np.arange(len(drv_cam))

    def per_ref(x):  # [K, V', C] -> [F, V', K * C]
        flat = np.moveaxis(x, 0, 1).reshape(x.shape[1], -1)
        return np.broadcast_to(flat, (len(f), *flat.shape))

    attrs = np.concatenate([per_ref(scene.cam_vertices),  # surface points in each reference
                            np.moveaxis(weights, 1, 2), rigid, drv_cam[..., 2:], per_ref(scene.frontal[..., None]),
                            per_ref(scene.normals), ops.vertex_normals(drv_cam, mesh.faces), centre], -1)
    values = interpolate(frags, mesh.faces, torch.from_numpy(attrs.astype(np.float32))).numpy()
    return [_compose(scene, frags, i, values[i], primary[i], choice[i], seen_open[i], pose_deg[i], cfg) for i in f]


@dataclass(frozen=True)
class _Channels:
    """Layout of the per-pixel values interpolated over the driving render (K references), in the
    order `_lift_chunk` concatenates them: surface points in each reference [3K], blend weights [K],
    rigid correspondence [3], driving depth [1], frontality in each reference [K], normals in each
    reference [3K], driving normal [3], hole-centre gradient [1]: 8K + 8 channels."""

    K: int

    def points(self, k: int) -> slice:
        return slice(3 * k, 3 * k + 3)

    def weight(self, k: int) -> int:
        return 3 * self.K + k

    @property
    def rigid(self) -> slice:
        return slice(4 * self.K, 4 * self.K + 3)

    def frontal(self, k: int) -> int:
        return 4 * self.K + 4 + k

    def ref_normal(self, k: int) -> slice:
        return slice(5 * self.K + 4 + 3 * k, 5 * self.K + 7 + 3 * k)

    @property
    def drv_normal(self) -> slice:
        return slice(8 * self.K + 4, 8 * self.K + 7)

    @property
    def centre(self) -> int:
        return 8 * self.K + 7


@dataclass
class _Frame:
    image: np.ndarray  # [H, W, 3] uint8
    confidence: np.ndarray  # [H, W] float32 in [0, 1]
    quality: dict[str, float]


def _texture(scene: _Scene, face: np.ndarray, hole: np.ndarray, values: np.ndarray, choice: np.ndarray,
             seen_open: np.ndarray, cfg: WarpLifter) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Step 1: colour [H, W, 3] blended from every reference where the surface point was visible in
    it, total weight [H, W], per-pixel confidence [H, W] (best visible frontality), maps K x [H, W, 2].
    Computed on the face's pixels only (a flat list of N pixels), then scattered into images."""
    K, ch = len(scene.images), _Channels(len(scene.images))
    ys, xs = np.nonzero(face)
    v, hole_f = values[ys, xs], hole[ys, xs]  # [N, C], [N]
    inner = (cv2.erode(face.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)[ys, xs]
    n_drv = _unit(v[:, ch.drv_normal]) if cfg.relight else None
    colour, total, conf = np.zeros((len(ys), 3), np.float32), np.zeros(len(ys), np.float32), np.zeros(len(ys))
    maps = []
    for k in range(K):
        points = v[:, ch.points(k)]
        uv = ops.project(points, scene.camera).astype(np.float32)  # [N, 2] pixels in reference k
        xy = np.full((*face.shape, 2), -1e4, np.float32)
        xy[ys, xs] = uv
        maps.append(xy)
        depth = _sample(scene.depth[k], uv, cv2.INTER_NEAREST)
        visible = (depth > 0) & (np.abs(depth - points[:, 2]) < cfg.depth_tolerance * scene.head_size)
        hole_weight = np.append(choice == k, False)[hole_f].astype(np.float32)  # index -1 -> False
        w = np.where(hole_f >= 0, hole_weight, v[:, ch.weight(k)]) * visible
        # inside the driving face: the face's colours only; on its silhouette and on the proxy (hair,
        # skull): the reference's own pixels
        own = ~inner | (hole_f == -2)
        sample = np.where(own[:, None], _sample(scene.images[k], uv), _sample(scene.textures[k], uv))
        if cfg.relight:  # the light stays with the camera while the surface turns: shading ratio
            ratio = ops.shading_ratio(scene.shading[k], n_drv, _unit(v[:, ch.ref_normal(k)]))
            sample = np.where((hole_f == -1)[:, None], sample * ratio, sample)  # face skin only (not hair)
        colour += w[:, None] * sample
        total += w
        frontal = np.clip(v[:, ch.frontal(k)] / cfg.grazing_cos, 0, 1)
        seen = np.where(hole_f >= 0, hole_weight * np.append(seen_open, 0)[hole_f], 1.0) * visible * frontal
        conf = np.maximum(conf, seen)
    colour = np.where((total > 0)[:, None], colour / np.maximum(total, 1e-12)[:, None], 0)
    return _scatter(face, colour), _scatter(face, total), _scatter(face, conf.astype(np.float32)), maps


def _sample(image: np.ndarray, uv: np.ndarray,  # [N, 2] pixel positions
            interpolation: int = cv2.INTER_LINEAR, width: int = 1024) -> np.ndarray:  # [N] or [N, C]
    """cv2.remap at a list of points (laid out in rows of `width`: remap maps must stay < 32767 wide)."""
    n = len(uv)
    rows = max(1, -(-n // width))
    grid = np.zeros((rows * width, 2), np.float32)
    grid[:n] = uv
    grid = grid.reshape(rows, width, 2)
    out = cv2.remap(image, grid[..., 0], grid[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * width, *image.shape[2:])[:n]


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:  # [N, ...] -> [H, W, ...] zeros off mask
    out = np.zeros((*mask.shape, *values.shape[1:]), values.dtype)
    out[mask] = values
    return out


def _unit(n: np.ndarray) -> np.ndarray:  # [N, 3] -> unit rows
    return n / (np.sqrt(np.einsum("ni,ni->n", n, n))[:, None] + 1e-12)


def _compose(scene: _Scene, frags: Fragments, i: int, values: np.ndarray,  # [H, W, 8K + 8] (`_Channels`)
             primary: int, choice: np.ndarray, seen_open: np.ndarray, pose_deg: float, cfg: WarpLifter) -> _Frame:
    K = len(scene.images)
    face = frags.mask[i].numpy()
    hole = np.where(face, scene.mesh.hole_of_face[frags.face_id[i].numpy()], -1)
    H, W = face.shape
    grid = np.stack(np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32)), -1)
    colour, total, conf, maps = _texture(scene, face, hole, values, choice, seen_open, cfg)  # 1.
    textured = total > 0
    # 4. hole interiors never seen open enough: a dark red-black gradient
    fill = (hole >= 0) & ~textured
    c = values[..., _Channels(K).centre, None]
    colour = np.where(fill[..., None], (1 - c) * _MOUTH_EDGE + c * _MOUTH_CENTRE, colour)
    # proxy surface (skull, hair, neck) no reference saw: the mean colour of the proxy seen in this frame
    # (pixels within 2 px of a textured one are left to the inpainting: depth-test misses at silhouettes)
    near = cv2.distanceTransform((~textured).astype(np.uint8), cv2.DIST_L2, 3) <= 2
    unseen = (hole == -2) & ~textured & ~near
    seen_proxy = (hole == -2) & textured
    if unseen.any() and seen_proxy.sum() >= 16:
        colour[unseen] = colour[seen_proxy].mean(0)
        fill = fill | unseen
    # 2. dense backward flow of the primary reference: exact on the face, smooth outside
    rigid = ops.project(np.where(face[..., None], values[..., _Channels(K).rigid], 1.0), scene.camera) - grid
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
    confidence, quality = _confidence(face, face & (hole != -2), conf, fill, holes, disp, pose_deg, cfg)
    return _Frame(out, confidence, quality)


def _confidence(face: np.ndarray, core: np.ndarray, conf: np.ndarray, fill: np.ndarray, holes: np.ndarray,
                disp: np.ndarray, pose_deg: float, cfg: WarpLifter) -> tuple[np.ndarray, dict[str, float]]:
    """Per-pixel confidence [H, W] and the frame's quality terms (see `WarpLifter.lift_detailed`):
    `face` is the rendered head mesh (with the proxy, if any), `core` its face-mesh part."""
    n_face = max(int(core.sum()), 1)
    size = float(np.sqrt(n_face))
    dist = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 5)
    ring = ~face & (dist < cfg.head_falloff * size)  # where the flow outside the face is extrapolated
    moved = np.linalg.norm(disp, axis=-1)
    outside = np.exp(-(moved / (cfg.confidence_shift * size)) ** 2)  # unmoved pixels are the reference's own
    confidence = np.where(face, conf, outside) * ~holes * ~fill
    det = ops.map_jacobian_det(disp)  # outside the face: folds (det <= 0) and stretch |log det|
    stretch = np.abs(np.log(np.clip(det, 0.05, None)))
    quality = {
        "seen_fraction": float((conf[core] > 0).mean()) if core.any() else 0.0,
        "face_confidence": float(conf[core].mean()) if core.any() else 0.0,
        "fill_fraction": float((fill & core).sum() / n_face),
        "proxy_unseen_fraction": float((fill & face & ~core).sum() / n_face),
        "disoccluded_fraction": float((holes & (core | ~face)).sum() / n_face),
        "flow_stretch": float(stretch[ring].mean()) if ring.any() else 0.0,
        "flow_fold_fraction": float((det[ring] <= 0).mean()) if ring.any() else 0.0,
        "pose_distance_deg": float(pose_deg),
        "head_confidence": float(confidence[face | ring].mean()) if face.any() else 0.0,
    }
    return confidence.astype(np.float32), quality
