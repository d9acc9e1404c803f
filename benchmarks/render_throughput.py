"""Condition-map throughput of both render backends, next to a bare moderngl draw.

Prints ONE JSON line. For each mesh (~860 faces like the builtin face mesh, and 10k faces) and
image size (256², 512²), with batches of T=16 frames of a slowly turning ellipsoid "head":
  * moderngl_maps_fps:      `condition_maps(..., backend="moderngl")` frames per second
                            (float32 maps: RGBA32F + R32F read back, 20 bytes per pixel)
  * moderngl_maps_uint8_fps: `condition_maps(..., backend="moderngl", dtype=torch.uint8)`
                            (8-bit maps, no depth: one RGBA8 target, 4 bytes per pixel)
  * moderngl_fragments_fps: `rasterize(..., backend="moderngl")`
  * torch_maps_fps:         `condition_maps(..., backend="torch")`
  * bare_fps:               minimal moderngl draw of the same camera-space triangles (write the
                            vertex buffer, draw, read back the RGBA8 colour buffer), per frame
  * ours_over_bare:         time per frame of moderngl_maps / bare (target <= 1.5)
  * uint8_over_bare:        time per frame of moderngl_maps_uint8 / bare (target <= 1.5)

Usage: python benchmarks/render_throughput.py [--frames 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from liftdata.kinematics import Camera, axis_angle_to_matrix
from liftdata.render import condition_maps, rasterize
from liftdata.render import _moderngl


def uv_ellipsoid(n_lat: int, n_lon: int, radii=(0.08, 0.11, 0.095)) -> tuple[np.ndarray, np.ndarray]:
    """(n_lat + 1) x n_lon grid on an ellipsoid, 2 * n_lat * n_lon faces (degenerate at the poles)."""
    lat, lon = np.meshgrid(np.linspace(0, np.pi, n_lat + 1), np.linspace(0, 2 * np.pi, n_lon, endpoint=False),
                           indexing="ij")
    v = np.stack([np.sin(lat) * np.sin(lon), np.cos(lat), np.sin(lat) * np.cos(lon)], -1).reshape(-1, 3) * radii
    i, j = np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij")
    a, b, c, d = i * n_lon + j, i * n_lon + (j + 1) % n_lon, (i + 1) * n_lon + j, (i + 1) * n_lon + (j + 1) % n_lon
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return v, faces


def turning(vertices: np.ndarray, frames: int) -> np.ndarray:
    """[T, V, 3]: the mesh turning by up to +-30 degrees of yaw over the frames."""
    yaw = np.linspace(-0.5, 0.5, frames)
    R = axis_angle_to_matrix(np.stack([np.zeros(frames), yaw, np.zeros(frames)], -1))
    return np.einsum("tij,vj->tvi", R, vertices).astype(np.float32)


def bare_draw(camera_space: np.ndarray, faces: np.ndarray, camera: Camera) -> float:
    """Seconds for a minimal draw + RGBA8 read back of every frame (camera-space input)."""
    ctx = _moderngl.get_context()
    prog = ctx.program(
        vertex_shader="#version 330\nuniform mat4 proj; in vec3 in_pos;\n"
                      "void main() { gl_Position = proj * vec4(in_pos, 1.0); }",
        fragment_shader="#version 330\nout vec4 colour; void main() { colour = vec4(1.0); }")
    W, H = camera.width, camera.height
    fbo = ctx.framebuffer([ctx.renderbuffer((W, H))], ctx.depth_renderbuffer((W, H)))
    vbo, ibo = ctx.buffer(reserve=camera_space[0].nbytes), ctx.buffer(faces.astype("i4").tobytes())
    vao = ctx.vertex_array(prog, [(vbo, "3f", "in_pos")], index_buffer=ibo, index_element_size=4)
    z = camera_space[..., 2]
    prog["proj"].write(_moderngl._projection(camera.K, W, H, 0.5 * z.min(), 2 * z.max()))
    out = np.empty((len(camera_space), H, W, 4), np.uint8)
    fbo.use()
    start = time.perf_counter()
    for t in range(len(camera_space)):
        vbo.write(camera_space[t])
        fbo.clear(depth=1.0)
        vao.render()
        fbo.read_into(out, components=4, write_offset=t * out[0].nbytes)
    elapsed = time.perf_counter() - start
    for obj in (vao, vbo, ibo, fbo, prog):
        obj.release()
    return elapsed


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, run in alternation (the CPU is shared: noise hits all)."""
    for fn in fns.values():
        fn()  # warm up (context, programs, buffers)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    T, results = args.frames, []
    for name, (n_lat, n_lon) in {"face-like": (18, 24), "10k": (50, 100)}.items():
        v, faces = uv_ellipsoid(n_lat, n_lon)
        vertices = turning(v, T)
        for size in (256, 512):
            camera = Camera.frontal(20.0, size, size, distance=0.6)
            R, t = camera.world_to_camera[:3, :3], camera.world_to_camera[:3, 3]
            camera_space = (vertices @ R.T + t).astype(np.float32)
            sec = interleaved({
                "maps": lambda: timed(lambda: condition_maps(vertices, faces, camera, backend="moderngl")),
                "maps8": lambda: timed(lambda: condition_maps(vertices, faces, camera, backend="moderngl",
                                                              dtype=torch.uint8)),
                "frags": lambda: timed(lambda: rasterize(vertices, faces, camera, backend="moderngl")),
                "bare": lambda: bare_draw(camera_space, faces, camera)}, args.repeats)
            maps, maps8, frags, bare = sec["maps"], sec["maps8"], sec["frags"], sec["bare"]
            ref = timed(lambda: condition_maps(vertices, faces, camera, backend="torch"))
            results.append({"mesh": name, "faces": len(faces), "size": size,
                            "moderngl_maps_fps": round(T / maps, 1), "moderngl_maps_uint8_fps": round(T / maps8, 1),
                            "moderngl_fragments_fps": round(T / frags, 1),
                            "torch_maps_fps": round(T / ref, 2), "bare_fps": round(T / bare, 1),
                            "ours_over_bare": round(maps / bare, 2), "uint8_over_bare": round(maps8 / bare, 2)})
    ctx = _moderngl.get_context()
    print(json.dumps({"benchmark": "render_throughput", "frames_per_batch": T, "torch_threads": 1,
                      "renderer": ctx.info["GL_RENDERER"], "machine": platform.machine(), "results": results}))


if __name__ == "__main__":
    main()
