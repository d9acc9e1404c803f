"""Synthetic captures with exact ground truth: the test bed for tracking, lifting and benchmarks.

`make_capture(seed, ...)` renders a procedural subject (random template offsets, a skin albedo,
eyeballs and a mouth interior with teeth) over a static background under given or sampled
kinematics, and returns a `Capture` whose kinematics, camera and identity are the ones used to
render: ground truth, not estimates. Deterministic per seed.

Two albedos (`texture=`): "painted" (default: a procedural skin with lips, brows and freckles) and
"photo" (builtin model only: the photo `skimage.data.astronaut()` that the builtin template was
built from, mapped through the mediapipe landmarks detected on it, so the photo pixel under each
vertex is where mediapipe puts that landmark on a real face; with a per-seed colour jitter). The
photo subject also gets a "skirt": two rings of geometry continuing the face outline backwards,
textured with the photo around the face (hair, ears, neck), because a face cut exactly at the
face-oval landmarks makes mediapipe pull its oval landmarks inwards (chin ~7 px at 256^2).

Geometry that the face mesh lacks is added per frame from its boundary loops (the open eyes and
mouth): each hole gets a recessed cap (a short tube going inwards and a fan), textured as an
eyeball or as a mouth interior whose teeth sit next to the upper and lower lip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import torch

from liftdata.capture import Capture
from liftdata.head.base import HeadModel, boundary_loops, neutral_kinematics
from liftdata.kinematics import Camera, Kinematics

__all__ = ["make_capture", "sample_kinematics", "random_identity", "render_subject", "write_video",
           "drift_exposure", "boundary_loops", "Subject"]

_ATLAS = 512  # texture atlas: face [0:384, 0:384], eyeball [0:128, 384:512], mouth [128:384, 384:512]
_FACE_PX = 384


@dataclass(frozen=True)
class _Holes:
    eyes: list[np.ndarray]  # loops of the eye openings
    mouth: np.ndarray | None  # loop of the mouth opening
    mouth_upper: np.ndarray | None  # [len(mouth)] bool: loop vertex belongs to the upper lip


def _holes(faces: np.ndarray, template: np.ndarray) -> _Holes:
    """Classify the inner boundary loops (all but the longest: the outer rim) as eyes or mouth."""
    loops = boundary_loops(faces)[1:]
    if not loops:
        return _Holes([], None, None)
    heights = [template[loop, 1].mean() for loop in loops]
    mouth_i = int(np.argmin(heights))
    mouth = loops[mouth_i]
    eyes = [loop for i, loop in enumerate(loops) if i != mouth_i and heights[i] > heights[mouth_i] + 0.02]
    upper = template[mouth, 1] > template[mouth, 1].mean()
    return _Holes(eyes, mouth, upper)


# ---------------------------------------------------------------------- subject
@dataclass
class Subject:
    """Everything about a synthetic person that does not change over time."""

    head_model: HeadModel
    identity: np.ndarray
    texture: np.ndarray  # [512, 512, 3] uint8 albedo atlas
    background: np.ndarray  # [size, size, 3] uint8
    light_dir: tuple[float, float, float]  # camera space, pointing from the surface towards the light
    face_uv: np.ndarray | None = None  # [V, 2] atlas pixels of the face vertices; None: frontal projection
    skirt: bool = False  # continue the face outline backwards (see the module docstring)
    proxy: bool = False  # builtin model: render the whole-head proxy with hair and a neck (head="proxy")


def random_identity(model: HeadModel, rng: np.random.Generator) -> np.ndarray:
    """A plausible random identity: smooth template offsets (builtin) or shape betas (FLAME)."""
    neutral = model.neutral_identity().detach().cpu().numpy()
    if neutral.ndim == 1:  # PCA shape coefficients
        return (rng.normal(size=neutral.shape) * 0.8).astype(np.float32)
    template = _template(model)
    centre = template.mean(0)
    scale = rng.uniform(0.94, 1.06, size=3) * [1, rng.uniform(0.97, 1.05), 1]
    offsets = (template - centre) * (scale - 1)
    for _ in range(6):  # smooth bumps: cheeks, nose, chin, brow ...
        c = template[rng.integers(len(template))]
        w = np.exp(-np.sum((template - c) ** 2, axis=1) / (2 * rng.uniform(0.015, 0.03) ** 2))
        offsets += w[:, None] * rng.normal(0, 0.004, size=3)
    return (neutral + offsets).astype(np.float32)


def _template(model: HeadModel, identity: np.ndarray | None = None) -> np.ndarray:
    ident = model.neutral_identity() if identity is None else torch.as_tensor(identity)
    with torch.no_grad():
        return model.vertices(ident, neutral_kinematics(model, 1))[0].cpu().numpy()


def _face_uv(template: np.ndarray) -> np.ndarray:
    """Frontal orthographic UVs of the neutral mesh into the face square of the atlas (pixels)."""
    lo, hi = template[:, :2].min(0), template[:, :2].max(0)
    span = (hi - lo).max() * 1.04
    xy = (template[:, :2] - (lo + hi) / 2) / span + 0.5
    return np.stack([xy[:, 0], 1 - xy[:, 1]], 1) * (_FACE_PX - 1)


def _paint_texture(template: np.ndarray, holes: _Holes, rng: np.random.Generator) -> np.ndarray:
    atlas = np.zeros((_ATLAS, _ATLAS, 3), np.float32)
    uv = _face_uv(template)
    # skin: a random tone with low-frequency blotches and freckles
    skin = np.array([rng.uniform(0.55, 0.9), rng.uniform(0.4, 0.65), rng.uniform(0.3, 0.5)])
    noise = cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), (_FACE_PX, _FACE_PX), interpolation=cv2.INTER_CUBIC)
    face = skin * (1 + 0.06 * noise[..., None])
    for _ in range(rng.integers(20, 60)):
        p = rng.uniform(40, _FACE_PX - 40, 2).astype(int)
        cv2.circle(face, tuple(int(x) for x in p), int(rng.integers(1, 3)), (skin * 0.7).tolist(), -1)
    if holes.mouth is not None:  # lips: a band around the mouth opening
        ring = uv[holes.mouth].astype(np.float32)
        c, w = ring.mean(0), np.ptp(ring[:, 0])  # the opening may be a closed slit: size lips by its width
        lips = np.array([rng.uniform(0.55, 0.75), rng.uniform(0.2, 0.3), rng.uniform(0.25, 0.35)])
        cv2.ellipse(face, (int(c[0]), int(c[1])), (int(0.54 * w), int(rng.uniform(0.15, 0.2) * w)), 0, 0, 360,
                    lips.tolist(), -1, cv2.LINE_AA)
    for eye in holes.eyes:  # eyeliner and brows
        ring = uv[eye].astype(np.int32)
        cv2.polylines(face, [ring], True, (skin * 0.35).tolist(), 2, cv2.LINE_AA)
        c, w = ring.mean(0), np.ptp(ring[:, 0])
        brow = np.array([[c[0] - 0.6 * w, c[1] - 0.55 * w], [c[0], c[1] - 0.75 * w], [c[0] + 0.6 * w, c[1] - 0.6 * w]])
        cv2.polylines(face, [brow.astype(np.int32)], False, (skin * rng.uniform(0.15, 0.35)).tolist(),
                      int(rng.integers(5, 9)), cv2.LINE_AA)
    atlas[:_FACE_PX, :_FACE_PX] = face
    # eyeball: sclera with a coloured iris and a pupil
    eye = np.full((128, 128, 3), 0.92, np.float32)
    iris = np.array([rng.uniform(0.1, 0.45), rng.uniform(0.15, 0.4), rng.uniform(0.1, 0.35)])
    cv2.circle(eye, (64, 64), 34, iris.tolist(), -1, cv2.LINE_AA)
    cv2.circle(eye, (64, 64), 14, (0.03, 0.03, 0.03), -1, cv2.LINE_AA)
    atlas[:128, 384:] = eye
    # mouth interior: teeth along the top and bottom edges, a dark cavity between
    mouth = np.zeros((256, 128, 3), np.float32)
    mouth[:] = (0.25, 0.05, 0.06)
    for top, bottom in ((0, 60), (196, 256)):
        mouth[top:bottom] = (0.93, 0.9, 0.82)
        for x in range(0, 128, 16):
            mouth[top:bottom, x:x + 2] = (0.7, 0.66, 0.6)
    mouth[100:156] = (0.08, 0.02, 0.03)
    atlas[128:384, 384:] = mouth
    return (np.clip(atlas, 0, 1) * 255).astype(np.uint8)


_PHOTO_CROP = 184  # photo pixels around the face that fill the face square of the atlas


@lru_cache(maxsize=1)
def _photo_landmarks() -> np.ndarray:  # [468, 2] pixels of `astronaut()` (centres at integers)
    """mediapipe's landmarks on the builtin template's source photo (as `build_builtin` detects them)."""
    from liftdata.head.build_builtin import detect_landmarks

    raw, (w, h) = detect_landmarks()
    return raw[:, :2] * (w, h) - 0.5


def _photo_texture(template: np.ndarray, holes: _Holes, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Atlas with the astronaut photo in the face square (colour-jittered) and the face uvs [468, 2]."""
    from skimage.data import astronaut

    atlas = _paint_texture(template, holes, rng)  # keeps the eyeball and mouth squares
    px = _photo_landmarks()
    x0, y0 = np.round((px.min(0) + px.max(0)) / 2 - _PHOTO_CROP / 2).astype(int)
    crop = astronaut()[y0:y0 + _PHOTO_CROP, x0:x0 + _PHOTO_CROP].astype(np.float32) / 255
    face = cv2.resize(crop, (_FACE_PX, _FACE_PX), interpolation=cv2.INTER_CUBIC)
    gain = rng.uniform(0.8, 1.15) * rng.uniform(0.9, 1.1, 3)  # brightness and tint
    atlas[:_FACE_PX, :_FACE_PX] = (np.clip(face * gain, 0, 1) * 255 + 0.5).astype(np.uint8)
    scale = _FACE_PX / _PHOTO_CROP
    uv = (px - (x0 - 0.5, y0 - 0.5)) * scale - 0.5
    return atlas, uv.astype(np.float32)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(0.2, 0.8, 3), rng.uniform(0.2, 0.8, 3)
    img = a * (1 - yy[..., None]) + b * yy[..., None] + 0.1 * xx[..., None]
    for _ in range(6):
        c = tuple(int(x) for x in rng.integers(0, size, 2))
        cv2.circle(img, c, int(rng.integers(size // 16, size // 5)), rng.uniform(0, 1, 3).tolist(), -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), size / 64)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


TEXTURES = ("painted", "photo")


HEADS = ("face", "proxy")


def make_subject(seed: int, head_model: HeadModel | None = None, size: int = 256,
                 texture: str = "painted", head: str = "face") -> Subject:
    """A deterministic random subject for `seed` with a "painted" or "photo" albedo (module docstring).

    head="proxy" (opt-in; builtin model only) adds the whole-head proxy (`BuiltinHeadModel.
    head_proxy`): a hair-textured skull and a skin-coloured neck behind the face, so that warping
    hair with the head can be measured; the face, light and background are those of head="face".
    """
    if texture not in TEXTURES:
        raise ValueError(f"texture: expected one of {TEXTURES}, got {texture!r}")
    if head not in HEADS:
        raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
    model = head_model or _default_model()
    rng = np.random.default_rng([seed, 1])
    identity = random_identity(model, rng)
    template = _template(model, identity)
    holes = _holes(model.faces, template)
    if texture == "photo":
        if len(template) != 468 or model.name != "builtin":
            raise ValueError(f"texture='photo' needs the builtin head model (its vertices are mediapipe "
                             f"landmarks), got {model.name!r} with {len(template)} vertices")
        atlas, uv = _photo_texture(template, holes, rng)
    else:
        atlas, uv = _paint_texture(template, holes, rng), None
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.8, -0.2), -1.0])
    background = _background(size, rng)
    if head == "proxy":
        if not hasattr(model, "head_proxy"):
            raise ValueError(f"head='proxy' needs the builtin head model, got {model.name!r}")
        _paint_hair(atlas, np.random.default_rng([seed, 3]))
    return Subject(model, identity, atlas, background, tuple((light / np.linalg.norm(light)).tolist()),
                   face_uv=uv, skirt=texture == "photo", proxy=head == "proxy")


