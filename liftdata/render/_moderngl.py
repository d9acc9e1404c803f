"""OpenGL rasterizer through a headless EGL context (moderngl; Mesa llvmpipe or a GPU driver).

One context per process, created lazily; programs, buffers and framebuffers are cached and
reused. Frames are drawn one after another into the same framebuffer and read straight into a
preallocated numpy array. The projection maps OpenCV pixel (u, v) to window coordinates
(u + 0.5, v + 0.5) without a y flip, so row 0 of the read-back image is the top image row and the
pixel grid is exactly the torch backend's (camera-facing triangles then wind clockwise).

Two passes:
* "fragments": de-indexed triangles (3 corners per face, corner c gets barycentric e_c),
  writing (b0, b1, camera z, face id + 1) into one RGBA32F target.
* "maps": indexed triangles with per-vertex normals; the fragment shader writes the encoded
  normal and Lambertian shading (RGBA32F) and camera z (R32F): the condition maps in one pass.
* "maps8": the same draw into one RGBA8 target (encoded normal xyz + shading, quantised by
  the GPU): 4 bytes per pixel read back instead of 20, no depth; the mask is recovered from the
  encoded normal (see `condition_maps_moderngl`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from liftdata.render.raster import NEAR, EGLUnavailableError, Fragments, RenderError, Scene

__all__ = ["get_context", "rasterize_moderngl", "condition_maps_moderngl"]

_VERTEX = """
#version 330
uniform mat4 proj;
in vec3 in_pos;  // camera space (OpenCV)
{decl}
out float v_z;
void main() {{
    v_z = in_pos.z;
    {body}
    gl_Position = proj * vec4(in_pos, 1.0);
}}
"""
_SHADERS = {
    "fragments": (
        _VERTEX.format(decl="out vec3 v_bary;",
                       body="int c = gl_VertexID % 3; v_bary = vec3(c == 0, c == 1, c == 2);"),
        """
        #version 330
        in vec3 v_bary;
        in float v_z;
        out vec4 out_fragment;
        void main() { out_fragment = vec4(v_bary.x, v_bary.y, v_z, float(gl_PrimitiveID + 1)); }
        """),
    "maps": (
        _VERTEX.format(decl="in vec3 in_normal; out vec3 v_normal;", body="v_normal = in_normal;"),
        """
        #version 330
        uniform vec3 light;
        uniform float ambient;
        uniform float diffuse;
        in vec3 v_normal;
        in float v_z;
        layout(location = 0) out vec4 out_normal_shading;
        layout(location = 1) out float out_depth;
        void main() {
            vec3 n = normalize(v_normal);
            out_normal_shading = vec4(0.5 * n + 0.5, ambient + diffuse * max(dot(n, light), 0.0));
            out_depth = v_z;
        }
        """),
}
_SHADERS["maps8"] = (_SHADERS["maps"][0], """
        #version 330
        uniform vec3 light;
        uniform float ambient;
        uniform float diffuse;
        in vec3 v_normal;
        in float v_z;
        out vec4 out_normal_shading;  // RGBA8 unorm target: clamped to [0, 1], x 255, rounded
        void main() {
            vec3 n = normalize(v_normal);
            out_normal_shading = vec4(0.5 * n + 0.5, ambient + diffuse * max(dot(n, light), 0.0));
        }
        """)
_ATTRIBUTES = {"fragments": ("3f", "in_pos"), "maps": ("3f 3f", "in_pos", "in_normal"),
               "maps8": ("3f 3f", "in_pos", "in_normal")}
# colour attachments: (components, moderngl dtype); "f4" float32, "f1" 8-bit unorm
_TARGETS = {"fragments": ((4, "f4"),), "maps": ((4, "f4"), (1, "f4")), "maps8": ((4, "f1"),)}

_CACHE: dict[str, Any] = {}  # "context" and one _Pass per kind


@dataclass
class _Pass:
    program: Any
    vbo: Any = None
    ibo: Any = None
    vao: Any = None
    framebuffers: dict = field(default_factory=dict)  # (width, height) -> framebuffer


def get_context() -> Any:
    """The process-wide moderngl EGL context (created on first use)."""
    if "context" not in _CACHE:
        try:
            import moderngl

            _CACHE["context"] = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as e:  # any failure here means: no usable EGL OpenGL 3.3 context
            raise EGLUnavailableError(
                f"EGL could not be initialised for backend='moderngl' ({type(e).__name__}: {e}). "
                "Use backend=\"torch\" (the pure-torch rasterizer: slower, same results).") from e
    return _CACHE["context"]


def _pass(kind: str, width: int, height: int, vbo_bytes: int, ibo_bytes: int = 0) -> tuple[_Pass, Any]:
    """The cached program/buffers/vertex array of a pass (grown as needed) and its framebuffer."""
    ctx = get_context()
    if kind not in _CACHE:
        vertex, fragment = _SHADERS[kind]
        _CACHE[kind] = _Pass(ctx.program(vertex_shader=vertex, fragment_shader=fragment))
    p = _CACHE[kind]
    if p.vbo is None or p.vbo.size < vbo_bytes or (ibo_bytes and p.ibo.size < ibo_bytes):
        for obj in (p.vao, p.vbo, p.ibo):
            if obj is not None:
                obj.release()
        p.vbo = ctx.buffer(reserve=max(vbo_bytes, 4))
        p.ibo = ctx.buffer(reserve=ibo_bytes) if ibo_bytes else None
        p.vao = ctx.vertex_array(p.program, [(p.vbo, *_ATTRIBUTES[kind])], index_buffer=p.ibo,
                                 index_element_size=4)
    if (width, height) not in p.framebuffers:
        colour = [ctx.renderbuffer((width, height), c, dtype=dt) for c, dt in _TARGETS[kind]]
        p.framebuffers[width, height] = ctx.framebuffer(colour, ctx.depth_renderbuffer((width, height)))
    return p, p.framebuffers[width, height]


def _projection(K: np.ndarray, width: int, height: int, near: float, far: float) -> bytes:
    """OpenCV intrinsics -> OpenGL clip transform (column-major float32 bytes).

    x_ndc = (2u + 1) / W - 1 and y_ndc = (2v + 1) / H - 1 put pixel (u, v) at window (u + .5, v + .5);
    z_ndc runs from -1 at `near` to 1 at `far`; w_clip = camera z.
    """
    (fx, s, cx), (_, fy, cy) = K[0], K[1]
    P = np.array([[2 * fx / width, 2 * s / width, (2 * cx + 1) / width - 1, 0],
                  [0, 2 * fy / height, (2 * cy + 1) / height - 1, 0],
                  [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
                  [0, 0, 1, 0]])
    return P.T.astype("f4").tobytes()


def _depth_ranges(z: Tensor) -> list[tuple[float, float]]:
    """[T, N] camera z -> per-frame (near, far) clip planes enclosing every z > NEAR."""
    valid = z > NEAR
    zmin = torch.where(valid, z, torch.inf).amin(1)
    zmax = torch.where(valid, z, 0.0).amax(1)
    return [(0.5 * lo, 2.0 * hi) if hi > 0 else (NEAR, 1.0) for lo, hi in zip(zmin.tolist(), zmax.tolist())]


def _begin(ctx: Any, fbo: Any, cull_backfaces: bool) -> None:
    import moderngl

    ctx.enable_only(moderngl.DEPTH_TEST | (moderngl.CULL_FACE if cull_backfaces else 0))
    ctx.front_face, ctx.cull_face = "cw", "back"  # camera-facing triangles wind clockwise on screen
    fbo.use()


def rasterize_moderngl(scene: Scene, cull_backfaces: bool = False) -> Fragments:
    T, F, W, H = scene.vertices.shape[0], scene.faces.shape[0], scene.width, scene.height
    if F >= 1 << 24:
        raise RenderError(f"faces: the moderngl backend supports < 2**24 faces, got {F}")
    corners = scene.vertices.float().cpu()[:, scene.faces.cpu()]  # [T, F, 3, 3]
    keep = (corners[..., 2] > NEAR).all(-1)
    data = (corners * keep[..., None, None]).numpy()  # dropped faces collapse to a clipped point
    ranges = _depth_ranges(corners[..., 2].reshape(T, -1))
    p, fbo = _pass("fragments", W, H, vbo_bytes=data[0].nbytes)
    _begin(get_context(), fbo, cull_backfaces)
    out = np.empty((T, H, W, 4), np.float32)
    for t in range(T):
        p.vbo.write(data[t])
        p.program["proj"].write(_projection(scene.K[t], W, H, *ranges[t]))
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        p.vao.render(vertices=3 * F)
        fbo.read_into(out, components=4, dtype="f4", write_offset=t * out[0].nbytes)
    out = torch.from_numpy(out).to(scene.vertices.device)
    face_id = out[..., 3].long() - 1  # exact: small integers are exact in float32
    mask = face_id >= 0
    bary = out[..., :3].clone()  # b0, b1 are 0 on the background (cleared)
    bary[..., 2] = (1 - out[..., 0] - out[..., 1]) * mask
    return Fragments(face_id, bary, out[..., 2].contiguous(), mask)


def condition_maps_moderngl(scene: Scene, normals: Tensor, light: tuple[float, float, float],
                            ambient: float, diffuse: float, cull_backfaces: bool = False,
                            eight_bit: bool = False) -> dict[str, Tensor]:
    """Shading / normal / depth / mask maps in one pass; `normals`: [T, V, 3] camera space.

    `eight_bit`: uint8 shading / normal / mask (0 / 255) and no depth, from one RGBA8 target.
    """
    T, W, H = scene.vertices.shape[0], scene.width, scene.height
    device = scene.vertices.device
    if eight_bit:
        packed = np.empty((T, H, W, 4), np.uint8)  # encoded normal xyz, shading
        _draw_maps(scene, normals, "maps8", (light, ambient, diffuse), cull_backfaces, [(packed, 0, "f1")])
        # The background is cleared to 0; a drawn pixel never encodes to (0, 0, 0): that needs
        # round(255 (0.5 n_i + 0.5)) = 0, i.e. n_i < -1 + 1/255, for all three i, so
        # |n|^2 > 3 (254/255)^2 > 2.9, impossible for the unit normal the shader writes.
        rgb = np.array([255, 255, 255, 0], np.uint8).view(np.uint32)[0]  # byte-order independent
        mask = ((packed.view(np.uint32) & rgb) != 0).view(np.uint8) * np.uint8(255)  # [T, H, W, 1]
        packed, mask = torch.from_numpy(packed).to(device), torch.from_numpy(mask).to(device)
        return {"shading": packed[..., 3:], "normal": packed[..., :3], "mask": mask}
    normal_shading = np.empty((T, H, W, 4), np.float32)
    depth = np.empty((T, H, W, 1), np.float32)
    _draw_maps(scene, normals, "maps", (light, ambient, diffuse), cull_backfaces,
               [(normal_shading, 0, "f4"), (depth, 1, "f4")])
    normal_shading, depth = (torch.from_numpy(x).to(device) for x in (normal_shading, depth))
    return {"shading": normal_shading[..., 3:], "normal": normal_shading[..., :3], "depth": depth,
            "mask": (depth > 0).float()}


def _draw_maps(scene: Scene, normals: Tensor, kind: str, lighting: tuple, cull_backfaces: bool,
               reads: list[tuple[np.ndarray, int, str]]) -> None:
    """Draw every frame with the "maps" or "maps8" pass; `reads`: (out [T, H, W, C], attachment,
    dtype) colour buffers read straight into preallocated arrays."""
    T, W, H = scene.vertices.shape[0], scene.width, scene.height
    vertices, faces = scene.vertices.float().cpu(), scene.faces.cpu()
    data = torch.cat([vertices, normals.float().cpu()], -1).numpy()  # [T, V, 6]
    indices = faces.int().numpy()
    too_near = vertices[..., 2] <= NEAR  # [T, V]
    clipped = too_near.any(1).tolist()  # frames in which some faces are skipped
    p, fbo = _pass(kind, W, H, vbo_bytes=data[0].nbytes, ibo_bytes=indices.nbytes)
    for name, value in zip(("light", "ambient", "diffuse"), lighting):
        p.program[name].value = value
    _begin(get_context(), fbo, cull_backfaces)
    ranges = _depth_ranges(vertices[..., 2])
    p.ibo.write(indices)
    for t in range(T):
        drawn = indices[~too_near[t][faces].any(1).numpy()] if clipped[t] else indices
        if clipped[t] or (t and clipped[t - 1]):
            p.ibo.write(drawn)
        p.vbo.write(data[t])
        p.program["proj"].write(_projection(scene.K[t], W, H, *ranges[t]))
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        p.vao.render(vertices=drawn.size)
        for out, attachment, dtype in reads:
            fbo.read_into(out, components=out.shape[-1], attachment=attachment, dtype=dtype,
                          write_offset=t * out[0].nbytes)
