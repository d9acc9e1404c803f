"""WebDataset and Parquet writers/readers: exact round trips, sharding, manifest, card, resume, errors."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from datetime import datetime
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

import liftdata
from liftdata.io import (DatasetDirError, SampleError, read_parquet, read_webdataset, resume_state, write_parquet,
                         write_webdataset)
from liftdata.io.parquet import FEATURES
from liftdata.io.schema import decode_png, encode_png
from liftdata.io.toy import toy_arrays, toy_sample, toy_samples

WRITERS = {"webdataset": (write_webdataset, read_webdataset), "parquet": (write_parquet, read_parquet)}
REPO = Path(liftdata.__file__).resolve().parent.parent
N, SIZE = 10, 32


@pytest.fixture(scope="module")
def samples():
    return list(toy_samples(N, SIZE, frames_per_clip=4))


def temp_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*") if p.name.endswith(".tmp"))


def assert_same(read, originals):
    assert [s.key for s in read] == [s.key for s in originals]
    for got, want in zip(read, originals):
        assert got.equals(want)


# ---------------------------------------------------------------------- round trips
def test_webdataset_round_trip(tmp_path, samples):
    out = tmp_path / "wds"
    result = write_webdataset(iter(samples), out, max_count=4, progress=False)
    assert [p.name for p in result.files] == [f"liftdata-{i:06d}.tar" for i in range(3)]
    assert result.n_samples == N and result.n_resumed == 0
    assert_same(list(read_webdataset(out)), samples)
    # plain webdataset sees the same keys, bytes and JSON documents
    plain = list(wds.WebDataset([str(p) for p in result.files], shardshuffle=False).decode())
    assert [r["__key__"] for r in plain] == [s.key for s in samples]
    for record, s in zip(plain, samples):
        assert set(record) - {"__key__", "__url__", "__local_path__"} == {
            "png", "shading.png", "normal.png", "mask.png", "json"}
        assert (record["png"], record["shading.png"], record["normal.png"], record["mask.png"]) == (
            s.image, s.shading, s.normal, s.mask)
        assert record["json"] == s.document()
        np.testing.assert_array_equal(np.asarray(record["json"]["kinematics"]["expression"], np.float32),
                                      s.kinematics.expression[0])


def test_parquet_round_trip(tmp_path, samples):
    out = tmp_path / "pq"
    result = write_parquet(iter(samples), out, max_count=4, progress=False)
    assert [str(p.relative_to(out)) for p in result.files] == [f"train/liftdata-{i:06d}.parquet" for i in range(3)]
    assert_same(list(read_parquet(out)), samples)
    # plain `datasets` sees the same rows, with Image columns decoding to the original arrays
    ds = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds["key"] == [s.key for s in samples]
    assert isinstance(ds.features["image"], datasets.Image)
    for i, (row, s) in enumerate(zip(ds, samples)):
        arrays = toy_arrays(SIZE, seed=i)  # what toy_sample(i) encoded
        np.testing.assert_array_equal(np.asarray(row["image"]), arrays["image"])
        np.testing.assert_array_equal(np.asarray(row["shading"]), np.round(arrays["shading"] * 255))
        np.testing.assert_array_equal(np.asarray(row["mask"]), arrays["mask"] * 255)
        np.testing.assert_array_equal(np.asarray(row["normal"]), decode_png(s.normal))
        for field in ("expression", "jaw", "eyes", "translation"):
            np.testing.assert_array_equal(np.asarray(row["kinematics"][field], np.float32),
                                          getattr(s.kinematics, field)[0])
        np.testing.assert_array_equal(np.asarray(row["camera"]["K"]), s.camera.K)
        assert row["meta"] == s.document()["meta"] and row["meta"]["schema_version"] == "2"
        assert json.loads(row["meta"]["extra"]) == s.meta["extra"]
        assert row["alpha"] is None
    raw = ds.cast_column("image", datasets.Image(decode=False))
    assert [r["image"]["bytes"] for r in raw] == [s.image for s in samples]
    # the dataset card's configs load the same rows
    by_card = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf2"))["train"]
    assert by_card["key"] == ds["key"]


@pytest.mark.parametrize("fmt", WRITERS)
def test_sharding_by_count_and_size(tmp_path, fmt, samples):
    write, read = WRITERS[fmt]
    result = write(samples, tmp_path / "a", max_count=3, progress=False)
    assert [s["count"] for s in result.manifest["shards"]] == [3, 3, 3, 1]
    result = write(samples[:4], tmp_path / "b", max_size=1, progress=False)  # every shard is full after 1 sample
    assert [s["count"] for s in result.manifest["shards"]] == [1, 1, 1, 1]
    assert_same(list(read(tmp_path / "b")), samples[:4])


@pytest.mark.parametrize("fmt", WRITERS)
def test_manifest_and_card(tmp_path, fmt, samples):
    write, _ = WRITERS[fmt]
    out = tmp_path / "ds"
    result = write(samples, out, name="faces_v1", max_count=4, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result.manifest
    assert (manifest["format"], manifest["name"], manifest["schema_version"]) == (fmt, "faces_v1", "2")
    # toy clips 0 and 2 (frames 0-3, 8-9) are captured, clip 1 lifted; every sample has image + 3 maps
    assert (manifest["n_captured"], manifest["n_lifted"]) == (6, 4)
    assert [(s["n_captured"], s["n_lifted"]) for s in manifest["shards"]] == [(4, 0), (0, 4), (2, 0)]
    assert manifest["members"] == ["png", "shading.png", "normal.png", "mask.png"]
    assert manifest["generator"] == f"liftdata {liftdata.__version__}" and manifest["complete"] is True
    assert datetime.fromisoformat(manifest["created"]).tzinfo is not None
    assert manifest["n_samples"] == N and [s["count"] for s in manifest["shards"]] == [4, 4, 2]
    for shard, first in zip(manifest["shards"], (0, 4, 8)):
        data = (out / shard["file"]).read_bytes()
        assert shard["size"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["first_key"] == samples[first].key
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "LICENSE.md", "manifest.json", *{Path(s["file"]).parts[0] for s in manifest["shards"]}])
    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["pretty_name"] and "liftdata" in front["tags"]
    # license: other needs a name and a link (Hub metadata rules); the link is the LICENSE.md written with it
    assert (front["license"], front["license_name"]) == ("other", "source-footage")
    assert (out / front["license_link"]).read_text().startswith("# License of faces_v1")
    assert "source footage" in (out / front["license_link"]).read_text()
    features = datasets.Features._from_yaml_list(front["dataset_info"]["features"])
    columns = (["png", "shading.png", "normal.png", "mask.png", "json", "__key__", "__url__"] if fmt == "webdataset"
               else ["key", "image", "shading", "normal", "mask", "alpha", "kinematics", "camera", "meta"])
    assert list(features) == columns
    pattern = front["configs"][0]["data_files"][0]["path"]
    assert sorted(glob.glob(str(out / pattern))) == [str(out / s["file"]) for s in manifest["shards"]]
    assert f"{N} samples" in card


@pytest.mark.parametrize("fmt", WRITERS)
def test_alpha_member_round_trip(tmp_path, fmt, samples, rng):
    """Schema v2's foreground matte: `{key}.alpha.png` / the `alpha` column, read back by liftdata and plain readers."""
    write, read = WRITERS[fmt]
    mattes = [rng.uniform(0, 1, (SIZE, SIZE)) for _ in samples]
    with_alpha = [dataclasses.replace(s, alpha=encode_png(np.round(m * 255).astype(np.uint8)))
                  for s, m in zip(samples, mattes)]
    out = tmp_path / "ds"
    result = write(iter(with_alpha), out, max_count=4, progress=False)
    assert result.manifest["members"][-1] == "alpha.png"
    back = list(read(out))
    assert_same(back, with_alpha)
    for s, m in zip(back, mattes):
        np.testing.assert_array_equal(s.to_arrays()["alpha"], np.round(m * 255).astype(np.uint8))
    if fmt == "webdataset":
        plain = list(wds.WebDataset([str(p) for p in result.files], shardshuffle=False).decode("l8"))
        alphas = [r["alpha.png"] for r in plain]
    else:
        plain = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf"))["train"]
        alphas = [np.asarray(r["alpha"]) for r in plain]
    for got, m in zip(alphas, mattes):
        np.testing.assert_array_equal(got, np.round(m * 255).astype(np.uint8))


