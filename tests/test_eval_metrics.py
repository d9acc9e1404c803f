"""PSNR / SSIM against scikit-image (the independent reference), masks, errors."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from liftdata.eval.metrics import MetricError, psnr, ssim, to_nchw

SK_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)


def pair(rng, n=3, h=23, w=31, noise=0.1):
    gt = rng.random((n, h, w, 3))
    pred = np.clip(gt + noise * rng.standard_normal(gt.shape), 0, 1)
    return pred, gt


def nchw(a, dtype=torch.float64):
    return torch.tensor(a, dtype=dtype).permute(0, 3, 1, 2)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("noise", [0.02, 0.3])
def test_psnr_ssim_match_skimage(rng, dtype, tol, noise):
    pred, gt = pair(rng, noise=noise)
    want_p = [peak_signal_noise_ratio(g, p, data_range=1) for p, g in zip(pred, gt)]
    want_s = [structural_similarity(g, p, **SK_SSIM) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(psnr(nchw(pred, dtype), nchw(gt, dtype)).numpy(), want_p, atol=0, rtol=tol)
    np.testing.assert_allclose(ssim(nchw(pred, dtype), nchw(gt, dtype)).numpy(), want_s, atol=tol)


def test_uint8_frames_via_to_nchw(rng):
    gt = rng.integers(0, 256, (2, 16, 20, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    p, g = to_nchw(pred, dtype=torch.float64), to_nchw(gt, dtype=torch.float64)
    assert p.shape == (2, 3, 16, 20)
    want_s = [structural_similarity(b / 255.0, a / 255.0, **SK_SSIM) for a, b in zip(pred, gt)]
    want_p = [peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(pred, gt)]
    np.testing.assert_allclose(ssim(p, g).numpy(), want_s, atol=1e-10)
    np.testing.assert_allclose(psnr(p, g).numpy(), want_p, rtol=1e-10)


def test_masked_psnr_is_mse_over_masked_pixels(rng):
    pred, gt = pair(rng, n=2)
    mask = rng.random(pred.shape[:3]) > 0.6
    want = [10 * np.log10(1 / np.mean((p[m] - g[m]) ** 2)) for p, g, m in zip(pred, gt, mask)]
    got = psnr(nchw(pred), nchw(gt), torch.tensor(mask))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    full = psnr(nchw(pred), nchw(gt), torch.ones(mask.shape, dtype=torch.bool))
    np.testing.assert_allclose(full.numpy(), psnr(nchw(pred), nchw(gt)).numpy(), rtol=1e-12)


def test_masked_ssim_averages_the_cropped_skimage_map_over_the_mask(rng):
    pred, gt = pair(rng, n=2, h=30, w=26)
    mask = np.zeros(pred.shape[:3], bool)
    mask[:, 3:22, 8:26] = True  # partly inside the 5-pixel border that is never evaluated
    want = []
    for p, g, m in zip(pred, gt, mask):
        _, s = structural_similarity(g, p, full=True, **SK_SSIM)  # s: [H, W, 3]
        s, m = s[5:-5, 5:-5].mean(-1), m[5:-5, 5:-5]
        want.append(s[m].mean())
    np.testing.assert_allclose(ssim(nchw(pred), nchw(gt), torch.tensor(mask)).numpy(), want, atol=1e-10)


def test_identical_images():
    x = torch.rand(2, 3, 16, 16)
    assert torch.isinf(psnr(x, x)).all()
    torch.testing.assert_close(ssim(x, x), torch.ones(2))


def test_errors_name_the_problem():
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(MetricError, match="differ in shape"):
        psnr(x, torch.rand(2, 3, 16, 17))
    with pytest.raises(MetricError, match=r"expected \[N, 3, H, W\]"):
        ssim(x.permute(0, 2, 3, 1), x.permute(0, 2, 3, 1))
    with pytest.raises(MetricError, match="smaller than the 11x11 window"):
        ssim(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))
    with pytest.raises(MetricError, match="mask"):
        psnr(x, x, torch.ones(2, 16, 15))
    with pytest.raises(MetricError, match="uint8"):
        psnr(x.to(torch.uint8), x.to(torch.uint8))
    with pytest.raises(MetricError, match=r"\[N, H, W, 3\]"):
        to_nchw(np.zeros((2, 3, 8, 8)))
