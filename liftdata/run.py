"""One path from settings to a dataset: `run_expand(config)`.

`liftdata expand` (options -> `ExpandConfig`), `liftdata build` (recipe -> `ExpandConfig`) and
API users all call it. It reads as the job does:

1. `preflight`: everything checkable before the (slow) tracking: the config's fields, the input
   and FLAME files exist, the sampler spec builds, the lifter loads, the output directory is
   writable, and what the output directory already holds was made with the same settings
   (else refused with one line naming the fields that differ; `overwrite=True` starts over).
2. open the input: track once into `out/capture/` (shared by resumes and all processes), or
   load a tracked directory, or make a synthetic subject.
3. expand, write (resuming after the last complete shard), preview.

Per-frame steps live in the `Expansion` (a lazy stream of samples): captured frames unfit as
samples are left out (`keep_unfit`), every lifted frame is scored and gated (`quality_gate`,
`quality_threshold`); their settings are `ExpandConfig` fields, and what they did is printed.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from liftdata.config import ConfigError, ExpandConfig
from liftdata.ranks import process_rank

__all__ = ["run_expand", "preflight", "open_input", "RunResult", "Prepared"]


@dataclass(frozen=True)
class RunResult:
    """Where a run wrote what."""

    dataset: Path
    preview: Path | None
    n_samples: int
    n_captured: int
    n_lifted: int
    rank: int = 0
    world_size: int = 1
    notes: tuple[str, ...] = ()  # what was left out or replaced (unfit captured frames, the quality gate)

    def lines(self) -> list[str]:
        part = f", part {self.rank + 1} of {self.world_size}" if self.world_size > 1 else ""
        out = [f"dataset : {self.dataset}  ({self.n_samples} samples: {self.n_captured} captured + "
               f"{self.n_lifted} lifted{part})"]
        out += [f"note    : {note}" for note in self.notes]
        return out + ([f"preview : {self.preview}"] if self.preview else [])


@dataclass
class Prepared:
    """What `preflight` built: the objects a run needs, all checked."""

    config: ExpandConfig
    out: Path
    sampler: Any
    lifter: Any
    head_model: Any
    fingerprint: dict[str, Any] | None  # of the tracking input (video / images), else None
    rank: int
    world_size: int


def run_expand(config: ExpandConfig, *, overwrite: bool = False, progress: bool = True) -> RunResult:
    """Build the dataset `config` describes (see the module docstring); rerun to resume."""
    ready = preflight(config, overwrite=overwrite)
    with _writing(ready.out / "capture"):
        dataset = open_input(ready)
    expansion = dataset.expand(config.n, ready.sampler, ready.lifter, seed=config.seed, size=config.size,
                               include_captured=config.include_captured, config=config,
                               quality_gate=config.quality_gate, quality_threshold=config.quality_threshold,
                               keep_unfit=config.keep_unfit, pose_support=config.pose_support, matte=config.matte)
    n_samples = len(expansion)
    with _writing(ready.out / config.format):
        if config.format == "vhap":
            where = expansion.write_vhap(ready.out / "vhap")
            n_samples = _json_file(where / "liftdata.json")["frames"]  # what was written (the drop gate drops)
        else:
            write = expansion.write_webdataset if config.format == "webdataset" else expansion.write_parquet
            written = write(ready.out / config.format, max_count=config.shard_size, progress=progress)
            where = written.out_dir
            if config.quality_gate == "drop":  # one process (refused otherwise): what was kept
                n_samples = written.n_samples
    if progress and ready.rank == 0:  # the plan behind it, and what the pose support pulled back
        print("plan: " + expansion.plan.summary().replace("\n", "\n      "), file=sys.stderr)
    preview = None
    if config.preview and ready.rank == 0:  # one preview in a multi-process run
        with _writing(ready.out / "preview"):
            preview = expansion.preview(ready.out / "preview")
    notes = tuple(n for n in (expansion.captured_summary(), expansion.gate_summary()) if n)
    return RunResult(Path(where), preview, n_samples, expansion.n_captured, n_samples - expansion.n_captured,
                     ready.rank, ready.world_size, notes)


@contextmanager
def _writing(where: Path) -> Iterator[None]:
    """An OSError while writing `where` (disk full, read-only, ...) -> one DatasetDirError naming it."""
    from liftdata.io.shards import DatasetDirError

    try:
        yield
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        path = e.filename or where
        raise DatasetDirError(f"{path}: {e.strerror}; complete shards are kept: fix it (free space, permissions) "
                              "and rerun the same command to resume") from None


_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EDQUOT, errno.EISDIR}


# ---------------------------------------------------------------------- 1. before tracking
def preflight(config: ExpandConfig, *, overwrite: bool = False) -> Prepared:
    """Check everything that can be checked before tracking; raise one `LiftdataError` naming the input."""
    from liftdata.io.shards import check_writable
    from liftdata.lifters import load_lifter
    from liftdata.recipes import sampler_from_spec

    rank, world_size = process_rank()
    if config.out is None:
        raise ConfigError("out: the output directory is required (--out, or output.dir in a recipe)")
    if config.input_kind is None:
        raise ConfigError("input: give exactly one of video, images, tracked, synthetic")
    if world_size > 1 and config.format == "vhap":
        raise ConfigError("--format vhap is written by one process; run it without torchrun/accelerate")
    if world_size > 1 and overwrite:
        raise ConfigError(f"--overwrite: run it in one process (or delete {config.out} first)")
    _check_files(config)
    _check_memory(config)
    out = Path(config.out)
    check_writable(out)
    sampler = sampler_from_spec(config.sampler, "sampler") if config.sampler is not None else None
    fingerprint = _tracking_fingerprint(config)
    _check_recorded(config, out, fingerprint, overwrite)
    lifter = load_lifter(config.lifter, config.checkpoint, device=config.device, torch_dtype=config.dtype)
    head_model = _head_model(config) if config.input_kind != "synthetic" else None
    _check_lifter_fits(config, lifter, head_model)
    if overwrite:  # start over: what earlier runs left in out/ (only liftdata's own folders)
        for sub in ("capture", "webdataset", "parquet", "vhap", ".vhap.tmp", "preview"):
            shutil.rmtree(out / sub, ignore_errors=True)
    return Prepared(config, out, sampler, lifter, head_model, fingerprint, rank, world_size)


def _check_lifter_fits(config: ExpandConfig, lifter: Any, head_model: Any) -> None:
    """A trained lifter reads one head model's coefficients: refuse another before tracking."""
    if config.lifter != "liftavatar":  # the warp lifter: any head model
        return
    from liftdata.head import load_head_model
    from liftdata.lifters.liftavatar import coefficient_dim

    model = head_model if head_model is not None else load_head_model("builtin")  # synthetic inputs: builtin
    want, got = lifter.pipeline.transformer.config.coefficient_dim, coefficient_dim(model.n_expression)
    if got != want:
        raise ConfigError(f"checkpoint: {config.checkpoint} reads {want} coefficients per frame, the head model "
                          f"{model.name} ({model.n_expression} expressions) gives {got}; use the head model it was "
                          f"trained with")


