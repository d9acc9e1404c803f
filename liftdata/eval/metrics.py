"""Image metrics: PSNR, SSIM (and LPIPS in `liftdata.eval.lpips`), batched, optionally masked.

Conventions (all functions here):
* images are torch tensors `[N, 3, H, W]` (channel first), float, values in [0, 1]
  (`data_range = 1`); `to_nchw` converts `[N, H, W, 3]` arrays (float or uint8) to that;
* they run on whatever device the inputs live on; the result is a `[N]` tensor (one value per
  image pair) on that device, in the inputs' dtype;
* `mask` (optional) is `[N, H, W]` (or `[N, 1, H, W]`), bool or float in [0, 1]: the head region.

Definitions (unmasked ones match scikit-image 0.26 exactly:
`peak_signal_noise_ratio(gt, pred, data_range=1)` and `structural_similarity(gt, pred,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`):

* PSNR = 10 log10(1 / MSE), MSE the mean squared error over all pixels and channels
  (inf for identical images). Masked: MSE = sum_c,p m_p (x - y)^2 / (3 sum_p m_p), i.e. the
  mean over the masked pixels (weights m in [0, 1]) and all channels.
* SSIM: per channel, local means / variances / covariance from an 11-tap Gaussian window
  (sigma 1.5, truncated at 3.5 sigma), population (not sample) covariance,
  C1 = (0.01)^2, C2 = (0.03)^2; the SSIM map is only evaluated where the window fits inside the
  image (scikit-image crops a border of 5 pixels), then averaged over that region and the
  channels. Masked: the map (mean over channels) is averaged with weights m over the same
  cropped region, i.e. mean of SSIM over masked pixels whose window lies in the image.
  Images must be at least 11 x 11.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from liftdata.errors import LiftdataError

__all__ = ["MetricError", "to_nchw", "psnr", "ssim", "ssim_map", "gaussian_window", "SSIM_RADIUS"]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: an 11-tap window, as scipy.ndimage
SSIM_K1, SSIM_K2 = 0.01, 0.03


class MetricError(LiftdataError, ValueError):
    """Inputs of a metric have the wrong shape, range or size; the message says which."""


def to_nchw(images: np.ndarray | torch.Tensor, device: str | torch.device | None = None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, H, W, 3] (or [H, W, 3]) uint8 (0..255) or float (0..1) -> [N, 3, H, W] float tensor in [0, 1]."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise MetricError(f"images: expected [N, H, W, 3] or [H, W, 3], got {list(t.shape)}")
    scale = 255.0 if t.dtype == torch.uint8 else 1.0
    return (t.to(device=device, dtype=dtype) / scale).permute(0, 3, 1, 2).contiguous()


def check_pair(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """Validate a batch pair; return the mask as [N, 1, H, W] in the images' dtype (or None)."""
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise MetricError(f"pred: expected [N, 3, H, W], got {list(pred.shape)} (use to_nchw for [N, H, W, 3])")
    if pred.shape != target.shape:
        raise MetricError(f"pred {list(pred.shape)} and target {list(target.shape)} differ in shape")
    if not pred.is_floating_point() or not target.is_floating_point():
        raise MetricError("pred/target: expected float tensors in [0, 1] (use to_nchw for uint8)")
    if mask is None:
        return None
    m = mask[:, None] if mask.ndim == 3 else mask
    n, _, h, w = pred.shape
    if m.shape != (n, 1, h, w):
        raise MetricError(f"mask: expected [{n}, {h}, {w}] or [{n}, 1, {h}, {w}], got {list(mask.shape)}")
    return m.to(pred.dtype)


def psnr(pred: torch.Tensor,  # [N, 3, H, W] in [0, 1]
         target: torch.Tensor,  # [N, 3, H, W] in [0, 1]
         mask: torch.Tensor | None = None,  # [N, H, W] head region, weights in [0, 1]
         ) -> torch.Tensor:  # [N] dB
    """Peak signal-to-noise ratio per image pair (data range 1); masked: MSE over masked pixels."""
    m = check_pair(pred, target, mask)
    err = (pred - target) ** 2
    if m is None:
        mse = err.mean(dim=(1, 2, 3))
    else:
        mse = (err * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3)))
    return 10 * torch.log10(1.0 / mse)


def gaussian_window(dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:  # [2r + 1]
    """The normalized 1-D Gaussian of scipy.ndimage (sigma 1.5, truncate 3.5): 11 taps."""
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur_valid(x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C, H - 2r, W - 2r]
    """Separable Gaussian filter, only where the window lies inside the image (no padding)."""
    c = x.shape[1]
    g = gaussian_window(x.dtype, x.device)
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim_map(pred: torch.Tensor,  # [N, 3, H, W] in [0, 1]
             target: torch.Tensor,  # [N, 3, H, W] in [0, 1]
             ) -> torch.Tensor:  # [N, 3, H - 10, W - 10]
    """Per-pixel, per-channel SSIM where the 11 x 11 window fits inside the image."""
    check_pair(pred, target)
    if min(pred.shape[-2:]) < 2 * SSIM_RADIUS + 1:
        raise MetricError(f"ssim: images of {pred.shape[-2]}x{pred.shape[-1]} are smaller than the 11x11 window")
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mu_x, mu_y = _blur_valid(pred), _blur_valid(target)
    var_x = _blur_valid(pred * pred) - mu_x ** 2
    var_y = _blur_valid(target * target) - mu_y ** 2
    cov = _blur_valid(pred * target) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(pred: torch.Tensor,  # [N, 3, H, W] in [0, 1]
         target: torch.Tensor,  # [N, 3, H, W] in [0, 1]
         mask: torch.Tensor | None = None,  # [N, H, W] head region, weights in [0, 1]
         ) -> torch.Tensor:  # [N]
    """Structural similarity per image pair (scikit-image's Gaussian variant; see module doc)."""
    m = check_pair(pred, target, mask)
    s = ssim_map(pred, target).mean(dim=1, keepdim=True)  # [N, 1, H - 2r, W - 2r]
    if m is None:
        return s.mean(dim=(1, 2, 3))
    r = SSIM_RADIUS
    m = m[..., r:-r, r:-r]
    return (s * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3))


def mean_finite(values: torch.Tensor | np.ndarray) -> float:
    """Mean of the finite values (PSNR of identical images is inf), NaN if none."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan
