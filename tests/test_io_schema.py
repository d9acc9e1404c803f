"""The sample schema: valid samples pass, each kind of bad sample gives a SampleError naming key and field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

import liftdata
from liftdata.io.schema import (SCHEMA_PATH, Sample, SampleError, decode_png, encode_png, image_header, load_schema,
                                make_key, parse_key, validate_document, validate_sample)
from liftdata.io.toy import toy_arrays, toy_sample
from liftdata.kinematics import Camera

KEY = "toy/000001/001"  # toy_sample(9) with 8 frames per clip: clip 1 is 'lifted'


@pytest.fixture(scope="module")
def sample() -> Sample:
    s = toy_sample(9, 32)
    assert s.key == KEY
    return s


def from_doc(sample: Sample, mutate, key: str = KEY) -> Sample:
    doc = copy.deepcopy(sample.document())
    mutate(doc)
    return Sample.from_document(key, doc, sample.image, sample.shading, sample.normal, sample.mask)


def expect_error(path: str, problem: str = ""):
    """pytest.raises for a SampleError whose message names KEY and `path`."""
    return pytest.raises(SampleError, match=f"^sample '{KEY}': {re.escape(path)}: .*{problem}")


# ---------------------------------------------------------------------- the schema file
def test_schema_ships_in_package_and_is_valid_2020_12():
    package_path = Path(liftdata.__file__).parent / "schemas" / "sample-v1.json"
    repo_path = Path(liftdata.__file__).parent.parent / "schemas" / "sample-v1.json"
    assert package_path.is_symlink() or package_path.parent.is_symlink()
    assert package_path.read_bytes() == repo_path.read_bytes() == SCHEMA_PATH.read_bytes()
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["x-binary-members"]) == {"image", "shading", "normal", "mask"}


def test_valid_samples_pass_and_documents_are_plain_json(sample):
    for s in (sample, toy_sample(0, 32), toy_sample(3, 48, capture="cap-B_2")):
        validate_sample(s)
        validate_sample(s, thorough=True)
        doc = s.document()
        assert json.loads(json.dumps(doc, allow_nan=False)) == doc
        jsonschema.validate(doc, load_schema())  # the plain schema agrees
    assert toy_sample(0).meta["source"] == "captured" and sample.meta["source"] == "lifted"


def test_from_document_round_trip_is_exact(sample):
    back = Sample.from_document(KEY, json.loads(json.dumps(sample.document())), sample.image,
                                sample.shading, sample.normal, sample.mask)
    assert back.equals(sample)
    np.testing.assert_array_equal(back.kinematics.expression, sample.kinematics.expression)
    assert back.kinematics.expression.dtype == np.float32


# ---------------------------------------------------------------------- arrays <-> PNG
def test_arrays_round_trip_byte_exact():
    s = toy_sample(0, 40)  # toy_sample encodes toy_arrays(40, seed=0 * 100_003 + 0)
    arrays = toy_arrays(40, seed=0)
    decoded = s.to_arrays()
    np.testing.assert_array_equal(decoded["image"], arrays["image"])
    # float maps are quantized as round(x * 255): independent reference
    np.testing.assert_array_equal(decoded["shading"], np.round(arrays["shading"] * 255).astype(np.uint8))
    np.testing.assert_array_equal(decoded["normal"], np.round(arrays["normal"] * 255).astype(np.uint8))
    np.testing.assert_array_equal(decoded["mask"], arrays["mask"].astype(np.uint8) * 255)
    # RGB order: cv2 reading the PNG gives BGR
    bgr = cv2.imdecode(np.frombuffer(s.image, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr[..., ::-1], arrays["image"])
    # encode(decode(bytes)) == bytes
    for name in ("image", "shading", "normal", "mask"):
        assert encode_png(decoded[name]) == getattr(s, name)


def test_from_arrays_accepts_hw1_shading_and_jpeg_image():
    arrays = toy_arrays(32, seed=1)
    s0 = toy_sample(0, 32)
    s = Sample.from_arrays(s0.key, arrays["image"], s0.kinematics, s0.camera, s0.meta,
                           shading=arrays["shading"][..., None], jpeg_quality=90)
    assert s.image_ext == "jpg" and s.normal is None and s.mask is None
    validate_sample(s, thorough=True)
    err = lambda a: np.abs(s.to_arrays()["image"].astype(int) - a).mean()  # noqa: E731
    assert err(arrays["image"]) < 6 < 20 < err(arrays["image"][..., ::-1])  # lossy but close, and RGB


def test_image_header_matches_decoding(rng):
    """Fast path (header parsing) against the slow twin (cv2 decode)."""
    grey = rng.integers(0, 255, (17, 23), dtype=np.uint8)
    rgb = rng.integers(0, 255, (19, 29, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", rgb)[1].tobytes()
    for data in (encode_png(grey), encode_png(rgb), jpg):
        fmt, w, h, c = image_header(data)
        a = decode_png(data)
        assert (h, w, c) == (a.shape[0], a.shape[1], 1 if a.ndim == 2 else a.shape[2])
        assert fmt == ("jpg" if data is jpg else "png")
    with pytest.raises(ValueError, match="not a PNG or JPEG"):
        image_header(b"GIF89a....")


# ---------------------------------------------------------------------- errors
def test_missing_field(sample):
    with expect_error("meta.seed", "missing"):
        from_doc(sample, lambda d: d["meta"].pop("seed"))
    with expect_error("kinematics.neck", "missing"):
        from_doc(sample, lambda d: d["kinematics"].pop("neck"))
    with expect_error("camera", "missing"):
        from_doc(sample, lambda d: d.pop("camera"))


def test_nan_coefficient(sample):
    with expect_error("kinematics.expression[4]", "not a finite number"):
        from_doc(sample, lambda d: d["kinematics"]["expression"].__setitem__(4, float("nan")))
    with expect_error("camera.K[0][2]", "not a finite number"):
        from_doc(sample, lambda d: d["camera"]["K"][0].__setitem__(2, float("inf")))
    # a Sample whose (mutable) arrays were changed after construction
    bad = toy_sample(9, 32)
    bad.kinematics.expression[0, 4] = np.nan
    with expect_error("kinematics.expression[4]", "not a finite number"):
        validate_sample(bad)


def test_wrong_shape(sample):
    with expect_error("kinematics.jaw", "too short"):
        from_doc(sample, lambda d: d["kinematics"].__setitem__("jaw", [0.0, 0.1]))
    with expect_error("kinematics.eyes", "too long"):
        from_doc(sample, lambda d: d["kinematics"]["eyes"].append(0.0))
    with expect_error("camera.world_to_camera", "rotation"):
        from_doc(sample, lambda d: d["camera"]["world_to_camera"][0].__setitem__(0, 2.0))
    s = toy_sample(9, 32)
    with pytest.raises(SampleError, match=f"sample '{KEY}': normal: expected an array of shape"):
        Sample.from_arrays(KEY, toy_arrays(32, 0)["image"], s.kinematics, s.camera, s.meta,
                           normal=np.zeros((32, 32)))


def test_wrong_head_model(sample):
    with expect_error("meta.head_model", "differs from the kinematics' head model 'builtin' v1"):
        from_doc(sample, lambda d: d["meta"]["head_model"].__setitem__("version", "2"))
    with expect_error("meta.head_model", "differs"):
        from_doc(sample, lambda d: d["meta"]["head_model"].__setitem__("id", "flame"))


def test_bad_key(sample):
    with pytest.raises(SampleError, match=r"^sample 'to\.y/000001/001': key: expected"):
        from_doc(sample, lambda d: None, key="to.y/000001/001")
    with pytest.raises(SampleError, match=r"^sample 'toy/1/1': key:"):
        parse_key("toy/1/1")
    with pytest.raises(SampleError, match="key"):
        make_key("toy", 1, 1000)  # frame needs 3 digits
    with expect_error("key", "does not match meta capture_id/clip/frame"):
        from_doc(sample, lambda d: d["meta"].__setitem__("clip", 2))
    with expect_error("meta.reference_keys[0]", "does not match"):
        from_doc(sample, lambda d: d["meta"].__setitem__("reference_keys", ["no.dots/000000/000"]))


def test_image_size_mismatch(sample):
    with expect_error("image", "size 32x32 does not match the camera's 40x32"):
        from_doc(sample, lambda d: d["camera"].__setitem__("width", 40))
    wide = Camera.from_fov(30.0, 40, 32)
    s = Sample(KEY, sample.image, sample.kinematics, wide, sample.meta)
    with expect_error("image", "does not match the camera"):
        validate_sample(s)
    small_mask = encode_png(np.zeros((16, 32), np.uint8))
    s = Sample(KEY, sample.image, sample.kinematics, sample.camera, sample.meta, mask=small_mask)
    with expect_error("mask", "size 32x16 does not match the image's 32x32"):
        validate_sample(s)


def test_bad_members(sample):
    rgb_shading = encode_png(np.zeros((32, 32, 3), np.uint8))
    s = Sample(KEY, sample.image, sample.kinematics, sample.camera, sample.meta, shading=rgb_shading)
    with expect_error("shading", "expected 1 channel"):
        validate_sample(s)
    jpg = cv2.imencode(".jpg", np.zeros((32, 32), np.uint8))[1].tobytes()
    s = Sample(KEY, sample.image, sample.kinematics, sample.camera, sample.meta, mask=jpg)
    with expect_error("mask", "must be PNG"):
        validate_sample(s)
    truncated = Sample(KEY, sample.image[:200], sample.kinematics, sample.camera, sample.meta)
    validate_sample(truncated)  # the header is intact ...
    with expect_error("image", "do not decode"):
        validate_sample(truncated, thorough=True)  # ... the pixels are not


def test_meta_rules(sample):
    with expect_error("meta.foo", "unexpected field"):
        from_doc(sample, lambda d: d["meta"].__setitem__("foo", 1))
    from_doc(sample, lambda d: d["meta"].__setitem__("extra", {"foo": [1, "a"]}))  # allowed under extra
    with expect_error("meta.sampler", "not of type 'null'"):
        from_doc(sample, lambda d: d["meta"].__setitem__("source", "captured"))  # captured has no sampler
    with expect_error("meta.lifter", "not of type 'object'"):
        from_doc(sample, lambda d: d["meta"].__setitem__("lifter", None))  # lifted needs a lifter
    with expect_error("meta.schema_version"):
        from_doc(sample, lambda d: d["meta"].__setitem__("schema_version", "2"))


def test_fast_validation_agrees_with_thorough(rng):
    """The writers' fast path (meta schema + per-signature check of typed parts) against the slow twin."""
    cases = []
    for i in range(42):  # one fault per case (fault 0: none), so both paths must give the same message
        fault = i % 6
        s = toy_sample(i, 32, n_expression=0 if fault == 4 else int(rng.integers(1, 6)))  # E=0: schema error
        k, meta, camera = s.kinematics, copy.deepcopy(s.meta), s.camera
        if fault == 1:
            k = k.replace(head_model="flame")
        if fault == 2:
            meta["seed"] = "7"
        if fault == 3:
            k.eyes[0, int(rng.integers(0, 6))] = np.nan
        if fault == 5:
            camera = Camera.from_fov(30.0, 33, 32)
        cases.append(Sample(s.key, s.image, k, camera, meta, s.shading, s.normal, s.mask))
    outcomes = []
    for s in cases:
        results = []
        for thorough in (False, True):
            try:
                validate_sample(s, thorough=thorough)
                results.append(None)
            except SampleError as e:
                results.append(str(e))
        assert results[0] == results[1]
        outcomes.append(results[0])
    assert [o is None for o in outcomes] == [i % 6 == 0 for i in range(42)]


def test_validate_document_names_the_key():
    with pytest.raises(SampleError, match=r"^sample 'x/000000/000': \(document\): .*not of type 'object'"):
        validate_document("x/000000/000", [1, 2])
