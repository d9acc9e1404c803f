"""Procedural ARKit-style blendshapes on the mediapipe face-mesh template (used by build_builtin).

Each shape is built for the subject's LEFT side (+x) or symmetrically, as a displacement of a few
*handle* vertices taken from mediapipe's region sets (lips, eyes, brows, nose), spread over the
surrounding skin by biharmonic interpolation on the mesh graph (smooth, exact at the handles,
zero beyond a geodesic radius). Right shapes are exact mirror images of the Left ones.
The template's lips are closed (see `build_builtin.neutralize`): shapes that should not open the
mouth move each inner upper/lower lip pair together (`seal_lips`), so the lips neither part nor cross.
jawOpen is not a linear shape: it is a rotation about a jaw axis with per-vertex `jaw_weights`
(1 on the lower lip and chin, 0 on the upper lip and above, smooth in between).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import spsolve

# Ordered mediapipe loops (corner first), from FACEMESH_LIPS / FACEMESH_LEFT_EYE / _RIGHT_EYE.
LIP_UPPER_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIP_LOWER_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
LIP_UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIP_LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
LEFT_EYE_UPPER = [263, 466, 388, 387, 386, 385, 384, 398, 362]
LEFT_EYE_LOWER = [263, 249, 390, 373, 374, 380, 381, 382, 362]
LEFT_BROW = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]  # FACEMESH_LEFT_EYEBROW
LEFT_NOSE_WING = [278, 294, 327, 326, 344, 440, 279, 358, 331, 460, 455]
LEFT_MOUTH_CORNER = [291, 308, 375, 409, 306, 292, 415, 324]  # + the inner lip pair next to it
RIGHT_EYE_LOOP = [33, 246, 161, 160, 159, 158, 157, 173, 133, 7, 163, 144, 145, 153, 154, 155]

MIRROR = np.array([-1.0, 1.0, 1.0])


class ShapeBuilder:
    """Graph tools on the template: geodesic distances and biharmonic spreading."""

    def __init__(self, template: np.ndarray, edges: np.ndarray, partner: np.ndarray):
        self.t, self.partner, n = template, partner, len(template)
        length = np.linalg.norm(template[edges[:, 0]] - template[edges[:, 1]], axis=1)
        graph = coo_matrix((length, (edges[:, 0], edges[:, 1])), shape=(n, n))
        self.geodesic = dijkstra(graph, directed=False)  # [V, V] metres along mesh edges
        adj = csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        adj = adj + adj.T
        lap = csr_matrix(np.diag(np.asarray(adj.sum(1)).ravel())) - adj
        self.bilaplacian = (lap.T @ lap).tocsr()
        self.left_eye = np.array(LEFT_EYE_UPPER + LEFT_EYE_LOWER)
        self.eyes = np.concatenate([self.left_eye, RIGHT_EYE_LOOP])

    def distance_to(self, idx) -> np.ndarray:  # -> [V]
        return self.geodesic[:, np.asarray(idx)].min(1)

    def interpolate(self, fixed, values: np.ndarray) -> np.ndarray:
        """Biharmonic interpolation [V, C] of `values` [len(fixed), C] given at vertices `fixed`."""
        fixed_mask = np.zeros(len(self.t), bool)
        fixed_mask[np.asarray(fixed)] = True
        out = np.zeros((len(self.t), values.shape[1]))
        out[np.asarray(fixed)] = values
        free = ~fixed_mask
        a = self.bilaplacian[free][:, free].tocsc()
        b = -self.bilaplacian[free][:, fixed_mask] @ out[fixed_mask]
        out[free] = np.stack([spsolve(a, b[:, k]) for k in range(values.shape[1])], 1)
        return out

    def spread(self, handles, offsets: np.ndarray, radius: float, still=()) -> np.ndarray:
        """Offsets [V, 3]: `offsets` at `handles`, zero beyond `radius` and at `still`, smooth between."""
        handles = np.asarray(handles)
        zero = np.flatnonzero((self.distance_to(handles) > radius) | np.isin(np.arange(len(self.t)), still))
        zero = np.setdiff1d(zero, handles)
        fixed = np.concatenate([handles, zero])
        values = np.concatenate([np.broadcast_to(offsets, (len(handles), 3)), np.zeros((len(zero), 3))])
        return self.interpolate(fixed, values)

    def mirror(self, offsets: np.ndarray) -> np.ndarray:
        """Left shape [V, 3] -> its Right mirror image."""
        return offsets[self.partner] * MIRROR

    def side(self, width: float = 0.006) -> np.ndarray:
        """[V] weight of the subject's left side (+x): 0 -> 1 across the midline, w(x) + w(-x) = 1."""
        s = np.clip(0.5 + self.t[:, 0] / (2 * width), 0, 1)
        return s * s * (3 - 2 * s)


