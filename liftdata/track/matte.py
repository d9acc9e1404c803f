"""Foreground alpha: mediapipe's selfie segmentation, refined with the head model's own mask.

Steps per frame (`matte`):
1. **selfie matte**: mediapipe 0.10.14's selfie segmentation (its `.tflite` ships inside the
   wheel, no download), a soft person mask (head, hair, neck, shoulders) at 256 x 256 upsampled;
2. **edges**: a guided filter with the frame as the guide (opencv-contrib's `ximgproc`) snaps
   the soft, blocky edge to the image's edges;
3. **the tracked person only**: connected parts of the matte that do not touch the head (dilated
   by `connect` face sizes; with the builtin model the head is the face mesh plus its whole-head
   proxy: skull and neck) are removed, e.g. another person in the shot or false positives on the
   background;
4. **a person prior**: alpha is 0 outside where a person with this head can be (`person_prior`:
   an ellipse around the head for the hair, below the chin a region widening to the shoulders);
   raised hands or a second person next to the head are cut (the proxy's silhouette is always
   inside the region);
5. **the face is foreground**: alpha = max(alpha, rendered head-model mask), so the face the
   kinematics describe is never cut, whatever the segmenter says.

`AlphaFrames` applies it lazily to a tracked capture (optionally cropped like `crop_capture`'s
frames), one uint8 [H, W] alpha per frame (255 = foreground).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from liftdata.capture import Capture
from liftdata.kinematics import Camera

__all__ = ["MatteConfig", "selfie_matte", "refine_matte", "head_mask", "matte", "AlphaFrames", "FrameMatter",
           "matte_available"]


@dataclass
class MatteConfig:
    """Settings of `matte`."""

    model: int = 0  #: mediapipe selfie model: 0 general (256 x 256), 1 landscape (144 x 256)
    radius: float = 0.01  #: guided-filter radius as a fraction of the longer image side
    eps: float = 1e-3  #: guided-filter regularisation (on [0, 1] intensities)
    connect: float = 0.25  #: matte parts farther than this many face sizes from the head are dropped
    hair: float = 0.9  #: radius, in head sizes, of the ellipse around the head kept for hair
    shoulder_slope: float = 1.2  #: how fast the region below the chin widens (neck -> shoulders)


_SEGMENTERS: dict[int, object] = {}


def matte_available() -> bool:
    """Whether mediapipe (the `track` extra), which the selfie matte needs, is installed."""
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def selfie_matte(image: np.ndarray, model: int = 0) -> np.ndarray:  # [H, W, 3] uint8 -> [H, W] float32
    """mediapipe's soft person mask in [0, 1] (1 = person)."""
    if model not in _SEGMENTERS:
        try:
            import mediapipe as mp
        except ImportError as e:
            raise ImportError("alpha mattes need mediapipe==0.10.14: pip install 'liftdata[track]'") from e
        _SEGMENTERS[model] = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model)
    result = _SEGMENTERS[model].process(np.ascontiguousarray(image))
    return np.clip(np.asarray(result.segmentation_mask, np.float32), 0, 1)


def head_mask(vertices: np.ndarray | torch.Tensor,  # [V, 3] world space
              faces: np.ndarray, camera: Camera) -> np.ndarray:  # [H, W] float32 0 / 1
    """The head model's silhouette under `camera`."""
    from liftdata.render import condition_maps

    verts = torch.as_tensor(np.asarray(vertices), dtype=torch.float32)[None]
    maps = condition_maps(verts, torch.as_tensor(np.asarray(faces)), camera, dtype=torch.uint8)
    return (maps["mask"][0, ..., 0].cpu().numpy() > 127).astype(np.float32)


