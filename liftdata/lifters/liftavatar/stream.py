"""Training data as a stream: liftdata datasets and capture folders, never held whole in memory.

Sources (`TrainConfig.stream`):
* a finished liftdata dataset directory (WebDataset tars or Parquet files, `liftdata.io`): every
  shard is one unit of work; samples need their `shading` and `normal` maps;
* a capture folder (`Capture.save`): one unit; it also carries the head-model geometry, so
  warp-guided training (the warp lifter runs on the fly from the chosen references) reads these.

Each accelerate rank reads its own units (`units[rank::world_size]`, shuffled per epoch with the
run's seed), so N processes see disjoint data with no coordination. Within a unit, frames are
buffered per subject (at most `buffer_frames` at a time); a training item takes a target clip
from the buffer and K references from OTHER buffered frames of the same subject. Latents are
computed on the fly with the pipeline's autoencoder (exact and free for the pixel-space one).
Memory is bounded by the buffer, not by the number of subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["StreamUnit", "list_units", "rank_units", "FrameGroup", "read_groups", "StreamingData"]


@dataclass(frozen=True)
class StreamUnit:
    kind: str  # "webdataset" | "parquet" | "capture"
    path: str


def list_units(sources: list[str]) -> list[StreamUnit]:
    """Every shard of every dataset directory and every capture folder in `sources`, in order."""
    from liftdata.io.verify import finished_manifest

    units = []
    for src in sources:
        path = Path(src)
        if (path / "capture.json").is_file():
            units.append(StreamUnit("capture", str(path)))
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"stream: {src} is neither a liftdata dataset directory nor a capture folder")
        manifest = finished_manifest(path)
        units += [StreamUnit(manifest["format"], str(path / rec["file"])) for rec in manifest["shards"]]
    if not units:
        raise ValueError(f"stream: no shards or captures in {sources}")
    return units


def rank_units(units: list[StreamUnit], rank: int, world_size: int) -> list[StreamUnit]:
    """This rank's units: a deterministic, disjoint split (every rank gets at least one)."""
    if len(units) < world_size:
        raise ValueError(f"stream: {len(units)} shards/captures cannot feed {world_size} processes; write more shards")
    return units[rank::world_size]


@dataclass
class FrameGroup:
    """Up to `buffer_frames` frames of one subject, in key order."""

    subject: str
    images: list[np.ndarray] = field(default_factory=list)  # [H, W, 3] uint8
    maps: list[np.ndarray] = field(default_factory=list)  # [4, H, W] float32 in [0, 1]
    kinematics: list[Any] = field(default_factory=list)  # Kinematics, T = 1
    capture: Any = None  # the Capture when read from a capture folder (geometry for warp guidance)


def _samples(unit: StreamUnit) -> Iterator[Any]:
    if unit.kind == "webdataset":
        import webdataset as wds

        from liftdata.io.webdataset import sample_from_wds

        keep = lambda urls: urls  # noqa: E731  the rank split is ours (rank_units), one shard per unit
        for record in wds.WebDataset(unit.path, shardshuffle=False, empty_check=False, nodesplitter=keep):
            yield sample_from_wds(record)
    else:
        import pyarrow.parquet as pq

        from liftdata.io.parquet import sample_from_row

        for batch in pq.ParquetFile(unit.path).iter_batches(batch_size=64):
            for row in batch.to_pylist():
                yield sample_from_row(row)


def _sample_maps(sample) -> np.ndarray:  # [4, H, W] float32
    arrays = sample.to_arrays()
    if arrays["shading"] is None or arrays["normal"] is None:
        raise ValueError(f"stream: sample {sample.key} has no shading/normal maps (write the dataset with maps)")
    shading = arrays["shading"].reshape(*arrays["shading"].shape[:2], 1)
    return np.concatenate([shading, arrays["normal"]], -1).transpose(2, 0, 1).astype(np.float32) / 255


def read_groups(unit: StreamUnit, buffer_frames: int) -> Iterator[FrameGroup]:
    """The unit's frames grouped by subject, `buffer_frames` at most per group."""
    if unit.kind == "capture":
        from liftdata.capture import Capture
        from liftdata.lifters.base import render_conditions
        from liftdata.lifters.liftavatar.lifter import pack_maps

        cap = Capture.load(unit.path)
        for start in range(0, len(cap), buffer_frames):
            idx = np.arange(start, min(start + buffer_frames, len(cap)))
            cond = render_conditions(cap.head_model, cap.identity, cap.kinematics[idx], cap.camera)
            maps = pack_maps(cond.maps).numpy()
            yield FrameGroup(cap.subject_id or cap.capture_id, [np.asarray(cap.frames[i]) for i in idx], list(maps),
                             [cap.kinematics[[i]] for i in idx], cap)
        return
    from liftdata.io.schema import parse_key

    group = None
    for sample in _samples(unit):
        subject = sample.meta.get("subject_id") or parse_key(sample.key)[0]
        if group is None or group.subject != subject or len(group.images) >= buffer_frames:
            if group is not None:
                yield group
            group = FrameGroup(subject)
        group.images.append(sample.to_arrays()["image"])
        group.maps.append(_sample_maps(sample))
        group.kinematics.append(sample.kinematics)
    if group is not None:
        yield group


