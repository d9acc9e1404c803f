"""Hugging Face `datasets` reads what liftdata writes (issue 19 part 3), fully offline.

A real default expansion (captured + lifted samples, warp lifter, quality scores in meta.extra)
is written in several orders, so that the first samples `datasets` infers the column types
from are all captured, all lifted, or mixed. Each folder is loaded with the real `datasets`
package, with the exact calls the README shows, and every row is compared with the sample
liftdata wrote (key, pixels, the JSON document as stored).
"""

from __future__ import annotations

import dataclasses
import json

import datasets
import jsonschema
import numpy as np
import pytest
import webdataset as wds
import yaml

from liftdata.dataset import LiftDataset
from liftdata.io import read_parquet, read_webdataset, write_parquet, write_webdataset
from liftdata.io.schema import decode_png, encode_png, load_schema
from liftdata.samplers import mine_extremes
from liftdata.synthetic import make_capture

T, N, SIZE = 6, 8, 32  # captured frames, lifted frames, image size


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


@pytest.fixture(scope="module")
def samples():
    """A default dataset's samples: T captured then N lifted (2 clips), with a foreground matte each."""
    capture = make_capture(0, n_frames=T, size=SIZE)
    expansion = LiftDataset(capture).expand(N, mine_extremes(clip_length=4), seed=3)
    out = list(expansion)
    rng = np.random.default_rng(0)
    return [dataclasses.replace(s, alpha=encode_png((rng.uniform(0, 1, (SIZE, SIZE)) > 0.5).astype(np.uint8) * 255))
            for s in out]


ORDERS = {
    "captured_first": lambda s: s,
    "lifted_first": lambda s: s[T:] + s[:T],
    "mixed": lambda s: [x for pair in zip(s[T:], s[:T]) for x in pair] + s[2 * T:],
}


def stored(sample) -> dict:
    """The JSON document as a JSON reader sees it (tuples become lists, floats stay floats)."""
    return json.loads(json.dumps(sample.document()))


def check_rows(rows, want, image_col, alpha_col, doc_of):
    assert len(rows) == len(want)
    for row, s in zip(rows, want):
        arrays = s.to_arrays()
        np.testing.assert_array_equal(np.asarray(row[image_col]), arrays["image"])
        np.testing.assert_array_equal(np.asarray(row[alpha_col]), arrays["alpha"])
        doc = doc_of(row)
        assert doc["meta"] == stored(s)["meta"]
        assert json.loads(doc["meta"]["extra"]) == s.meta["extra"]
        np.testing.assert_array_equal(np.float32(doc["kinematics"]["expression"]), s.kinematics.expression[0])
        np.testing.assert_array_equal(np.asarray(doc["camera"]["K"]), s.camera.K)


@pytest.mark.parametrize("order", ORDERS)
def test_load_dataset_webdataset(tmp_path, samples, order):
    want = ORDERS[order](samples)
    kinds = [s.meta["source"] for s in want[:5]]  # what `datasets` infers the types from
    assert (set(kinds) == {"captured"}, set(kinds) == {"lifted"}) == (order == "captured_first",
                                                                      order == "lifted_first")
    out = tmp_path / "wds"
    write_webdataset(want, out, max_count=5, progress=False)
    # the README's call
    ds = datasets.load_dataset("webdataset", data_files=str(out / "*.tar"), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds["__key__"] == [s.key for s in want]
    check_rows(ds, want, "png", "alpha.png", lambda row: row["json"])
    for row, s in zip(ds, want):
        assert row["json"] == stored(s)  # the whole document, nothing dropped or cast
    # the folder itself: the card's configs and declared features
    by_card = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf2"))["train"]
    assert by_card["__key__"] == ds["__key__"]
    assert by_card.features["json"]["kinematics"]["expression"].feature.dtype == "float32"
    check_rows(by_card, want, "png", "alpha.png", lambda row: row["json"])
    # plain webdataset, the README's decode call
    plain = list(wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False).decode("rgb8"))
    assert [r["__key__"] for r in plain] == [s.key for s in want]
    np.testing.assert_array_equal(plain[0]["png"], want[0].to_arrays()["image"])
    assert plain[-1]["json"] == stored(want[-1])
    assert [s.key for s in read_webdataset(out)] == [s.key for s in want]


