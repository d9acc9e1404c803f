"""Readers verify shards against the manifest; `liftdata verify DIR` reports every bad shard.

Damage is made by hand on real shards (truncation, one flipped bit, a deleted or a stray file);
the reference is the manifest the writer recorded and the samples read before any damage.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from liftdata.cli import main
from liftdata.io import DatasetDirError, read_parquet, read_webdataset, write_parquet, write_webdataset
from liftdata.io.shards import read_manifest
from liftdata.io.toy import toy_samples
from liftdata.io.verify import verify_dataset
from liftdata.preview import preview_dataset

FORMATS = {"webdataset": (write_webdataset, read_webdataset), "parquet": (write_parquet, read_parquet)}
N, SIZE, PER_SHARD = 9, 32, 3


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A sound dataset of each format (3 shards of 3 samples) and the keys read from it."""
    out = {}
    for fmt, (write, read) in FORMATS.items():
        d = tmp_path_factory.mktemp(fmt) / "ds"
        write(toy_samples(N, SIZE, frames_per_clip=4), d, max_count=PER_SHARD, progress=False)
        out[fmt] = (d, [s.key for s in read(d)])
    return out


def damaged_copy(written, fmt, tmp_path):
    src, keys = written[fmt]
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    files = [dst / s["file"] for s in read_manifest(dst)["shards"]]
    return dst, files, keys


def flip_bit(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", FORMATS)
def test_sound_dataset_reads_and_verifies(written, fmt, capsys):
    d, keys = written[fmt]
    assert len(keys) == N and verify_dataset(d).ok
    assert main(["verify", str(d)]) == 0
    assert f"({N // PER_SHARD} shards, {N} samples; size and sha256 checked)" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_shard_is_an_error_naming_it(written, fmt, damage, tmp_path):
    d, files, keys = damaged_copy(written, fmt, tmp_path)
    bad = files[1]
    if damage == "truncate":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 9 // 10])
        expected = "truncated"
    elif damage == "flip":
        flip_bit(bad, bad.stat().st_size // 2)
        expected = "sha256 differs from the manifest"
    else:
        bad.unlink()
        expected = "missing"
    read = FORMATS[fmt][1]
    rel = str(bad.relative_to(d))
    with pytest.raises(DatasetDirError, match=f"{rel}: .*{expected}"):
        list(read(d))
    if damage != "flip":  # presence and size are checked before anything is read
        with pytest.raises(DatasetDirError):
            next(iter(read(d, verify=False)))
    report = verify_dataset(d)
    assert len(report.problems) == 1 and report.problems[0].startswith(f"{rel}: ") and expected in report.problems[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_reports_every_bad_shard(written, fmt, tmp_path, capsys):
    d, files, _ = damaged_copy(written, fmt, tmp_path)
    files[0].unlink()
    flip_bit(files[2], files[2].stat().st_size // 3)
    stray = files[2].with_name(files[2].name.replace("000002", "000007"))
    shutil.copy(files[1], stray)
    assert main(["verify", str(d)]) == 2
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3 and all(line.startswith("bad shard: ") for line in lines)
    assert "missing" in lines[0] and "sha256 differs" in lines[1] and "not listed in the manifest" in lines[2]
    assert captured.err == f"liftdata verify: error: {d}: 3 bad shard file(s); the manifest lists 3 shards\n"
    # size-only verification misses the flipped bit but not the missing shard
    assert main(["verify", str(d), "--no-sha256"]) == 2
    assert "sha256" not in capsys.readouterr().out


def test_preview_of_damaged_or_unfinished_datasets_is_one_line(written, tmp_path, capsys):
    d, files, _ = damaged_copy(written, "webdataset", tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:100])
    assert main(["preview", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"liftdata preview: error: {d}: {files[2].name}: 100 bytes" in err
    assert "truncated" in err and "`liftdata verify" in err
    with pytest.raises(DatasetDirError, match="truncated"):
        preview_dataset(d, tmp_path / "p")
    unfinished = tmp_path / "unfinished"
    with pytest.raises(RuntimeError):
        write_webdataset(_interrupted(toy_samples(N, SIZE), after=5), unfinished, max_count=2, progress=False)
    assert main(["preview", str(unfinished)]) == 2
    assert capsys.readouterr().err == (f"liftdata preview: error: {unfinished}: the write did not finish (4 samples in "
                                       "2 complete shards so far; rerun the same command to resume)\n")
    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"liftdata verify: error: {tmp_path / 'nowhere'}: no such directory\n"


def _interrupted(samples, after):
    for i, sample in enumerate(samples):
        if i == after:
            raise RuntimeError("interrupted")
        yield sample


# ---------------------------------------------------------------------- liftdata info DIR
def expected_block(d, fmt, version, n, captured, lifted, shards, complete, members, absent):
    """The block `liftdata info DIR` prints, written out from what the test knows it wrote."""
    return "\n".join([
        f"dataset : {d} ({fmt}, name {'old' if version == '1' else 'liftdata'!r}, written by liftdata 0.1.0)",
        f"schema  : v{version}", f"samples : {n} ({captured} captured, {lifted} lifted)", f"shards  : {shards}",
        "complete: " + ("yes" if complete else "no (an interrupted write: rerun it to resume)"),
        f"members : {members}" + (f"; no {absent}" if absent else "")]) + "\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_of_v2_v1_and_unfinished_datasets(written, fmt, tmp_path, capsys):
    from test_io_writers import write_v1_dataset

    # toy samples: clips of 4 frames, odd clips lifted -> 9 samples = 4 captured, 4 lifted, 1 captured
    d, _ = written[fmt]
    assert main(["info", str(d)]) == 0
    assert capsys.readouterr().out == expected_block(d, fmt, "2", N, 5, 4, 3, True,
                                                     "image (png), shading, normal, mask", "alpha")
    samples = list(toy_samples(N, SIZE, frames_per_clip=4))
    write_v1_dataset(fmt, tmp_path / "v1", samples)  # its manifest records neither counts nor members
    assert main(["info", str(tmp_path / "v1")]) == 0
    assert capsys.readouterr().out == expected_block(tmp_path / "v1", fmt, "1", N, 5, 4, 1, True,
                                                     "image (png), shading, normal, mask", "alpha")
    unfinished = tmp_path / "unfinished"
    matted = (dataclasses.replace(s, alpha=s.mask, shading=None) for s in samples)
    with pytest.raises(RuntimeError):
        FORMATS[fmt][0](_interrupted(matted, after=5), unfinished, max_count=2, progress=False)
    assert main(["info", str(unfinished)]) == 0
    assert capsys.readouterr().out == expected_block(unfinished, fmt, "2", 4, 4, 0, 2, False,
                                                     "image (png), normal, mask, alpha", "shading")
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"liftdata info: error: {tmp_path / 'nowhere'}: no such directory\n"