@pytest.mark.parametrize("fmt", WRITERS)
def test_samples_with_other_members_are_refused(tmp_path, fmt, samples):
    write, _ = WRITERS[fmt]
    no_mask = dataclasses.replace(samples[2], mask=None)
    with pytest.raises(SampleError, match=f"^sample '{samples[2].key}': members: has png, shading.png, normal.png; "
                                          "every sample of the dataset must have the first sample's png, "
                                          "shading.png, normal.png, mask.png"):
        write([*samples[:2], no_mask], tmp_path / "a", progress=False)
    out = tmp_path / "b"  # the members of a resumed write are those recorded by its first run
    with pytest.raises(RuntimeError, match="crash"):
        write(crashing(samples, after=5), out, max_count=2, progress=False)
    with pytest.raises(SampleError, match="members: has png, shading.png, normal.png, mask.png, alpha.png;"):
        write([*samples[:4], *(dataclasses.replace(s, alpha=s.mask) for s in samples[4:])], out, max_count=2,
              progress=False)


def crashing(samples, after):
    for i, s in enumerate(samples):
        if i == after:
            raise RuntimeError("crash")
        yield s


# ---------------------------------------------------------------------- schema v1 datasets are still read
def v1_meta(sample):
    """The meta liftdata wrote in schema v1: nulls for captured frames, no extra when there is none."""
    return {**{k: v for k, v in sample.meta.items() if k != "extra" or v}, "schema_version": "1"}


