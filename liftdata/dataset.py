"""`LiftDataset`: the public API tying tracking, samplers, lifters and writers together.

    ds = LiftDataset.from_video("selfie.mp4")            # track -> Capture
    lifted = ds.expand(n=2000)                            # lazy: plan -> conditions -> lifter
    lifted.write_webdataset("out/wds")                    # streams clip by clip, resumable
    lifted.preview("out/preview")                         # contact sheet + HTML + coverage plot

Sample keys (`{capture}/{clip:06d}/{frame:03d}`): captured frame i is clip `i // 1000`, frame
`i % 1000` (1000 = `CAPTURED_CLIP_FRAMES`); lifted plan clip j is clip `C + j` where
`C = ceil(T / 1000)` is the number of captured clips, so captured and lifted keys never collide
and sort captured first.

The orchestration (settings -> tracking -> expansion -> writer -> preview) lives in
`liftdata.run`; the multi-process split in `liftdata.ranks`; the tracking cache in
`liftdata.tracking_cache`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from liftdata.capture import Capture, CaptureError
from liftdata.config import ConfigError, ExpandConfig
from liftdata.io.schema import Sample, make_key, make_meta
from liftdata.ranks import process_rank, split_points
from liftdata.tracking_cache import input_fingerprint, track_once

__all__ = ["LiftDataset", "Expansion", "captured_samples", "condition_arrays", "default_sampler", "process_rank",
           "input_fingerprint", "track_once", "CAPTURED_CLIP_FRAMES"]

CAPTURED_CLIP_FRAMES = 1000  #: captured frame i has the key of clip i // 1000, frame i % 1000


# ---------------------------------------------------------------------- captured frames
def _uint8_maps(maps: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    from liftdata.render import to_uint8

    return {"shading": to_uint8(maps["shading"])[..., 0], "normal": to_uint8(maps["normal"]),
            "mask": to_uint8(maps["mask"])[..., 0]}


def condition_arrays(capture: Capture, start: int, stop: int, backend: str = "auto") -> dict[str, np.ndarray]:
    """Condition maps of frames [start, stop) as uint8 arrays: shading/mask [T, H, W], normal [T, H, W, 3]."""
    from liftdata.render import condition_maps

    with torch.no_grad():
        vertices = capture.head_model.vertices(torch.as_tensor(capture.identity), capture.kinematics[start:stop])
    maps = condition_maps(vertices, capture.head_model.faces, capture.camera, backend=backend, dtype=torch.uint8)
    return {"shading": maps["shading"][..., 0].numpy(), "normal": maps["normal"].numpy(),
            "mask": maps["mask"][..., 0].numpy()}


def captured_key(capture: Capture, i: int) -> str:
    return make_key(capture.capture_id, i // CAPTURED_CLIP_FRAMES, i % CAPTURED_CLIP_FRAMES)


def n_captured_clips(capture: Capture) -> int:
    """Clip ids the captured frames use; lifted clip j gets id `n_captured_clips + j`."""
    return math.ceil(len(capture) / CAPTURED_CLIP_FRAMES)


def captured_samples(capture: Capture, *, start: int = 0, batch: int = 16, backend: str = "auto") -> Iterator[Sample]:
    """Yield one `Sample` per captured frame from `start` (source="captured"), maps rendered in batches."""
    for first in range(start, len(capture), batch):
        stop = min(first + batch, len(capture))
        maps = condition_arrays(capture, first, stop, backend)
        for j, i in enumerate(range(first, stop)):
            key = captured_key(capture, i)
            kin = capture.kinematics[i]
            meta = make_meta(key, kin, source="captured", subject_id=capture.subject_id,
                             extra={"face_found": bool(capture.face_found[i])})
            yield Sample.from_arrays(key, np.asarray(capture.frames[i]), kin, capture.camera, meta,
                                     shading=maps["shading"][j], normal=maps["normal"][j], mask=maps["mask"][j])


# ---------------------------------------------------------------------- the expansion
@dataclass
class Expansion:
    """A lazy dataset: the captured frames (optional) followed by n lifted frames.

    Nothing is tracked, planned or lifted until it is iterated or written. The plan is
    deterministic in (capture, sampler, n, seed), so an interrupted write resumes exactly.
    """

    capture: Capture
    n: int
    sampler: Any
    lifter: Any
    seed: int = 0
    include_captured: bool = True
    backend: str = "auto"
    config: ExpandConfig | None = None  # the settings it was built from (recorded in the manifest)
    _references: dict = field(default_factory=dict, init=False, repr=False)  # last reference indices -> References

    @cached_property
    def plan(self) -> Any:
        """The sampler's plan (computed once)."""
        return self.sampler.sample(self.capture, self.n, np.random.default_rng(self.seed))

    @property
    def n_captured(self) -> int:
        return len(self.capture) if self.include_captured else 0

    def __len__(self) -> int:
        return self.n_captured + self.n

    def __iter__(self) -> Iterator[Sample]:
        return self.samples()

    def samples(self, start: int = 0) -> Iterator[Sample]:
        """Samples from index `start` on; lifts only the clips that hold samples at or after it."""
        if start < self.n_captured:
            yield from captured_samples(self.capture, start=start, backend=self.backend)
        offset = self.n_captured
        first_clip = n_captured_clips(self.capture)
        for j, clip in enumerate(self.plan.clips):
            length = len(clip.kinematics)
            if offset + length > start:
                skip = max(0, start - offset)
                yield from self._lift_clip(first_clip + j, clip, j)[skip:]
            offset += length

    def _lift_clip(self, clip_id: int, clip: Any, index: int) -> list[Sample]:
        from liftdata.lifters.base import References, render_conditions
        from liftdata.lifters.quality import lift_scored

        cap = self.capture
        refs = tuple(int(i) for i in clip.reference_indices)
        if refs not in self._references:  # consecutive clips often share references: keep the last set only
            ref_cond = render_conditions(cap.head_model, cap.identity, cap.kinematics[np.array(refs)], cap.camera,
                                         self.backend)
            self._references = {refs: References(np.stack([np.asarray(cap.frames[i]) for i in refs]), ref_cond,
                                                 tuple(captured_key(cap, i) for i in refs))}
        references = self._references[refs]
        driving = render_conditions(cap.head_model, cap.identity, clip.kinematics, cap.camera, self.backend)
        clip_seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        scored = lift_scored(self.lifter, references, driving, seed=clip_seed)  # frames + quality score per frame
        frames = scored.frames
        maps = _uint8_maps(driving.maps)
        samples = []
        for f in range(len(clip.kinematics)):
            key = make_key(cap.capture_id, clip_id, f)
            kin = clip.kinematics[f]
            meta = make_meta(key, kin, source="lifted", subject_id=cap.subject_id,
                             sampler={"name": clip.provenance["sampler"], "params": clip.provenance["params"]},
                             lifter={"name": self.lifter.name, "version": self.lifter.version},
                             seed=self.seed, reference_keys=references.keys,
                             extra={"sampler_seed": clip.provenance.get("seed"), "lifter_seed": clip_seed,
                                    "quality": scored.meta(f)})
            samples.append(Sample.from_arrays(key, frames[f], kin, cap.camera, meta, shading=maps["shading"][f],
                                              normal=maps["normal"][f], mask=maps["mask"][f]))
        return samples

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict[str, Any]:
        """What this dataset is, recorded in its manifest: the config's identity fields, the
        capture's fingerprint, the lifter's version and a digest of the plan. A write into a
        directory recording another identity is refused, naming the fields that differ."""
        settings = self.config.identity() if self.config is not None else {  # a plain API call: no config
            **ExpandConfig(n=1).identity(), "n": self.n, "seed": int(self.seed),
            "include_captured": self.include_captured,
            "lifter": getattr(self.lifter, "name", type(self.lifter).__name__)}
        return {**settings, "capture": self.capture.fingerprint(),
                "lifter_version": str(getattr(self.lifter, "version", "")), "plan": plan_digest(self.plan)}

    # ------------------------------------------------------------------ writing
    def write_webdataset(self, out_dir: str | os.PathLike, **kwargs: Any):
        """Stream into WebDataset shards (see `liftdata.io.write_webdataset`); resumes a partial write.

        Several processes (`torchrun`/`accelerate launch`: RANK and WORLD_SIZE in the environment,
        or `rank=`, `world_size=`) each write a contiguous part of the stream (`rank_bounds`) into
        `out_dir/rank-RRRRR-of-NNNNN/`; the last to finish writes the joined `out_dir/manifest.json`
        (`liftdata.io.merge_ranks`). The joined dataset holds the same samples in the same order
        as a single-process write.
        """
        from liftdata.io import write_webdataset

        return self._write(write_webdataset, out_dir, **kwargs)

    def write_parquet(self, out_dir: str | os.PathLike, **kwargs: Any):
        """Stream into Parquet shards (see `liftdata.io.write_parquet`); resumes a partial write.

        Multi-process writes as in `write_webdataset`.
        """
        from liftdata.io import write_parquet

        return self._write(write_parquet, out_dir, **kwargs)

    def rank_bounds(self, world_size: int) -> list[int]:
        """Sample indices [world_size + 1] splitting the stream into contiguous parts, one per process.

        Parts end at clip boundaries (a clip is lifted in one piece) and are as equal in size as
        those allow; a part may be empty when there are more processes than clips.
        """
        return split_points(self.n_captured, [len(c.kinematics) for c in self.plan.clips], world_size)

    def _write(self, writer: Any, out_dir: str | os.PathLike, rank: int | None = None,
               world_size: int | None = None, **kwargs: Any):
        from liftdata.io import resume_state
        from liftdata.io.shards import check_writable, merge_ranks, rank_dir

        check_writable(Path(out_dir))
        kwargs.setdefault("name", self.capture.capture_id)
        fmt = "webdataset" if writer.__name__ == "write_webdataset" else "parquet"
        kwargs.setdefault("identity", {**self.identity(), "format": fmt, "shard_size": kwargs.get("max_count", 1000)})
        rank, world_size = process_rank(rank, world_size)
        if world_size == 1:
            start = resume_state(out_dir)
            return writer(self.samples(start), out_dir, start=start, expected_total=len(self), **kwargs)
        lo, hi = self.rank_bounds(world_size)[rank:rank + 2]
        part = Path(out_dir) / rank_dir(rank, world_size)
        start = resume_state(part)
        result = writer(itertools.islice(self.samples(lo + start), hi - lo - start), part, start=start,
                        expected_total=hi - lo, **kwargs)
        merge_ranks(out_dir)  # the last rank to finish writes the joined manifest
        return result

    def write_vhap(self, out_dir: str | os.PathLike) -> Path:
        """Write the VHAP/GaussianAvatars layout (FLAME captures): captured + lifted frames, all in
        `transforms_train.json`; lifted entries carry `"synthetic": true` and their sample key so a
        trainer can down-weight them or hold them out. Not resumable: written to a temp dir, then renamed."""
        from liftdata.io.schema import decode_png
        from liftdata.io.vhap import write_vhap

        frames = ((decode_png(s.image), s.kinematics, {"synthetic": s.meta["source"] == "lifted", "key": s.key})
                  for s in self.samples())
        return write_vhap(frames, out_dir, self.capture.head_model, self.capture.identity, self.capture.camera,
                          what=f"capture {self.capture.capture_id!r}")

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: str | None = None,
                    local_dir: str | os.PathLike | None = None, **kwargs: Any) -> str:
        """Write Parquet shards + dataset card to `local_dir` (default: a folder next to the cwd), then upload them.

        Needs the `hub` extra (huggingface_hub). Returns the dataset URL.
        """
        from liftdata.io.hub import check_hub_access, push_folder

        if process_rank(kwargs.pop("rank", None), kwargs.pop("world_size", None))[1] > 1:
            raise ValueError("push_to_hub: runs in one process; in a multi-process run, write_parquet with all "
                             "processes, then upload the joined directory (`liftdata push DIR REPO`)")
        if "/" not in repo_id:
            from liftdata.io.hub import HubError

            raise HubError(f"repo_id must look like 'user/name', got {repo_id!r}")
        api = check_hub_access(token)  # before staging anything: a missing token or network fails in one line
        local = Path(local_dir or f"{repo_id.replace('/', '__')}-parquet")
        self.write_parquet(local, **kwargs)
        return push_folder(local, repo_id, private=private, token=token, api=api)

    def preview(self, out_dir: str | os.PathLike, n_lifted: int = 8) -> Path:
        """Write `preview.png`, `coverage.png` and `index.html` comparing captured and lifted frames."""
        from liftdata.preview import write_preview

        return write_preview(self, Path(out_dir), n_lifted=n_lifted)