def smooth_falloff(d: np.ndarray, radius: float) -> np.ndarray:
    s = np.clip(1 - d / radius, 0, 1)
    return s * s * (3 - 2 * s)


# ---------------------------------------------------------------------- jaw
def jaw_weights(sb: ShapeBuilder) -> np.ndarray:
    """[V] skinning weight of the jaw: 1 on the lower lip and chin, 0 on the upper lip and above."""
    t = sb.t
    corner_y = t[[61, 291], 1].mean()
    lower = LIP_LOWER_OUTER[1:-1] + LIP_LOWER_INNER[1:-1] + list(np.flatnonzero(t[:, 1] < corner_y - 0.02))
    upper = LIP_UPPER_OUTER[1:-1] + LIP_UPPER_INNER[1:-1] + list(np.flatnonzero(t[:, 1] > t[2, 1] - 0.004))
    lower = sorted(set(lower))
    upper = sorted(set(upper) - set(lower))
    fixed = np.array(lower + upper)
    values = sb.interpolate(fixed, np.r_[np.ones(len(lower)), np.zeros(len(upper))][:, None])
    return np.clip(values[:, 0], 0, 1)


def jaw_pivot(sb: ShapeBuilder) -> np.ndarray:
    """The jaw hinge (temporomandibular joints): at ear level, near the back of the face mesh."""
    t = sb.t
    return np.array([0.0, t[[234, 454], 1].mean() - 0.005, t[[234, 454], 2].mean() - 0.005])


# ---------------------------------------------------------------------- mouth
def lip_weight(sb: ShapeBuilder, radius: float = 0.012) -> np.ndarray:
    """[V] 1 on the lips (inside the outer lip contour), falling to 0 `radius` outside it."""
    lips = LIP_UPPER_OUTER + LIP_LOWER_OUTER + LIP_UPPER_INNER + LIP_LOWER_INNER
    inside = np.flatnonzero(sb.distance_to(lips) < 1e-9)
    band = sb.geodesic[:, LIP_UPPER_OUTER + LIP_LOWER_OUTER].min(1)
    between = np.flatnonzero((sb.t[:, 1] < sb.t[0, 1]) & (sb.t[:, 1] > sb.t[17, 1]) &
                             (np.abs(sb.t[:, 0]) < sb.t[291, 0]) & (band < 0.004))
    return np.maximum(smooth_falloff(band, radius), np.isin(np.arange(len(sb.t)), np.r_[inside, between]))


def seal_lips(sb: ShapeBuilder, offsets: np.ndarray, radius: float = 0.01) -> np.ndarray:
    """Keep the closed lips closed: each inner upper/lower lip pair moves by the pair's mean offset,
    the correction fading over the lips within `radius`."""
    upper, lower = np.array(LIP_UPPER_INNER[1:-1]), np.array(LIP_LOWER_INNER[1:-1])
    half = (offsets[lower] - offsets[upper]) / 2
    handles = np.r_[upper, lower, LIP_UPPER_INNER[0], LIP_UPPER_INNER[-1]]
    return offsets + sb.spread(handles, np.r_[half, -half, np.zeros((2, 3))], radius, still=sb.eyes)


def corner_shape(sb: ShapeBuilder, direction, magnitude: float, radius: float) -> np.ndarray:
    """Left mouth corner moves by `magnitude` along `direction`, the skin around it follows, the
    lips stay closed."""
    d = np.asarray(direction, float)
    return seal_lips(sb, sb.spread(LEFT_MOUTH_CORNER, magnitude * d / np.linalg.norm(d), radius, still=sb.eyes))


