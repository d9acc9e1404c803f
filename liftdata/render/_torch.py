"""Pure-torch reference rasterizer: slow, simple, obviously correct (float64 throughout).

Per frame: project the vertices with K, enumerate the pixel centres inside each face's bounding
box, keep those with all three edge functions >= 0, compute perspective-correct barycentrics and
depth, and resolve visibility with a z-buffer (`scatter_reduce("amin")`, ties -> lowest face id).
"""

from __future__ import annotations

import torch
from torch import Tensor

from liftdata.render.raster import NEAR, Fragments, Scene

__all__ = ["rasterize_torch"]

CHUNK = 1 << 22  # bounding-box pixel candidates processed at once


def rasterize_torch(scene: Scene, cull_backfaces: bool = False) -> Fragments:
    """Rasterize on the CPU; the fragments go to the device of `scene.vertices`."""
    vertices, faces = scene.vertices.cpu(), scene.faces.cpu()
    frames = [_rasterize_frame(vertices[t], faces, torch.as_tensor(scene.K[t]),
                               scene.height, scene.width, cull_backfaces)
              for t in range(vertices.shape[0])]
    face_id, bary, depth = (torch.stack(x).to(scene.vertices.device) for x in zip(*frames))
    return Fragments(face_id, bary.float(), depth.float(), face_id >= 0)


def _edge(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """Signed area of the parallelogram (b - a, p - a); [..., 2] points -> [...]."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _rasterize_frame(v: Tensor, faces: Tensor, K: Tensor, height: int, width: int,
                     cull_backfaces: bool) -> tuple[Tensor, Tensor, Tensor]:
    """[V, 3] camera-space vertices -> face_id [H, W], barycentrics [H, W, 3], depth [H, W]."""
    z = v[:, 2]
    uv = (v @ K.to(v).T)[:, :2] / z[:, None]  # pixel coordinates (garbage where z <= 0)
    tri, tri_z = uv[faces], z[faces]  # [F, 3, 2], [F, 3]
    area = _edge(tri[:, 0], tri[:, 1], tri[:, 2])  # < 0: outside faces the camera
    keep = (tri_z > NEAR).all(1) & (area != 0)
    if cull_backfaces:
        keep &= area < 0
    ids = keep.nonzero().squeeze(1)
    hits = [_covered_pixels(tri[chunk], tri_z[chunk], area[chunk], chunk, height, width)
            for chunk in _chunks(tri[ids], ids, height, width)]
    pix, face, bary, depth = (torch.cat(x) for x in zip(*hits)) if hits else _no_hits(v)

    # z-buffer: nearest fragment per pixel, ties broken by the lowest face id
    n = height * width
    nearest = torch.full((n,), torch.inf, dtype=v.dtype).scatter_reduce(0, pix, depth, "amin")
    front = depth == nearest[pix]
    lowest = torch.full((n,), faces.shape[0], dtype=torch.long).scatter_reduce(0, pix[front], face[front], "amin")
    win = front & (face == lowest[pix])
    face_id = torch.full((n,), -1, dtype=torch.long).index_copy(0, pix[win], face[win])
    out_bary = v.new_zeros(n, 3).index_copy(0, pix[win], bary[win])
    out_depth = v.new_zeros(n).index_copy(0, pix[win], depth[win])
    return face_id.view(height, width), out_bary.view(height, width, 3), out_depth.view(height, width)


def _bbox(tri: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixel-centre bounding boxes of [F, 3, 2] triangles, clipped to the image: x0, y0, nx, ny."""
    lo = tri.amin(1).ceil().clamp(min=0).long()
    hi = torch.minimum(tri.amax(1).floor(), torch.tensor([width - 1.0, height - 1.0], dtype=tri.dtype)).long()
    n = (hi - lo + 1).clamp(min=0)
    return lo[:, 0], lo[:, 1], n[:, 0], n[:, 1]


def _chunks(tri: Tensor, ids: Tensor, height: int, width: int) -> list[Tensor]:
    """Split face ids so that each chunk has about CHUNK bounding-box pixels."""
    _, _, nx, ny = _bbox(tri, height, width)
    total = (nx * ny).cumsum(0)
    last = int(total[-1]) if len(total) else 0
    bounds = torch.searchsorted(total, torch.arange(CHUNK, max(last, CHUNK), CHUNK))
    return [c for c in torch.tensor_split(ids, bounds.tolist()) if len(c)]


def _covered_pixels(tri: Tensor, tri_z: Tensor, area: Tensor, face: Tensor, height: int, width: int):
    """Pixels whose centre lies inside a face: flat pixel index, face id, barycentrics, depth."""
    x0, y0, nx, ny = _bbox(tri, height, width)
    count = nx * ny
    owner = torch.repeat_interleave(torch.arange(len(face)), count)  # candidate -> face in chunk
    local = torch.arange(int(count.sum())) - (count.cumsum(0) - count)[owner]
    px = x0[owner] + local % nx[owner]
    py = y0[owner] + local // nx[owner]
    p = torch.stack([px, py], -1).to(tri)
    t = tri[owner]
    # screen-space barycentrics: the edge opposite each vertex, normalised by the signed area
    screen = torch.stack([_edge(t[:, 1], t[:, 2], p), _edge(t[:, 2], t[:, 0], p),
                          _edge(t[:, 0], t[:, 1], p)], -1) / area[owner, None]
    inside = (screen >= 0).all(1)
    screen, owner = screen[inside], owner[inside]
    # perspective correction: weights w_i / z_i, depth = 1 / sum(w_i / z_i)
    q = screen / tri_z[owner]
    depth = 1.0 / q.sum(1)
    return (py * width + px)[inside], face[owner], q * depth[:, None], depth


def _no_hits(v: Tensor):
    empty = torch.zeros(0, dtype=torch.long)
    return empty, empty, v.new_zeros(0, 3), v.new_zeros(0)