def write_v1_dataset(fmt, out: Path, samples) -> None:
    """A schema-v1 dataset as liftdata 0.x wrote it, built by hand: one shard, a v1 manifest."""
    docs = [{**s.document(), "meta": v1_meta(s)} for s in samples]
    if fmt == "webdataset":
        shard = out / "old-000000.tar"
        out.mkdir()
        with tarfile.open(shard, "w") as tar:
            for s, doc in zip(samples, docs):
                for ext, data in (("png", s.image), ("shading.png", s.shading), ("normal.png", s.normal),
                                  ("mask.png", s.mask), ("json", json.dumps(doc).encode())):
                    info = tarfile.TarInfo(f"{s.key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    else:
        shard = out / "train" / "old-000000.parquet"
        shard.parent.mkdir(parents=True)
        image = lambda b: {"bytes": b, "path": None}  # noqa: E731
        rows = [{"key": s.key, "image": image(s.image), "shading": image(s.shading), "normal": image(s.normal),
                 "mask": image(s.mask), "kinematics": d["kinematics"], "camera": d["camera"],
                 "meta": json.dumps(d["meta"])} for s, d in zip(samples, docs)]
        v1_features = datasets.Features({k: v for k, v in FEATURES.items() if k != "alpha"})
        v1_features["meta"] = datasets.Value("string")
        pq.write_table(pa.Table.from_pylist(rows, schema=v1_features.arrow_schema), shard)
    data = shard.read_bytes()
    keys = [s.key for s in samples]
    record = {"file": str(shard.relative_to(out)), "count": len(samples), "first_key": keys[0],
              "last_key": keys[-1], "keys_sha256": hashlib.sha256("".join(k + "\n" for k in keys).encode()).hexdigest(),
              "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"format": fmt, "name": "old", "extension": shard.suffix[1:], "schema_version": "1",
                "generator": "liftdata 0.1.0", "created": "2026-11-01T00:00:00+00:00", "complete": True,
                "n_samples": len(samples), "n_shards": 1, "shards_glob": str(shard.relative_to(out).parent / "old-*"),
                "settings": {}, "config": None, "shards": [record]}
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fmt", WRITERS)
def test_schema_v1_datasets_are_read_and_rewritten_as_v2(tmp_path, fmt, samples):
    write, read = WRITERS[fmt]
    write_v1_dataset(fmt, tmp_path / "v1", samples)
    old = list(read(tmp_path / "v1"))
    assert [s.key for s in old] == [s.key for s in samples]
    for got, want in zip(old, samples):
        assert got.meta == v1_meta(want) and got.meta["schema_version"] == "1"  # read as written
        assert got.equals(dataclasses.replace(want, meta=v1_meta(want)))  # bytes, arrays: all the same
    assert {s.meta["source"] for s in old} == {"captured", "lifted"} and old[0].meta["sampler"] is None
    result = write(iter(old), tmp_path / "v2", progress=False)  # reading v1 + writing converts
    assert result.manifest["schema_version"] == "2"
    new = list(read(tmp_path / "v2"))
    assert all(s.meta == {**w.meta, "extra": {}} for s, w in zip(new, samples))
    with pytest.raises(DatasetDirError, match=r"holds a .* \(schema v1\); cannot write .* \(schema v2\)"):
        write(iter(samples), tmp_path / "v1", progress=False)  # a v1 dataset is never extended with v2 samples


# ---------------------------------------------------------------------- resume
SLOW_WRITER = """
import sys, time
from liftdata.io import write_parquet, write_webdataset
from liftdata.io.toy import toy_samples
fmt, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def slow():
    for s in toy_samples(n, 32, frames_per_clip=4):
        time.sleep(0.1)
        yield s
write = write_webdataset if fmt == "webdataset" else write_parquet
write(slow(), out, max_count=3, progress=False)
"""


@pytest.mark.parametrize("fmt", WRITERS)
def test_killed_write_resumes(tmp_path, fmt):
    write, read = WRITERS[fmt]
    out, n = tmp_path / "ds", 14
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, fmt, str(out), str(n)], env=env)
    deadline = time.time() + 60
    while not (out.exists() and resume_state(out) >= 6 and temp_files(out)):  # 2 shards done, the 3rd begun
        assert proc.poll() is None and time.time() < deadline, "writer ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = resume_state(out)
    assert done in (6, 9) and not (out / "manifest.json").exists() and temp_files(out)
    # what other crashes leave: a temp file of a later shard, a renamed shard the manifest missed
    ext = ".tar" if fmt == "webdataset" else ".parquet"
    shard_dir = out if fmt == "webdataset" else out / "train"
    (shard_dir / f".liftdata-000042{ext}.tmp").write_bytes(b"partial")
    (shard_dir / f"liftdata-000007{ext}").write_bytes(b"unrecorded")
    expected = list(toy_samples(n, 32, frames_per_clip=4))
    result = write(iter(expected), out, max_count=3, progress=False)
    assert sorted(shard_dir.glob(f"*{ext}")) == result.files
    assert result.n_resumed == done and result.n_samples == n
    assert [s["count"] for s in result.manifest["shards"]] == [3, 3, 3, 3, 2]
    assert [Path(p).name for p in result.files] == [f"liftdata-{i:06d}.{result.manifest['extension']}"
                                                    for i in range(5)]
    assert temp_files(out) == [] and not (out / ".liftdata-progress.json").exists()
    assert_same(list(read(out)), expected)  # every sample once, in order
    for shard in result.manifest["shards"]:
        assert hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]