def mouth_smile(sb: ShapeBuilder) -> np.ndarray:
    """Left corner up, out and back (12 mm), the cheek above it up and forward."""
    corner = corner_shape(sb, (0.55, 0.8, -0.25), 0.012, 0.04)
    cheek = sb.spread([425, 411, 280], (0.001, 0.004, 0.003), 0.03, still=np.r_[sb.eyes, LEFT_MOUTH_CORNER])
    return corner + cheek


def mouth_pucker(sb: ShapeBuilder, lw: np.ndarray) -> np.ndarray:
    t = sb.t
    width = t[291, 0]
    forward = 0.012 * (1 - 0.5 * (t[:, 0] / width) ** 2).clip(0)
    return lw[:, None] * np.stack([-0.38 * t[:, 0], np.zeros(len(t)), forward], 1)


def mouth_funnel(sb: ShapeBuilder, lw: np.ndarray, jw: np.ndarray) -> np.ndarray:
    t = sb.t
    width = t[291, 0]
    centre = (1 - (t[:, 0] / width) ** 2).clip(0)
    open_y = np.where(jw > 0.5, -0.006, 0.004) * centre
    return lw[:, None] * np.stack([-0.25 * t[:, 0], open_y, 0.009 + 0.003 * centre], 1)


def mouth_press(sb: ShapeBuilder, lw: np.ndarray, jw: np.ndarray) -> np.ndarray:
    """Left half of the closed lips pressed together: they thin towards the lip line (2.5 mm at
    4 mm from it) and roll in; the lip line itself stays, so the lips do not cross."""
    t = sb.t
    thin = 0.0025 * np.clip(sb.distance_to(LIP_UPPER_INNER + LIP_LOWER_INNER) / 0.004, 0, 1)
    towards = (2 * jw - 1) * thin  # up on the lower lip, down on the upper, 0 at the corners
    return (lw * sb.side())[:, None] * np.stack([np.zeros(len(t)), towards, np.full(len(t), -0.002)], 1)


# ---------------------------------------------------------------------- eyes, brows, nose, cheeks
def eye_blink(sb: ShapeBuilder) -> np.ndarray:
    """Left upper lid closes onto the lower lid (they meet at 80 % of the way down). The closed lid
    bulges forward over the eyeball (2 mm mid-lid); the eye corners come 1.2 mm forward with it and
    the falloff is wide (18 mm), so no crease runs out from the outer corner."""
    upper, lower = np.array(LEFT_EYE_UPPER[1:-1]), np.array(LEFT_EYE_LOWER[1:-1])
    meet = 0.2 * sb.t[upper] + 0.8 * sb.t[lower]
    handles = np.r_[upper, lower, LEFT_EYE_UPPER[0], LEFT_EYE_UPPER[-1]]
    offsets = np.r_[meet - sb.t[upper], meet - sb.t[lower], [[0, 0, 0.0012]] * 2]
    bulge = 0.002 * np.sin(np.linspace(0, np.pi, len(upper) + 2)[1:-1])  # the closed lid covers the eyeball
    offsets[: 2 * len(upper), 2] += np.r_[bulge, bulge]
    return sb.spread(handles, offsets, 0.018, still=LEFT_BROW)


def eye_wide(sb: ShapeBuilder) -> np.ndarray:
    upper = np.array(LEFT_EYE_UPPER)
    lift = 0.003 * np.sin(np.linspace(0, np.pi, len(upper)))
    return sb.spread(upper, lift[:, None] * [0, 1, 0.1], 0.014, still=LEFT_EYE_LOWER)


def eye_squint(sb: ShapeBuilder) -> np.ndarray:
    lower = np.array(LEFT_EYE_LOWER)
    lift = 0.0025 * np.sin(np.linspace(0, np.pi, len(lower)))
    return sb.spread(lower, lift[:, None] * [0, 1, 0.2], 0.018, still=LEFT_EYE_UPPER)


def brow_shape(sb: ShapeBuilder, inner: float, outer: float, dy: float, dx: float = 0.0) -> np.ndarray:
    """Left brow: vertical move `dy` weighted from `inner` (at the nose) to `outer` (at the temple)."""
    brow = np.array(LEFT_BROW)
    x = sb.t[brow, 0]
    s = (x - x.min()) / (x.max() - x.min())
    weight = inner + (outer - inner) * s
    offsets = np.stack([dx * weight, dy * weight, np.zeros(len(brow))], 1)
    return sb.spread(brow, offsets, 0.025, still=sb.eyes)


