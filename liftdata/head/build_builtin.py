"""Generator of the builtin head model asset (`liftdata/assets/builtin_head_v1.npz`).

    python -m liftdata.head.build_builtin                 # rebuild the asset
    python -m liftdata.head.build_builtin contact-sheet   # render docs/builtin_blendshapes.png
    python -m liftdata.head.build_builtin proxy-sheet     # render docs/builtin_head_proxy.png

The whole-head proxy (`liftdata.head.builtin.build_head_proxy`) is not stored in the asset: it is
generated from each subject's neutral face (so it is fitted to the subject's face size).

Steps (deterministic; needs mediapipe, run once by maintainers, not at import time):

1. mediapipe 0.10.14 face mesh (468 landmarks) on the frontal photo `skimage.data.astronaut()`.
2. Metric template: pixels -> right-handed model space (+x subject's left, +y up, +z out of the
   face), frontalized by fitting the plane of symmetry to mirror-partner pairs, scaled so that
   the outer eye corners are 9 cm apart, origin 9.5 cm behind the nose tip, then symmetrized.
   This is the photo's face: an open-mouthed smile (lips ~1 cm apart, corners raised).
2b. Relaxed neutral (`neutralize`): remove the smile and close the lips with smooth (biharmonic)
   deformations, so that expression = 0 is a relaxed face with the mouth closed to a slit.
3. Triangles: the 3-cliques of `FACEMESH_TESSELATION` minus the two spurious ones, oriented
   counter-clockwise seen from outside (852 triangles; boundary loops: oval 36, inner lips 20,
   eyes 16 + 16).
4. Blendshapes: procedural offsets on the neutral template from mediapipe's region sets with
   biharmonic / smooth falloffs (`liftdata.head._builtin_shapes`); Right shapes are exact mirrors
   of the Left ones.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ASSET = Path(__file__).resolve().parents[1] / "assets" / "builtin_head_v1.npz"
SHEET = Path(__file__).resolve().parents[2] / "docs" / "builtin_blendshapes.png"
PROXY_SHEET = Path(__file__).resolve().parents[2] / "docs" / "builtin_head_proxy.png"

EYE_CORNER_DISTANCE = 0.09  # m, outer eye corners (landmarks 33, 263)
HEAD_CENTRE_BEHIND_NOSE = 0.095  # m, model origin behind the nose tip (landmark 1)
SPURIOUS_TRIANGLES = ((49, 64, 129), (279, 294, 358))  # all three edges non-manifold


# ---------------------------------------------------------------------- 1. landmarks
def detect_landmarks() -> tuple[np.ndarray, tuple[int, int]]:
    """mediapipe face mesh on `skimage.data.astronaut()` -> ([468, 3] normalised xyz, (W, H))."""
    import mediapipe as mp
    import skimage.data

    image = skimage.data.astronaut()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=False) as mesh:
        result = mesh.process(image)
    lm = result.multi_face_landmarks[0].landmark
    return np.array([[p.x, p.y, p.z] for p in lm[:468]], np.float64), (image.shape[1], image.shape[0])


# ---------------------------------------------------------------------- 2. template
def mirror_partners(points: np.ndarray) -> np.ndarray:  # [V, 3] roughly frontal -> [V]
    """Partner of each vertex under x -> -x (an involution), by optimal assignment."""
    from scipy.optimize import linear_sum_assignment

    mirrored = points * [-1, 1, 1]
    cost = ((mirrored[:, None] - points[None]) ** 2).sum(-1)
    _, partner = linear_sum_assignment(cost)
    return partner


def _symmetry_frame(points: np.ndarray, partner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation [3, 3] (rows = model axes) and centre [3] of the plane of symmetry."""
    diff = points - points[partner]
    diff = diff[np.linalg.norm(diff, axis=1) > 1e-9]
    diff *= np.sign(diff[:, :1])  # make all point to +x
    x = np.linalg.svd(diff, full_matrices=False)[2][0]
    x *= np.sign(x[0])
    up = points[10] - points[152]  # chin -> top of the forehead
    y = up - (up @ x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)]), ((points + points[partner]) / 2).mean(0)


