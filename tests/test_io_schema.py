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
                                make_key, make_meta, meta_from_document, meta_to_document, parse_key,
                                validate_document, validate_sample)
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


def v1_document(sample: Sample) -> dict:
    """The document liftdata 0.x (schema v1) wrote: the in-memory meta as it is, nulls and all."""
    meta = {k: v for k, v in sample.meta.items() if k != "extra" or v}
    return {**copy.deepcopy(sample.document()), "meta": {**copy.deepcopy(meta), "schema_version": "1"}}


def expect_error(path: str, problem: str = ""):
    """pytest.raises for a SampleError whose message names KEY and `path`."""
    return pytest.raises(SampleError, match=f"^sample '{KEY}': {re.escape(path)}: .*{problem}")


# ---------------------------------------------------------------------- the schema file
@pytest.mark.parametrize("version", ["1", "2"])
def test_schema_ships_in_package_and_is_valid_2020_12(version):
    package_path = Path(liftdata.__file__).parent / "schemas" / f"sample-v{version}.json"
    repo_path = Path(liftdata.__file__).parent.parent / "schemas" / f"sample-v{version}.json"
    assert package_path.is_symlink() or package_path.parent.is_symlink()
    assert package_path.read_bytes() == repo_path.read_bytes()
    schema = load_schema(version)
    assert schema == json.loads(repo_path.read_text()) and schema["title"].endswith(f"version {version}")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["x-binary-members"]) == {"image", "shading", "normal", "mask"} | ({"alpha"} if version == "2"
                                                                                        else set())
    assert SCHEMA_PATH.read_bytes() == (repo_path.parent / "sample-v2.json").read_bytes()  # writers write v2


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
    free = from_doc(sample, lambda d: d["meta"].__setitem__("extra", json.dumps({"foo": [1, "a"]})))
    assert free.meta["extra"] == {"foo": [1, "a"]}  # anything goes under extra, as JSON text on disk
    with expect_error("meta.extra", "is not of type 'string'"):
        from_doc(sample, lambda d: d["meta"].__setitem__("extra", {"foo": 1}))  # an object would vary in shape
    with expect_error("meta.extra", r"not the JSON text of an object \(a list\)"):
        from_doc(sample, lambda d: d["meta"].__setitem__("extra", "[1, 2]"))
    with expect_error("meta.sampler.params", "NaN is not a finite number"):
        from_doc(sample, lambda d: d["meta"]["sampler"].__setitem__("params", '{"a": NaN}'))
    with expect_error("meta.sampler.name", "'' was expected"):  # captured frames have no sampler
        from_doc(sample, lambda d: d["meta"].update(source="captured", seed=-1, lifter={"name": "", "version": ""}))
    with expect_error("meta.seed", "-1 was expected"):
        from_doc(sample, lambda d: d["meta"].update(source="captured", sampler={"name": "", "params": "{}"},
                                                    lifter={"name": "", "version": ""}))
    with expect_error("meta.lifter.name", "should be non-empty"):
        from_doc(sample, lambda d: d["meta"]["lifter"].__setitem__("name", ""))  # lifted needs a lifter
    with expect_error("meta.seed", "less than the minimum of -1"):
        from_doc(sample, lambda d: d["meta"].__setitem__("seed", -2))
    with expect_error("meta.reference_keys", "should be non-empty"):
        from_doc(sample, lambda d: d["meta"].__setitem__("reference_keys", []))
    with expect_error("meta.schema_version", "'2' was expected"):
        from_doc(sample, lambda d: d["meta"].__setitem__("schema_version", "3"))
    with expect_error("meta.sampler", "not of type 'object'"):  # a v2 document holds no nulls
        from_doc(sample, lambda d: d["meta"].__setitem__("sampler", None))


def test_in_memory_meta_errors_name_the_field():
    s = toy_sample(9, 32)
    bad = Sample(s.key, s.image, s.kinematics, s.camera, {**s.meta, "sampler": {"name": "x", "params": {"a": np.inf}}})
    with expect_error("meta.sampler.params.a", "not a finite number"):
        validate_sample(bad)
    bad = Sample(s.key, s.image, s.kinematics, s.camera, {**s.meta, "extra": {"q": [0.5, float("nan")]}})
    with expect_error("meta.extra.q[1]", "not a finite number"):
        validate_sample(bad, thorough=True)
    bad = Sample(s.key, s.image, s.kinematics, s.camera, {**s.meta, "extra": {"a": np.zeros(2)}})
    with expect_error("meta.extra", "not JSON-serialisable"):
        validate_sample(bad)
    bad = Sample(s.key, s.image, s.kinematics, s.camera, {**s.meta, "lifter": None})
    with pytest.raises(SampleError, match=f"^sample '{KEY}': meta.lifter.(name|version): '' should be non-empty"):
        validate_sample(bad)  # a lifted sample needs a lifter


