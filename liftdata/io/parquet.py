"""Sharded Parquet with Hugging Face `datasets` Features: `train/{name}-{shard:06d}.parquet`.

The shards live in the `train/` subdirectory so that `load_dataset("parquet", data_dir=out_dir)`
(whose default patterns take every file of a directory without a split folder) reads the
shards and not `manifest.json`.

Columns (`FEATURES`; the arrow schema carries the `datasets` features metadata, so
`datasets.load_dataset("parquet", data_dir=out_dir)` gives these types back):

- `key`: string, `{capture}/{clip:06d}/{frame:03d}`.
- `image`, `shading`, `normal`, `mask`: `datasets.Image()` (struct of the encoded PNG/JPEG
  bytes, path null); maps are null when absent.
- `kinematics`: struct of float32 lists (expression [E], jaw [3], neck [3], eyes [6], rotation
  [3], translation [3]) + head_model, head_model_version: the values are float32, so exact.
- `camera`: struct {K [3][3] float64, world_to_camera [4][4] float64, width, height}.
- `meta`: the schema-v1 meta as a JSON string. Meta holds free-form objects (sampler params,
  extra) whose types vary between samples, which a fixed Arrow struct cannot hold; JSON round
  trips them exactly (`json.loads(row["meta"])`).

Shards are streamed: rows are buffered for one row group at a time and written with a
`pyarrow.parquet.ParquetWriter` to a temp file that is renamed when the shard is complete.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Image, List, Value
from tqdm.auto import tqdm

from liftdata.io.schema import MAP_FIELDS, Sample, SampleError, validate_sample
from liftdata.io.shards import DatasetDirError, ShardLog, WriteResult
from liftdata.io.verify import checked_shards

__all__ = ["FEATURES", "write_parquet", "read_parquet", "sample_to_row", "sample_from_row"]

_VEC = List(Value("float32"))
_MAT = List(List(Value("float64")))
FEATURES = Features({
    "key": Value("string"),
    "image": Image(), "shading": Image(), "normal": Image(), "mask": Image(),
    "kinematics": {"expression": _VEC, "jaw": _VEC, "neck": _VEC, "eyes": _VEC, "rotation": _VEC,
                   "translation": _VEC, "head_model": Value("string"), "head_model_version": Value("string")},
    "camera": {"K": _MAT, "world_to_camera": _MAT, "width": Value("int32"), "height": Value("int32")},
    "meta": Value("string"),
})
ROW_GROUP_SIZE = 100  # rows buffered in memory at most (datasets uses 100 for image data)


def sample_to_row(sample: Sample) -> dict[str, Any]:
    """The Parquet row of a sample (Image columns as {bytes, path})."""
    doc = sample.document()
    row: dict[str, Any] = {"key": sample.key, "image": {"bytes": sample.image, "path": None},
                           "kinematics": doc["kinematics"], "camera": doc["camera"],
                           "meta": json.dumps(doc["meta"], allow_nan=False)}
    for name in MAP_FIELDS:
        data = getattr(sample, name)
        row[name] = None if data is None else {"bytes": data, "path": None}
    return row


def sample_from_row(row: dict[str, Any]) -> Sample:
    """Inverse of `sample_to_row` (validated)."""
    document = {"kinematics": row["kinematics"], "camera": row["camera"], "meta": json.loads(row["meta"])}
    members = {name: None if row[name] is None else row[name]["bytes"] for name in ("image", *MAP_FIELDS)}
    return Sample.from_document(row["key"], document, **members)


class _ParquetShard:
    """One shard being written to its temp file, a row group at a time."""

    def __init__(self, log: ShardLog):
        self.log, self.filename = log, log.shard_name(len(log.records))
        # no dictionary encoding: encoded images are unique, and a dictionary only costs time
        self.writer = pq.ParquetWriter(log.temp_path(self.filename), FEATURES.arrow_schema, use_dictionary=False)
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.size = 0

    def add(self, sample: Sample) -> None:
        row = sample_to_row(sample)
        self.rows.append(row)
        self.keys.append(sample.key)
        self.size += sum(len(getattr(sample, n) or b"") for n in ("image", *MAP_FIELDS)) + len(row["meta"])
        if len(self.rows) >= ROW_GROUP_SIZE:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=FEATURES.arrow_schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()
        self.log.commit(self.filename, self.keys)

    def abort(self) -> None:
        self.writer.close()
        os.unlink(self.log.temp_path(self.filename))


def write_parquet(samples: Iterable[Sample], out_dir: str | os.PathLike, name: str = "liftdata",
                  max_count: int = 1000, max_size: int = 1 << 30, expected_total: int | None = None,
                  progress: bool = True, start: int = 0,
                  identity: dict[str, Any] | None = None) -> WriteResult:
    """Stream `samples` into Parquet shards in `out_dir`, with manifest and dataset card.

    Same contract as `write_webdataset`: shards of at most `max_count` samples (closed once
    they reach about `max_size` bytes of encoded data), atomic shards, resume after the last
    complete shard, flat memory.
    """
    log = ShardLog(out_dir, "parquet", name, "parquet", {"max_count": max_count, "max_size": max_size},
                   subdir="train", identity=identity)
    rest = log.skip_done(iter(samples), start)
    if log.complete:
        return log.already_complete(rest)
    shard = None
    bar = tqdm(total=expected_total, initial=log.n_resumed, disable=not progress, unit="sample",
               desc=f"writing {name} (parquet)")
    try:
        for sample in rest:
            validate_sample(sample)
            if shard is not None and sample.key == shard.keys[-1]:
                raise SampleError(sample.key, "key", "same key as the previous sample")
            shard = shard or _ParquetShard(log)
            shard.add(sample)
            if len(shard.keys) >= max_count or shard.size >= max_size:
                shard.close()
                shard = None
            bar.update()
    except BaseException:
        if shard is not None:
            shard.abort()
        raise
    finally:
        bar.close()
    if shard is not None:
        shard.close()
    return log.finish()


def read_parquet(in_dir: str | os.PathLike, verify: bool = True) -> Iterator[Sample]:
    """Yield the validated samples of a Parquet dataset written by `write_parquet`, in order.

    Shards are checked against the manifest as in `read_webdataset` (`verify`: sha256 too).
    """
    for shard, _ in checked_shards(in_dir, "parquet", verify):
        try:
            batches = pq.ParquetFile(shard).iter_batches(batch_size=ROW_GROUP_SIZE)
            for batch in batches:
                for row in batch.to_pylist():
                    yield sample_from_row(row)
        except (pa.ArrowException, OSError) as e:
            raise DatasetDirError(f"{shard}: cannot read the Parquet shard ({e})") from None
