"""One sample = one frame: the `Sample` type, its JSON document and validation (schema v2; v1 is read).

The JSON Schemas `schemas/sample-v{1,2}.json` (shipped as `liftdata/schemas/`) are the single
source of truth for the JSON document stored with each sample::

    {"kinematics": {expression [E], jaw [3], neck [3], eyes [6], rotation [3], translation [3],
                    head_model, head_model_version},
     "camera": Camera.to_dict(),
     "meta": {source, capture_id, subject_id, clip, frame, sampler, lifter, seed,
              reference_keys, head_model, schema_version, extra}}

In memory, `Sample.meta` is the natural dict (`sampler`/`lifter` a dict or None, `seed` an int or
None, `extra` a dict). On disk, schema v2 gives every sample's meta ONE shape, so that tools that
infer a columnar type from the first few samples (`datasets.load_dataset("webdataset", ...)`, the
Hub viewer) read captured and lifted samples alike: no nulls, no empty lists, no objects whose
keys vary (`meta_to_document` / `meta_from_document`, exact inverses):

    sampler  None -> {"name": "", "params": "{}"};  params -> JSON text (keys differ per sampler)
    lifter   None -> {"name": "", "version": ""}
    seed     None -> -1
    reference_keys of a captured frame: [] -> [its own key]
    extra    dict -> JSON text ("{}" when empty)

Version 1 documents (meta as in memory, schema_version "1") are still read; writers write v2.

`validate_sample` adds what JSON Schema cannot say: finite numbers, meta.head_model equal to the
kinematics' head model, the key consistent with meta, and image members that are PNG/JPEG of
the camera's size (read from the PNG/JPEG header; `thorough=True` also decodes the pixels).

Maps are 8 bit: `shading`, `mask` and `alpha` grey [H, W], `normal` RGB [H, W, 3] (0.5 n + 0.5);
float maps in [0, 1] are quantized with round(x * 255) when encoded. PNG is lossless, so
encode -> decode -> encode is byte-exact.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import jsonschema
import numpy as np

from liftdata.errors import LiftdataError
from liftdata.io.images import decode_png, encode_png, image_header
from liftdata.kinematics import KINEMATIC_FIELDS, Camera, Kinematics, KinematicsError

__all__ = [
    "SCHEMA_VERSION", "SCHEMA_VERSIONS", "SampleError", "Sample", "load_schema", "make_key", "parse_key",
    "make_meta", "meta_to_document", "meta_from_document", "validate_sample", "validate_document", "encode_png",
    "decode_png", "image_header", "MEMBERS",
]

SCHEMA_VERSION = "2"  # what writers write
SCHEMA_VERSIONS = ("1", "2")  # what readers read
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_PATH = SCHEMA_DIR / f"sample-v{SCHEMA_VERSION}.json"
KEY_RE = re.compile(r"^([A-Za-z0-9_-]{1,128})/([0-9]{6})/([0-9]{3})$")
MAP_FIELDS = ("shading", "normal", "mask")  # condition maps of the head model
OPTIONAL_FIELDS = (*MAP_FIELDS, "alpha")  # members a sample may lack (alpha: foreground matte, schema v2)
MEMBERS = ("image", *OPTIONAL_FIELDS)
# Expected PNG channels per member (the image may also be JPEG with 3 components).
_CHANNELS = {"image": 3, "shading": 1, "normal": 3, "mask": 1, "alpha": 1}


class SampleError(LiftdataError, ValueError):
    """An invalid sample; the message names the sample key and the field path."""

    def __init__(self, key: Any, path: str, problem: str):
        super().__init__(f"sample {key!r}: {path}: {problem}")
        self.key, self.path, self.problem = key, path, problem


@lru_cache(maxsize=4)
def load_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the sample document of schema `version` ("1" or "2")."""
    return json.loads((SCHEMA_DIR / f"sample-v{version}.json").read_text())


DOCUMENT_PARTS = ("kinematics", "camera", "meta")


