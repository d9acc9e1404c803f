"""Check a written dataset against its manifest: every shard present, of the recorded size and
sha256. Readers (`read_webdataset`, `read_parquet`, and through them `liftdata preview` and the
avatar's data loading) check presence and size of every shard before reading, and the sha256 of
each shard before reading it (`verify=False`: presence and size only); `liftdata verify DIR`
reports every bad shard at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from liftdata.io.schema import MEMBERS

from liftdata.io.shards import MANIFEST_FILE, PROGRESS_FILE, DatasetDirError, _sha256_file, read_manifest

__all__ = ["VerifyReport", "verify_dataset", "shard_problem", "checked_shards", "DatasetSummary", "dataset_summary"]


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_dataset` found.

    Attributes:
        in_dir: the dataset directory.
        n_shards, n_samples: what the manifest records.
        problems: one line per bad shard (`FILE: what is wrong`); empty when the dataset is sound.
        sha256: whether the shards' sha256 were checked (else presence and size only).
    """

    in_dir: Path
    n_shards: int
    n_samples: int
    problems: list[str]
    sha256: bool

    @property
    def ok(self) -> bool:
        return not self.problems


def shard_problem(in_dir: str | os.PathLike, record: dict[str, Any], sha256: bool = True) -> str | None:
    """What is wrong with the shard a manifest `record` describes (None: nothing)."""
    path = Path(in_dir) / record["file"]
    if not path.is_file():
        return f"{record['file']}: missing"
    size = path.stat().st_size
    if "size" in record and size != record["size"]:
        cause = "truncated" if size < record["size"] else "longer than recorded"
        return f"{record['file']}: {size} bytes, the manifest records {record['size']} ({cause})"
    if sha256 and "sha256" in record and _sha256_file(path) != record["sha256"]:
        return f"{record['file']}: sha256 differs from the manifest (the file is damaged or was changed)"
    return None


def _unfinished(in_dir: Path) -> str:
    progress = read_manifest(in_dir, complete=False)
    if progress is not None:
        return (f"{in_dir}: the write did not finish ({progress.get('n_samples', 0)} samples in "
                f"{len(progress.get('shards', []))} complete shards so far; rerun the same command to resume)")
    if in_dir.is_dir() and any(p.name.startswith("rank-") for p in in_dir.iterdir()):
        return (f"{in_dir}: the parts of a multi-process write are not joined (some rank has not finished; "
                f"rerun it, then `liftdata merge {in_dir}`)")
    if not in_dir.exists():
        return f"{in_dir}: no such directory"
    return f"{in_dir}: no {MANIFEST_FILE}; not a liftdata dataset"


def finished_manifest(in_dir: str | os.PathLike, fmt: str | None = None) -> dict[str, Any]:
    """The manifest of the finished dataset in `in_dir`; DatasetDirError saying why there is none."""
    in_dir = Path(in_dir)
    manifest = read_manifest(in_dir)
    if manifest is None:
        raise DatasetDirError(_unfinished(in_dir))
    if fmt is not None and manifest.get("format") != fmt:
        raise DatasetDirError(f"{in_dir}: holds a {manifest.get('format')} dataset, not {fmt}")
    return manifest


def checked_shards(in_dir: str | os.PathLike, fmt: str, verify: bool = True) -> Iterator[tuple[Path, int]]:
    """(shard file, recorded sample count) of a finished `fmt` dataset, in order, each checked against the manifest:
    presence and size of all of them first, then (verify=True) each one's sha256 just before it
    is yielded. A bad shard raises `DatasetDirError` naming it."""
    in_dir = Path(in_dir)
    records = finished_manifest(in_dir, fmt)["shards"]
    for record in records:
        problem = shard_problem(in_dir, record, sha256=False)
        if problem:
            raise DatasetDirError(f"{in_dir}: {problem}; `liftdata verify {in_dir}` lists every bad shard")
    for record in records:
        problem = shard_problem(in_dir, record, sha256=True) if verify else None
        if problem:
            raise DatasetDirError(f"{in_dir}: {problem}; `liftdata verify {in_dir}` lists every bad shard")
        yield in_dir / record["file"], int(record["count"])