@pytest.mark.parametrize("fmt", WRITERS)
def test_failed_write_resumes_from_start_index(tmp_path, fmt, samples):
    """A stream that fails mid-way keeps the complete shards; the caller resumes at resume_state."""
    write, read = WRITERS[fmt]
    out = tmp_path / "ds"

    def failing():
        yield from samples[:7]
        raise RuntimeError("lifter crashed")

    with pytest.raises(RuntimeError, match="lifter crashed"):
        write(failing(), out, max_count=3, progress=False)
    assert resume_state(out) == 6 and temp_files(out) == [] and not (out / "manifest.json").exists()
    with pytest.raises(ValueError, match="start=2"):
        write(iter(samples[2:]), out, max_count=3, progress=False, start=2)
    result = write(iter(samples[6:]), out, max_count=3, progress=False, start=resume_state(out))
    assert result.n_resumed == 6 and result.n_samples == N
    assert_same(list(read(out)), samples)


@pytest.mark.parametrize("fmt", WRITERS)
def test_rerun_of_complete_write(tmp_path, fmt, samples):
    write, _ = WRITERS[fmt]
    out = tmp_path / "ds"
    first = write(samples, out, max_count=4, progress=False)
    again = write(samples, out, max_count=4, progress=False)  # a no-op
    assert again.n_resumed == N and again.manifest == first.manifest
    with pytest.raises(DatasetDirError, match="already holds a complete dataset of 10 samples"):
        write(list(toy_samples(N + 1, SIZE, frames_per_clip=4)), out, max_count=4, progress=False)


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("fmt", WRITERS)
def test_incompatible_directory(tmp_path, fmt, samples):
    write, _ = WRITERS[fmt]
    other_fmt = next(f for f in WRITERS if f != fmt)
    out = tmp_path / "ds"
    write(samples, out, max_count=4, progress=False)
    with pytest.raises(DatasetDirError, match=f"^{out}: holds a {fmt} dataset named 'liftdata'.*cannot write a "
                                              f"{other_fmt}"):
        WRITERS[other_fmt][0](samples, out, progress=False)
    with pytest.raises(DatasetDirError, match=f"^{out}: holds a {fmt} dataset named 'liftdata'.*named 'other'"):
        write(samples, out, name="other", progress=False)
    others = list(toy_samples(N, SIZE, frames_per_clip=4, capture="someone_else"))
    with pytest.raises(DatasetDirError, match=f"^{out}: holds a different dataset: the keys of"):
        write(others, out, max_count=4, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetDirError, match=f"^{tmp_path / 'busy'}: not empty"):
        write(samples, tmp_path / "busy", progress=False)


