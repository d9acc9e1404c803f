"""Multi-process writes: which process this is, and how the sample stream is split between them.

`torchrun` / `accelerate launch` start N processes with RANK and WORLD_SIZE in the environment.
The stream (captured frames, then the lifted clips) is cut into N contiguous parts at clip
boundaries (a clip is lifted in one piece); process r writes part r into
`out_dir/rank-RRRRR-of-NNNNN/`, and the last to finish joins the parts (`liftdata.io.merge_ranks`).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

__all__ = ["process_rank", "split_points"]


def process_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size) of this process: the arguments, else RANK / WORLD_SIZE from the
    environment (set by torchrun and `accelerate launch`), else (0, 1)."""
    if rank is None and world_size is None:
        env = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if None in env:
            return 0, 1
        try:
            rank, world_size = int(env[0]), int(env[1])
        except ValueError:
            raise ValueError(f"RANK={env[0]!r}, WORLD_SIZE={env[1]!r} in the environment: expected integers") from None
    elif rank is None or world_size is None:
        raise ValueError("rank and world_size: give both or neither")
    if not (isinstance(rank, int) and isinstance(world_size, int) and 0 <= rank < world_size):
        raise ValueError(f"rank {rank!r} of world_size {world_size!r}: need 0 <= rank < world_size")
    return rank, world_size


def split_points(n_captured: int, clip_lengths: Sequence[int], world_size: int) -> list[int]:
    """Sample indices [world_size + 1] splitting a stream of `n_captured` frames then clips of
    `clip_lengths` into contiguous parts, one per process.

    Parts end at clip boundaries (captured frames may be split anywhere) and are as equal in
    size as those allow; a part may be empty when there are more processes than clips.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: expected a positive int, got {world_size!r}")
    total = n_captured + int(sum(clip_lengths))
    cuts = np.concatenate([np.arange(n_captured), n_captured + np.cumsum([0, *clip_lengths]), [total]])
    targets = np.arange(1, world_size) * total / world_size
    inner = [int(cuts[np.argmin(np.abs(cuts - t))]) for t in targets]
    return [0, *np.maximum.accumulate(inner).tolist(), total]
