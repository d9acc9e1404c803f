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
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from liftdata.capture import Capture, CaptureError
from liftdata.config import ConfigError, ExpandConfig
from liftdata.io.schema import Sample, make_key, make_meta
from liftdata.lifters.quality import QUALITY_THRESHOLD
from liftdata.ranks import process_rank, split_points
from liftdata.samplers.pose import DEFAULT_SUPPORT_DEG
from liftdata.samplers.references import usable_sample_frames
from liftdata.tracking_cache import input_fingerprint, track_once

__all__ = ["LiftDataset", "Expansion", "captured_samples", "condition_arrays", "default_sampler", "process_rank",
           "input_fingerprint", "track_once", "CAPTURED_CLIP_FRAMES"]

CAPTURED_CLIP_FRAMES = 1000  #: captured frame i has the key of clip i // 1000, frame i % 1000
GATE_ROUNDS = 4  #: quality gate "resample": rounds of re-planned candidates before a slot keeps its best
IDENTITY_FILE = "identity.npy"  #: the subject's head-model identity, next to a written dataset's manifest


class _Lifted(NamedTuple):
    """One lifted clip before it becomes samples."""

    clip: Any  # the planned Clip
    scored: Any  # lifters.quality.ScoredClip: frames, scores, terms
    maps: dict[str, np.ndarray]  # uint8 condition maps of the driving frames
    reference_keys: tuple[str, ...]
    seed: int  # the lifter seed


def _capture_subset(capture: Capture, frames: np.ndarray) -> Capture:
    """The capture restricted to `frames` (indices), with its per-frame records."""
    from liftdata.track.pipeline import SubsetFrames

    extra = dict(capture.extra)
    tracking = dict(extra.get("tracking") or {})
    for name in ("sharpness", "photometric_residual"):  # per-frame tracking records
        if tracking.get(name) is not None and len(tracking[name]) == len(capture):
            tracking[name] = [tracking[name][i] for i in frames]
            extra["tracking"] = tracking
    return dataclasses.replace(capture, frames=SubsetFrames(capture.frames, frames), kinematics=capture.kinematics[frames],
                               landmark_residual=capture.landmark_residual[frames],
                               face_found=capture.face_found[frames], extra=extra)


def _last_written_key(out_dir: str | os.PathLike) -> str:
    from liftdata.io.shards import read_manifest

    return read_manifest(out_dir, complete=False)["shards"][-1]["last_key"]


