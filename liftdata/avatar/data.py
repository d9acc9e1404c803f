"""Training frames for the avatar, read from what liftdata writes.

`load_frames(path)` reads a WebDataset or Parquet directory (`manifest.json`), a saved capture
(`capture.json`) or a VHAP/GaussianAvatars directory (`transforms_*.json`, FLAME head model) into
`AvatarFrames`: images, a head mask per frame, kinematics, cameras, and which frames were captured
or lifted. Targets are the images composited over the avatar's fixed background colour with that
mask (`composite`). Masks come, in this order of preference, from the sample's alpha matte
(schema v2), the sample's `mask` map (the head model's silhouette, with its eye and mouth holes
filled), or are rendered from the head model (the binding mesh, whose caps close those holes).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from liftdata.avatar.binding import binding_mesh, extend_vertices
from liftdata.avatar.model import AvatarError
from liftdata.kinematics import Camera, Kinematics

__all__ = ["AvatarFrames", "load_frames", "frames_from_capture", "head_masks", "fill_holes", "composite",
           "find_identity", "silhouettes", "reachable_masks", "MATTE_MARGIN"]


@dataclass
class AvatarFrames:
    """T frames of one subject.

    Attributes:
        images: [T, H, W, 3] uint8 RGB.
        masks: [T, H, W] float32 in [0, 1], the head region (1) against the background (0).
        kinematics: [T] per-frame head-model parameters.
        cameras: T OpenCV cameras of the frames' size.
        sources: T strings, "captured" or "lifted".
        names: T frame names (sample keys with "/" -> "_").
        head_model, identity: the subject's head model and identity.
        matted: the masks are alpha mattes (person: head, hair, neck), not the head model's silhouette.
    """

    images: np.ndarray
    masks: np.ndarray
    kinematics: Kinematics
    cameras: list[Camera]
    sources: list[str]
    names: list[str]
    head_model: Any
    identity: np.ndarray
    matted: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | np.ndarray) -> AvatarFrames:
        idx = np.asarray(index, dtype=int)
        return AvatarFrames(self.images[idx], self.masks[idx], self.kinematics[idx], [self.cameras[i] for i in idx],
                            [self.sources[i] for i in idx], [self.names[i] for i in idx], self.head_model,
                            self.identity, self.matted)

    def where(self, source: str) -> np.ndarray:
        return np.flatnonzero(np.array(self.sources) == source)

    @staticmethod
    def concat(parts: Sequence[AvatarFrames]) -> AvatarFrames:
        first = parts[0]
        return AvatarFrames(np.concatenate([p.images for p in parts]), np.concatenate([p.masks for p in parts]),
                            Kinematics.concat([p.kinematics for p in parts]), sum((p.cameras for p in parts), []),
                            sum((p.sources for p in parts), []), sum((p.names for p in parts), []),
                            first.head_model, first.identity, all(p.matted for p in parts))


def fill_holes(mask: np.ndarray) -> np.ndarray:  # [H, W] bool -> [H, W] bool
    """Fill the regions the background cannot reach from the image border (eyes, open mouth)."""
    h, w = mask.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = mask.astype(np.uint8)
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 2)
    return (flood != 2)[1:-1, 1:-1]


def head_masks(head_model: Any, identity: np.ndarray, kinematics: Kinematics, cameras: Sequence[Camera],
               backend: str = "auto") -> np.ndarray:  # [T, H, W] float32
    """Silhouettes of the binding mesh (head model + cap fans over eyes and mouth)."""
    faces, loops = binding_mesh(head_model.faces)
    with torch.no_grad():
        v = extend_vertices(head_model.vertices(torch.as_tensor(identity), kinematics).float(), loops)
    return silhouettes(v, faces, cameras, backend)


def silhouettes(vertices: torch.Tensor,  # [T, V, 3] posed
                faces: np.ndarray,  # [F, 3]
                cameras: Sequence[Camera], backend: str = "auto") -> np.ndarray:  # [T, H, W] float32 in {0, 1}
    """Where the mesh covers each frame's pixels."""
    from liftdata.render import rasterize

    out = []
    for i in range(0, len(vertices), 16):
        cams = list(cameras[i:i + 16])
        frags = rasterize(vertices[i:i + 16].cpu(), np.asarray(faces), cams, backend=backend)
        out.append(frags.mask.float().cpu().numpy().reshape(len(cams), cams[0].height, cams[0].width))
    return np.concatenate(out).astype(np.float32)


