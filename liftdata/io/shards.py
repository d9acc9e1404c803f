"""Shard bookkeeping shared by the writers: atomic shards, resume, manifest and dataset card.

A write into `out_dir` goes like this:

1. `ShardLog(out_dir, format, name, ext, settings, identity=)` checks the directory: empty (or
   new), or holding an unfinished/finished write of the same format, name and identity (the
   dataset's settings, `Expansion.identity()`: a write with other settings is refused, naming
   the fields that differ, never mixed in). It records the write in the hidden
   in-progress manifest `.liftdata-progress.json`, removes stale temporary files and shards no
   manifest records.
2. `skip_done(samples)` consumes the samples already stored in complete shards, checking that
   their keys are those the manifest records (a digest of the keys per shard).
3. Each shard is written to `.{file}.tmp`, then `commit()` renames it to `{file}` and rewrites
   the progress manifest. A killed write leaves only complete shards + temp files. Shards are
   not fsynced (like webdataset and datasets): the rename is atomic against a crashed or killed
   process; after a power loss, check the shards against the sha256 in the manifest.
4. `finish()` writes the dataset card `README.md` and `manifest.json`, and drops the progress
   file: a directory with `manifest.json` holds a complete dataset.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from liftdata.errors import LiftdataError
from liftdata.io.card import LICENSE_FILE, dataset_card, license_note
from liftdata.io.schema import SCHEMA_VERSION, Sample, SampleError

__all__ = ["DatasetDirError", "ShardLog", "WriteResult", "read_manifest", "complete_manifest", "resume_state",
           "dataset_card", "rank_dir", "merge_ranks", "recorded_identities", "check_writable", "identity_diff",
           "MANIFEST_FILE", "PROGRESS_FILE"]

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = ".liftdata-progress.json"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class DatasetDirError(LiftdataError, ValueError):
    """An output or input directory that cannot be used; the message names the directory."""


@dataclass(frozen=True)
class WriteResult:
    """What a writer produced.

    Attributes:
        out_dir: the dataset directory.
        files: the shard files in order.
        n_samples: samples in the dataset.
        n_resumed: samples that were already in complete shards from an earlier, interrupted run.
        manifest: the final manifest.
    """

    out_dir: Path
    files: list[Path]
    n_samples: int
    n_resumed: int
    manifest: dict[str, Any]


def _generator() -> str:
    from liftdata import __version__

    return f"liftdata {__version__}"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: ranks may merge at once
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    _write_text_atomic(path, json.dumps(data, indent=1))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_card(out_dir: Path, manifest: dict[str, Any]) -> None:
    """The dataset card README.md and its LICENSE.md (`liftdata.io.card`)."""
    _write_text_atomic(out_dir / LICENSE_FILE, license_note(manifest))
    _write_text_atomic(out_dir / "README.md", dataset_card(manifest))


def check_writable(out_dir: str | os.PathLike) -> None:
    """Raise DatasetDirError unless `out_dir` is (or can be created as) a writable directory."""
    out_dir = Path(out_dir)
    parent = out_dir
    while not parent.exists():
        if parent.is_symlink():
            raise DatasetDirError(f"{parent}: cannot write there (a broken symbolic link)")
        parent = parent.parent
    if not parent.is_dir():
        raise DatasetDirError(f"{out_dir}: cannot write there ({parent} is a file, not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatasetDirError(f"{out_dir}: cannot write there ({parent} is not writable)")


def identity_diff(recorded: dict[str, Any] | None, identity: dict[str, Any] | None, keys: Any = None) -> str | None:
    """None when the recorded identity matches (on `keys`, default all), else `field: recorded X, now Y; ...`."""
    if recorded == identity and keys is None:
        return None
    if recorded is None or identity is None:
        return "settings: " + ("none recorded (written by an older liftdata or by hand)" if recorded is None
                               else "recorded, but this write gives none")
    keys = sorted(set(recorded) | set(identity)) if keys is None else keys
    diffs = [f"{k}: recorded {_short(recorded.get(k))}, now {_short(identity.get(k))}" for k in keys
             if recorded.get(k) != identity.get(k)]
    return "; ".join(diffs) or None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + "..." + text[-12:]


def recorded_identities(dataset_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any] | None]]:
    """(directory, recorded identity) of the dataset in `dataset_dir` and of its rank-*-of-N/ parts
    (finished or not); empty when nothing was written there yet."""
    dataset_dir = Path(dataset_dir)
    dirs = [dataset_dir] + (sorted(p for p in dataset_dir.iterdir() if _RANK_RE.match(p.name) and p.is_dir())
                            if dataset_dir.is_dir() else [])
    found = []
    for d in dirs:
        manifest = read_manifest(d, complete=False)
        if manifest is not None:
            found.append((d, manifest.get("config")))
    return found


def read_manifest(out_dir: str | os.PathLike, complete: bool = True) -> dict[str, Any] | None:
    """The final manifest of `out_dir`, or (complete=False) else its in-progress one; None if none."""
    out_dir = Path(out_dir)
    for name in (MANIFEST_FILE,) if complete else (MANIFEST_FILE, PROGRESS_FILE):
        path = out_dir / name
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise DatasetDirError(f"{out_dir}: {name} is not valid JSON ({e})") from None
    return None


def complete_manifest(in_dir: str | os.PathLike, fmt: str) -> dict[str, Any]:
    """The manifest of a finished `fmt` dataset in `in_dir` (for readers)."""
    manifest = read_manifest(in_dir)
    if manifest is None:
        raise DatasetDirError(f"{in_dir}: no {MANIFEST_FILE}; not a liftdata dataset, or its write did not finish")
    if manifest.get("format") != fmt:
        raise DatasetDirError(f"{in_dir}: holds a {manifest.get('format')} dataset, not {fmt}")
    return manifest


def resume_state(out_dir: str | os.PathLike) -> int:
    """Number of samples already in complete shards of `out_dir` (0 for a new directory).

    A caller whose samples are expensive to generate can start its stream at this index and pass
    `start=resume_state(out_dir)` to the writer.
    """
    manifest = read_manifest(out_dir, complete=False)
    return 0 if manifest is None else sum(s["count"] for s in manifest["shards"])


def source_counts(records: list[dict[str, Any]]) -> dict[str, int | None]:
    """{"n_captured", "n_lifted"} over shard records (None when a record predates the counts)."""
    return {k: sum(r[k] for r in records) if all(k in r for r in records) else None
            for k in ("n_captured", "n_lifted")}


class ShardLog:
    """The complete shards of one write into `out_dir`, mirrored in the in-progress manifest."""

    def __init__(self, out_dir: str | os.PathLike, fmt: str, name: str, ext: str, settings: dict[str, Any],
                 subdir: str = "", identity: dict[str, Any] | None = None):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"name: {name!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
        for key in ("max_count", "max_size"):
            if not isinstance(settings.get(key), numbers.Real) or settings[key] <= 0:
                raise ValueError(f"{key}: must be a positive number, got {settings.get(key)!r}")
        self.out_dir, self.fmt, self.name, self.ext = Path(out_dir), fmt, name, ext
        self.subdir = subdir  # shard files live in out_dir/subdir
        self.identity = identity
        self._shard_re = re.compile(rf"^{re.escape(name)}-([0-9]{{6}})\.{re.escape(ext)}$")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._open(settings)
        except OSError as e:
            raise DatasetDirError(f"{self.out_dir}: cannot write the dataset there ({e.strerror or e})") from None

    def _open(self, settings: dict[str, Any]) -> None:
        final = read_manifest(self.out_dir)
        manifest = final or read_manifest(self.out_dir, complete=False)
        if manifest is None:
            others = sorted(p.name for p in self.out_dir.iterdir() if not self._is_temp(p.name))
            if others:
                raise DatasetDirError(f"{self.out_dir}: not empty ({', '.join(others[:3])}) and holds no liftdata "
                                      "manifest; write into a new or empty directory")
            manifest = {"format": self.fmt, "name": self.name, "schema_version": SCHEMA_VERSION, "shards": []}
        elif (manifest.get("format"), manifest.get("name"), manifest.get("schema_version")) != (
                self.fmt, self.name, SCHEMA_VERSION):
            raise DatasetDirError(
                f"{self.out_dir}: holds a {manifest.get('format')} dataset named {manifest.get('name')!r} "
                f"(schema v{manifest.get('schema_version')}); cannot write a {self.fmt} dataset named "
                f"{self.name!r} (schema v{SCHEMA_VERSION}) into it")
        else:
            diff = identity_diff(manifest.get("config"), self.identity)
            if diff:
                raise DatasetDirError(f"{self.out_dir}: holds a dataset made with other settings ({diff}); rerun "
                                      "with the same settings to resume, or start over (--overwrite)")
        self.complete = final is not None
        self.records: list[dict[str, Any]] = list(manifest["shards"])
        self.n_resumed = sum(r["count"] for r in self.records)
        self.members: list[str] | None = manifest.get("members")  # those of the first sample written
        self._sources: list[str] = []  # meta.source of the admitted samples no shard holds yet
        self.settings = settings
        for record in self.records:
            if not (self.out_dir / record["file"]).is_file():
                raise DatasetDirError(f"{self.out_dir}: the manifest records {record['file']}, which is missing")
        if not self.complete:
            self._save_progress()
        (self.out_dir / self.subdir).mkdir(exist_ok=True)
        self._remove_stale()

    def _is_temp(self, filename: str) -> bool:
        return filename.startswith(".") and filename.endswith(".tmp")

    def _remove_stale(self) -> None:
        """Delete temp files, shards no manifest records and a progress file a final manifest superseded."""
        shard_dir = self.out_dir / self.subdir
        for path in [*self.out_dir.iterdir(), *(shard_dir.iterdir() if self.subdir else ())]:
            m = self._shard_re.match(path.name) if path.parent == shard_dir else None
            if path.is_file() and (self._is_temp(path.name) or (m and int(m.group(1)) >= len(self.records)) or (
                    self.complete and path.name == PROGRESS_FILE)):
                path.unlink()

    def _manifest(self, complete: bool) -> dict[str, Any]:
        return {
            "format": self.fmt, "name": self.name, "extension": self.ext, "schema_version": SCHEMA_VERSION,
            "generator": _generator(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": complete, "n_samples": sum(r["count"] for r in self.records),
            **source_counts(self.records), "members": self.members,
            "n_shards": len(self.records), "shards_glob": str(Path(self.subdir) / f"{self.name}-*.{self.ext}"),
            "settings": self.settings, "config": self.identity, "shards": self.records,
        }

    def _save_progress(self) -> None:
        _write_json_atomic(self.out_dir / PROGRESS_FILE, self._manifest(complete=False))

    # ------------------------------------------------------------------ resume
    def skip_done(self, samples: Iterator[Sample], start: int = 0) -> Iterator[Sample]:
        """Consume the samples already in complete shards, checking their keys; return the rest.

        `start`: index in the full stream of the first sample `samples` yields: 0, or
        `resume_state(out_dir)` when the caller skipped the finished samples itself.
        """
        if start not in (0, self.n_resumed):
            raise ValueError(f"start={start}: must be 0 or the {self.n_resumed} samples already written "
                             f"to {self.out_dir} (resume_state)")
        if start == self.n_resumed:
            return samples
        for record in self.records:
            digest = hashlib.sha256()
            for _ in range(record["count"]):
                sample = next(samples, None)
                if sample is None:
                    raise DatasetDirError(f"{self.out_dir}: holds a different dataset: the sample stream ended "
                                          f"inside {record['file']}, which holds {record['count']} samples")
                digest.update(sample.key.encode() + b"\n")
            if digest.hexdigest() != record["keys_sha256"]:
                raise DatasetDirError(
                    f"{self.out_dir}: holds a different dataset: the keys of {record['file']} "
                    f"({record['first_key']} .. {record['last_key']}) are not those of the sample stream")
        return samples

    def already_complete(self, rest: Iterator[Sample]) -> WriteResult:
        """Result of rerunning a finished write: the stream must hold no more samples."""
        if next(rest, None) is not None:
            raise DatasetDirError(f"{self.out_dir}: already holds a complete dataset of {self.n_resumed} "
                                  "samples and the sample stream has more; write into a new directory")
        manifest = read_manifest(self.out_dir)
        return WriteResult(self.out_dir, self.files, manifest["n_samples"], self.n_resumed, manifest)

    # ------------------------------------------------------------------ shards
    @property
    def files(self) -> list[Path]:
        return [self.out_dir / r["file"] for r in self.records]

    def shard_name(self, index: int) -> str:
        """Path of shard `index` relative to out_dir."""
        return str(Path(self.subdir) / f"{self.name}-{index:06d}.{self.ext}")

    def temp_path(self, filename: str) -> Path:
        """Where shard `filename` (relative to out_dir) is written until it is complete."""
        path = self.out_dir / filename
        return path.with_name(f".{path.name}.tmp")

    def admit(self, sample: Sample) -> None:
        """Take the next (validated) sample into the shard being written: check that it has the
        members of the first one (`datasets` infers the columns of a WebDataset from its first
        samples and fails on a sample with other members) and count its source."""
        members = list(sample.members)
        if self.members is None:
            self.members = members
        elif members != self.members:
            raise SampleError(sample.key, "members", f"has {', '.join(members)}; every sample of the dataset "
                                                     f"must have the first sample's {', '.join(self.members)}")
        self._sources.append(sample.meta["source"])

    def commit(self, filename: str, keys: list[str]) -> None:
        """Make the finished temp file of shard `filename` (the next len(keys) admitted samples)
        final and record it."""
        sources, self._sources = self._sources[:len(keys)], self._sources[len(keys):]
        tmp, final = self.temp_path(filename), self.out_dir / filename
        os.replace(tmp, final)
        self.records.append({
            "file": filename, "count": len(keys), "first_key": keys[0], "last_key": keys[-1],
            "n_captured": sources.count("captured"), "n_lifted": sources.count("lifted"),
            "keys_sha256": hashlib.sha256("".join(k + "\n" for k in keys).encode()).hexdigest(),
            "size": final.stat().st_size, "sha256": _sha256_file(final),
        })
        self._save_progress()

    def finish(self) -> WriteResult:
        """Write the dataset card and the final manifest; the directory is then complete."""
        manifest = self._manifest(complete=True)
        write_card(self.out_dir, manifest)
        _write_json_atomic(self.out_dir / MANIFEST_FILE, manifest)
        (self.out_dir / PROGRESS_FILE).unlink()
        self.complete = True
        return WriteResult(self.out_dir, self.files, manifest["n_samples"], self.n_resumed, manifest)


# ---------------------------------------------------------------------- multi-process writes
_RANK_RE = re.compile(r"^rank-([0-9]{5})-of-([0-9]{5})$")


def rank_dir(rank: int, world_size: int) -> str:
    """Sub-directory of the dataset directory that process `rank` of `world_size` writes
    (both checked by `liftdata.dataset.process_rank`)."""
    return f"rank-{rank:05d}-of-{world_size:05d}"


def merge_ranks(out_dir: str | os.PathLike, strict: bool = False) -> WriteResult | None:
    """Join the per-rank datasets in `out_dir/rank-*-of-N/` into one dataset: `out_dir/manifest.json`.

    Each process of a multi-process write (`Expansion.write_*(rank=, world_size=)`) writes a
    complete dataset of its own into `rank_dir(rank, N)` and then calls this: the process that
    finds all N parts complete writes the joined manifest (listing the parts' shards in rank
    order, i.e. in the order of the single-process sample stream) and the dataset card; the
    others return None. No coordination is needed beyond that: the write is atomic and
    idempotent. Run it yourself (`liftdata merge DIR`) after re-running a failed rank.

    strict: raise `DatasetDirError` naming what is missing instead of returning None.
    """
    out_dir = Path(out_dir)
    found = {}
    for path in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        m = _RANK_RE.match(path.name)
        if m and path.is_dir():
            found[int(m.group(1))] = (int(m.group(2)), path)
    sizes = {n for n, _ in found.values()}
    if len(sizes) != 1:
        if strict:
            raise DatasetDirError(f"{out_dir}: " + ("holds no rank-*-of-* directories" if not sizes else
                                  f"holds parts of writes with different process counts {sorted(sizes)}"))
        return None
    world = sizes.pop()
    parts = [read_manifest(found[r][1]) if r in found else None for r in range(world)]
    missing = [r for r, part in enumerate(parts) if part is None]
    if missing:
        if strict:
            raise DatasetDirError(f"{out_dir}: ranks {missing} of {world} have not finished "
                                  f"(no {MANIFEST_FILE} in {', '.join(rank_dir(r, world) for r in missing[:3])})")
        return None
    first = parts[0]
    for r, part in enumerate(parts):
        diff = identity_diff(first.get("config"), part.get("config"))
        if diff:
            raise DatasetDirError(f"{out_dir}: {rank_dir(r, world)} was written with other settings than "
                                  f"{rank_dir(0, world)} ({diff})")
        if (part["format"], part["name"], part["schema_version"]) != (first["format"], first["name"],
                                                                      first["schema_version"]):
            raise DatasetDirError(f"{out_dir}: {rank_dir(r, world)} holds a {part['format']} dataset named "
                                  f"{part['name']!r} (schema v{part['schema_version']}), rank 0 a {first['format']} "
                                  f"dataset named {first['name']!r} (schema v{first['schema_version']})")
    members = [part["members"] for part in parts if part.get("members") is not None]  # None: a rank without samples
    if any(m != members[0] for m in members):
        raise DatasetDirError(f"{out_dir}: the ranks' samples have different members ({members[0]} vs "
                              f"{next(m for m in members if m != members[0])})")
    shards = [{**record, "file": f"{rank_dir(r, world)}/{record['file']}"}
              for r, part in enumerate(parts) for record in part["shards"]]
    manifest = {**first, "generator": _generator(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "complete": True,
                "n_samples": sum(p["n_samples"] for p in parts), **source_counts(shards), "n_shards": len(shards),
                "members": members[0] if members else None,
                "shards_glob": f"rank-*-of-{world:05d}/{first['shards_glob']}", "ranks": world, "shards": shards}
    write_card(out_dir, manifest)
    _write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    return WriteResult(out_dir, [out_dir / s["file"] for s in shards], manifest["n_samples"], 0, manifest)
