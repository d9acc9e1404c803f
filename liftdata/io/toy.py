"""Toy samples (smooth gradients + noise, with shading/normal/mask maps) for tests and benchmarks."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from liftdata.io.schema import Sample, make_key, make_meta
from liftdata.kinematics import Camera, Kinematics

__all__ = ["toy_arrays", "toy_sample", "toy_samples"]


def toy_arrays(size: int, seed: int) -> dict[str, np.ndarray]:
    """Compressible but not trivial maps: image [S, S, 3] uint8, shading [S, S] float,
    normal [S, S, 3] float in [0, 1], mask [S, S] bool."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    phase = rng.uniform(0, 2 * np.pi, 3)
    base = 0.5 + 0.4 * np.sin(2 * np.pi * (x[..., None] + 0.6 * y[..., None]) + phase)
    image = np.clip(base * 255 + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    r2 = (x - 0.5) ** 2 + (y - 0.5) ** 2
    mask = r2 < 0.16
    nz = np.sqrt(np.clip(1 - r2 / 0.16, 0, 1))
    normal = np.stack([(x - 0.5) / 0.4, (0.5 - y) / 0.4, nz], -1) * mask[..., None] * 0.5 + 0.5
    shading = np.clip(0.2 + 0.8 * nz, 0, 1) * mask
    return {"image": image, "shading": shading, "normal": np.clip(normal, 0, 1), "mask": mask}


def toy_sample(index: int, size: int = 32, capture: str = "toy", frames_per_clip: int = 8,
               n_expression: int = 8, seed: int = 0) -> Sample:
    """Sample `index` of a toy stream: clip = index // frames_per_clip; odd clips are 'lifted'."""
    clip, frame = divmod(index, frames_per_clip)
    key = make_key(capture, clip, frame)
    rng = np.random.default_rng([seed, index])
    v = lambda n: rng.normal(0, 0.2, (1, n)).astype(np.float32)  # noqa: E731
    kin = Kinematics(rng.uniform(0, 1, (1, n_expression)), v(3), v(3), v(6), v(3), v(3), "builtin", "1")
    lifted = clip % 2 == 1
    meta = make_meta(
        key, kin, source="lifted" if lifted else "captured",
        sampler={"name": "expression_interpolation", "params": {"alpha": float(rng.uniform())}} if lifted else None,
        lifter={"name": "warp", "version": "0.1.0"} if lifted else None,
        seed=int(seed) if lifted else None,
        reference_keys=[make_key(capture, 0, 0)] if lifted else [])
    camera = Camera.from_fov(30.0, size, size)
    return Sample.from_arrays(key, kinematics=kin, camera=camera, meta=meta, **toy_arrays(size, seed * 100_003 + index))


def toy_samples(n: int, size: int = 32, **kwargs) -> Iterator[Sample]:
    """A lazy stream of `n` toy samples."""
    return (toy_sample(i, size, **kwargs) for i in range(n))