def _check_files(config: ExpandConfig) -> None:
    paths = config.input_path
    for p in [paths] if isinstance(paths, str) else (paths or []):
        if not Path(p).exists():
            raise ConfigError(f"{p}: no such file or directory (the {config.input_kind} input)")
    if config.head_model == "flame":
        for name, p in (("FLAME model", config.flame_model), ("landmark embedding", config.flame_embedding)):
            if p is not None and not Path(p).is_file():
                raise ConfigError(f"{p}: no such {name} file")
    if config.checkpoint is not None and not Path(config.checkpoint).is_dir():
        raise ConfigError(f"{config.checkpoint}: no such checkpoint directory")


#: Peak memory of an expansion grows with the output size: measured with the warp lifter and the default
#: sampler (16-frame clips), 246 / 1,317 / 5,535 MB above the process baseline at 256² / 512² / 1024²,
#: i.e. about 5.4 kB per output pixel. A `size` whose estimate exceeds the machine's memory cannot run.
EXPAND_BYTES_PER_PIXEL = 5_400


def physical_memory() -> int:
    """Bytes of physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_memory(config: ExpandConfig) -> None:
    if config.size is None:
        return
    need, have = EXPAND_BYTES_PER_PIXEL * config.size ** 2, physical_memory()
    if need > have:
        raise ConfigError(f"size: {config.size} needs about {need / 2**30:.0f} GiB of memory to expand "
                          f"(~{EXPAND_BYTES_PER_PIXEL / 1000:.1f} kB per output pixel), this machine has "
                          f"{have / 2**30:.0f} GiB; choose a smaller size")


def _tracking_fingerprint(config: ExpandConfig) -> dict[str, Any] | None:
    from liftdata.tracking_cache import input_fingerprint

    if config.input_kind not in ("video", "images"):
        return None
    return input_fingerprint(config.input_path, head_model=config.head_model, max_frames=config.max_frames,
                             stride=config.stride, **({"subject": config.subject} if config.subject else {}),
                             tracking=config.tracking)


def _check_recorded(config: ExpandConfig, out: Path, fingerprint: dict[str, Any] | None, overwrite: bool) -> None:
    """Refuse (or, with overwrite, remove) what `out` holds from a run with other settings."""
    from liftdata.io.shards import DatasetDirError, identity_diff, recorded_identities
    from liftdata.tracking_cache import fingerprint_diff

    if overwrite:
        return  # removed at the end of preflight, once everything else checked out
    if fingerprint is not None:
        diff = fingerprint_diff(out / "capture", fingerprint)
        if diff:
            raise DatasetDirError(f"{out / 'capture'}: tracked from another input or with other settings ({diff}); "
                                  "use another output directory, or --overwrite to start over")
    if config.format == "vhap":  # VHAP writer's record: finished in out/vhap, in progress in out/.vhap.tmp
        identity = {**config.identity(), "split": config.split, "background": config.background}
        for where in (out / "vhap", out / ".vhap.tmp"):
            recorded = _json_file(where / "liftdata.json")
            if where.exists() and recorded is None and where.name == "vhap":
                raise DatasetDirError(f"{where}: already exists and was not written by this liftdata (no "
                                      "liftdata.json); use another output directory, or --overwrite to start over")
            diff = identity_diff(recorded.get("identity"), identity, keys=sorted(identity)) if recorded else None
            if diff:
                raise DatasetDirError(f"{where}: holds a VHAP export made with other settings ({diff}); rerun with the "
                                      "same settings to resume, or --overwrite to start over")
        return
    identity = config.identity()
    for where, recorded in recorded_identities(out / config.format):
        diff = identity_diff(recorded, identity, keys=sorted(identity))
        if diff:
            raise DatasetDirError(f"{where}: holds a dataset made with other settings ({diff}); rerun with the "
                                  "same settings to resume, or --overwrite to start over")


def _json_file(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _head_model(config: ExpandConfig) -> Any:
    from liftdata.head import load_head_model

    if config.head_model == "flame":
        return load_head_model("flame", model_path=config.flame_model, landmark_embedding=config.flame_embedding)
    return load_head_model(config.head_model)


# ---------------------------------------------------------------------- 2. the input
def open_input(ready: Prepared) -> Any:
    """The `LiftDataset` of the config's input (video and images are tracked once into out/capture/)."""
    from liftdata.dataset import LiftDataset
    from liftdata.tracking_cache import track_once

    config, kind = ready.config, ready.config.input_kind
    if kind == "synthetic":
        from liftdata.synthetic import make_capture

        spec = config.synthetic
        unknown = set(spec) - {"seed", "frames", "size"}
        if unknown:
            raise ConfigError(f"synthetic: unknown keys {sorted(unknown)}; valid: seed, frames, size")
        return LiftDataset(make_capture(spec.get("seed", 0), n_frames=spec.get("frames", 48),
                                        size=spec.get("size", 256))).crop(config.crop)
    if kind == "tracked":
        if config.camera is not None:  # one camera of a multi-camera VHAP folder
            from liftdata.io.vhap import import_vhap

            return LiftDataset(import_vhap(config.tracked, ready.head_model, config.camera)).crop(config.crop)
        return LiftDataset.from_tracked(config.tracked, ready.head_model).crop(config.crop)

    def track() -> Any:
        if kind == "images":
            return LiftDataset.from_images(config.images, ready.head_model, crop=None,  # cached uncropped
                                           tracking=config.tracking)
        return LiftDataset.from_video(config.video, ready.head_model, max_frames=config.max_frames,
                                      stride=config.stride, subject=config.subject, crop=None,
                                      tracking=config.tracking)

    return track_once(ready.out / "capture", ready.fingerprint, track, ready.head_model, ready.rank).crop(config.crop)