_HAIR_ROWS = (388, 508)  # atlas rows of the hair strip (columns 4..380); skin patch at [388:508, 392:508]


def _paint_hair(atlas: np.ndarray, rng: np.random.Generator) -> None:
    """Hair (a dark base with strands) in the atlas' free strip, and a skin patch for the neck."""
    base = np.array([rng.uniform(0.08, 0.35), rng.uniform(0.05, 0.22), rng.uniform(0.03, 0.12)])
    h, w = 128, 384
    strands = cv2.resize(rng.normal(0, 1, (h // 2, 96)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    hair = base * (1 + 0.35 * strands[..., None]) + 0.05 * rng.normal(0, 1, (h, w, 1))
    atlas[384:512, 0:384] = (np.clip(hair, 0, 1) * 255).astype(np.uint8)
    skin = np.median(atlas[150:250, 150:250].reshape(-1, 3), axis=0)
    atlas[384:512, 384:512] = skin.astype(np.uint8)


def _default_model() -> HeadModel:
    from liftdata.head import load_head_model

    return load_head_model("builtin")


# ---------------------------------------------------------------------- kinematics
def _smooth_noise(rng: np.random.Generator, n: int, dims: int, period: float) -> np.ndarray:
    """Band-limited noise in [-1, 1]: a sum of a few random sinusoids per dimension."""
    t = np.arange(n)[:, None]
    out = np.zeros((n, dims))
    for _ in range(3):
        f = rng.uniform(0.5, 1.5, dims) / period
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, dims)) / 3
    return out


def sample_kinematics(model: HeadModel, n_frames: int, rng: np.random.Generator, *,
                      max_yaw_deg: float = 20.0, max_pitch_deg: float = 10.0, max_roll_deg: float = 5.0,
                      expression_scale: float = 1.0) -> Kinematics:
    """Smooth, plausible random motion: head pose sway plus expression events (and blinks)."""
    k = neutral_kinematics(model, n_frames)
    prior = model.expression_prior()
    pose = _smooth_noise(rng, n_frames, 3, period=60) * np.radians([max_pitch_deg, max_yaw_deg, max_roll_deg])
    trans = _smooth_noise(rng, n_frames, 3, period=80) * 0.01
    expr = np.array(k.expression, dtype=np.float64)
    names = list(model.expression_names or [])
    n_events = max(1, n_frames // 12)
    t = np.arange(n_frames)
    for _ in range(n_events):  # smooth bumps of a few coefficients
        centre, width = rng.uniform(0, n_frames), rng.uniform(4, 12)
        bump = np.exp(-0.5 * ((t - centre) / width) ** 2)
        idx = rng.choice(model.n_expression, size=min(2, model.n_expression), replace=False)
        amp = rng.uniform(0.3, 1.0, len(idx)) * expression_scale
        if not names:  # PCA model: signed coefficients, scaled by the prior's std
            amp *= rng.choice([-1, 1], len(idx)) * np.sqrt(np.diag(prior.covariance)[idx]) * 1.5
        expr[:, idx] += bump[:, None] * amp
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):  # blinks: short, both eyes together
        if name in names:
            for centre in rng.uniform(0, n_frames, max(1, n_frames // 40)):
                expr[:, names.index(name)] += np.exp(-0.5 * ((t - centre) / 1.5) ** 2)
    expr = np.clip(expr, prior.lower, prior.upper)
    return k.replace(expression=expr, rotation=pose, translation=trans)


# ---------------------------------------------------------------------- rendering
def _caps(verts: torch.Tensor, holes: _Holes, depth_eye: float = 0.006, depth_mouth: float = 0.012):
    """Recessed caps for the eye and mouth holes: vertices [T, n, 3], faces, atlas uvs [n, 2]."""
    v = verts.shape[1]
    # The face's forward direction per frame: the normal of the plane through the eye and mouth
    # loops, signed away from the mesh centroid (which lies behind the loops on a face mesh).
    loops = [*holes.eyes] + ([holes.mouth] if holes.mouth is not None else [])
    pts = torch.cat([verts[:, loop] for loop in loops], 1)
    centred = pts - pts.mean(1, keepdim=True)
    forward = torch.linalg.svd(centred, full_matrices=False).Vh[:, -1]  # plane normal [T, 3]
    backwards = verts.mean(1) - pts.mean(1)
    forward = forward * torch.sign((forward * -backwards).sum(-1, keepdim=True) + 1e-12)
    new_v, new_f, new_uv = [], [], []
    base = v
    for kind, loop in [("eye", e) for e in holes.eyes] + ([("mouth", holes.mouth)] if holes.mouth is not None else []):
        n = len(loop)
        depth = depth_eye if kind == "eye" else depth_mouth
        ring = verts[:, loop] - forward[:, None] * depth * 0.3
        centre = verts[:, loop].mean(1, keepdim=True) - forward[:, None] * depth
        new_v += [ring, centre]
        idx_ring = base + np.arange(n)
        idx_c = base + n
        for i in range(n):  # tube from the lid/lip edge inwards, then a fan
            j = (i + 1) % n
            a, b, ra, rb = loop[i], loop[j], idx_ring[i], idx_ring[j]
            new_f += [[a, ra, b], [b, ra, rb], [ra, idx_c, rb]]
        if kind == "eye":
            ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
            ring_uv = np.stack([448 + 60 * np.cos(ang), 64 + 60 * np.sin(ang)], 1)
            new_uv += [ring_uv, [[448.0, 64.0]]]
        else:
            p = verts[0, loop].detach().cpu().numpy()
            x = (p[:, 0] - p[:, 0].min()) / max(np.ptp(p[:, 0]), 1e-6)
            y = np.where(holes.mouth_upper, 130.0, 382.0)
            new_uv += [np.stack([386 + 124 * x, y], 1), [[448.0, 256.0]]]
        base += n + 1
    return torch.cat(new_v, 1), np.array(new_f, np.int64), np.concatenate(new_uv).astype(np.float32)


SKIRT_RINGS = ((0.02, 0.015), (0.04, 0.05))  # (outwards, backwards) in metres of each ring


def _rigid_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [V, 3], [T, V, 3] -> [T, 3, 3]
    """The rotations R that best map a onto each b (Kabsch: b - mean ~ (a - mean) R^T)."""
    h = (a - a.mean(0)).T[None] @ (b - b.mean(1, keepdim=True))
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return vt.transpose(1, 2) @ fix @ u.transpose(1, 2)


def _skirt(verts: torch.Tensor, template: np.ndarray, loop: np.ndarray, uv: np.ndarray, base: int):
    """Rings continuing the outer boundary `loop` outwards and backwards, rigid with the head.

    Each ring vertex is its boundary vertex plus a fixed template-space offset turned by the head's
    rotation (Kabsch per frame); its uv continues the boundary uv outwards at the atlas' scale.
    Returns vertices [T, n, 3], faces (indices from `base`), uvs [n, 2].
    """
    p = template[loop]
    d = np.stack([p[:, 0], p[:, 1] - template[:, 1].mean(), np.zeros(len(p))], 1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    px_per_m = np.linalg.norm(uv[263] - uv[33]) / np.linalg.norm(template[263] - template[33])
    rot = _rigid_rotation(torch.as_tensor(template, dtype=verts.dtype), verts[:, :len(template)])
    new_v, new_f, new_uv, prev, n = [], [], [], np.asarray(loop), len(loop)
    for i, (out, back) in enumerate(SKIRT_RINGS):
        offset = torch.as_tensor(out * d - [0, 0, back], dtype=verts.dtype)
        new_v.append(verts[:, loop] + offset[None] @ rot.transpose(1, 2))
        new_uv.append(uv[loop] + px_per_m * out * d[:, :2] * [1, -1])
        cur = base + i * n + np.arange(n)
        nxt = np.roll(np.arange(n), -1)
        new_f += np.stack([prev, cur, prev[nxt]], 1).tolist() + np.stack([prev[nxt], cur, cur[nxt]], 1).tolist()
        prev = cur
    return torch.cat(new_v, 1), np.array(new_f, np.int64), np.concatenate(new_uv).astype(np.float32)


def _proxy_geometry(model: Any, identity: np.ndarray, face: torch.Tensor, base: int):
    """The posed whole-head proxy with hair/skin uvs: vertices [T, n, 3], faces (from `base`), uvs [n, 2].

    The shell's rim is a copy of the face oval (same positions, hair uvs): the hairline is a seam."""
    from liftdata.head.builtin import PROXY_RINGS, pose_head_proxy

    proxy = model.head_proxy(identity)
    V = len(proxy.neutral_face)
    oval = boundary_loops(np.asarray(model.faces))[0]
    n = len(oval)
    shell = torch.as_tensor(pose_head_proxy(proxy, face.detach().double().numpy()), dtype=face.dtype)
    verts = torch.cat([face[:, oval], shell], 1)  # the oval copy, then the proxy's vertices
    where = np.full(V, -1)
    where[oval] = np.arange(n)
    faces = np.asarray(proxy.faces)
    faces = np.where(faces < V, base + where[np.minimum(faces, V - 1)], base + n + faces - V)
    lo, hi = _HAIR_ROWS
    col = 4 + 376 * np.arange(n) / (n - 1)
    rings = [np.stack([col, np.full(n, lo + (hi - lo) * j / PROXY_RINGS)], 1) for j in range(PROXY_RINGS + 1)]
    n_neck = len(proxy.vertices) - PROXY_RINGS * n - 1
    uv = np.concatenate([*rings, [[192.0, hi]], np.tile([[450.0, 450.0]], (n_neck, 1))])
    return verts, faces.astype(np.int64), uv.astype(np.float32)


def _scene(subject: Subject, kinematics: Kinematics):
    """The subject's mesh with caps (and skirt): vertices [T, V', 3], faces, atlas uvs [V', 2]."""
    model = subject.head_model
    template = _template(model, subject.identity)
    holes = _holes(model.faces, template)
    with torch.no_grad():
        verts = model.vertices(torch.as_tensor(subject.identity), kinematics).float()
    face_uv = _face_uv(template) if subject.face_uv is None else subject.face_uv
    uv, faces = face_uv.astype(np.float32), np.asarray(model.faces, np.int64)
    if holes.mouth is not None or holes.eyes:
        cap_v, cap_f, cap_uv = _caps(verts, holes)
        verts, faces, uv = torch.cat([verts, cap_v], 1), np.concatenate([faces, cap_f]), np.concatenate([uv, cap_uv])
    if subject.proxy:
        px_v, px_f, px_uv = _proxy_geometry(model, subject.identity, verts[:, :len(template)], verts.shape[1])
        verts, faces, uv = torch.cat([verts, px_v], 1), np.concatenate([faces, px_f]), np.concatenate([uv, px_uv])
    if subject.skirt:
        loop = boundary_loops(np.asarray(model.faces))[0]
        sk_v, sk_f, sk_uv = _skirt(verts, template, loop, face_uv, verts.shape[1])
        verts, faces, uv = torch.cat([verts, sk_v], 1), np.concatenate([faces, sk_f]), np.concatenate([uv, sk_uv])
    return verts, faces, uv


def render_subject(subject: Subject, kinematics: Kinematics, camera: Camera, *, supersample: int = 2,
                   backend: str = "auto") -> np.ndarray:
    """Render frames [T, H, W, 3] uint8 of `subject` under `kinematics` (anti-aliased)."""
    from liftdata.render import condition_maps, rasterize, render_textured

    verts, faces, uv = _scene(subject, kinematics)
    big = camera.resized(camera.width * supersample, camera.height * supersample)
    frags = rasterize(verts, faces, big, backend=backend)
    albedo, mask = render_textured(verts, faces, big, torch.as_tensor(uv), subject.texture, fragments=frags)
    shade = condition_maps(verts, faces, big, fragments=frags, light_dir=subject.light_dir)["shading"]
    rgb = (albedo * (0.25 + 1.0 * shade)).clamp(0, 1).cpu().numpy()
    m = mask.float().cpu().numpy()[..., None]
    bg = cv2.resize(subject.background, (big.width, big.height), interpolation=cv2.INTER_LINEAR) / 255.0
    out = rgb * m + bg[None] * (1 - m)
    frames = [cv2.resize(f.astype(np.float32), (camera.width, camera.height), interpolation=cv2.INTER_AREA)
              for f in out]
    return (np.clip(np.stack(frames), 0, 1) * 255 + 0.5).astype(np.uint8)


def make_capture(seed: int, n_frames: int = 32, kinematics: Kinematics | None = None, size: int = 256,
                 head_model: HeadModel | None = None, fov_y_deg: float = 24.0, distance: float = 0.55,
                 backend: str = "auto", texture: str = "painted", head: str = "face", **motion: Any) -> Capture:
    """A synthetic capture with exact ground truth, deterministic per `seed`.

    Args:
        seed: selects the subject (identity, skin, background, light) and the sampled motion.
        n_frames: frames to render when `kinematics` is None.
        kinematics: render these instead of sampling (their length sets n_frames).
        size: square frame size in pixels.
        head_model: defaults to the builtin model.
        texture: "painted" or "photo" (builtin model only; see the module docstring).
        head: "face" (default) or "proxy" (adds a hair-textured skull and a neck; see `make_subject`).
        motion: keyword arguments for `sample_kinematics` (e.g. max_yaw_deg, expression_scale).
    """
    subject = make_subject(seed, head_model, size, texture, head)
    model = subject.head_model
    if kinematics is None:
        kinematics = sample_kinematics(model, n_frames, np.random.default_rng([seed, 2]), **motion)
    camera = Camera.frontal(fov_y_deg, size, size, distance)
    frames = render_subject(subject, kinematics, camera, backend=backend)
    return Capture(frames=frames, kinematics=kinematics, camera=camera, identity=subject.identity,
                   head_model=model, capture_id=f"synthetic-{seed}", subject_id=f"synthetic-{seed}",
                   fps=25.0, extra={"synthetic": {"seed": seed, "light_dir": list(subject.light_dir),
                                                  "texture": texture,
                                                  **({"head": head} if head != "face" else {})}})


def drift_exposure(frames: np.ndarray, amount: float, seed: int = 0) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 with a camera's auto-exposure and white balance drifting over time.

    Frame t is multiplied by (1 + amount sin(2 pi t / 24 + a)) (exposure) and, per channel, by
    (1 + amount / 4 sin(2 pi t / 17 + b_c)) (white balance); phases a, b_c drawn from `seed`.
    """
    frames = np.asarray(frames)
    rng = np.random.default_rng([seed, 7])
    t = np.arange(len(frames))[:, None]
    gain = (1 + amount * np.sin(2 * np.pi * t / 24 + rng.uniform(0, 2 * np.pi))) * (
        1 + 0.25 * amount * np.sin(2 * np.pi * t / 17 + rng.uniform(0, 2 * np.pi, 3)))  # [T, 3]
    return np.clip(np.rint(frames * gain[:, None, None, :].astype(np.float32)), 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _fourcc() -> int:
    return cv2.VideoWriter_fourcc(*"mp4v")


def write_video(capture: Capture, path: str | os.PathLike, fps: float | None = None) -> str:
    """Encode the capture's frames to an mp4 file (MPEG-4 Part 2 through OpenCV)."""
    path = str(path)
    first = np.asarray(capture.frames[0])
    h, w = first.shape[:2]
    tmp = path + ".tmp.mp4"
    writer = cv2.VideoWriter(tmp, _fourcc(), fps or capture.fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot open a video writer (unwritable directory or codec missing)")
    for i in range(len(capture)):
        writer.write(cv2.cvtColor(np.asarray(capture.frames[i]), cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------- multi-subject videos
@dataclass(frozen=True)
class Piece:
    """One part of a `make_cut_video`: a shot of a subject, black frames, or a face leaving the frame.

    kind: "face" (subject `seed`, its own sampled motion from `motion_seed`), "black", or "leave"
    (subject `seed` moving sideways until the face is out of the frame, then empty background).
    """

    kind: str
    n_frames: int
    seed: int = 0
    motion_seed: int = 0


@dataclass
class CutVideo:
    """Frames with per-frame ground truth of who is visible (`make_cut_video`).

    Attributes:
        frames: [T, H, W, 3] uint8.
        seed: [T] subject seed of the frame (-1: black).
        piece: [T] index of the piece each frame comes from (a hard cut between pieces).
        face_visible: [T] all of the subject's face-mesh vertices project inside the frame.
        kinematics, camera: per-frame ground truth of the visible subject (`identities[seed]`).
    """

    frames: np.ndarray
    seed: np.ndarray
    piece: np.ndarray
    face_visible: np.ndarray
    kinematics: Kinematics
    camera: Camera
    identities: dict[int, np.ndarray]
    fps: float = 25.0


def _leave_motion(model: HeadModel, n: int, rng: np.random.Generator, distance: float, fov_y_deg: float) -> Kinematics:
    """Gentle sway, then a sideways slide to 1.6 half-frame widths at the head's depth (out of view)."""
    k = sample_kinematics(model, n, rng, max_yaw_deg=10, max_pitch_deg=5, max_roll_deg=3)
    half = distance * np.tan(np.radians(fov_y_deg) / 2)
    ramp = np.clip((np.arange(n) - n / 3) / (n / 3), 0, 1)
    trans = np.array(k.translation)
    trans[:, 0] += 1.6 * half * ramp
    return k.replace(translation=trans)


def make_cut_video(pieces: list[Piece], size: int = 256, head_model: HeadModel | None = None,
                   fov_y_deg: float = 24.0, distance: float = 0.55, backend: str = "auto") -> CutVideo:
    """Synthetic subjects joined by hard cuts (with black frames, faces leaving): segmentation tests.

    Every piece of a subject uses that subject's identity, albedo, light and background
    (`make_subject(seed)`); each "face" piece samples its own motion (`motion_seed`).
    """
    model = head_model or _default_model()
    camera = Camera.frontal(fov_y_deg, size, size, distance)
    frames, seeds, piece_id, visible, kins, identities = [], [], [], [], [], {}
    for i, p in enumerate(pieces):
        if p.kind not in ("face", "black", "leave"):
            raise ValueError(f"pieces[{i}].kind: expected 'face', 'black' or 'leave', got {p.kind!r}")
        if p.kind == "black":
            frames.append(np.zeros((p.n_frames, size, size, 3), np.uint8))
            kins.append(neutral_kinematics(model, p.n_frames))
            seeds += [-1] * p.n_frames
            visible += [False] * p.n_frames
        else:
            subject = make_subject(p.seed, model, size)
            identities[p.seed] = subject.identity
            rng = np.random.default_rng([p.seed, 3, p.motion_seed])
            k = (sample_kinematics(model, p.n_frames, rng) if p.kind == "face"
                 else _leave_motion(model, p.n_frames, rng, distance, fov_y_deg))
            frames.append(render_subject(subject, k, camera, backend=backend))
            with torch.no_grad():
                uv = camera.project(model.vertices(torch.as_tensor(subject.identity), k).numpy())[..., :2]
            inside = ((uv >= -0.5) & (uv <= size - 0.5)).all(-1).all(-1)
            kins.append(k)
            seeds += [p.seed] * p.n_frames
            visible += inside.tolist()
        piece_id += [i] * p.n_frames
    return CutVideo(np.concatenate(frames), np.array(seeds), np.array(piece_id), np.array(visible),
                    Kinematics.concat(kins), camera, identities)
