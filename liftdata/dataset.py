"""From captures to samples: the data side of the public API.

`captured_samples(capture)` turns the frames of a `Capture` into schema-v1 `Sample`s with their
shading / normal / mask condition maps rendered from the tracked (or ground-truth) kinematics —
the "captured" half of every liftdata dataset. Lifted samples (the expansion) join them through
`LiftDataset` in a later release.

Keys of captured frames: `{capture_id}/{i // 1000:06d}/{i % 1000:03d}` for frame i.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from liftdata.capture import Capture
from liftdata.io.schema import Sample, make_key, make_meta

__all__ = ["captured_samples", "condition_arrays"]


def condition_arrays(capture: Capture, start: int, stop: int, backend: str = "auto") -> dict[str, np.ndarray]:
    """Condition maps of frames [start, stop) as uint8 arrays: shading/mask [T, H, W], normal [T, H, W, 3]."""
    from liftdata.render import condition_maps, to_uint8

    k = capture.kinematics[start:stop]
    with torch.no_grad():
        verts = capture.head_model.vertices(torch.as_tensor(capture.identity), k)
    maps = condition_maps(verts, capture.head_model.faces, capture.camera, backend=backend)
    return {"shading": to_uint8(maps["shading"])[..., 0], "normal": to_uint8(maps["normal"]),
            "mask": to_uint8(maps["mask"])[..., 0]}


def captured_samples(capture: Capture, *, batch: int = 16, backend: str = "auto") -> Iterator[Sample]:
    """Yield one `Sample` per captured frame (source="captured"), maps rendered in batches."""
    for start in range(0, len(capture), batch):
        stop = min(start + batch, len(capture))
        maps = condition_arrays(capture, start, stop, backend)
        for j, i in enumerate(range(start, stop)):
            key = make_key(capture.capture_id, i // 1000, i % 1000)
            kin = capture.kinematics[i]
            meta = make_meta(key, kin, source="captured", subject_id=capture.subject_id,
                             extra={"face_found": bool(capture.face_found[i])})
            yield Sample.from_arrays(key, np.asarray(capture.frames[i]), kin, capture.camera, meta,
                                     shading=maps["shading"][j], normal=maps["normal"][j], mask=maps["mask"][j])


def preview_samples(samples: Iterator[Sample], path: str, n: int = 8, tile: int = 160, columns: int = 2) -> str:
    """A contact sheet PNG: per sample image | shading | normal | mask, `columns` samples per row."""
    import cv2

    cells = []
    for sample, _ in zip(samples, range(n)):
        a = sample.to_arrays()
        parts = [a["image"]] + [np.repeat(a[m][..., None], 3, -1) if a[m].ndim == 2 else a[m]
                                for m in ("shading", "normal", "mask") if a[m] is not None]
        row = np.concatenate([cv2.resize(c, (tile, tile), interpolation=cv2.INTER_AREA) for c in parts], 1)
        cv2.putText(row, sample.key, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        cells.append(row)
    if not cells:
        raise ValueError("preview: no samples to show")
    width = max(c.shape[1] for c in cells)
    cells = [np.pad(c, ((0, 2), (0, width - c.shape[1] + 2), (0, 0))) for c in cells]
    cells += [np.zeros_like(cells[0])] * (-len(cells) % columns)
    sheet = np.concatenate([np.concatenate(cells[i:i + columns], 1) for i in range(0, len(cells), columns)], 0)
    if not cv2.imwrite(str(path), sheet[..., ::-1]):
        raise OSError(f"{path}: cannot write the preview image")
    return str(path)