def _clip_seed(*entropy: int) -> int:
    """The lifter seed of a clip: (dataset seed, plan clip index[, gate round, candidate clip])."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


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


def captured_samples(capture: Capture, *, start: int = 0, batch: int = 16, backend: str = "auto",
                     indices: Sequence[int] | None = None, matter: Any = None) -> Iterator[Sample]:
    """Yield one `Sample` per captured frame (source="captured") of `indices` (default: all) from
    position `start` on, maps rendered in batches. Keys keep the frame's index in the capture.
    `matter` (`track.matte.FrameMatter`): each sample gets its foreground alpha."""
    indices = np.arange(len(capture)) if indices is None else np.asarray(indices, int)
    fit = usable_sample_frames(capture)
    residual = capture.landmark_residual
    for first in range(start, len(indices), batch):
        chunk = indices[first:first + batch]
        maps = condition_arrays(capture, int(chunk[0]), int(chunk[-1]) + 1, backend)
        for i in chunk.tolist():
            j = i - int(chunk[0])
            key = captured_key(capture, i)
            kin = capture.kinematics[i]
            r = None if residual is None or not np.isfinite(residual[i]) else round(float(residual[i]), 4)
            meta = make_meta(key, kin, source="captured", subject_id=capture.subject_id,
                             extra={"face_found": bool(capture.face_found[i]),
                                    "fit": {"ok": bool(fit is None or fit[i]), "residual_px": r}})
            frame = np.asarray(capture.frames[i])
            yield Sample.from_arrays(key, frame, kin, capture.camera, meta, shading=maps["shading"][j],
                                     normal=maps["normal"][j], mask=maps["mask"][j],
                                     alpha=None if matter is None else matter(frame, kin))


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
    keep_unfit: bool = False  # also write captured frames without a face / with an outlier fit
    matte: bool = False  # every sample gets its foreground alpha (`{key}.alpha.png`, needs mediapipe)
    gate: str = "resample"  # quality gate policy (see `_lift_clip`): resample | drop | off
    quality_threshold: float = QUALITY_THRESHOLD
    _references: dict = field(default_factory=dict, init=False, repr=False)  # last reference indices -> References
    _held_out: np.ndarray | None = field(default=None, init=False, repr=False)  # [T] frames the plan may not see
    gate_stats: dict = field(default_factory=lambda: dict.fromkeys(("failed", "dropped", "resampled", "kept_below"), 0),
                             init=False, repr=False)  # what the gate did in this process

    @cached_property
    def plan(self) -> Any:
        """The sampler's plan (computed once), from the captured frames not held out (`hold_out`)."""
        rng = np.random.default_rng(self.seed)
        if self._held_out is None or not self._held_out.any():
            return self.sampler.sample(self.capture, self.n, rng)
        from liftdata.samplers.plan import Plan

        train = np.flatnonzero(~self._held_out)
        plan = self.sampler.sample(_capture_subset(self.capture, train), self.n, rng)
        return Plan(tuple(dataclasses.replace(c, reference_indices=tuple(int(train[i]) for i in c.reference_indices))
                          for c in plan.clips), plan.lower, plan.upper)

    def hold_out(self, frames: Sequence[bool]) -> None:
        """Captured frames ([T] bool) the plan must not see: neither their kinematics (interpolated,
        mined as extremes) nor their pixels (references); e.g. an avatar's test split. Call it before
        the plan is made."""
        frames = np.asarray(frames, bool)
        if frames.shape != (len(self.capture),):
            raise ValueError(f"hold_out: expected {len(self.capture)} flags, got shape {frames.shape}")
        if "plan" in self.__dict__ and not np.array_equal(frames, self._held_out if self._held_out is not None
                                                          else np.zeros_like(frames)):
            raise ValueError("hold_out: the plan is already made; hold frames out before planning or writing")
        if frames.all():
            raise ConfigError("hold_out: every captured frame is held out; nothing is left to plan from")
        self._held_out = frames

    @cached_property
    def _matter(self) -> Any:
        """Foreground alpha of any frame (`track.matte.FrameMatter`), or None without mattes."""
        if not self.matte:
            return None
        from liftdata.track.matte import FrameMatter

        return FrameMatter(self.capture)

    @cached_property
    def captured_indices(self) -> np.ndarray:
        """Captured frames written before the lifted ones: those fit to be samples (face found, fit
        not an outlier: `usable_sample_frames`), or all of them with `keep_unfit`."""
        if not self.include_captured:
            return np.arange(0)
        fit = usable_sample_frames(self.capture)
        return np.arange(len(self.capture)) if fit is None or self.keep_unfit else np.flatnonzero(fit)

    @property
    def n_captured(self) -> int:
        return len(self.captured_indices)

    def captured_summary(self) -> str | None:
        """One line on the captured frames left out as unfit (None: none)."""
        fit = usable_sample_frames(self.capture)
        if not self.include_captured or fit is None or fit.all():
            return None
        found = np.asarray(self.capture.face_found, bool)
        what = f"{int((~found).sum())} without a face, {int((found & ~fit).sum())} with an outlier fit"
        if self.keep_unfit:
            return f"captured: kept {int((~fit).sum())} unfit frames ({what}; meta extra.fit.ok false)"
        return (f"captured: {int((~fit).sum())} unfit frames not written ({what}; --keep-unfit keeps them); "
                "they are never references")

    def __len__(self) -> int:
        return self.n_captured + self.n

    def __iter__(self) -> Iterator[Sample]:
        return self.samples()

    def samples(self, start: int = 0, *, after: str | None = None) -> Iterator[Sample]:
        """Samples from position `start` on; lifts only the clips that hold samples at or after it.

        With the "drop" gate a clip's sample count depends on what the lifter made, so a resumed
        stream starts `after` the last key already written instead (`start` must then be 0).
        """
        if after is not None:
            yield from self._samples_after(after)
            return
        if self.gate == "drop" and start > self.n_captured:
            raise ValueError(f"start={start}: with the drop gate, resume after the last written key (after=...)")
        if start < self.n_captured:
            yield from captured_samples(self.capture, start=start, backend=self.backend, indices=self.captured_indices,
                                        matter=self._matter)
        offset = self.n_captured
        first_clip = n_captured_clips(self.capture)
        for j, clip in enumerate(self.plan.clips):
            length = len(clip.kinematics)
            if offset + length > start:
                skip = max(0, start - offset)
                yield from self._lift_clip(first_clip + j, clip, j)[skip:]
            offset += length

    def _samples_after(self, key: str) -> Iterator[Sample]:
        """The stream after sample `key` (keys increase along the stream)."""
        from liftdata.io.schema import parse_key

        _, clip_id, frame = parse_key(key)
        first_clip = n_captured_clips(self.capture)
        if clip_id < first_clip:  # a captured frame: the rest of them, then every lifted clip
            i = clip_id * CAPTURED_CLIP_FRAMES + frame
            yield from captured_samples(self.capture, backend=self.backend, matter=self._matter,
                                        indices=self.captured_indices[self.captured_indices > i])
        for j, clip in enumerate(self.plan.clips):
            if first_clip + j >= clip_id:
                yield from (s for s in self._lift_clip(first_clip + j, clip, j)
                            if first_clip + j > clip_id or parse_key(s.key)[2] > frame)

    def _lift_clip(self, clip_id: int, clip: Any, index: int) -> list[Sample]:
        """The samples of plan clip `index` (key clip `clip_id`), through the quality gate.

        Gate (`gate`, `quality_threshold`): with "resample", frames under the threshold are
        replaced, slot by slot in order, by frames of fresh plans (`self.sampler` with the rng of
        (seed, index, round)) that pass; after `GATE_ROUNDS` rounds a slot keeps its best candidate,
        flagged `passed: false`. Every clip keeps its length, so sample positions, resume and the
        multi-process split do not depend on what the lifter made. With "drop" they are not written.
        """
        cap = self.capture
        keys = [make_key(cap.capture_id, clip_id, f) for f in range(len(clip.kinematics))]
        lifted = self._lift(clip, _clip_seed(self.seed, index))
        samples = [self._sample(keys[f], lifted, f, 0) for f in range(len(keys))]
        if self.gate == "off":
            return samples
        bad = [f for f in range(len(keys)) if lifted.scored.scores[f] < self.quality_threshold]
        self.gate_stats["failed"] += len(bad)
        if self.gate == "drop":
            self.gate_stats["dropped"] += len(bad)
            return [s for f, s in enumerate(samples) if f not in bad]
        best = {f: (float(lifted.scored.scores[f]), samples[f]) for f in bad}
        for round_ in range(1, GATE_ROUNDS + 1):
            if not bad:
                break
            plan = self.sampler.sample(cap, len(bad), np.random.default_rng([self.seed, index, round_]))
            candidates = []
            for c, cand in enumerate(plan.clips):
                cl = self._lift(cand, _clip_seed(self.seed, index, round_, c))
                candidates += [(cl, f) for f in range(len(cand.kinematics))]
            for cl, f in candidates[:len(bad)]:
                score = float(cl.scored.scores[f])
                slot = bad[0] if score >= self.quality_threshold else None
                target = slot if slot is not None else min(bad, key=lambda b: best[b][0])
                if slot is not None or score > best[target][0]:
                    best[target] = (score, self._sample(keys[target], cl, f, round_))
                if slot is not None:
                    bad.pop(0)
                    if not bad:
                        break
        for f, (_, sample) in best.items():
            samples[f] = sample
        self.gate_stats["resampled"] += len(best) - len(bad)
        self.gate_stats["kept_below"] += len(bad)
        return samples

    def _lift(self, clip: Any, clip_seed: int) -> _Lifted:
        """Lift one planned clip: frames, condition maps and the quality score of every frame."""
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
        scored = lift_scored(self.lifter, references, driving, seed=clip_seed)  # frames + quality score per frame
        return _Lifted(clip, scored, _uint8_maps(driving.maps), references.keys, clip_seed)

    def _sample(self, key: str, lifted: _Lifted, f: int, round_: int) -> Sample:
        """Lifted frame f of `lifted` as the sample `key` (`round_` > 0: a gate replacement)."""
        clip, cap = lifted.clip, self.capture
        kin = clip.kinematics[f]
        quality = {**lifted.scored.meta(f, self.quality_threshold), "round": round_,
                   "passed": bool(lifted.scored.scores[f] >= self.quality_threshold)}
        meta = make_meta(key, kin, source="lifted", subject_id=cap.subject_id,
                         sampler={"name": clip.provenance["sampler"], "params": clip.provenance["params"]},
                         lifter={"name": self.lifter.name, "version": self.lifter.version},
                         seed=self.seed, reference_keys=lifted.reference_keys,
                         extra={"sampler_seed": clip.provenance.get("seed"), "lifter_seed": lifted.seed,
                                "quality": quality})
        maps, frame = lifted.maps, lifted.scored.frames[f]
        return Sample.from_arrays(key, frame, kin, cap.camera, meta, shading=maps["shading"][f],
                                  normal=maps["normal"][f], mask=maps["mask"][f],
                                  alpha=None if self._matter is None else self._matter(frame, kin))

    def gate_summary(self) -> str | None:
        """One line on what the quality gate did in this process (None: nothing under the threshold)."""
        g = self.gate_stats
        if not g["failed"]:
            return None
        what = {"drop": f"{g['dropped']} dropped (not written)",
                "resample": f"{g['resampled']} replaced by re-planned frames that pass"
                            + (f", {g['kept_below']} kept below it after {GATE_ROUNDS} rounds (meta quality.passed "
                               "false)" if g["kept_below"] else ""),
                "off": "kept (gate off)"}[self.gate]
        return (f"quality gate: {g['failed']} lifted frames scored under {self.quality_threshold:g}: {what}"
                " (lifted in this run; a resumed run counts only what it lifted)")

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict[str, Any]:
        """What this dataset is, recorded in its manifest: the config's identity fields, the
        capture's fingerprint, the lifter's version and a digest of the plan. A write into a
        directory recording another identity is refused, naming the fields that differ."""
        settings = self.config.identity() if self.config is not None else {  # a plain API call: no config
            **ExpandConfig(n=1).identity(), "n": self.n, "seed": int(self.seed),
            "include_captured": self.include_captured, "keep_unfit": self.keep_unfit, "quality_gate": self.gate,
            "quality_threshold": self.quality_threshold, "matte": self.matte,
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
            if self.gate == "drop" and start:  # positions depend on what was dropped: resume after the last key
                stream = self.samples(after=_last_written_key(out_dir))
            else:
                stream = self.samples(start)
            result = writer(stream, out_dir, start=start, expected_total=len(self), **kwargs)
            self._save_identity(out_dir)
            return result
        if self.gate == "drop":
            raise ConfigError("quality gate drop: the dataset is written by one process (its length is only known "
                              "once lifted); use the resample gate (the default) with several processes")
        lo, hi = self.rank_bounds(world_size)[rank:rank + 2]
        part = Path(out_dir) / rank_dir(rank, world_size)
        start = resume_state(part)
        result = writer(itertools.islice(self.samples(lo + start), hi - lo - start), part, start=start,
                        expected_total=hi - lo, **kwargs)
        self._save_identity(out_dir)
        merge_ranks(out_dir)  # the last rank to finish writes the joined manifest
        return result

    def _save_identity(self, out_dir: str | os.PathLike) -> None:
        """`out_dir/identity.npy`: the subject's head-model identity, which consumers need with the
        kinematics (the avatar, `liftdata eval`); written (atomically) once the samples are."""
        path = Path(out_dir) / IDENTITY_FILE
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(self.capture.identity))
        tmp.replace(path)

    def write_vhap(self, out_dir: str | os.PathLike, *, split: str | None = None,
                   background: str | None = None) -> Path:
        """Write the VHAP/GaussianAvatars layout (FLAME captures; `liftdata.io.vhap`): captured, then lifted frames.

        `split` (`liftdata.io.vhap.captured_splits`; default: the config's, else "auto") puts the
        captured frames in train / test; lifted frames are train, flagged `"synthetic": true` with
        their sample key. Images are composited on `background` (white | black | keep; default: the
        config's, else white) with each frame's matte, also written to `fg_masks/`: a VHAP source's
        own mask for its captured frames, else the sample's alpha, else its head-model mask.
        Resumable like the shard writers: a rerun with the same settings continues after the last
        written frame, a finished one does nothing; other settings are refused.
        """
        from liftdata.io.schema import parse_key
        from liftdata.io.vhap import VhapWriter, captured_splits, sample_frame

        cap, cfg = self.capture, self.config
        split = split or (cfg.split if cfg is not None else "auto")
        background = background or (cfg.background if cfg is not None else "white")
        splits = captured_splits(cap, split)
        self.hold_out([s != "train" for s in splits])  # the plan and references never see test frames
        source = cap.extra.get("vhap", {})
        writer = VhapWriter(out_dir, cap.head_model, cap.identity, camera_index=source.get("camera_index", 0),
                            camera_id=source.get("camera_id"), background=background,
                            identity={**self.identity(), "format": "vhap", "split": split, "background": background},
                            what=f"capture {cap.capture_id!r}")
        if writer.complete:
            return writer.out
        resume_by_key = self.gate == "drop" and writer.last_key is not None  # positions depend on what was dropped
        stream = self.samples(after=writer.last_key) if resume_by_key else self.samples(writer.start)
        for index, sample in enumerate(stream, writer.start):
            _, clip, frame = parse_key(sample.key)
            captured = clip * CAPTURED_CLIP_FRAMES + frame if sample.meta["source"] == "captured" else None
            writer.add(sample_frame(sample, cap, splits, captured), index)
        return writer.finish()

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


