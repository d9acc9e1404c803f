"""Head models: the `HeadModel` protocol, the builtin model and FLAME (from a user file)."""

from __future__ import annotations

from typing import Any

from liftdata.head.base import ExpressionPrior, HeadModel, kinematics_tensors, neutral_kinematics

__all__ = ["HeadModel", "ExpressionPrior", "kinematics_tensors", "neutral_kinematics", "load_head_model"]

HEAD_MODELS = ("builtin", "flame")


def load_head_model(name: str = "builtin", **kwargs: Any) -> HeadModel:
    """The head model called `name`: "builtin" (shipped, cached) or "flame" (`FlameHeadModel.from_file(**kwargs)`)."""
    if name == "builtin":
        if kwargs:
            raise TypeError(f"load_head_model('builtin') takes no options, got {sorted(kwargs)}")
        from liftdata.head.builtin import load_builtin

        return load_builtin()
    if name == "flame":
        from liftdata.head.flame import FlameHeadModel

        return FlameHeadModel.from_file(**kwargs)
    raise ValueError(f"unknown head model {name!r}; choose one of {HEAD_MODELS}")