def plan_digest(plan: Any) -> str:
    """sha256 (hex) of a plan: every clip's driving kinematics, references and provenance (arrays
    hashed as bytes: cheap for plans of 100k frames)."""
    from liftdata.kinematics import KINEMATIC_FIELDS

    h = hashlib.sha256()
    for clip in plan.clips:
        for name in KINEMATIC_FIELDS:
            h.update(np.ascontiguousarray(getattr(clip.kinematics, name), np.float32).tobytes())
        h.update(json.dumps([list(map(int, clip.reference_indices)), clip.provenance], sort_keys=True).encode())
    return h.hexdigest()


def default_sampler(n_frames: int = 2) -> Any:
    """Half extreme expressions, a third pose sweeps over interpolated expressions, the rest interpolation.

    A single frame (one photo) has nothing to interpolate: extreme expressions under a gentle pose sweep.
    """
    from liftdata.samplers import interpolate, mine_extremes, mix, pose_sweep

    if n_frames < 2:  # the ranges are the default's own, not the user's: kept within the pose support
        return mine_extremes() * pose_sweep(yaw=(-20, 20), pitch=(-8, 8), clip_to_support=True)
    return mix([mine_extremes(), pose_sweep(yaw=(-30, 30), pitch=(-10, 10), clip_to_support=True) * interpolate(),
                interpolate(extrapolation=0.3)], [0.5, 0.3, 0.2])