MATTE_MARGIN = 0.05
"""Matted frames: how far beyond the avatar's binding mesh (a fraction of the longer image side)
the matte still counts as the subject (hair fuller than the proxy's skull)."""


def reachable_masks(frames: AvatarFrames, avatar: Any, margin: float = MATTE_MARGIN) -> AvatarFrames:
    """Matted frames with every matte limited to what `avatar` can represent: its binding mesh's
    silhouette, dilated by `margin` x the longer image side. A torso, hands or a held object in the
    matte become background instead of being smeared over by the nearest Gaussians. Frames whose
    masks are not mattes are returned as they are."""
    if not frames.matted or len(frames) == 0:
        return frames
    sil = silhouettes(avatar.mesh(frames.kinematics), avatar.faces.cpu().numpy(), frames.cameras)
    r = max(1, round(margin * max(frames.images.shape[1:3])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    near = np.stack([cv2.dilate(m, kernel) for m in sil])
    return dataclasses.replace(frames, masks=(frames.masks * near).astype(np.float32))


def composite(images: np.ndarray,  # [..., H, W, 3] uint8
              masks: np.ndarray,  # [..., H, W] in [0, 1]
              background: Sequence[float]) -> np.ndarray:  # [..., H, W, 3] float32 in [0, 1]
    """The head over a fixed background colour: image * mask + background * (1 - mask)."""
    m = masks[..., None].astype(np.float32)
    return images.astype(np.float32) / 255.0 * m + np.asarray(background, np.float32) * (1 - m)


def _fit(image: np.ndarray, size: int | None) -> np.ndarray:
    """`image` resampled (area filter) so its longer side is `size` (unchanged if None or already so)."""
    h, w = image.shape[:2]
    if size is None or max(h, w) == size:
        return image
    scale = size / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _fit_camera(camera: Camera, size: int | None) -> Camera:
    if size is None or max(camera.width, camera.height) == size:
        return camera
    scale = size / max(camera.width, camera.height)
    return camera.resized(max(1, round(camera.width * scale)), max(1, round(camera.height * scale)))


def frames_from_capture(capture: Any, source: str = "captured", names: Sequence[str] | None = None,
                        masks: np.ndarray | None = None, size: int | None = None, matted: bool = False,
                        ) -> AvatarFrames:
    """A `Capture` (frames + kinematics + camera + identity) as avatar frames, masks rendered if not given.
    `size`: resample frames (and camera) on load so the longer side is `size` (memory stays small).
    `matted`: the given masks are alpha mattes of the person (hair, neck), see `AvatarFrames.matted`."""
    t = len(capture)
    cams = [_fit_camera(capture.camera, size)] * t
    if masks is None:
        masks = head_masks(capture.head_model, capture.identity, capture.kinematics, cams)
    else:
        masks = np.stack([_fit(np.asarray(m, np.float32), size) for m in masks])
    images = np.stack([_fit(np.asarray(capture.frames[i]), size) for i in range(t)])
    return AvatarFrames(images, masks, capture.kinematics, cams, [source] * t,
                        list(names or [f"{capture.capture_id}_{i:06d}" for i in range(t)]), capture.head_model,
                        np.asarray(capture.identity, np.float32), matted=bool(matted and masks is not None))


def find_identity(directory: Path, identity: str | Path | None) -> np.ndarray:
    """A dataset's identity: `identity` (an .npy file), else DIR/identity.npy (what every liftdata
    writer saves), else DIR/capture/identity.npy (the capture `liftdata expand` tracks into), else an
    error naming them."""
    if identity is not None:
        candidates = [Path(identity)]
    else:
        candidates = [directory / "identity.npy", directory / "capture" / "identity.npy"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise AvatarError(f"{directory}: no subject identity ({' or '.join(map(str, candidates))} not found); pass "
                          "--identity FILE.npy (the head model identity the dataset's kinematics were tracked with)")
    return np.load(path).astype(np.float32)


def _dataset_frames(directory: Path, fmt: str, head_model: Any, identity: np.ndarray,
                    size: int | None) -> AvatarFrames:
    from liftdata.io import read_parquet, read_webdataset
    from liftdata.io.schema import decode_png

    read = read_webdataset if fmt == "webdataset" else read_parquet
    images, masks, kins, cams, sources, names, missing, n_alpha = [], [], [], [], [], [], [], 0
    for s in read(directory):
        images.append(_fit(decode_png(s.image), size))
        alpha = getattr(s, "alpha", None)
        if alpha is not None:
            masks.append(_fit(decode_png(alpha).astype(np.float32) / 255.0, size))
            n_alpha += 1
        elif s.mask is not None:
            masks.append(_fit(fill_holes(decode_png(s.mask) > 127).astype(np.float32), size))
        else:
            masks.append(None)
            missing.append(len(masks) - 1)
        kins.append(s.kinematics)
        cams.append(_fit_camera(s.camera, size))
        sources.append(str(s.meta.get("source", "captured")))
        names.append(s.key.replace("/", "_"))
    if not images:
        raise AvatarError(f"{directory}: the {fmt} dataset holds no samples")
    kin = Kinematics.concat(kins)
    if missing:
        rendered = head_masks(head_model, identity, kin[np.array(missing)], [cams[i] for i in missing])
        for j, i in enumerate(missing):
            masks[i] = rendered[j]
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        raise AvatarError(f"{directory}: frames of different sizes {sorted(sizes)}; the avatar trains on one size")
    return AvatarFrames(np.stack(images), np.stack(masks).astype(np.float32), kin, cams, sources, names, head_model,
                        identity, matted=n_alpha == len(images))


def load_frames(path: str | Path, head_model: Any = None, identity: str | Path | None = None,
                size: int | None = None) -> AvatarFrames:
    """Read a dataset, capture or VHAP directory (module docstring). `head_model` defaults to the one
    the data names (VHAP needs the FLAME model passed); `size` resamples frames on load (longer side)."""
    from liftdata.head import load_head_model

    d = Path(path)
    if not d.is_dir():
        raise AvatarError(f"{d}: not a directory")
    if (d / "manifest.json").is_file():
        manifest = json.loads((d / "manifest.json").read_text())
        fmt = manifest.get("format")
        if fmt not in ("webdataset", "parquet"):
            raise AvatarError(f"{d}/manifest.json: unknown dataset format {fmt!r}")
        ident = find_identity(d, identity)
        if head_model is None:
            from liftdata.io import read_parquet, read_webdataset

            first = next(iter((read_webdataset if fmt == "webdataset" else read_parquet)(d)), None)
            if first is None:
                raise AvatarError(f"{d}: the {fmt} dataset holds no samples")
            head_model = load_head_model(first.kinematics.head_model)
        return _dataset_frames(d, fmt, head_model, ident, size)
    if (d / "capture.json").is_file():
        from liftdata.capture import Capture

        cap = Capture.load(d, head_model)
        return frames_from_capture(cap, names=[f"{i:06d}" for i in range(len(cap))], size=size)
    if any(d.glob("transforms*.json")):
        if head_model is None:
            raise AvatarError(f"{d}: a VHAP directory needs the FLAME head model (--flame FILE)")
        from liftdata.io.vhap import import_vhap

        return frames_from_capture(import_vhap(d, head_model), size=size)
    raise AvatarError(f"{d}: not a liftdata dataset (manifest.json), capture (capture.json) or VHAP directory "
                      "(transforms_*.json)")
