"""Lifters: references (+ their conditions) and driving conditions -> new frames of the subject."""

from __future__ import annotations

from typing import Any

from liftdata.lifters.base import Conditions, Lifter, References, render_conditions
from liftdata.lifters.warp import LifterInputError, WarpLifter

__all__ = ["Conditions", "Lifter", "References", "render_conditions", "WarpLifter", "LifterInputError",
           "load_lifter", "LIFTERS"]

LIFTERS = ("warp", "liftavatar")


def load_lifter(name: str = "warp", checkpoint: str | None = None, **kwargs: Any) -> Lifter:
    """`warp` (no weights, the default) or `liftavatar` (the diffusion lifter; needs `checkpoint`).

    `device` / `torch_dtype` keyword arguments reach `LiftAvatarLifter.from_pretrained` (the warp
    lifter runs on the CPU and ignores them).
    """
    if name == "warp":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("device", "torch_dtype")}  # CPU, no weights
        if checkpoint is not None:
            raise LifterInputError("the warp lifter has no checkpoint; drop --checkpoint or use --lifter liftavatar")
        return WarpLifter(**kwargs)
    if name == "liftavatar":
        if checkpoint is None:
            raise LifterInputError("the liftavatar lifter needs a checkpoint directory (--checkpoint PATH)")
        from liftdata.lifters.liftavatar import LiftAvatarLifter

        return LiftAvatarLifter.from_pretrained(checkpoint, **kwargs)
    raise LifterInputError(f"unknown lifter {name!r}; choose one of {LIFTERS}")