@pytest.mark.parametrize("fmt", WRITERS)
def test_progress_bar_and_repeated_key(tmp_path, fmt, samples, capsys):
    write, _ = WRITERS[fmt]
    write(samples[:3], tmp_path / "a", expected_total=3, progress=True)
    assert "3/3" in capsys.readouterr().err
    with pytest.raises(SampleError, match=f"sample '{samples[1].key}': key: same key as the previous sample"):
        write([samples[0], samples[1], samples[1]], tmp_path / "b", progress=False)


@pytest.mark.parametrize("fmt", WRITERS)
def test_unwritable_directory(tmp_path, fmt, samples):
    write, _ = WRITERS[fmt]
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "ds"
    with pytest.raises(DatasetDirError, match=f"^{out}: cannot write the dataset there"):
        write(samples, out, progress=False)


@pytest.mark.parametrize("fmt", WRITERS)
def test_invalid_sample_stops_write(tmp_path, fmt, samples):
    write, read = WRITERS[fmt]
    bad = toy_sample(5, SIZE, frames_per_clip=4)
    bad.kinematics.jaw[0, 1] = np.inf
    out = tmp_path / "ds"
    with pytest.raises(SampleError, match=r"sample 'toy/000001/001': kinematics.jaw\[1\]: not a finite number"):
        write([*samples[:5], bad], out, max_count=2, progress=False)
    assert resume_state(out) == 4 and temp_files(out) == []
    with pytest.raises(DatasetDirError, match=r"the write did not finish \(4 samples in 2 complete shards"):
        next(read(out))


def test_ranks_with_other_members_are_not_joined(tmp_path, samples):
    from liftdata.io.shards import merge_ranks, rank_dir

    write_webdataset(samples[:4], tmp_path / rank_dir(0, 2), progress=False)
    write_webdataset([dataclasses.replace(s, alpha=s.mask) for s in samples[4:]], tmp_path / rank_dir(1, 2),
                     progress=False)
    with pytest.raises(DatasetDirError, match=r"the ranks' samples have different members \(\['png', 'shading.png', "
                                              r"'normal.png', 'mask.png'\] vs \[.*'alpha.png'\]\)"):
        merge_ranks(tmp_path, strict=True)
    assert not (tmp_path / "manifest.json").exists()