@pytest.mark.parametrize("order", ["captured_first", "lifted_first"])
def test_load_dataset_parquet(tmp_path, samples, order):
    want = ORDERS[order](samples)
    out = tmp_path / "pq"
    write_parquet(want, out, max_count=5, progress=False)
    ds = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds["key"] == [s.key for s in want]
    doc_of = lambda row: {p: row[p] for p in ("kinematics", "camera", "meta")}  # noqa: E731
    check_rows(ds, want, "image", "alpha", doc_of)
    by_card = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf2"))["train"]
    assert by_card["key"] == ds["key"] and by_card.features == ds.features
    assert [s.key for s in read_parquet(out)] == ds["key"]


def test_captured_and_lifted_meta_have_one_type(tmp_path, samples):
    """What broke before (issue 19): the type inferred from captured samples could not hold lifted ones."""
    out = tmp_path / "wds"
    write_webdataset(samples, out, progress=False)
    ds = datasets.load_dataset("webdataset", data_files=str(out / "*.tar"), cache_dir=str(tmp_path / "hf"))["train"]
    meta = ds.features["json"]["meta"]
    assert meta["sampler"] == {"name": datasets.Value("string"), "params": datasets.Value("string")}
    assert meta["seed"] == datasets.Value("int64") and meta["reference_keys"].feature == datasets.Value("string")
    for s in samples:  # the plain JSON Schema agrees with what was written
        jsonschema.validate(stored(s), load_schema("2"))
    captured, lifted = ds[0]["json"]["meta"], ds[T]["json"]["meta"]
    assert (captured["source"], lifted["source"]) == ("captured", "lifted")
    assert captured["sampler"] == {"name": "", "params": "{}"} and captured["seed"] == -1
    assert captured["reference_keys"] == [samples[0].key]  # its own frame
    assert json.loads(captured["extra"])["face_found"] is True
    assert lifted["sampler"]["name"] == "extreme_expression_mining" and lifted["seed"] == 3
    assert json.loads(lifted["sampler"]["params"])["clip_length"] == 4
    quality = json.loads(lifted["extra"])["quality"]
    assert 0 <= quality["score"] <= 1
    # the README's filter: lifted frames above the quality threshold
    keep = ds.filter(lambda row: row["json"]["meta"]["source"] == "lifted"
                     and json.loads(row["json"]["meta"]["extra"])["quality"]["score"] >= 0.5)
    expected = [s.key for s in samples if s.meta["source"] == "lifted" and s.meta["extra"]["quality"]["score"] >= 0.5]
    assert keep["__key__"] == expected


def test_dataset_card_metadata_is_complete(tmp_path, samples, monkeypatch):
    write_webdataset(samples, tmp_path / "wds", progress=False)
    card = (tmp_path / "wds" / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "other" and front["license_name"] == "source-footage"
    assert (tmp_path / "wds" / front["license_link"]).is_file()
    assert front["configs"][0]["data_files"][0]["path"] == "liftdata-*.tar"
    features = datasets.Features._from_yaml_list(front["dataset_info"]["features"])
    assert list(features) == ["png", "shading.png", "normal.png", "mask.png", "alpha.png", "json", "__key__", "__url__"]
    assert f"{T + N} samples ({T} captured, {N} lifted)" in card
    assert 'load_dataset("webdataset", data_files="liftdata-*.tar")' in card
    # the snippet in the card runs as written, from the dataset directory
    snippet = card.split("```python\n")[1].split("```")[0]
    scope: dict = {}
    monkeypatch.chdir(tmp_path / "wds")
    exec(snippet.replace('data_files="liftdata-*.tar")', f'data_files="liftdata-*.tar", cache_dir="{tmp_path}/hf")'),
         scope)
    assert scope["row"]["json"]["meta"]["source"] == "captured"
    np.testing.assert_array_equal(np.asarray(scope["row"]["png"]), decode_png(samples[0].image))


def test_multi_process_folder_loads(tmp_path, samples):
    """A dataset joined from per-rank parts (`merge_ranks`) loads through its card, in stream order."""
    from liftdata.io.shards import merge_ranks, rank_dir

    out = tmp_path / "wds"
    for rank, part in enumerate((samples[:T + 2], samples[T + 2:])):  # rank 1 holds lifted samples only
        write_webdataset(part, out / rank_dir(rank, 2), max_count=4, progress=False)
    manifest = merge_ranks(out, strict=True).manifest
    assert (manifest["n_captured"], manifest["n_lifted"]) == (T, N) and manifest["members"][-1] == "alpha.png"
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds["__key__"] == [s.key for s in samples]
    check_rows(ds, samples, "png", "alpha.png", lambda row: row["json"])
