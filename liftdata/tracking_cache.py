"""The shared tracking cache: track an input once into `out/capture/`, reuse it on resume and in
every process of a multi-process run.

Rank 0 tracks and saves the capture atomically (`Capture.save` renames a finished temp folder);
the other ranks wait for it, for at most `timeout_s`, then fail with a line naming the folder.
The saved capture records the input's fingerprint (`input_fingerprint`): a cache made from
another input or with other tracking settings is refused, never reused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from liftdata.capture import CaptureError

__all__ = ["input_fingerprint", "saved_fingerprint", "track_once", "WAIT_TIMEOUT_S"]

WAIT_TIMEOUT_S = 6 * 3600.0  #: how long a rank waits for rank 0's tracking (long videos track for hours)


def input_fingerprint(path: str | os.PathLike | Sequence[str | os.PathLike], **options: Any) -> dict[str, Any]:
    """What identifies a tracking input: its resolved path(s), file count, bytes and newest mtime
    (a folder: its files), plus the tracking `options` (head model, max_frames, stride, ...)."""
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    paths = [p.resolve() for p in paths]
    files = [f for p in paths for f in (sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p])]
    stats = [f.stat() for f in files if f.exists()]  # a missing input is reported by the tracking
    return {"input": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths], "files": len(stats),
            "bytes": sum(st.st_size for st in stats),
            "mtime_ns": max((st.st_mtime_ns for st in stats), default=0), **options}


def saved_fingerprint(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The input fingerprint a saved capture records (None: no capture there, or none recorded)."""
    path = Path(directory) / "capture.json"
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text()).get("extra", {}).get("tracking", {}).get("input")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise CaptureError(f"{path}: not a valid capture.json ({e})") from None
    return found if isinstance(found, dict) else {}


def fingerprint_diff(directory: str | os.PathLike, fingerprint: dict[str, Any]) -> str | None:
    """None if the capture saved in `directory` (if any) was tracked from `fingerprint`; else what differs."""
    found = saved_fingerprint(directory)
    if found is None or found == fingerprint:
        return None
    return ", ".join(f"{k}: saved {found.get(k)!r}, now {fingerprint.get(k)!r}"
                     for k in sorted(set(found) | set(fingerprint)) if found.get(k) != fingerprint.get(k))


def track_once(directory: str | os.PathLike, fingerprint: dict[str, Any], track: Callable[[], Any],
               head_model: Any = None, rank: int | None = None, poll_s: float = 2.0,
               timeout_s: float = WAIT_TIMEOUT_S) -> Any:
    """Track once into `directory` and return the `LiftDataset` of that saved capture.

    The first call (rank 0) runs `track()` (-> LiftDataset) and saves its capture atomically, with
    `fingerprint` in `capture.extra["tracking"]["input"]`; later calls, a resumed run and the
    other processes of a multi-process run (which wait up to `timeout_s` for rank 0) load it, so
    every process expands the same capture and a resume does not track again. A saved capture
    with another fingerprint raises `CaptureError` instead of being mixed into the dataset.
    """
    from liftdata.dataset import LiftDataset
    from liftdata.ranks import process_rank

    saved = Path(directory)
    rank = process_rank()[0] if rank is None else rank
    diff = fingerprint_diff(saved, fingerprint)
    if diff:
        raise CaptureError(f"{saved}: tracked from another input or with other settings ({diff}); use another "
                           f"output directory, or --overwrite to start over")
    if not (saved / "capture.json").is_file():
        if rank == 0:
            capture = track().capture
            capture.extra = {**capture.extra, "tracking": {**capture.extra.get("tracking", {}), "input": fingerprint}}
            capture.save(saved)
        else:
            _wait_for(saved / "capture.json", rank, fingerprint, poll_s, timeout_s)
    dataset = LiftDataset.from_tracked(saved, head_model)
    diff = fingerprint_diff(saved, fingerprint)  # rank 0 of another run may have saved it meanwhile
    if diff:
        raise CaptureError(f"{saved}: tracked from another input or with other settings ({diff})")
    return dataset


def _wait_for(path: Path, rank: int, fingerprint: dict[str, Any], poll_s: float, timeout_s: float) -> None:
    print(f"rank {rank}: waiting for rank 0 to track {fingerprint.get('input')} into {path.parent}/", flush=True)
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise CaptureError(f"{path.parent}: rank {rank} waited {timeout_s:g} s for rank 0 to save the tracked "
                               "capture; did rank 0 fail? Rerun the same command to resume")
        time.sleep(poll_s)
