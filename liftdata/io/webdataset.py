"""Sharded WebDataset tars: `{name}-{shard:06d}.tar` written with `webdataset.ShardWriter`.

Each sample is stored as the tar members `{key}.png` (or `{key}.jpg`), `{key}.shading.png`,
`{key}.normal.png`, `{key}.mask.png`, `{key}.alpha.png` (maps and matte only when present) and
`{key}.json` (the schema-v2 document, one shape for every sample). WebDataset splits a member
name at the first '.' of its basename; keys (`capture/000001/003`) hold no '.', so
`webdataset.WebDataset(urls).decode("rgb8")` gives back `__key__ == key`, the images as arrays
and the JSON document as a dict; `datasets.load_dataset("webdataset", data_files=...)` reads the
same folder. Every sample of a dataset has the same members (`datasets` takes the columns from
the first samples), so the writer refuses a sample whose members differ from the first one's.

Members get mtime 0 (an integer mtime also spares tarfile a PAX header per member), so the
same samples give byte-identical shards and sha256 in the manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import webdataset as wds
from tqdm.auto import tqdm

from liftdata.io.schema import OPTIONAL_FIELDS, Sample, SampleError, validate_sample
from liftdata.io.shards import DatasetDirError, ShardLog, WriteResult
from liftdata.io.verify import checked_shards

__all__ = ["write_webdataset", "read_webdataset", "sample_to_wds", "sample_from_wds"]


def sample_to_wds(sample: Sample, document: dict[str, Any] | None = None) -> dict[str, Any]:
    """The WebDataset dict of a sample (`__key__` + member extension -> bytes); `document`: its
    `Sample.document()` when already at hand."""
    document = sample.document() if document is None else document
    out: dict[str, Any] = {"__key__": sample.key, sample.image_ext: sample.image,
                           "json": json.dumps(document, allow_nan=False).encode()}
    for name in OPTIONAL_FIELDS:
        if getattr(sample, name) is not None:
            out[f"{name}.png"] = getattr(sample, name)
    return out


def sample_from_wds(record: dict[str, Any]) -> Sample:
    """Inverse of `sample_to_wds` (schema v1 or v2); accepts raw (bytes) or decoded (dict) `json` members."""
    document = record["json"]
    if isinstance(document, (bytes, bytearray)):
        document = json.loads(document)
    image = record.get("png", record.get("jpg"))
    return Sample.from_document(record["__key__"], document, image,
                                **{name: record.get(f"{name}.png") for name in OPTIONAL_FIELDS})


class _TempShards:
    """`opener` / `post` hooks for ShardWriter: write each shard to a temp name, commit on close."""

    def __init__(self, log: ShardLog):
        self.log = log
        self.file: BinaryIO | None = None
        self.keys: list[str] = []

    def open(self, path: str) -> BinaryIO:
        self.file = open(self.log.temp_path(Path(path).name), "wb")
        return self.file

    def post(self, path: str) -> None:
        self.file.close()
        self.log.commit(Path(path).name, self.keys)
        self.file, self.keys = None, []

    def abort(self, writer: wds.ShardWriter | None) -> None:
        """Drop the unfinished shard (complete shards stay recorded for a resume)."""
        if self.file is not None:
            writer.tarstream.close()  # flush tarfile's buffer so nothing writes to it later
            self.file.close()
            os.unlink(self.file.name)


def write_webdataset(samples: Iterable[Sample], out_dir: str | os.PathLike, name: str = "liftdata",
                     max_count: int = 1000, max_size: int = 1 << 30, expected_total: int | None = None,
                     progress: bool = True, start: int = 0,
                     identity: dict[str, Any] | None = None) -> WriteResult:
    """Stream `samples` into WebDataset tar shards in `out_dir`, with manifest and dataset card.

    Shards hold at most `max_count` samples, and are closed once they reach `max_size` bytes.
    Rerunning an interrupted write with the same stream resumes after the last complete shard
    (samples already stored are consumed from `samples` and their keys checked; or pass
    `start=resume_state(out_dir)` with a stream that begins there). Memory is flat in the
    number of samples. `identity` (`Expansion.identity()`) is recorded in the manifest; a write
    into a directory that records another one is refused. Raises `SampleError` for an invalid
    sample, `DatasetDirError` for an unusable directory.
    """
    log = ShardLog(out_dir, "webdataset", name, "tar", {"max_count": max_count, "max_size": max_size},
                   identity=identity)
    rest = log.skip_done(iter(samples), start)
    if log.complete:
        return log.already_complete(rest)
    hooks, writer = _TempShards(log), None
    bar = tqdm(total=expected_total, initial=log.n_resumed, disable=not progress, unit="sample",
               desc=f"writing {name} (webdataset)")
    try:
        for sample in rest:
            document = validate_sample(sample)
            log.admit(sample)
            if hooks.keys and sample.key == hooks.keys[-1]:  # webdataset would merge the two
                raise SampleError(sample.key, "key", "same key as the previous sample")
            record = sample_to_wds(sample, document)
            if writer is None:
                writer = wds.ShardWriter(str(log.out_dir / f"{name}-%06d.tar"), maxcount=max_count,
                                         maxsize=max_size, post=hooks.post, start_shard=len(log.records),
                                         verbose=0, opener=hooks.open, encoder=False, mtime=0)
            writer.write(record)
            hooks.keys.append(sample.key)
            bar.update()
    except BaseException:
        hooks.abort(writer)
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.close()
    return log.finish()


def read_webdataset(in_dir: str | os.PathLike, verify: bool = True) -> Iterator[Sample]:
    """Yield the validated samples of a WebDataset written by `write_webdataset`, in order.

    Every shard is checked against the manifest first (present, recorded size) and, with
    `verify` (the default), its sha256 just before it is read; a bad shard raises
    `DatasetDirError` naming it (`liftdata.io.verify`).
    """
    for shard, expected in checked_shards(in_dir, "webdataset", verify):
        count = 0
        for record in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False):
            yield sample_from_wds(record)
            count += 1
        if count != expected:
            raise DatasetDirError(f"{shard}: holds {count} samples, the manifest records {expected}")
