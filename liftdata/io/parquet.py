"""Sharded Parquet with Hugging Face `datasets` Features: `train/{name}-{shard:06d}.parquet`.

The shards live in the `train/` subdirectory so that `load_dataset("parquet", data_dir=out_dir)`
(whose default patterns take every file of a directory without a split folder) reads the
shards and not `manifest.json`.

Columns (`FEATURES`; the arrow schema carries the `datasets` features metadata, so
`datasets.load_dataset("parquet", data_dir=out_dir)` gives these types back):

- `key`: string, `{capture}/{clip:06d}/{frame:03d}`.
- `image`, `shading`, `normal`, `mask`, `alpha`: `datasets.Image()` (struct of the encoded
  PNG/JPEG bytes, path null); maps and the foreground matte are null when absent.
- `kinematics`: struct of float32 lists (expression [E], jaw [3], neck [3], eyes [6], rotation
  [3], translation [3]) + head_model, head_model_version: the values are float32, so exact.
- `camera`: struct {K [3][3] float64, world_to_camera [4][4] float64, width, height}.
- `meta`: struct of the schema-v2 on-disk meta, the same document as in WebDataset tars: the
  free-form objects whose keys vary between samples (`sampler.params`, `extra`) are JSON texts
  (`json.loads(row["meta"]["extra"])`), absent values are "" / -1 (`liftdata.io.schema`).
  Schema-v1 shards (meta as one JSON string, no `alpha` column) are still read.

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

from liftdata.io.schema import MEMBERS, OPTIONAL_FIELDS, Sample, SampleError, validate_sample
from liftdata.io.shards import DatasetDirError, ShardLog, WriteResult
from liftdata.io.verify import checked_shards

__all__ = ["FEATURES", "write_parquet", "read_parquet", "sample_to_row", "sample_from_row"]

_VEC = List(Value("float32"))
_MAT = List(List(Value("float64")))
_STR = Value("string")
KINEMATICS_FEATURES = {"expression": _VEC, "jaw": _VEC, "neck": _VEC, "eyes": _VEC, "rotation": _VEC,
                       "translation": _VEC, "head_model": _STR, "head_model_version": _STR}
CAMERA_FEATURES = {"K": _MAT, "world_to_camera": _MAT, "width": Value("int32"), "height": Value("int32")}
META_FEATURES = {  # the schema-v2 on-disk meta (sample-v2.json), in its key order
    "source": _STR, "capture_id": _STR, "subject_id": _STR, "clip": Value("int64"), "frame": Value("int64"),
    "sampler": {"name": _STR, "params": _STR}, "lifter": {"name": _STR, "version": _STR}, "seed": Value("int64"),
    "reference_keys": List(_STR), "head_model": {"id": _STR, "version": _STR}, "schema_version": _STR,
    "extra": _STR,
}
FEATURES = Features({
    "key": _STR,
    "image": Image(), "shading": Image(), "normal": Image(), "mask": Image(), "alpha": Image(),
    "kinematics": KINEMATICS_FEATURES, "camera": CAMERA_FEATURES, "meta": META_FEATURES,
})
ROW_GROUP_SIZE = 100  # rows buffered in memory at most (datasets uses 100 for image data)


def sample_to_row(sample: Sample, document: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Parquet row of a sample (Image columns as {bytes, path}); `document`: its
    `Sample.document()` when already at hand."""
    doc = sample.document() if document is None else document
    row: dict[str, Any] = {"key": sample.key, "image": {"bytes": sample.image, "path": None},
                           "kinematics": doc["kinematics"], "camera": doc["camera"],
                           "meta": doc["meta"]}
    for name in OPTIONAL_FIELDS:
        data = getattr(sample, name)
        row[name] = None if data is None else {"bytes": data, "path": None}
    return row


def sample_from_row(row: dict[str, Any]) -> Sample:
    """Inverse of `sample_to_row` (validated); also reads schema-v1 rows (meta a JSON string, no alpha)."""
    meta = json.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
    document = {"kinematics": row["kinematics"], "camera": row["camera"], "meta": meta}
    members = {name: None if row.get(name) is None else row[name]["bytes"] for name in MEMBERS}
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

    def add(self, sample: Sample, document: dict[str, Any]) -> None:
        row = sample_to_row(sample, document)
        self.rows.append(row)
        self.keys.append(sample.key)
        meta = row["meta"]  # its free-form texts: the part of a row's non-image bytes that can grow
        self.size += sum(len(getattr(sample, n) or b"") for n in MEMBERS) + len(meta["extra"]) + len(
            meta["sampler"]["params"])
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
            document = validate_sample(sample)
            log.admit(sample)
            if shard is not None and sample.key == shard.keys[-1]:
                raise SampleError(sample.key, "key", "same key as the previous sample")
            shard = shard or _ParquetShard(log)
            shard.add(sample, document)
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
