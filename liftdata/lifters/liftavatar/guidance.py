"""Warp guidance: the warp lifter's frames and its per-pixel confidence, for the diffusion lifter.

The geometric lifter knows the driving frames where the references saw the surface; the
diffusion lifter is needed where they did not (mouth interior never shown open, the far side of a
turned head, disoccluded background). `warp_guidance` returns both halves of that knowledge:
frames [F, H, W, 3] uint8 and confidence [F, H, W] float32 in [0, 1] (`WarpLifter.lift_detailed`:
1 where a reference saw it frontally, 0 on filled mouth/eye interiors and inpainted pixels).
"""

from __future__ import annotations

import numpy as np

from liftdata.lifters.base import Conditions, References

__all__ = ["warp_guidance"]


def warp_guidance(references: References, driving: Conditions, warp=None) -> tuple[np.ndarray, np.ndarray]:
    """The warp lifter's frames [F, H, W, 3] uint8 and confidence [F, H, W] float32 (default `WarpLifter()`)."""
    from liftdata.lifters.warp import WarpLifter

    details = (warp or WarpLifter()).lift_detailed(references, driving)
    return np.asarray(details.frames), np.asarray(details.confidence, np.float32)