def default_sampler(n_frames: int = 2, pose_support: float | None = DEFAULT_SUPPORT_DEG) -> Any:
    """Half extreme expressions, a third pose sweeps over interpolated expressions, the rest interpolation.

    A single frame (one photo) has nothing to interpolate: extreme expressions under a gentle pose sweep.
    The sweeps' ranges are the default's own, not the user's: pulled back to `pose_support` degrees
    from the nearest captured pose (None: no limit).
    """
    from liftdata.samplers import interpolate, mine_extremes, mix, pose_sweep

    support = dict(support_deg=pose_support, clip_to_support=pose_support is not None)
    if n_frames < 2:
        return mine_extremes() * pose_sweep(yaw=(-20, 20), pitch=(-8, 8), **support)
    return mix([mine_extremes(), pose_sweep(yaw=(-30, 30), pitch=(-10, 10), **support) * interpolate(),
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
                   subject: int = 0, crop: int | str | None = "auto", tracking: str = "photometric") -> LiftDataset:
        """Track a monocular video (needs the `track` extra); `subject`: which person to keep (0: most frames);
        `crop`: see `crop` (the same default as `liftdata expand --crop`); `tracking`: "photometric" or
        "landmarks" (see `track_video`)."""
        from liftdata.track import track_video

        return cls(track_video(path, head_model, fps=fps, stride=stride, max_frames=max_frames, progress=progress,
                               subject=subject, tracking=tracking)).crop(crop)

    @classmethod
    def from_images(cls, paths: str | os.PathLike | Sequence[str | os.PathLike], head_model: Any = "builtin",
                    progress: bool = True, crop: int | str | None = "auto", tracking: str = "photometric") -> LiftDataset:
        """Track one photo, a few photos or a folder of images of one subject (needs the `track` extra);
        `crop`: see `crop` (the same default as `liftdata expand --crop`); `tracking`: see `track_video`."""
        from liftdata.track import track_images

        return cls(track_images(paths, head_model, progress=progress, tracking=tracking)).crop(crop)

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

    def crop(self, size: int | str | None = "auto") -> LiftDataset:
        """The head-centred square crop of this capture (INSTA-style, 2.5 x the face size), resized to
        `size` px, with the camera adjusted so the kinematics stay exact; one box for all frames, so
        one camera serves them all.

        "auto": only captures liftdata tracked (a video, images, or their saved capture) are cropped,
        to `AUTO_CROP` px or to the box's own side when smaller (never upsampled); None: unchanged.
        """
        extra = self.capture.extra or {}
        tracked_here = "tracking" in extra and "vhap" not in extra  # a capture liftdata tracked (now or earlier)
        if size is None or (size == "auto" and not tracked_here):
            return self
        from liftdata.config import AUTO_CROP, MAX_SIZE, MIN_CROP, valid_crop
        from liftdata.track.crop import CropConfig, crop_capture

        if not valid_crop(size):
            raise ConfigError(f"crop: expected an integer in [{MIN_CROP}, {MAX_SIZE}] (pixels), 'auto' or None, "
                              f"got {size!r}")
        side = AUTO_CROP if size == "auto" else size
        cropped = crop_capture(self.capture, CropConfig(size=side, per_shot=False))
        if size == "auto" and (box := int(round(float(cropped.boxes[0][2])))) < side:
            cropped = crop_capture(self.capture, CropConfig(size=box + box % 2, per_shot=False))
        return LiftDataset(cropped.capture(self.capture))

    def expand(self, n: int, sampler: Any = None, lifter: Any = None, *, seed: int = 0, size: int | None = None,
               include_captured: bool = True, backend: str = "auto", config: ExpandConfig | None = None,
               quality_gate: str = "resample", quality_threshold: float | None = None, keep_unfit: bool = False,
               pose_support: float | None = DEFAULT_SUPPORT_DEG, matte: bool | None = None) -> Expansion:
        """A lazy dataset of the captured frames (if `include_captured`) plus `n` lifted frames.

        Args:
            n: lifted frames to synthesize (> 0).
            sampler: a `liftdata.samplers` sampler (default: extreme expressions + pose sweep +
                interpolation, mixed).
            lifter: a `liftdata.lifters` lifter (default: `WarpLifter()`, no weights).
            seed: plan and lifter seed; the same seed gives the same dataset.
            size: longer image side of the output (default: the capture's).
            quality_gate, quality_threshold: lifted frames scoring under the threshold (default
                `QUALITY_THRESHOLD`) are replaced by re-planned ones ("resample"), not written
                ("drop"), or kept ("off"); see `Expansion._lift_clip`.
            keep_unfit: also write captured frames without a face or with an outlier fit.
            matte: give every sample (captured and lifted) its foreground alpha: mediapipe's
                selfie matte of the frame refined with the head model's mask (`track.matte`);
                None: when mediapipe (the `track` extra) is installed.
            pose_support: the default sampler plans no pose farther than this (degrees) from the
                nearest captured pose (None: no limit).
            config: the `ExpandConfig` these arguments come from (`liftdata.run` passes it): its
                identity fields are recorded in the manifest of what is written.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:  # n=True is not a count
            raise ConfigError(f"expand: n must be a positive integer, got {n!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0):
            raise ConfigError(f"expand: size must be a positive integer or None, got {size!r}")
        from liftdata.lifters import WarpLifter

        from liftdata.lifters.quality import gate

        threshold = QUALITY_THRESHOLD if quality_threshold is None else float(quality_threshold)
        gate([], threshold, quality_gate)  # checks the policy and threshold
        from liftdata.track.matte import matte_available

        if matte and not matte_available():
            raise ConfigError("matte: foreground alpha needs mediapipe==0.10.14: pip install 'liftdata[track]' "
                              "(or matte off: --no-matte)")
        capture = self.capture.resized(size) if size is not None else self.capture
        sampler = sampler or default_sampler(len(capture), pose_support)
        return Expansion(capture, int(n), sampler, lifter or WarpLifter(backend=backend),
                         seed, include_captured, backend, config, keep_unfit=bool(keep_unfit), gate=quality_gate,
                         quality_threshold=threshold, matte=matte_available() if matte is None else bool(matte))