class StreamingData:
    """Endless batches from this rank's units (`batch(cfg, rng)`, the counterpart of `sample_batch`).

    `items_per_group` training items are drawn from each buffered group before the next is read.
    `consumed` lists the units this rank has read (written by `train` as `stream-rank{r}.json`).
    """

    def __init__(self, sources: list[str], vae, *, rank: int = 0, world_size: int = 1, size: int,
                 buffer_frames: int = 32, items_per_group: int = 8, guided: bool = False, residual: bool = False,
                 seed: int = 0):
        self.units = rank_units(list_units(sources), rank, world_size)
        if guided and any(u.kind != "capture" for u in self.units):
            raise ValueError("stream: warp-guided training needs capture folders (datasets carry no head geometry)")
        self.vae, self.size, self.buffer_frames, self.items_per_group = vae, size, buffer_frames, items_per_group
        self.guided, self.residual, self.seed = guided, residual, seed
        self.consumed: list[str] = []
        self._groups = self._endless()
        self._group, self._left = None, 0

    def _endless(self) -> Iterator[FrameGroup]:
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.units))
            for i in order:
                unit = self.units[i]
                if unit.path not in self.consumed:
                    self.consumed.append(unit.path)
                yield from read_groups(unit, self.buffer_frames)
            epoch += 1

    def _next_group(self, need: int) -> FrameGroup:
        while self._left <= 0 or self._group is None:
            group = next(self._groups)
            if len(group.images) >= need:
                self._group, self._left = group, self.items_per_group
        self._left -= 1
        return self._group

    def batch(self, cfg, rng: np.random.Generator) -> dict[str, torch.Tensor | None]:
        from liftdata.lifters.liftavatar.training import apply_dropout

        k = int(rng.integers(1, cfg.max_references + 1))
        items = [self._item(self._next_group(cfg.num_frames + 1), k, cfg.num_frames, rng)
                 for _ in range(cfg.batch_size)]
        return apply_dropout({key: torch.stack([it[key] for it in items]) for key in items[0]}, cfg, rng)

    def _item(self, group: FrameGroup, k: int, num_frames: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        from liftdata.kinematics import Kinematics
        from liftdata.lifters.liftavatar.lifter import _resize, pack_coefficients
        from liftdata.lifters.liftavatar.pipeline import encode_frames

        n = len(group.images)
        start = int(rng.integers(n - num_frames + 1))
        span = np.arange(start, start + num_frames)
        others = np.setdiff1d(np.arange(n), span)
        refs = rng.choice(others, size=k, replace=len(others) < k)
        images = torch.from_numpy(np.stack(group.images)).permute(0, 3, 1, 2).float() / 255
        images = _resize(images, (self.size, self.size))
        maps = _resize(torch.from_numpy(np.stack(group.maps)), (self.size, self.size))
        coefs = pack_coefficients(Kinematics.concat(group.kinematics))
        encode = lambda x: encode_frames(self.vae, x.permute(1, 0, 2, 3)[None])[0].float().cpu()  # noqa: E731
        x0 = encode(images[span])
        item = dict(reference_latents=torch.cat([encode(images[[r]]) for r in refs], dim=1),
                    reference_maps=maps[refs].permute(1, 0, 2, 3) * 2 - 1, reference_coefficients=coefs[refs],
                    driving_maps=maps[span].permute(1, 0, 2, 3) * 2 - 1, driving_coefficients=coefs[span])
        if self.guided:
            item.update(self._warp(group, refs, span, encode))
            if self.residual:
                x0 = x0 - item["warp_latents"]
        return dict(x0=x0, **item)

    def _warp(self, group: FrameGroup, refs: np.ndarray, span: np.ndarray, encode) -> dict[str, torch.Tensor]:
        from liftdata.kinematics import Kinematics
        from liftdata.lifters.base import References, render_conditions
        from liftdata.lifters.liftavatar.guidance import warp_guidance
        from liftdata.lifters.liftavatar.lifter import _resize
        from liftdata.lifters.liftavatar.transformer import confidence_to_latent

        cap = group.capture
        cond = lambda idx: render_conditions(cap.head_model, cap.identity,  # noqa: E731
                                             Kinematics.concat([group.kinematics[i] for i in idx]), cap.camera)
        frames, conf = warp_guidance(References(np.stack([group.images[i] for i in refs]), cond(refs)), cond(span))
        frames = _resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, (self.size, self.size))
        conf = _resize(torch.from_numpy(conf)[:, None], (self.size, self.size)).permute(1, 0, 2, 3)[None]
        return dict(warp_latents=encode(frames),
                    warp_confidence=confidence_to_latent(conf, self.vae.config.scale_factor_spatial,
                                                         self.vae.config.scale_factor_temporal)[0])