def metric_template(raw: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """[468, 3] normalised mediapipe landmarks -> (symmetric template [468, 3] m, partner [468])."""
    w, h = size
    points = np.stack([raw[:, 0] * w, -raw[:, 1] * h, -raw[:, 2] * w], 1)  # +y up, +z to camera
    points -= points.mean(0)
    eye_line = points[263] - points[33]
    angle = np.arctan2(eye_line[1], eye_line[0])  # rough roll removal before pairing
    c, s = np.cos(angle), np.sin(angle)
    points = points @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    for _ in range(3):  # alternate pairing and plane fitting
        partner = mirror_partners(points)
        axes, centre = _symmetry_frame(points, partner)
        points = (points - centre) @ axes.T
    points *= EYE_CORNER_DISTANCE / np.linalg.norm(points[263] - points[33])
    points = (points + points[partner] * [-1, 1, 1]) / 2  # symmetrize
    origin = np.array([0.0, points[[33, 263, 1]].mean(0)[1], points[1, 2] - HEAD_CENTRE_BEHIND_NOSE])
    return points - origin, partner


# ---------------------------------------------------------------------- 2b. relaxed neutral
RELAX_SMILE = 0.5  # the photo's smile, as a fraction of the model's own mouthSmile (both sides)
LIP_MEET = 0.45  # the closed lips meet this far from the inner upper to the inner lower lip
LIP_ROLL_IN = 0.0008  # m, the meeting line sits this far behind the lips' mean depth
LIP_OUTER_FOLLOW = 0.8  # the outer lip contours move by this fraction of their inner partners
LIP_CORNER_DROP = 0.0003  # m, the inner mouth corners sink this much below their relaxed height,
#                           so the thin corner triangles do not fold over the closed lip line
CLOSE_RADIUS = 0.035  # m, skin farther than this from the lips does not move


def neutralize(template: np.ndarray, edges: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Relaxed neutral [468, 3] from the photo's open smile: expression = 0 is a closed, relaxed mouth.

    The astronaut smiles with the lips ~1 cm apart; ARKit coefficients start from a relaxed face.
    (a) Relax the smile: subtract `RELAX_SMILE` x the model's own mouthSmileLeft + Right (built on
        the photo template): corners go down and inward to the closed lip line, cheeks drop.
    (b) Close the lips: `close_lips`. The topology is unchanged: the mouth hole becomes a slit.
    (c) Symmetrize (the mesh graph is only nearly mirror-symmetric).
    """
    from liftdata.head._builtin_shapes import ShapeBuilder, mouth_smile

    sb = ShapeBuilder(template, edges, partner)
    smile = mouth_smile(sb)
    relaxed = template - RELAX_SMILE * (smile + sb.mirror(smile))
    closed = close_lips(ShapeBuilder(relaxed, edges, partner))
    return (closed + closed[partner] * [-1, 1, 1]) / 2


def close_lips(sb) -> np.ndarray:  # ShapeBuilder on the relaxed template -> [V, 3]
    """Inner lip chains meet (gap 0) at `LIP_MEET` between them, rolled in by `LIP_ROLL_IN`; the outer
    contours follow by `LIP_OUTER_FOLLOW`, the inner corners sink by `LIP_CORNER_DROP`; biharmonic
    spread over lips, chin and cheeks, zero beyond `CLOSE_RADIUS` and at the eyes."""
    from liftdata.head._builtin_shapes import (LIP_LOWER_INNER, LIP_LOWER_OUTER, LIP_UPPER_INNER,
                                               LIP_UPPER_OUTER)

    t = sb.t
    upper, lower = np.array(LIP_UPPER_INNER[1:-1]), np.array(LIP_LOWER_INNER[1:-1])
    meet = (1 - LIP_MEET) * t[upper] + LIP_MEET * t[lower] - [0, 0, LIP_ROLL_IN]
    move_up, move_low = meet - t[upper], meet - t[lower]
    outer_up, outer_low = np.array(LIP_UPPER_OUTER[1:-1]), np.array(LIP_LOWER_OUTER[1:-1])
    corners = np.array([LIP_UPPER_INNER[0], LIP_UPPER_INNER[-1]])
    handles = np.r_[upper, lower, outer_up, outer_low, corners]
    offsets = np.r_[move_up, move_low, LIP_OUTER_FOLLOW * move_up, LIP_OUTER_FOLLOW * move_low,
                    [[0, -LIP_CORNER_DROP, 0]] * 2]
    return t + sb.spread(handles, offsets, CLOSE_RADIUS, still=sb.eyes)


# ---------------------------------------------------------------------- 3. triangles
def tessellation_edges() -> np.ndarray:
    """[1322, 2] unique undirected edges of mediapipe's FACEMESH_TESSELATION (sorted)."""
    import mediapipe as mp

    return np.array(sorted({tuple(sorted(e)) for e in mp.solutions.face_mesh.FACEMESH_TESSELATION}))


def triangles_from_edges(edges: np.ndarray) -> np.ndarray:
    """All 3-cliques of the edge graph, minus the spurious ones -> [852, 3] (unoriented)."""
    neighbours: dict[int, set[int]] = {}
    for i, j in edges:
        neighbours.setdefault(int(i), set()).add(int(j))
        neighbours.setdefault(int(j), set()).add(int(i))
    cliques = {tuple(sorted((int(i), int(j), k))) for i, j in edges for k in neighbours[i] & neighbours[j]}
    return np.array(sorted(cliques - set(SPURIOUS_TRIANGLES)), np.int64)


def orient_faces(faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Orient triangles consistently (propagated over shared edges), outward normals to +z."""
    faces = faces.copy()
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for f, tri in enumerate(faces):
        for a, b in itertools.combinations(sorted(tri), 2):
            edge_faces.setdefault((a, b), []).append(f)
    done = np.zeros(len(faces), bool)
    done[0], stack = True, [0]
    while stack:  # breadth over the dual graph: neighbours traverse the shared edge oppositely
        f = stack.pop()
        directed = {(faces[f][k], faces[f][(k + 1) % 3]) for k in range(3)}
        for a, b in itertools.combinations(sorted(faces[f]), 2):
            for g in edge_faces[(a, b)]:
                if done[g]:
                    continue
                g_directed = {(faces[g][k], faces[g][(k + 1) % 3]) for k in range(3)}
                if g_directed & directed:
                    faces[g] = faces[g][::-1]
                done[g] = True
                stack.append(g)
    if face_normals(points, faces)[:, 2].sum() < 0:
        faces = faces[:, ::-1]
    return np.ascontiguousarray(faces)


def face_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:  # -> [F, 3] unnormalised
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    return np.cross(b - a, c - a)


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """Closed boundary loops (edges used by one triangle), as ordered vertex lists."""
    count = Counter(tuple(sorted(e)) for tri in faces for e in itertools.combinations(tri, 2))
    nxt: dict[int, list[int]] = {}
    for (a, b), n in count.items():
        if n == 1:
            nxt.setdefault(a, []).append(b)
            nxt.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, prev = [start], None
        seen.add(start)
        while True:
            step = [v for v in nxt[loop[-1]] if v != prev and v not in seen]
            if not step:
                break
            prev = loop[-1]
            loop.append(step[0])
            seen.add(step[0])
        loops.append(loop)
    return loops


# ---------------------------------------------------------------------- 4. the asset
JAW_MAX_ANGLE = np.deg2rad(22.0)  # jawOpen = 1 rotates the jaw by this about the +x axis (~2.8 cm at the lips)
NECK_PIVOT = np.array([0.0, -0.09, -0.05])  # m, below and behind the face


def build_asset() -> dict[str, np.ndarray]:
    """Everything the builtin model needs, as arrays (float32 / int64 / str)."""
    from liftdata.head._builtin_shapes import build_shapes

    raw, size = detect_landmarks()
    photo, partner = metric_template(raw, size)
    edges = tessellation_edges()
    template = neutralize(photo, edges, partner)
    faces = orient_faces(triangles_from_edges(edges), template)
    shapes = build_shapes(template, edges, partner)
    return {
        "template": template.astype(np.float32),
        "faces": faces.astype(np.int64),
        "mirror_partner": partner.astype(np.int64),
        "expression_names": np.array(shapes["names"]),
        "basis": shapes["basis"].astype(np.float32),
        "jaw_weights": shapes["jaw_weights"].astype(np.float32),
        "jaw_pivot": shapes["jaw_pivot"].astype(np.float32),
        "jaw_max_angle": np.float32(JAW_MAX_ANGLE),
        "neck_pivot": NECK_PIVOT.astype(np.float32),
    }


def write_asset(path: Path = ASSET) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **build_asset())
    return path


# ---------------------------------------------------------------------- 5. contact sheet
def _preview_shading(vertices: np.ndarray, faces: np.ndarray, camera) -> np.ndarray:
    """PREVIEW-ONLY FALLBACK (used while `liftdata.render.condition_maps` is missing): painter's
    algorithm with cv2.fillConvexPoly, Lambert shading, light from the camera. -> [H, W] in [0, 1]."""
    import cv2

    uvz = camera.project(vertices)
    cam = vertices @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]
    n = face_normals(cam, faces)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    shade = np.clip(-n[:, 2], 0, 1) * 0.8 + 0.2  # camera looks down +z: front faces have n_z < 0
    image = np.zeros((camera.height, camera.width), np.float32)
    for f in np.argsort(-uvz[faces, 2].mean(1)):  # far to near
        if n[f, 2] < 0:
            cv2.fillConvexPoly(image, np.round(uvz[faces[f], :2] * 16).astype(np.int32), float(shade[f]),
                               lineType=cv2.LINE_AA, shift=4)
    return image


def _shading(vertices: np.ndarray, faces: np.ndarray, camera) -> np.ndarray:  # [T, V, 3] -> [T, H, W]
    try:
        from liftdata.render import condition_maps
    except ImportError:
        return np.stack([_preview_shading(v, faces, camera) for v in vertices])
    import torch

    maps = condition_maps(torch.as_tensor(vertices, dtype=torch.float32), torch.as_tensor(faces), camera)
    return np.asarray(maps["shading"])[..., 0]


def contact_sheet(path: Path = SHEET, tile: int = 256, columns: int = 6) -> Path:
    """Every blendshape at 0.5 and 1.0 (+ neutral, front and yaw 60 deg) as a labelled PNG grid."""
    import cv2
    import torch

    from liftdata.head.builtin import BuiltinHeadModel
    from liftdata.head.base import neutral_kinematics
    from liftdata.kinematics import Camera

    model = BuiltinHeadModel.from_file(ASSET)
    side = {"neutral yaw 60": None, "jawOpen 1.0 yaw 60": "jawOpen", "mouthPucker 1.0 yaw 60": "mouthPucker"}
    labels, frames = ["neutral"] + list(side), [np.zeros(model.n_expression)]
    frames += [np.eye(model.n_expression)[model.expression_index(n)] if n else frames[0] for n in side.values()]
    for i, name in enumerate(model.expression_names):
        for value in (0.5, 1.0):
            frames.append(np.eye(model.n_expression)[i] * value)
            labels.append(f"{name} {value:.1f}")
    k = neutral_kinematics(model, len(frames))
    rotation = np.zeros((len(frames), 3), np.float32)
    rotation[1:1 + len(side), 1] = np.deg2rad(60)
    translation = np.zeros((len(frames), 3), np.float32)
    translation[1:1 + len(side), 0] = -0.06  # keep the turned face in the tile
    k = k.replace(expression=np.array(frames, np.float32), rotation=rotation, translation=translation)
    with torch.no_grad():
        vertices = model.vertices(model.neutral_identity(), k).numpy().astype(np.float64)
    camera = Camera.frontal(fov_y_deg=20.0, width=tile, height=tile, distance=0.65)
    shading = _shading(vertices, model.faces, camera)
    rows = -(-len(frames) // columns)
    sheet = np.zeros((rows * tile, columns * tile), np.uint8)
    for i, (image, label) in enumerate(zip(shading, labels)):
        tile_img = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        cv2.putText(tile_img, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_AA)
        r, c = divmod(i, columns)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = tile_img
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)
    return path


def proxy_sheet(path: Path = PROXY_SHEET, tile: int = 256) -> Path:
    """The face mesh + whole-head proxy (shading maps) from several sides, neutral and with jawOpen 1."""
    import cv2
    import torch

    from liftdata.head.base import neutral_kinematics
    from liftdata.head.builtin import BuiltinHeadModel
    from liftdata.kinematics import Camera
    from liftdata.render import condition_maps

    model = BuiltinHeadModel.from_file(ASSET)
    views = [("front", 0, 0, 0), ("yaw 45", 0, 45, 0), ("yaw 90", 0, 90, 0), ("yaw 135", 0, 135, 0),
             ("back", 0, 180, 0), ("pitch -50, yaw 30", -50, 30, 0), ("jawOpen 1, yaw 60", 0, 60, 1),
             ("pitch 40, yaw -30", 40, -30, 0)]
    k = neutral_kinematics(model, len(views))
    expr = np.array(k.expression)
    expr[:, model.expression_index("jawOpen")] = [v[3] for v in views]
    rot = np.radians([[v[1], v[2], 0.0] for v in views]).astype(np.float32)
    verts, faces = model.whole_head(model.neutral_identity(), k.replace(expression=expr, rotation=rot))
    with torch.no_grad():
        maps = condition_maps(verts, faces, Camera.frontal(24.0, tile, tile, 0.85))
    tiles = []
    for (label, *_), shade, mask in zip(views, maps["shading"], maps["mask"]):
        img = (np.repeat((shade.numpy() * 0.8 + 0.2 * (1 - mask.numpy())) * 255, 3, -1)).astype(np.uint8)
        cv2.putText(img, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(img)
    sheet = np.concatenate([np.concatenate(tiles[:4], 1), np.concatenate(tiles[4:], 1)], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "contact-sheet":
        print(contact_sheet(Path(argv[1]) if len(argv) > 1 else SHEET))
    elif argv and argv[0] == "proxy-sheet":
        print(proxy_sheet(Path(argv[1]) if len(argv) > 1 else PROXY_SHEET))
    elif not argv:
        print(write_asset())
    else:
        raise SystemExit("usage: python -m liftdata.head.build_builtin [contact-sheet [PATH] | proxy-sheet [PATH]]")


if __name__ == "__main__":
    main()