# ---------------------------------------------------------------------- schema v2: one shape; v1 still read
def random_meta(rng: np.random.Generator, key: str, kin) -> dict:
    """A meta of any kind liftdata writes: captured or lifted, samplers with different params, varied extras."""
    def value(depth=0):
        kinds = [lambda: None, lambda: bool(rng.integers(0, 2)), lambda: float(rng.normal()),
                 lambda: int(rng.integers(-5, 10**12)), lambda: [value(depth + 1) for _ in range(rng.integers(0, 3))],
                 lambda: {f"k{i}": value(depth + 1) for i in range(rng.integers(0, 3))}]
        return kinds[rng.integers(0, 6 if depth < 2 else 4)]()

    extra = {f"e{i}": value() for i in range(rng.integers(0, 4))}
    if rng.uniform() < 0.4:
        return make_meta(key, kin, source="captured", extra=extra or None)
    params = {f"p{i}": value() for i in range(rng.integers(0, 4))}
    refs = [make_key("toy", 0, int(i)) for i in rng.integers(0, 999, rng.integers(1, 6))]
    return make_meta(key, kin, source="lifted", sampler={"name": f"s{rng.integers(0, 3)}", "params": params},
                     lifter={"name": "warp", "version": str(rng.integers(1, 4))}, seed=int(rng.integers(0, 2**31)),
                     reference_keys=refs, extra=extra)


def test_every_document_has_one_arrow_shape_and_meta_round_trips(rng):
    """Independent check of 'one shape': Arrow's type inference (what `datasets` and the Hub viewer
    use) gives the same type for the documents of captured and lifted samples of any sampler."""
    import pyarrow as pa

    base = toy_sample(0, 16)
    types, kinds = set(), set()
    for i in range(60):
        key = make_key("toy", 1 + i, 0)
        meta = random_meta(rng, key, base.kinematics)
        s = Sample(key, base.image, base.kinematics, base.camera, meta, base.shading, base.normal, base.mask)
        validate_sample(s)
        doc = json.loads(json.dumps(s.document()))
        types.add(pa.Table.from_pylist([doc]).schema.field("meta").type)
        kinds.add((meta["source"], meta["sampler"]["name"] if meta["sampler"] else None))
        assert meta_from_document(key, meta_to_document(key, meta)) == meta
        back = Sample.from_document(key, doc, s.image, s.shading, s.normal, s.mask)
        assert back.equals(s) and back.meta == meta
    assert len(types) == 1 and len(kinds) >= 3  # captured + at least two samplers, one Arrow type
    assert not any(pa.types.is_null(f.type) for f in types.pop())


def test_v1_documents_are_still_read():
    for s in (toy_sample(0, 32), toy_sample(9, 32)):  # captured (nulls, empty list), lifted
        doc = v1_document(s)
        jsonschema.validate(doc, load_schema("1"))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, load_schema("2"))
        back = Sample.from_document(s.key, json.loads(json.dumps(doc)), s.image, s.shading, s.normal, s.mask)
        assert back.meta == doc["meta"] and back.meta["schema_version"] == "1"  # read as it was written
        assert back.document()["meta"]["schema_version"] == "2"  # and written as v2
        assert meta_from_document(s.key, back.document()["meta"]) == {**doc["meta"], "schema_version": "2",
                                                                      "extra": doc["meta"].get("extra", {})}
    doc = v1_document(toy_sample(9, 32))
    doc["meta"]["sampler"] = None
    doc["meta"]["source"] = "captured"
    with pytest.raises(SampleError, match=f"^sample '{KEY}': meta.lifter: .*not of type 'null'"):
        Sample.from_document(KEY, doc, b"")  # v1 rules still apply to v1 documents