@lru_cache(maxsize=16)
def _validator(parts: tuple[str, ...] = DOCUMENT_PARTS,
               version: str = SCHEMA_VERSION) -> jsonschema.Draft202012Validator:
    """Validator of the document restricted to `parts` (same schema, `$defs` and all)."""
    schema = load_schema(version)
    jsonschema.Draft202012Validator.check_schema(schema)
    if parts != DOCUMENT_PARTS:  # the other parts are checked elsewhere
        schema = {**schema, "required": list(parts), "properties": {p: schema["properties"][p] for p in parts},
                  "additionalProperties": True}
    return jsonschema.Draft202012Validator(schema)


# ---------------------------------------------------------------------- keys and meta
def make_key(capture_id: str, clip: int, frame: int) -> str:
    """`{capture}/{clip:06d}/{frame:03d}`."""
    key = f"{capture_id}/{int(clip):06d}/{int(frame):03d}"
    if not KEY_RE.match(key):
        raise SampleError(key, "key", "capture id must match [A-Za-z0-9_-]{1,128}, clip < 10^6, frame < 1000")
    return key


def parse_key(key: str) -> tuple[str, int, int]:
    """Inverse of `make_key`: (capture_id, clip, frame)."""
    m = KEY_RE.match(key) if isinstance(key, str) else None
    if m is None:
        raise SampleError(key, "key", "expected '{capture}/{clip:06d}/{frame:03d}' with capture matching "
                                      "[A-Za-z0-9_-]{1,128}")
    return m.group(1), int(m.group(2)), int(m.group(3))