def refine_matte(soft: np.ndarray,  # [H, W] float32 selfie matte
                 head: np.ndarray,  # [H, W] float32 head-model mask (always foreground)
                 image: np.ndarray,  # [H, W, 3] uint8 guide
                 cfg: MatteConfig | None = None,
                 support: np.ndarray | None = None,  # [H, W] float32 whole-head proxy mask
                 ) -> np.ndarray:  # [H, W] float32 alpha
    """Steps 2-5 of the module docstring. `support` (the builtin model's whole-head proxy: skull and
    neck) widens where the person may be, but is not forced to foreground (its shape is a guess)."""
    cfg = cfg or MatteConfig()
    h, w = soft.shape
    radius = max(1, int(round(cfg.radius * max(h, w))))
    alpha = cv2.ximgproc.guidedFilter(image.astype(np.float32) / 255, soft.astype(np.float32), radius, cfg.eps)
    alpha = np.clip(alpha, 0, 1)
    if head.any():
        ys, xs = np.nonzero(head)
        size = max(np.ptp(xs), np.ptp(ys)) + 1
        k = max(3, 2 * int(cfg.connect * size) + 1)
        body = head if support is None else np.maximum(head, support)
        near = cv2.dilate(body.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        n, labels = cv2.connectedComponents((alpha > 0.5).astype(np.uint8) | near)
        keep = np.zeros(n, bool)
        keep[np.unique(labels[near > 0])] = True
        keep[0] = False
        prior = person_prior(head, cfg) if support is None else np.maximum(person_prior(head, cfg), support)
        alpha = np.where(keep[labels], alpha, 0) * prior
    return np.maximum(alpha, head).astype(np.float32)


def person_prior(head: np.ndarray, cfg: MatteConfig | None = None) -> np.ndarray:  # [H, W] -> [H, W] float32
    """Where a person whose head is `head` can be: an ellipse around the head (hair) and, below the
    chin, a region widening downwards (neck, shoulders); soft-edged."""
    cfg = cfg or MatteConfig()
    ys, xs = np.nonzero(head)
    h, w = head.shape
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    s = float(max(np.ptp(xs), np.ptp(ys)) + 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = cfg.hair * s
    hair = ((xx - cx) / r) ** 2 + ((yy - cy + 0.1 * s) / (1.15 * r)) ** 2 <= 1
    chin = cy + 0.3 * s
    body = (yy > chin) & (np.abs(xx - cx) < 0.5 * s + cfg.shoulder_slope * (yy - chin))
    region = (hair | body).astype(np.float32)
    k = max(3, 2 * int(0.05 * s) + 1)
    return cv2.GaussianBlur(region, (k, k), 0)


def matte(image: np.ndarray, head: np.ndarray, cfg: MatteConfig | None = None,
          support: np.ndarray | None = None) -> np.ndarray:
    """Foreground alpha [H, W] float32 in [0, 1] of `image` [H, W, 3] uint8 given the head mask
    (and optionally the whole-head proxy's mask, see `refine_matte`)."""
    cfg = cfg or MatteConfig()
    return refine_matte(selfie_matte(image, cfg.model), head, image, cfg, support)


class FrameMatter:
    """Alpha of any frame of a capture's subject (captured or lifted): `matter(image, kinematics)`
    -> [H, W] uint8 (255 = foreground), with the head mask (and the builtin model's whole-head
    proxy as support) rendered from `kinematics` [1] under the capture's camera."""

    def __init__(self, capture: Capture, cfg: MatteConfig | None = None):
        self.capture, self.cfg = capture, cfg or MatteConfig()
        model = capture.head_model
        self.proxy = model.head_proxy(capture.identity) if hasattr(model, "head_proxy") else None

    def masks(self, kinematics) -> tuple[np.ndarray, np.ndarray | None]:
        """Head-model mask and whole-head support [H, W] float32 of one frame's kinematics."""
        cap = self.capture
        with torch.no_grad():
            verts = cap.head_model.vertices(torch.as_tensor(cap.identity), kinematics)[0]
        head = head_mask(verts, np.asarray(cap.head_model.faces), cap.camera)
        support = None
        if self.proxy is not None:  # the builtin face mesh + its whole-head proxy (skull, neck)
            from liftdata.head.builtin import pose_head_proxy

            shell = pose_head_proxy(self.proxy, verts[None].double().numpy())[0]
            whole = np.concatenate([verts.numpy(), shell.astype(np.float32)])
            support = head_mask(whole, self.proxy.all_faces, cap.camera)
        return head, support

    def float_alpha(self, image: np.ndarray, kinematics) -> np.ndarray:  # [H, W] float32 in [0, 1]
        head, support = self.masks(kinematics)
        return matte(np.asarray(image), head, self.cfg, support)

    def __call__(self, image: np.ndarray, kinematics) -> np.ndarray:  # [H, W] uint8
        return (np.clip(self.float_alpha(image, kinematics), 0, 1) * 255 + 0.5).astype(np.uint8)


class AlphaFrames:
    """Lazy alpha mattes of a capture: `alpha[i]` -> [H, W] uint8 (255 = foreground).

    The matte is computed on the source frame (the segmenter sees the whole picture, not a crop's
    black border) and then cropped like the frame when a `crop` (`crop_capture`) is given; the
    head mask is rendered from the capture's kinematics.
    """

    def __init__(self, capture: Capture, crop=None, cfg: MatteConfig | None = None):
        self.capture, self.crop = capture, crop
        self.matter = FrameMatter(capture, cfg)

    def __len__(self) -> int:
        return len(self.capture)

    def __getitem__(self, index: int) -> np.ndarray:
        cap = self.capture
        alpha = self.matter.float_alpha(np.asarray(cap.frames[index]), cap.kinematics[[index]])
        if self.crop is not None:
            from liftdata.track.crop import crop_image

            alpha = crop_image(alpha, self.crop.boxes[index], self.crop.size, cv2.INTER_LINEAR)
        return (np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8)