# ---------------------------------------------------------------------- alpha (schema v2)
@pytest.mark.parametrize("dtype", ["bool", "uint8", "float"])
def test_alpha_member_from_arrays_round_trip(dtype, rng):
    s0 = toy_sample(0, 24)
    soft = rng.uniform(0, 1, (24, 24))
    alpha = {"bool": soft > 0.5, "uint8": np.round(soft * 255).astype(np.uint8), "float": soft}[dtype]
    expected = {"bool": (soft > 0.5).astype(np.uint8) * 255}.get(dtype, np.round(soft * 255).astype(np.uint8))
    s = Sample.from_arrays(s0.key, s0.to_arrays()["image"], s0.kinematics, s0.camera, s0.meta, alpha=alpha)
    validate_sample(s, thorough=True)
    np.testing.assert_array_equal(s.to_arrays()["alpha"], expected)
    assert s.members == ("png", "alpha.png") and s.to_arrays()["mask"] is None
    assert not s.equals(Sample(s.key, s.image, s.kinematics, s.camera, s.meta))  # equals compares alpha
    back = Sample.from_document(s.key, s.document(), s.image, alpha=s.alpha)
    assert back.equals(s)


def test_alpha_member_is_checked(sample):
    with pytest.raises(SampleError, match=f"sample '{KEY}': alpha: expected an array of shape \\[H, W\\]"):
        Sample.from_arrays(KEY, toy_arrays(32, 0)["image"], sample.kinematics, sample.camera, sample.meta,
                           alpha=np.zeros((32, 32, 3)))
    for alpha, problem in ((encode_png(np.zeros((32, 16), np.uint8)), "size 16x32 does not match the image's 32x32"),
                           (encode_png(np.zeros((32, 32, 3), np.uint8)), "expected 1 channel"),
                           (cv2.imencode(".jpg", np.zeros((32, 32), np.uint8))[1].tobytes(), "must be PNG")):
        s = Sample(KEY, sample.image, sample.kinematics, sample.camera, sample.meta, alpha=alpha)
        for thorough in (False, True):
            with expect_error("alpha", problem):
                validate_sample(s, thorough=thorough)


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


def test_document_keys_are_in_schema_order_whatever_the_meta_order():
    """Arrow takes a struct's field order from the JSON: every document lists meta's keys alike."""
    s = toy_sample(9, 32)
    shuffled = {k: s.meta[k] for k in reversed(list(s.meta))}
    shuffled["sampler"] = {k: s.meta["sampler"][k] for k in reversed(list(s.meta["sampler"]))}
    other = Sample(s.key, s.image, s.kinematics, s.camera, shuffled, s.shading, s.normal, s.mask)
    assert json.dumps(other.document()) == json.dumps(s.document())
    assert list(s.document()["meta"]) == list(load_schema()["$defs"]["meta"]["properties"])


def test_fast_meta_check_is_never_looser_than_the_schema(rng):
    """The writers' fast meta check (slow twin: jsonschema on sample-v2.json): on valid metas of every
    kind it says yes (so the fast path is taken), and it never says yes to a meta the schema refuses."""
    from liftdata.io.schema import _v2_meta_is_valid

    validator = jsonschema.Draft202012Validator(load_schema("2")["$defs"]["meta"] | {"$defs": load_schema("2")["$defs"]})
    base = toy_sample(0, 16)
    values = [None, True, 0, 1, -1, -2, 1.0, 1.5, 10**6, 10**7, "", "x", "{}", "toy/000000/000", "a.b/000000/000",
              "{\"a\": 1}", [], ["toy/000000/001"], [1], {}, {"name": "", "params": "{}"}, {"id": "b", "version": "1"},
              {"name": "w", "version": "1"}, {"name": "", "version": ""}, {"name": "s", "params": "{}"}]
    n_valid = n_refused = 0
    for i in range(400):
        key = make_key("toy", 1 + i, 0)
        meta = meta_to_document(key, random_meta(rng, key, base.kinematics))
        assert _v2_meta_is_valid(meta) and validator.is_valid(meta)
        for _ in range(int(rng.integers(1, 3))):  # one or two faults
            name = list(meta)[rng.integers(0, len(meta))]
            fault = rng.integers(0, 4)
            if fault == 0:
                meta = {k: v for k, v in meta.items() if k != name}
            elif fault == 1:
                meta = {**meta, name: values[rng.integers(0, len(values))]}
            elif fault == 2 and isinstance(meta[name], dict) and meta[name]:
                sub = list(meta[name])[rng.integers(0, len(meta[name]))]
                meta = {**meta, name: {**meta[name], sub: values[rng.integers(0, len(values))]}}
            else:
                meta = {**meta, "source": ["captured", "lifted", "other"][rng.integers(0, 3)]}
        fast, slow = _v2_meta_is_valid(meta), validator.is_valid(meta)
        assert slow or not fast, meta  # never looser
        n_valid += slow
        n_refused += not slow
    assert n_refused > 200 and n_valid > 10  # both kinds of mutated metas were tried