def make_meta(key: str, kinematics: Kinematics, *, source: str = "captured", subject_id: str | None = None,
              sampler: Mapping[str, Any] | None = None, lifter: Mapping[str, Any] | None = None,
              seed: int | None = None, reference_keys: Iterable[str] = (),
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A schema-v2 `meta` dict for `key` (capture id, clip and frame are read from the key)."""
    capture_id, clip, frame = parse_key(key)
    return {
        "source": source, "capture_id": capture_id,
        "subject_id": capture_id if subject_id is None else subject_id, "clip": clip, "frame": frame,
        "sampler": None if sampler is None else dict(sampler), "lifter": None if lifter is None else dict(lifter),
        "seed": seed, "reference_keys": list(reference_keys),
        "head_model": {"id": kinematics.head_model, "version": kinematics.head_model_version},
        "schema_version": SCHEMA_VERSION, "extra": {} if extra is None else dict(extra),
    }


def _json_text(key: str, path: str, value: Any) -> Any:
    """The JSON text of a free-form object (left as is when not an object: the schema names the fault)."""
    if not isinstance(value, Mapping):
        return value
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        bad = _non_finite_path(value)
        if bad is not None:
            raise SampleError(key, _format_path((*path.split("."), *bad)), "not a finite number") from None
        raise SampleError(key, path, f"not JSON-serialisable ({e})") from None


_META_ORDER = ("source", "capture_id", "subject_id", "clip", "frame", "sampler", "lifter", "seed", "reference_keys",
               "head_model", "schema_version", "extra")
_ORDER = {"sampler": ("name", "params"), "lifter": ("name", "version"), "head_model": ("id", "version")}


def _ordered(value: Any, keys: tuple[str, ...]) -> Any:
    """`value` with `keys` first, in that order (Arrow infers a struct's field order from the JSON)."""
    if not isinstance(value, Mapping):
        return value
    return {**{k: value[k] for k in keys if k in value}, **{k: v for k, v in value.items() if k not in keys}}


def meta_to_document(key: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The schema-v2 on-disk form of an in-memory meta (v1 or v2): one shape for every sample,
    keys in the schema's order.

    Values of the wrong type are passed through unchanged, for the schema to name them.
    """
    doc = {**meta, "schema_version": SCHEMA_VERSION}
    sampler, lifter = meta.get("sampler", ...), meta.get("lifter", ...)
    if sampler is None:
        doc["sampler"] = {"name": "", "params": "{}"}
    elif isinstance(sampler, Mapping) and "params" in sampler:
        doc["sampler"] = {**sampler, "params": _json_text(key, "meta.sampler.params", sampler["params"])}
    if lifter is None:
        doc["lifter"] = {"name": "", "version": ""}
    if meta.get("seed", ...) is None:
        doc["seed"] = -1
    if meta.get("source") == "captured" and meta.get("reference_keys") == []:
        doc["reference_keys"] = [key]
    doc["extra"] = _json_text(key, "meta.extra", meta.get("extra", {}))
    doc.update({name: _ordered(doc[name], keys) for name, keys in _ORDER.items() if name in doc})
    return _ordered(doc, _META_ORDER)


def meta_from_document(key: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `meta_to_document` for a valid schema-v2 on-disk meta (v1 metas are returned as they are)."""
    if doc.get("schema_version") == "1":
        return dict(doc)
    sampler, lifter = doc["sampler"], doc["lifter"]
    return {
        **doc,
        "sampler": None if sampler["name"] == "" else {**sampler, "params": json.loads(sampler["params"])},
        "lifter": None if lifter == {"name": "", "version": ""} else dict(lifter),
        "seed": None if doc["seed"] == -1 else doc["seed"],
        "reference_keys": [] if doc["source"] == "captured" and doc["reference_keys"] == [key]
        else list(doc["reference_keys"]),
        "extra": json.loads(doc["extra"]),
    }


def _to_uint8(key: str, name: str, array: Any, channels: int) -> np.ndarray:
    a = np.asarray(array)
    if channels == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    want_ndim = 2 if channels == 1 else 3
    if a.ndim != want_ndim or (channels == 3 and a.shape[2] != 3):
        want = "[H, W]" if channels == 1 else "[H, W, 3]"
        raise SampleError(key, name, f"expected an array of shape {want}, got {list(a.shape)}")
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise SampleError(key, name, "array holds non-finite values")
        return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise SampleError(key, name, f"expected uint8, bool or float in [0, 1], got dtype {a.dtype}")


# ---------------------------------------------------------------------- the sample
@dataclass(frozen=True, eq=False)
class Sample:
    """One frame on disk: encoded images + per-frame kinematics, camera and meta.

    Attributes:
        key: `{capture}/{clip:06d}/{frame:03d}`.
        image: encoded RGB frame (PNG or JPEG bytes), camera.width x camera.height.
        kinematics: the frame's head-model parameters, T=1.
        camera: OpenCV pinhole camera of the frame.
        meta: the in-memory meta dict (see `make_meta`; schema v2, or v1 when read from a v1 dataset).
        shading, normal, mask: encoded PNG condition maps of the image's size, or None.
        alpha: encoded 8-bit grey PNG foreground matte of the image's size (255 = person), or None
            (schema v2; `{key}.alpha.png` in WebDataset, the `alpha` column in Parquet).
    """

    key: str
    image: bytes
    kinematics: Kinematics
    camera: Camera
    meta: dict[str, Any]
    shading: bytes | None = None
    normal: bytes | None = None
    mask: bytes | None = None
    alpha: bytes | None = None

    @classmethod
    def from_arrays(cls, key: str, image: np.ndarray, kinematics: Kinematics, camera: Camera,
                    meta: dict[str, Any], shading: np.ndarray | None = None, normal: np.ndarray | None = None,
                    mask: np.ndarray | None = None, jpeg_quality: int | None = None,
                    alpha: np.ndarray | None = None) -> Sample:
        """Encode arrays: image uint8 [H, W, 3] RGB; shading [H, W] or [H, W, 1]; normal [H, W, 3];
        mask and alpha [H, W] (bool, uint8 or float in [0, 1]). The image is PNG unless `jpeg_quality` is set."""
        rgb = _to_uint8(key, "image", image, 3)
        if jpeg_quality is None:
            encoded = encode_png(rgb)
        else:
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])[1].tobytes()
        maps = {name: None if a is None else encode_png(_to_uint8(key, name, a, _CHANNELS[name]))
                for name, a in (("shading", shading), ("normal", normal), ("mask", mask), ("alpha", alpha))}
        return cls(key, encoded, kinematics, camera, meta, **maps)

    @classmethod
    def from_document(cls, key: str, document: Mapping[str, Any], image: bytes, shading: bytes | None = None,
                      normal: bytes | None = None, mask: bytes | None = None, alpha: bytes | None = None) -> Sample:
        """A validated Sample from a stored JSON document (schema v1 or v2) and its encoded members."""
        parse_key(key)
        validate_document(key, document)
        kin = document["kinematics"]
        try:
            kinematics = Kinematics.from_dict({f: [kin[f]] if f in KINEMATIC_FIELDS else kin[f] for f in kin})
            camera = Camera.from_dict(document["camera"])
        except KinematicsError as e:  # what the schema cannot see, e.g. a non-rotation world_to_camera
            path, _, problem = str(e).partition(": ")
            raise SampleError(key, path, problem) from None
        sample = cls(key, image, kinematics, camera, meta_from_document(key, document["meta"]), shading, normal,
                     mask, alpha)
        _check_members(sample, decode=False)
        return sample

    @property
    def image_ext(self) -> str:
        """'png' or 'jpg', from the image bytes."""
        return "jpg" if self.image[:2] == b"\xff\xd8" else "png"

    @property
    def members(self) -> tuple[str, ...]:
        """The stored members, e.g. ('png', 'shading.png', 'normal.png', 'mask.png', 'alpha.png')."""
        return (self.image_ext, *(f"{n}.png" for n in OPTIONAL_FIELDS if getattr(self, n) is not None))

    def document(self) -> dict[str, Any]:
        """The schema-v2 JSON document of this sample as stored (kinematics flattened to one frame,
        meta in its on-disk form, `meta_to_document`)."""
        k = self.kinematics
        kin: dict[str, Any] = {f: getattr(k, f)[0].tolist() for f in KINEMATIC_FIELDS}
        kin.update(head_model=k.head_model, head_model_version=k.head_model_version)
        meta = meta_to_document(self.key, self.meta) if isinstance(self.meta, Mapping) else self.meta
        return {"kinematics": kin, "camera": self.camera.to_dict(), "meta": meta}

    def to_arrays(self) -> dict[str, np.ndarray | None]:
        """Decoded uint8 arrays: image [H, W, 3] RGB, shading [H, W], normal [H, W, 3], mask [H, W], alpha [H, W]."""
        return {name: None if getattr(self, name) is None else decode_png(getattr(self, name)) for name in MEMBERS}

    def equals(self, other: Sample) -> bool:
        """Exact equality: bytes, arrays and meta."""
        return (self.key == other.key and self.kinematics.equals(other.kinematics)
                and self.camera.equals(other.camera) and self.meta == other.meta
                and all(getattr(self, n) == getattr(other, n) for n in MEMBERS))


# ---------------------------------------------------------------------- validation
def _format_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(document)"


def _non_finite_path(value: Any, path: tuple = ()) -> tuple | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite_path(v, (*path, k))
        if found is not None:
            return found
    return None


def _schema_error(key: str, error: jsonschema.ValidationError) -> SampleError:
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return SampleError(key, _format_path([*path, missing[0]]), "missing")
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        extra = sorted(name for name in error.instance if name not in allowed)
        return SampleError(key, _format_path([*path, extra[0]]),
                           "unexpected field (free-form metadata goes under meta.extra)")
    message = error.message if len(error.message) < 160 else error.message[:157] + "..."
    return SampleError(key, _format_path(path), message)


def _document_version(document: Any) -> str:
    """The schema version a document claims (the current one when it claims none we read)."""
    meta = document.get("meta") if isinstance(document, Mapping) else None
    version = meta.get("schema_version") if isinstance(meta, Mapping) else None
    return version if version in SCHEMA_VERSIONS else SCHEMA_VERSION


def _check_json_text(key: str, path: str, text: str) -> None:
    """A v2 JSON-text member must parse to an object of finite numbers."""
    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a finite number")

    try:
        value = json.loads(text, parse_constant=no_constant)
    except ValueError as e:
        raise SampleError(key, path, f"not the JSON text of an object ({e})") from None
    if not isinstance(value, dict):
        raise SampleError(key, path, f"not the JSON text of an object (a {type(value).__name__})")


_CAPTURE_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    return type(value) is int and value >= low and (high is None or value <= high)


def _is_strs(value: Any, keys: tuple[str, ...], min_length: int = 0) -> bool:
    return (type(value) is dict and tuple(value) == keys
            and all(type(v) is str and len(v) >= min_length for v in value.values()))


def _v2_meta_is_valid(meta: Any) -> bool:
    """True only if `meta` is a valid schema-v2 on-disk meta (the writers' fast path: jsonschema
    runs only when this says no, and then names the fault). Stricter than the schema where that
    is simpler (exact key order, no integral floats), never looser: tests hold it against
    jsonschema on valid and mutated metas."""
    if type(meta) is not dict or tuple(meta) != _META_ORDER or meta["schema_version"] != "2":
        return False
    sampler, lifter, captured = meta["sampler"], meta["lifter"], meta["source"] == "captured"
    refs = meta["reference_keys"]
    return ((captured or meta["source"] == "lifted")
            and type(meta["capture_id"]) is str and _CAPTURE_RE.match(meta["capture_id"]) is not None
            and type(meta["subject_id"]) is str and _is_int(meta["clip"], 0, 999999)
            and _is_int(meta["frame"], 0, 999) and _is_int(meta["seed"], -1)
            and _is_strs(sampler, ("name", "params")) and (sampler["name"] != "" or sampler["params"] == "{}")
            and _is_strs(lifter, ("name", "version"), 0 if captured else 1)
            and (not captured or (sampler["name"] == lifter["name"] == lifter["version"] == ""
                                  and meta["seed"] == -1))
            and type(refs) is list and len(refs) >= 1
            and all(type(k) is str and KEY_RE.match(k) is not None for k in refs)
            and _is_strs(meta["head_model"], ("id", "version"), 1) and type(meta["extra"]) is str)


def validate_document(key: str, document: Any, parts: tuple[str, ...] = DOCUMENT_PARTS) -> None:
    """Check a sample's JSON document against its schema (v1 or v2, from meta.schema_version) and
    the cross-field rules; every number must be finite. `parts` restricts the schema and
    finiteness checks to some top-level parts."""
    bad = _non_finite_path(document if parts == DOCUMENT_PARTS else {p: document[p] for p in parts})
    if bad is not None:
        raise SampleError(key, _format_path(bad), "not a finite number")
    version = _document_version(document)
    if not (parts == ("meta",) and version == "2" and _v2_meta_is_valid(document["meta"])):  # fast path
        error = jsonschema.exceptions.best_match(_validator(parts, version).iter_errors(document))
        if error is not None:
            raise _schema_error(key, error)
    kin, meta = document["kinematics"], document["meta"]
    if version != "1":
        _check_json_text(key, "meta.sampler.params", meta["sampler"]["params"])
        _check_json_text(key, "meta.extra", meta["extra"])
    if meta["head_model"] != {"id": kin["head_model"], "version": kin["head_model_version"]}:
        raise SampleError(key, "meta.head_model", f"{meta['head_model']} differs from the kinematics' head "
                                                  f"model {kin['head_model']!r} v{kin['head_model_version']}")
    expected = f"{meta['capture_id']}/{meta['clip']:06d}/{meta['frame']:03d}"
    if key != expected:
        raise SampleError(key, "key", f"does not match meta capture_id/clip/frame ({expected!r})")


def _check_members(sample: Sample, decode: bool) -> None:
    size = (sample.camera.width, sample.camera.height)
    for name in MEMBERS:
        data = getattr(sample, name)
        if data is None and name != "image":
            continue
        if not isinstance(data, (bytes, bytearray)):
            raise SampleError(sample.key, name, f"expected encoded image bytes, got {type(data).__name__}")
        try:
            fmt, width, height, channels = image_header(data)
            if decode:  # the slow twin: decode the pixels
                decoded = decode_png(data)
                height, width = decoded.shape[:2]
                channels = 1 if decoded.ndim == 2 else decoded.shape[2]
        except ValueError as e:
            raise SampleError(sample.key, name, str(e)) from None
        if fmt != "png" and name != "image":
            raise SampleError(sample.key, name, "must be PNG (only the image may be JPEG)")
        if channels != _CHANNELS[name]:
            raise SampleError(sample.key, name, f"expected {_CHANNELS[name]} channel(s), got {channels}")
        if (width, height) != size:
            what = "camera" if name == "image" else "image"
            raise SampleError(sample.key, name, f"size {width}x{height} does not match the {what}'s "
                                                f"{size[0]}x{size[1]}")


@lru_cache(maxsize=64)
def _typed_parts_error(n_expression: int, head_model: str, version: str, width: int, height: int) -> tuple | None:
    """(path, problem) of the schema error of the kinematics/camera documents that `Kinematics`
    and `Camera` objects of this signature produce, or None.

    The classes fix the array shapes and the value types, and the schema bounds no float value
    (finiteness is checked per sample), so the schema's verdict depends on this signature only:
    validating one document per signature spares ~0.7 ms of jsonschema per sample.
    """
    doc = Sample("x/000000/000", b"", Kinematics.zeros(1, n_expression, head_model, version),
                 Camera.from_fov(30.0, width, height), {}).document()
    error = jsonschema.exceptions.best_match(_validator(("kinematics", "camera")).iter_errors(doc))
    return None if error is None else (lambda e: (e.path, e.problem))(_schema_error("", error))


def _check_finite_arrays(sample: Sample) -> None:
    arrays = [(f"kinematics.{f}", getattr(sample.kinematics, f)[0]) for f in KINEMATIC_FIELDS]
    arrays += [("camera.K", sample.camera.K), ("camera.world_to_camera", sample.camera.world_to_camera)]
    for path, a in arrays:
        if not np.isfinite(a).all():
            index = "".join(f"[{i}]" for i in np.argwhere(~np.isfinite(a))[0])
            raise SampleError(sample.key, path + index, "not a finite number")


def validate_sample(sample: Sample, thorough: bool = False) -> dict[str, Any]:
    """Raise `SampleError` (naming key and field) unless `sample` is a valid sample (its document as
    written, schema v2); return that document (`Sample.document()`, for writers to store).

    Fast path (writers): `meta` against the schema, the typed kinematics/camera once per
    signature (see `_typed_parts_error`), images from their PNG/JPEG headers. `thorough=True`
    is the slow, obvious twin: the whole document against the schema and images decoded.
    """
    parse_key(sample.key)
    k, camera = sample.kinematics, sample.camera
    if not isinstance(k, Kinematics) or len(k) != 1:
        raise SampleError(sample.key, "kinematics", "expected a Kinematics with T=1 frame")
    if not isinstance(camera, Camera):
        raise SampleError(sample.key, "camera", f"expected a Camera, got {type(camera).__name__}")
    document = sample.document()
    if thorough:
        validate_document(sample.key, document)
    else:
        error = _typed_parts_error(k.n_expression, k.head_model, k.head_model_version, camera.width, camera.height)
        if error is not None:
            raise SampleError(sample.key, *error)
        _check_finite_arrays(sample)
        validate_document(sample.key, document, parts=("meta",))
    _check_members(sample, decode=thorough)
    return document
