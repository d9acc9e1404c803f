"""Evaluation: image metrics (PSNR, SSIM, LPIPS), kinematic accuracy (AED, APD, LMD), splits and
downstream reports (`liftdata eval`, see `liftdata.eval.report`)."""

from liftdata.eval.kinematic import aed, apd, kinematic_metrics, lmd
from liftdata.eval.lpips import LPIPS, LpipsWeightsError, find_weights, load_lpips
from liftdata.eval.metrics import MetricError, psnr, ssim, to_nchw
from liftdata.eval.splits import ExtremenessModel, extreme_split, monocular_split

__all__ = [
    "psnr", "ssim", "to_nchw", "MetricError", "LPIPS", "load_lpips", "find_weights", "LpipsWeightsError",
    "aed", "apd", "lmd", "kinematic_metrics", "monocular_split", "extreme_split", "ExtremenessModel",
]
