"""One sample = one frame: the `Sample` type, its JSON document and validation (schema v1).

The JSON Schema `schemas/sample-v1.json` (shipped as `liftdata/schemas/sample-v1.json`) is the
single source of truth for the JSON document stored with each sample::

    {"kinematics": {expression [E], jaw [3], neck [3], eyes [6], rotation [3], translation [3],
                    head_model, head_model_version},
     "camera": Camera.to_dict(),
     "meta": {source, capture_id, subject_id, clip, frame, sampler, lifter, seed,
              reference_keys, head_model, schema_version, [extra]}}

`validate_sample` adds what JSON Schema cannot say: finite numbers, meta.head_model equal to the
kinematics' head model, the key consistent with meta, and image members that are PNG/JPEG of
the camera's size (read from the PNG/JPEG header; `thorough=True` also decodes the pixels).

Maps are 8 bit: `shading` and `mask` grey [H, W], `normal` RGB [H, W, 3] (0.5 n + 0.5);
float maps in [0, 1] are quantized with round(x * 255) when encoded. PNG is lossless, so
encode -> decode -> encode is byte-exact.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import jsonschema
import numpy as np

from liftdata.errors import LiftdataError
from liftdata.kinematics import KINEMATIC_FIELDS, Camera, Kinematics, KinematicsError

__all__ = [
    "SCHEMA_VERSION", "SampleError", "Sample", "load_schema", "make_key", "parse_key", "make_meta",
    "validate_sample", "validate_document", "encode_png", "decode_png", "image_header",
]

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "sample-v1.json"
KEY_RE = re.compile(r"^([A-Za-z0-9_-]{1,128})/([0-9]{6})/([0-9]{3})$")
MAP_FIELDS = ("shading", "normal", "mask")
# Expected PNG channels per member (the image may also be JPEG with 3 components).
_CHANNELS = {"image": 3, "shading": 1, "normal": 3, "mask": 1}


class SampleError(LiftdataError, ValueError):
    """An invalid sample; the message names the sample key and the field path."""

    def __init__(self, key: Any, path: str, problem: str):
        super().__init__(f"sample {key!r}: {path}: {problem}")
        self.key, self.path, self.problem = key, path, problem


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON Schema of the sample document (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


DOCUMENT_PARTS = ("kinematics", "camera", "meta")


@lru_cache(maxsize=8)
def _validator(parts: tuple[str, ...] = DOCUMENT_PARTS) -> jsonschema.Draft202012Validator:
    """Validator of the document restricted to `parts` (same schema, `$defs` and all)."""
    schema = load_schema()
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
    """A schema-v1 `meta` dict for `key` (capture id, clip and frame are read from the key)."""
    capture_id, clip, frame = parse_key(key)
    meta = {
        "source": source, "capture_id": capture_id,
        "subject_id": capture_id if subject_id is None else subject_id, "clip": clip, "frame": frame,
        "sampler": None if sampler is None else dict(sampler), "lifter": None if lifter is None else dict(lifter),
        "seed": seed, "reference_keys": list(reference_keys),
        "head_model": {"id": kinematics.head_model, "version": kinematics.head_model_version},
        "schema_version": SCHEMA_VERSION,
    }
    if extra is not None:
        meta["extra"] = dict(extra)
    return meta


# ---------------------------------------------------------------------- PNG / JPEG
def encode_png(array: np.ndarray) -> bytes:  # [H, W] grey or [H, W, 3] RGB, uint8
    """Lossless PNG bytes of a uint8 grey or RGB array (cv2 wants BGR, hence the swap)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"cv2 could not encode an array of shape {array.shape} as PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 [H, W] (grey) or [H, W, 3] (RGB)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError("bytes do not decode as an image")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if array.ndim == 3 else array