def _with_key_safe_id(capture: Capture) -> Capture:
    """Sample keys and shard names allow [A-Za-z0-9_-] in the capture id; ids taken from file names
    ("My selfie.v2.mp4") get the other characters replaced by '_'."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", capture.capture_id)[:128] or "capture"
    return capture if safe == capture.capture_id else dataclasses.replace(capture, capture_id=safe)


# ---------------------------------------------------------------------- the entry point
class LiftDataset:
    """A tracked capture of one subject, ready to be expanded into a training set."""

    def __init__(self, capture: Capture):
        self.capture = _with_key_safe_id(capture)

    @classmethod
    def from_video(cls, path: str | os.PathLike, head_model: Any = "builtin", *, fps: float | None = None,
                   stride: int = 1, max_frames: int | None = None, progress: bool = True,
                   subject: int = 0) -> LiftDataset:
        """Track a monocular video (needs the `track` extra); `subject`: which person to keep (0: most frames)."""
        from liftdata.track import track_video

        return cls(track_video(path, head_model, fps=fps, stride=stride, max_frames=max_frames, progress=progress,
                               subject=subject))

    @classmethod
    def from_images(cls, paths: str | os.PathLike | Sequence[str | os.PathLike], head_model: Any = "builtin",
                    progress: bool = True) -> LiftDataset:
        """Track one photo, a few photos or a folder of images of one subject (needs the `track` extra)."""
        from liftdata.track import track_images

        return cls(track_images(paths, head_model, progress=progress))

    @classmethod
    def from_tracked(cls, directory: str | os.PathLike, head_model: Any = None) -> LiftDataset:
        """A saved liftdata capture (`Capture.save`) or a VHAP/GaussianAvatars directory (FLAME model needed)."""
        d = Path(directory)
        if not d.is_dir():
            raise CaptureError(f"{d}: no such directory (expected a saved capture or a VHAP/GaussianAvatars directory)")
        if (d / "capture.json").is_file():
            return cls(Capture.load(d, head_model))
        from liftdata.io.vhap import import_vhap

        if head_model is None:
            raise ConfigError(f"{d}: a VHAP/GaussianAvatars directory needs its FLAME head model "
                             "(head_model=FlameHeadModel.from_file(...))")
        return cls(import_vhap(d, head_model))

    def expand(self, n: int, sampler: Any = None, lifter: Any = None, *, seed: int = 0, size: int | None = None,
               include_captured: bool = True, backend: str = "auto", config: ExpandConfig | None = None) -> Expansion:
        """A lazy dataset of the captured frames (if `include_captured`) plus `n` lifted frames.

        Args:
            n: lifted frames to synthesize (> 0).
            sampler: a `liftdata.samplers` sampler (default: extreme expressions + pose sweep +
                interpolation, mixed).
            lifter: a `liftdata.lifters` lifter (default: `WarpLifter()`, no weights).
            seed: plan and lifter seed; the same seed gives the same dataset.
            size: longer image side of the output (default: the capture's).
            config: the `ExpandConfig` these arguments come from (`liftdata.run` passes it): its
                identity fields are recorded in the manifest of what is written.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:  # n=True is not a count
            raise ConfigError(f"expand: n must be a positive integer, got {n!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0):
            raise ConfigError(f"expand: size must be a positive integer or None, got {size!r}")
        from liftdata.lifters import WarpLifter

        capture = self.capture.resized(size) if size is not None else self.capture
        sampler = sampler or default_sampler(len(capture))
        return Expansion(capture, int(n), sampler, lifter or WarpLifter(backend=backend),
                         seed, include_captured, backend, config)