def cheek_puff(sb: ShapeBuilder) -> np.ndarray:
    """Both cheeks out by 1 cm: a bump with a Euclidean (not mesh-graph) smoothstep falloff, 4 cm
    wide, faded to 0 within 12 mm of the lips, so the silhouette stays smooth."""
    t = sb.t
    normal = np.stack([t[:, 0], np.zeros(len(t)), np.full(len(t), 0.02)], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    centre = t[np.argmin(np.linalg.norm(t - [0.047, -0.04, 0.04], axis=1))]
    lips = t[LIP_UPPER_OUTER + LIP_LOWER_OUTER + LIP_UPPER_INNER + LIP_LOWER_INNER]
    to_lips = np.linalg.norm(t[:, None] - lips[None], axis=2).min(1)
    w = smooth_falloff(np.linalg.norm(t - centre, axis=1), 0.04) * (1 - smooth_falloff(to_lips, 0.012))
    left = 0.01 * w[:, None] * normal
    return left + sb.mirror(left)


def nose_sneer(sb: ShapeBuilder) -> np.ndarray:
    return sb.spread(LEFT_NOSE_WING, (0.0005, 0.005, 0.001), 0.02, still=np.r_[sb.eyes, 1, 4, 5, 195])


# ---------------------------------------------------------------------- all
def build_shapes(template: np.ndarray, edges: np.ndarray, partner: np.ndarray) -> dict:
    """Named blendshape offsets (fixed order) and the jaw rig of the builtin model."""
    sb = ShapeBuilder(template, edges, partner)
    jw, lw = jaw_weights(sb), lip_weight(sb)
    side = sb.side()
    x = np.array([1.0, 0, 0])
    left = {  # subject's left (+x) versions; each gets a mirrored Right twin
        "jaw": jw[:, None] * 0.01 * x,
        "mouth": lw[:, None] * 0.008 * x,
        "mouthSmile": mouth_smile(sb),
        "mouthFrown": corner_shape(sb, (0.15, -1.0, -0.1), 0.008, 0.03),
        "mouthStretch": corner_shape(sb, (1.0, -0.35, -0.3), 0.01, 0.035),
        "mouthPress": mouth_press(sb, lw, jw),
        "mouthUpperUp": ((1 - jw) * lw * side)[:, None] * [0, 0.004, 0.001],
        "mouthLowerDown": (jw * lw * side)[:, None] * [0, -0.004, 0.001],
        "eyeBlink": eye_blink(sb),
        "eyeWide": eye_wide(sb),
        "eyeSquint": eye_squint(sb),
        "browOuterUp": brow_shape(sb, 0.0, 1.0, 0.008),
        "browDown": brow_shape(sb, 1.0, 0.5, -0.006, dx=-0.004),
        "noseSneer": nose_sneer(sb),
    }
    inner_up = brow_shape(sb, 1.0, 0.1, 0.008)
    both = {
        "jawOpen": np.zeros_like(template),  # a rotation (jaw rig below), no linear part
        "mouthPucker": mouth_pucker(sb, lw),
        "mouthFunnel": mouth_funnel(sb, lw, jw),
        "browInnerUp": inner_up + sb.mirror(inner_up),
        "cheekPuff": cheek_puff(sb),
    }
    shapes = {}
    for name in EXPRESSION_ORDER:
        if name in both:
            shapes[name] = both[name]
        elif name.endswith("Left"):
            shapes[name] = left[name[:-4]]
        else:
            shapes[name] = sb.mirror(left[name[:-5]])
    return {"names": list(EXPRESSION_ORDER), "basis": np.stack([shapes[n] for n in EXPRESSION_ORDER]),
            "jaw_weights": jw, "jaw_pivot": jaw_pivot(sb)}


EXPRESSION_ORDER = (
    "jawOpen", "jawLeft", "jawRight", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthPucker", "mouthFunnel",
    "mouthPressLeft", "mouthPressRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthLowerDownLeft", "mouthLowerDownRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft", "browDownRight",
    "cheekPuff", "noseSneerLeft", "noseSneerRight",
)