def image_header(data: bytes) -> tuple[str, int, int, int]:
    """(format, width, height, channels) read from a PNG or JPEG header without decoding.

    PNG: 8-bit grey (1 channel) or RGB (3) only; other colour types / bit depths raise. The slow
    twin is `decode_png(data).shape`; tests compare the two.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        channels = {0: 1, 2: 3}.get(colour)
        if depth != 8 or channels is None:
            raise ValueError(f"PNG must be 8-bit grey or RGB, got bit depth {depth}, colour type {colour}")
        return "png", width, height, channels
    if data[:2] == b"\xff\xd8":
        return ("jpg", *_jpeg_size(data))
    raise ValueError("not a PNG or JPEG file")


def _jpeg_size(data: bytes) -> tuple[int, int, int]:
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 10 <= len(data):
            height, width, components = struct.unpack(">HHB", data[i + 5:i + 10])
            return width, height, components
        i += 2 + length
    raise ValueError("JPEG without a frame header")


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
        meta: schema-v1 meta dict (see `make_meta`).
        shading, normal, mask: encoded PNG condition maps of the image's size, or None.
    """

    key: str
    image: bytes
    kinematics: Kinematics
    camera: Camera
    meta: dict[str, Any]
    shading: bytes | None = None
    normal: bytes | None = None
    mask: bytes | None = None

    @classmethod
    def from_arrays(cls, key: str, image: np.ndarray, kinematics: Kinematics, camera: Camera,
                    meta: dict[str, Any], shading: np.ndarray | None = None, normal: np.ndarray | None = None,
                    mask: np.ndarray | None = None, jpeg_quality: int | None = None) -> Sample:
        """Encode arrays: image uint8 [H, W, 3] RGB; shading [H, W] or [H, W, 1]; normal [H, W, 3];
        mask [H, W] (bool, uint8 or float in [0, 1]). The image is PNG unless `jpeg_quality` is set."""
        rgb = _to_uint8(key, "image", image, 3)
        if jpeg_quality is None:
            encoded = encode_png(rgb)
        else:
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])[1].tobytes()
        maps = {name: None if a is None else encode_png(_to_uint8(key, name, a, _CHANNELS[name]))
                for name, a in (("shading", shading), ("normal", normal), ("mask", mask))}
        return cls(key, encoded, kinematics, camera, meta, **maps)

    @classmethod
    def from_document(cls, key: str, document: Mapping[str, Any], image: bytes, shading: bytes | None = None,
                      normal: bytes | None = None, mask: bytes | None = None) -> Sample:
        """A validated Sample from a stored JSON document and its encoded members."""
        parse_key(key)
        validate_document(key, document)
        kin = document["kinematics"]
        try:
            kinematics = Kinematics.from_dict({f: [kin[f]] if f in KINEMATIC_FIELDS else kin[f] for f in kin})
            camera = Camera.from_dict(document["camera"])
        except KinematicsError as e:  # what the schema cannot see, e.g. a non-rotation world_to_camera
            path, _, problem = str(e).partition(": ")
            raise SampleError(key, path, problem) from None
        sample = cls(key, image, kinematics, camera, dict(document["meta"]), shading, normal, mask)
        _check_members(sample, decode=False)
        return sample

    @property
    def image_ext(self) -> str:
        """'png' or 'jpg', from the image bytes."""
        return "jpg" if self.image[:2] == b"\xff\xd8" else "png"

    def document(self) -> dict[str, Any]:
        """The JSON document of this sample (kinematics flattened to one frame)."""
        k = self.kinematics
        kin: dict[str, Any] = {f: getattr(k, f)[0].tolist() for f in KINEMATIC_FIELDS}
        kin.update(head_model=k.head_model, head_model_version=k.head_model_version)
        return {"kinematics": kin, "camera": self.camera.to_dict(), "meta": self.meta}

    def to_arrays(self) -> dict[str, np.ndarray | None]:
        """Decoded uint8 arrays: image [H, W, 3] RGB, shading [H, W], normal [H, W, 3], mask [H, W]."""
        return {name: None if data is None else decode_png(data)
                for name, data in (("image", self.image), ("shading", self.shading),
                                   ("normal", self.normal), ("mask", self.mask))}

    def equals(self, other: Sample) -> bool:
        """Exact equality: bytes, arrays and meta."""
        return (self.key == other.key and self.kinematics.equals(other.kinematics)
                and self.camera.equals(other.camera) and self.meta == other.meta
                and all(getattr(self, n) == getattr(other, n) for n in ("image", *MAP_FIELDS)))


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


def validate_document(key: str, document: Any, parts: tuple[str, ...] = DOCUMENT_PARTS) -> None:
    """Check a sample's JSON document against schema v1 and the cross-field rules; every number
    must be finite. `parts` restricts the schema and finiteness checks to some top-level parts."""
    bad = _non_finite_path(document if parts == DOCUMENT_PARTS else {p: document[p] for p in parts})
    if bad is not None:
        raise SampleError(key, _format_path(bad), "not a finite number")
    error = jsonschema.exceptions.best_match(_validator(parts).iter_errors(document))
    if error is not None:
        raise _schema_error(key, error)
    kin, meta = document["kinematics"], document["meta"]
    if meta["head_model"] != {"id": kin["head_model"], "version": kin["head_model_version"]}:
        raise SampleError(key, "meta.head_model", f"{meta['head_model']} differs from the kinematics' head "
                                                  f"model {kin['head_model']!r} v{kin['head_model_version']}")
    expected = f"{meta['capture_id']}/{meta['clip']:06d}/{meta['frame']:03d}"
    if key != expected:
        raise SampleError(key, "key", f"does not match meta capture_id/clip/frame ({expected!r})")


def _check_members(sample: Sample, decode: bool) -> None:
    size = (sample.camera.width, sample.camera.height)
    for name in ("image", *MAP_FIELDS):
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
            raise SampleError(sample.key, name, "condition maps must be PNG")
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


def validate_sample(sample: Sample, thorough: bool = False) -> None:
    """Raise `SampleError` (naming key and field) unless `sample` is a valid schema-v1 sample.

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
    if thorough:
        validate_document(sample.key, sample.document())
    else:
        error = _typed_parts_error(k.n_expression, k.head_model, k.head_model_version, camera.width, camera.height)
        if error is not None:
            raise SampleError(sample.key, *error)
        _check_finite_arrays(sample)
        validate_document(sample.key, sample.document(), parts=("meta",))
    _check_members(sample, decode=thorough)