def verify_dataset(in_dir: str | os.PathLike, sha256: bool = True) -> VerifyReport:
    """Check every shard of the dataset in `in_dir` against its manifest; report every bad one.

    Raises DatasetDirError when there is no finished dataset to check (unfinished write,
    unjoined parts, not a dataset). Leftover temporary files of a killed write are not problems
    (the next write removes them); shard files the manifest does not list are.
    """
    in_dir = Path(in_dir)
    manifest = finished_manifest(in_dir)
    problems = [p for r in manifest["shards"] if (p := shard_problem(in_dir, r, sha256))]
    listed = {str(Path(r["file"])) for r in manifest["shards"]}
    ext = manifest.get("extension", "tar" if manifest.get("format") == "webdataset" else "parquet")
    for path in sorted(in_dir.rglob(f"*.{ext}")):
        rel = str(path.relative_to(in_dir))
        if rel not in listed and not path.name.startswith(".") and PROGRESS_FILE not in rel:
            problems.append(f"{rel}: not listed in the manifest (left from another write?)")
    return VerifyReport(in_dir, len(manifest["shards"]), int(manifest.get("n_samples", 0)), problems, sha256)


@dataclass(frozen=True)
class DatasetSummary:
    """What `liftdata info DIR` prints: a dataset's format, schema version, counts and members.

    Attributes:
        in_dir: the dataset directory.
        format, name, schema_version, generator: from the manifest.
        n_samples, n_shards: in complete shards (all of them when `complete`).
        n_captured, n_lifted: samples by meta.source (None: not known for an unfinished v1 write).
        complete: whether the write finished (else an interrupted write, resumable).
        members: the members every sample has, in `MEMBERS` order ('image', 'shading', ..., 'alpha').
        image_format: 'png' or 'jpg' (None when no sample was written yet).
    """

    in_dir: Path
    format: str
    name: str
    schema_version: str
    generator: str
    n_samples: int
    n_shards: int
    n_captured: int | None
    n_lifted: int | None
    complete: bool
    members: tuple[str, ...]
    image_format: str | None

    def lines(self) -> list[str]:
        counts = "" if self.n_captured is None else f" ({self.n_captured} captured, {self.n_lifted} lifted)"
        absent = [m for m in MEMBERS if m not in self.members]
        members = ", ".join(f"image ({self.image_format})" if m == "image" else m for m in self.members)
        return [f"dataset : {self.in_dir} ({self.format}, name {self.name!r}, written by {self.generator})",
                f"schema  : v{self.schema_version}",
                f"samples : {self.n_samples}{counts}",
                f"shards  : {self.n_shards}",
                f"complete: " + ("yes" if self.complete else "no (an interrupted write: rerun it to resume)"),
                f"members : {members or 'none yet'}" + (f"; no {', '.join(absent)}" if absent and members else "")]


def _scanned(in_dir: Path, manifest: dict[str, Any]) -> tuple[int, int, list[str] | None]:
    """(captured, lifted, members of the first sample) read from the samples of a finished dataset
    whose manifest predates these records (schema v1)."""
    from liftdata.io.parquet import read_parquet
    from liftdata.io.webdataset import read_webdataset

    read = read_webdataset if manifest["format"] == "webdataset" else read_parquet
    sources, members = [], None
    for sample in read(in_dir, verify=False):
        sources.append(sample.meta["source"])
        members = members or list(sample.members)
    return sources.count("captured"), sources.count("lifted"), members


def dataset_summary(in_dir: str | os.PathLike) -> DatasetSummary:
    """Format, schema version, counts, completeness and members of the dataset in `in_dir`
    (finished or interrupted). Schema-v1 manifests record neither the captured/lifted counts nor
    the members: those are read from the samples of a finished v1 dataset."""
    in_dir = Path(in_dir)
    manifest = read_manifest(in_dir) or read_manifest(in_dir, complete=False)
    if manifest is None:
        raise DatasetDirError(_unfinished(in_dir))
    complete = (in_dir / MANIFEST_FILE).is_file()
    shards = manifest.get("shards", [])
    n_captured, n_lifted = (sum(r[k] for r in shards) if all(k in r for r in shards) else None
                            for k in ("n_captured", "n_lifted"))
    members = manifest.get("members")
    if complete and (n_captured is None or (members is None and shards)):
        n_captured, n_lifted, members = _scanned(in_dir, manifest)
    names = {"png": "image", "jpg": "image"} | {f"{m}.png": m for m in MEMBERS}
    present = {names[m] for m in members or []}
    image_format = next((m for m in members or [] if m in ("png", "jpg")), None)
    return DatasetSummary(in_dir, manifest.get("format", "?"), manifest.get("name", "?"),
                          str(manifest.get("schema_version", "?")), manifest.get("generator", "?"),
                          sum(r["count"] for r in shards), len(shards), n_captured, n_lifted, complete,
                          tuple(m for m in MEMBERS if m in present), image_format)
