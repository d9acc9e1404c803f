"""`ExpandConfig`: every setting that shapes a dataset, in one typed place.

The command line (`liftdata expand`), recipes (`liftdata build`) and the API all build one, and
`liftdata.run.run_expand(config)` runs it. Its *identity* fields (`ExpandConfig.identity()`) are
recorded in the dataset's manifest and in-progress state; a rerun into the same directory with
another identity is refused with one line naming the fields that differ (`--overwrite` starts
over). Runtime-only fields (output directory, device, preview) are not part of the identity.

Recipes are the same fields grouped in three sections; each field's recipe path is
`{section}.{key}` (`input.video`, `input.flame.model`, `expand.n`, `expand.lifter.name`,
`output.dir`, ...). An unknown recipe key is an error naming the key and the closest valid one.

Adding a setting: add a field below with `_field(default, section, key=None, identity=True)`
and an attribute docstring; check its value in `_check_fields` (raise `ConfigError` naming the
field); read it where it is used (`liftdata.run`). The CLI option, recipe key, manifest record
and rerun check then follow from the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from liftdata.errors import ConfigError

__all__ = ["ExpandConfig", "ConfigError", "FORMATS", "HEAD_MODELS", "LIFTERS", "MAX_SIZE", "MAX_SEED",
           "recipe_paths", "checkpoint_digest", "resolve_paths"]

FORMATS = ("webdataset", "parquet", "vhap")
VHAP_SPLITS = ("auto", "none", "source", "extremes", "last30", "last350", "last500")  #: liftdata.io.vhap.SPLIT_RULES
VHAP_BACKGROUNDS = ("white", "black", "keep")  #: liftdata.io.vhap.BACKGROUNDS
HEAD_MODELS = ("builtin", "flame")
TRACKING_MODES = ("photometric", "landmarks")  #: = liftdata.track.TRACKING_MODES (kept import-light)
LIFTERS = ("warp", "liftavatar")
INPUT_KINDS = ("video", "images", "tracked", "synthetic")
GATE_POLICIES = ("resample", "drop", "off")  #: = liftdata.lifters.quality.GATE_POLICIES (kept import-light)
MAX_SIZE = 4096  #: largest output side: one 4096² frame with its maps is ~0.2 GB in the lifter; more is a typo
MIN_CROP = 64  #: smallest head-crop side (pixels): the tracker refuses faces under 64 px
AUTO_CROP = 512  #: crop "auto": the output side (INSTA / metrical-tracker's 512), unless the box is smaller
MAX_SEED = 2**63 - 1  #: numpy seeds are non-negative integers


def _field(default: Any, section: str, key: str | None = None, identity: bool = True) -> Any:
    """A config field: its recipe path is `section.key` (key defaults to the field name)."""
    return field(default=default, metadata={"section": section, "key": key, "identity": identity})


@dataclass(frozen=True)
class ExpandConfig:
    """Everything that shapes an expanded dataset (see the module docstring)."""

    # ---------------------------------------------------------------- input (exactly one kind)
    video: str | None = _field(None, "input")
    """A video file to track."""
    images: str | list[str] | None = _field(None, "input")
    """An image, a folder of images, or a list of image files of one subject to track."""
    tracked: str | None = _field(None, "input")
    """A saved liftdata capture or a VHAP/GaussianAvatars directory (FLAME)."""
    synthetic: dict | None = _field(None, "input")
    """A synthetic subject with ground truth: {seed, frames, size} (tests, demos, benchmarks)."""
    head_model: str = _field("builtin", "input")
    """`builtin` (no download) or `flame` (needs `flame_model`)."""
    flame_model: str | None = _field(None, "input", "flame.model")
    """FLAME .pkl/.npz file (with head_model: flame)."""
    flame_embedding: str | None = _field(None, "input", "flame.embedding")
    """mediapipe_landmark_embedding.npz (with head_model: flame)."""
    max_frames: int | None = _field(None, "input")
    """Use at most this many video frames."""
    stride: int = _field(1, "input")
    """Use every k-th video frame."""
    subject: int = _field(0, "input")
    """Which person of a video to keep: 0 = the one with most frames (`liftdata track` lists them)."""
    tracking: str = _field("photometric", "input")
    """How a video or images are tracked: "photometric" (landmark fit, then the head pose refined
    against the face's own texture; more accurate, ~0.3 s per frame on one CPU thread, ~50x the
    landmark fit) or "landmarks" (the landmark fit alone)."""
    camera: int | None = _field(None, "input")
    """A VHAP input with several cameras: the `camera_index` to expand (a capture is one camera; a
    multi-camera folder is refused without it)."""

    # ---------------------------------------------------------------- expansion
    n: int = _field(None, "expand")
    """Lifted frames to synthesize (required, > 0)."""
    seed: int = _field(0, "expand")
    """Plan and lifter seed: the same seed gives the same dataset."""
    size: int | None = _field(None, "expand")
    """Longer image side of the output (default: the input's)."""
    crop: int | str | None = _field("auto", "expand")
    """Head-centred square crop (INSTA-style: 2.5 x the face size, one box for the whole capture,
    intrinsics adjusted so the kinematics stay exact), resized to this side in pixels. `auto`
    (default): for a video or images (and a capture liftdata tracked from them), side `AUTO_CROP`
    (512), or the box's own side when that is smaller (no upsampling); a VHAP folder or a synthetic
    input keeps its framing. `none` keeps the
    input's framing. Captured and lifted frames share it."""
    include_captured: bool = _field(True, "expand")
    """Write the captured frames before the lifted ones."""
    sampler: dict | None = _field(None, "expand")
    """A sampler spec (`liftdata.recipes.sampler_from_spec`); None: the default mix."""
    lifter: str = _field("warp", "expand", "lifter.name")
    """`warp` (no weights) or `liftavatar` (needs `checkpoint`)."""
    checkpoint: str | None = _field(None, "expand", "lifter.checkpoint")
    """liftavatar checkpoint directory."""
    dtype: str | None = _field(None, "expand", "lifter.dtype")
    """liftavatar transformer dtype (float32, bfloat16, float16)."""
    device: str = _field("auto", "expand", "lifter.device", identity=False)
    """liftavatar torch device (auto: cuda when available)."""
    quality_gate: str = _field("resample", "expand", "quality.gate")
    """Lifted frames whose quality score is under `quality_threshold`: `resample` (replaced by
    freshly planned frames that pass, so n is honoured; after `GATE_ROUNDS` rounds the best
    candidate is kept and flagged), `drop` (not written, counted) or `off` (kept). The score is
    recorded in every lifted sample's `meta.extra.quality` whatever the policy."""
    quality_threshold: float = _field(0.425, "expand", "quality.threshold")
    """Quality score in [0, 1] a lifted frame must reach (default: `lifters.quality.QUALITY_THRESHOLD`,
    calibrated against ground-truth PSNR on synthetic subjects)."""
    pose_support: float | None = _field(25.0, "expand")
    """Default sampler only: no frame is planned farther than this many degrees from the nearest
    captured head pose (none: the sampler's ranges as they are). A sampler spec sets its own."""
    matte: bool | None = _field(None, "expand")
    """Foreground alpha for every sample (`{key}.alpha.png`): mediapipe's selfie matte refined with
    the head model's mask; none (auto): on when mediapipe (the `track` extra) is installed."""
    keep_unfit: bool = _field(False, "expand")
    """Also write captured frames without a face or with an outlier fit (flagged in
    `meta.extra.fit`); they are never references either way."""

    # ---------------------------------------------------------------- output
    out: str | None = _field(None, "output", "dir", identity=False)
    """Output directory: `out/{format}/` holds the dataset, `out/capture/` the tracked capture."""
    format: str = _field("webdataset", "output")
    """webdataset | parquet | vhap."""
    shard_size: int = _field(1000, "output")
    """Samples per shard."""
    preview: bool = _field(True, "output", identity=False)
    """Write `out/preview/` (contact sheet, coverage plot, index.html)."""
    split: str = _field("auto", "output", identity=False)
    """vhap format: which captured frames go to transforms_test.json: auto (a VHAP input's own
    splits, else none) | none | source | extremes (10% most extreme, as `avatar compare`) | last30
    | last350 | last500. Lifted frames are train. Recorded by the VHAP writer, not the manifest."""
    background: str = _field("white", "output", identity=False)
    """vhap format: images composited on white | black | keep (GaussianAvatars' data is white)
    with the matte written to fg_masks/. Recorded by the VHAP writer."""

    def __post_init__(self) -> None:
        _check_fields(self)

    # ---------------------------------------------------------------- views
    @property
    def input_kind(self) -> str | None:
        """Which input field is set (None when the capture comes from the API)."""
        kinds = [k for k in INPUT_KINDS if getattr(self, k) is not None]
        return kinds[0] if kinds else None

    @property
    def input_path(self) -> str | list[str] | None:
        kind = self.input_kind
        return None if kind in (None, "synthetic") else getattr(self, kind)

    def identity(self) -> dict[str, Any]:
        """The fields that make a dataset what it is, JSON-safe: recorded in its manifest."""
        fields = {f.name: _json(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata["identity"]}
        if self.checkpoint is not None and Path(self.checkpoint).is_dir():
            fields["checkpoint_digest"] = checkpoint_digest(self.checkpoint)
        return fields

    def replace(self, **changes: Any) -> ExpandConfig:
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- recipes
    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], where: str = "recipe") -> ExpandConfig:
        """The config a recipe mapping ({input, expand, output}) describes; unknown keys are errors."""
        if not isinstance(recipe, Mapping):
            raise ConfigError(f"{where}: expected a mapping with the sections input, expand, output")
        paths = recipe_paths()
        values: dict[str, Any] = {}
        _collect(recipe, "", paths, values, where)
        return cls(**values)

    def to_recipe(self) -> dict[str, Any]:
        """The recipe mapping of this config (inverse of `from_recipe`; None values left out)."""
        out: dict[str, Any] = {}
        for path, name in recipe_paths().items():
            value = getattr(self, name)
            if value is None:
                continue
            node = out
            *parents, leaf = path.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out


def recipe_paths() -> dict[str, str]:
    """Recipe path (`expand.lifter.name`) -> field name (`lifter`), for every field."""
    return {f"{f.metadata['section']}.{f.metadata['key'] or f.name}": f.name for f in dataclasses.fields(ExpandConfig)}


def _collect(node: Mapping[str, Any], prefix: str, paths: dict[str, str], values: dict[str, Any], where: str) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if path in paths:
            values[paths[path]] = value
        elif any(p.startswith(path + ".") for p in paths):
            if value is None:
                continue  # an empty section
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {path} must be a mapping (keys: "
                                  f"{', '.join(p[len(path) + 1:] for p in paths if p.startswith(path + '.'))})")
            _collect(value, path + ".", paths, values, where)
        elif not str(key).startswith("_"):  # "_path" and the like: bookkeeping, not settings
            raise ConfigError(f"{where}: unknown key {path}{_suggest(path, prefix, paths)}")


def _suggest(path: str, prefix: str, paths: dict[str, str]) -> str:
    """"; did you mean X?" (a close key of the same section, or the same key in another one), else the valid keys."""
    siblings = {p[len(prefix):].split(".")[0] for p in paths if p.startswith(prefix)}
    leaf = path[len(prefix):]
    close = difflib.get_close_matches(leaf, sorted(siblings), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {prefix}{close[0]}?"
    elsewhere = [p for p in paths if p.endswith("." + leaf)]
    if elsewhere:
        return f"; did you mean {elsewhere[0]}?"
    return f"; valid keys in {prefix.rstrip('.') or 'a recipe'}: {', '.join(sorted(siblings))}"


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------- checks
def _int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def valid_crop(value: Any) -> bool:
    """A head-crop setting: None, "auto", or a side in [MIN_CROP, MAX_SIZE] pixels."""
    return value in (None, "auto") or (_int(value) and MIN_CROP <= value <= MAX_SIZE)


def _check_fields(c: ExpandConfig) -> None:
    """Raise ConfigError naming the first field with an invalid value (no file-system access)."""
    def bad(name: str, expected: str) -> ConfigError:
        return ConfigError(f"{name}: expected {expected}, got {getattr(c, name)!r}")

    if not (_int(c.n) and c.n > 0):
        raise bad("n", "a positive integer (the number of lifted frames)")
    if not (_int(c.seed) and 0 <= c.seed <= MAX_SEED):
        raise bad("seed", f"an integer in [0, {MAX_SEED}]")
    if c.size is not None and not (_int(c.size) and 0 < c.size <= MAX_SIZE):
        raise bad("size", f"a positive integer up to {MAX_SIZE} (pixels), or none")
    if not valid_crop(c.crop):
        raise bad("crop", f"an integer in [{MIN_CROP}, {MAX_SIZE}] (pixels), auto or none")
    for name in ("stride", "shard_size"):
        if not (_int(getattr(c, name)) and getattr(c, name) > 0):
            raise bad(name, "a positive integer")
    if not (_int(c.subject) and c.subject >= 0):
        raise bad("subject", "a non-negative integer (0: the person with most frames)")
    if c.camera is not None and not (_int(c.camera) and c.camera >= 0):
        raise bad("camera", "a non-negative integer (a VHAP camera_index), or none")
    if c.camera is not None and c.input_kind not in (None, "tracked"):
        raise ConfigError(f"camera: only a VHAP (tracked) input has cameras to pick from, the input is {c.input_kind}")
    if c.split not in VHAP_SPLITS:
        raise bad("split", f"one of {', '.join(VHAP_SPLITS)}")
    if c.background not in VHAP_BACKGROUNDS:
        raise bad("background", f"one of {', '.join(VHAP_BACKGROUNDS)}")
    if c.split == "source" and c.input_kind not in (None, "tracked"):
        raise ConfigError(f"split: source keeps a VHAP input's own splits, the input is {c.input_kind}")
    if c.format != "vhap" and (c.split, c.background) != ("auto", "white"):
        raise ConfigError(f"split/background: only the vhap format has splits and a background, the format is "
                          f"{c.format}")
    if c.max_frames is not None and not (_int(c.max_frames) and c.max_frames > 0):
        raise bad("max_frames", "a positive integer or none")
    if c.quality_gate not in GATE_POLICIES:
        raise bad("quality_gate", f"one of {', '.join(GATE_POLICIES)}")
    if not (isinstance(c.quality_threshold, numbers.Real) and not isinstance(c.quality_threshold, bool)
            and 0.0 <= c.quality_threshold <= 1.0):
        raise bad("quality_threshold", "a score in [0, 1]")
    if c.pose_support is not None and not (isinstance(c.pose_support, numbers.Real)
                                           and not isinstance(c.pose_support, bool) and 0 < c.pose_support <= 180):
        raise bad("pose_support", "degrees in (0, 180], or none")
    if c.matte is not None and not isinstance(c.matte, bool):
        raise bad("matte", "true, false or none (auto)")
    for name in ("include_captured", "preview", "keep_unfit"):
        if not isinstance(getattr(c, name), bool):
            raise bad(name, "true or false")
    for name, choices in (("format", FORMATS), ("head_model", HEAD_MODELS), ("lifter", LIFTERS),
                          ("tracking", TRACKING_MODES)):
        if getattr(c, name) not in choices:
            raise bad(name, f"one of {', '.join(choices)}")
    if c.dtype not in (None, "float32", "bfloat16", "float16"):
        raise bad("dtype", "float32, bfloat16 or float16")
    kinds = [k for k in INPUT_KINDS if getattr(c, k) is not None]
    if len(kinds) > 1:
        raise ConfigError(f"input: give exactly one of {', '.join(INPUT_KINDS)} (got {' and '.join(kinds)})")
    for name in ("video", "tracked", "flame_model", "flame_embedding", "checkpoint", "out"):
        if getattr(c, name) is not None and not isinstance(getattr(c, name), str):
            raise bad(name, "a path")
    if c.images is not None and not (isinstance(c.images, str) or (
            isinstance(c.images, (list, tuple)) and c.images and all(isinstance(p, str) for p in c.images))):
        raise bad("images", "a path or a non-empty list of paths")
    if c.synthetic is not None and not isinstance(c.synthetic, Mapping):
        raise bad("synthetic", "a mapping like {seed: 0, frames: 48, size: 256}")
    if c.sampler is not None and not isinstance(c.sampler, Mapping):
        raise bad("sampler", "a sampler spec mapping like {mine_extremes: {}}")
    if c.head_model == "flame" and c.flame_model is None and c.input_kind not in (None, "synthetic"):
        raise ConfigError("flame_model: head_model flame needs the FLAME model file "
                          "(--flame-model PATH, or input.flame.model in a recipe)")
    if c.format == "vhap" and (c.head_model != "flame" or c.input_kind == "synthetic"):
        model = "builtin (a synthetic input)" if c.input_kind == "synthetic" else c.head_model
        raise ConfigError(f"format: vhap holds FLAME parameters (the VHAP/GaussianAvatars layout), the head model is "
                          f"{model}; use --head-model flame with --flame-model and --flame-embedding, or another "
                          f"format")
    if c.lifter == "liftavatar" and c.checkpoint is None:
        raise ConfigError("checkpoint: the liftavatar lifter needs a checkpoint directory (--checkpoint PATH)")
    if c.lifter == "warp" and c.checkpoint is not None:
        raise ConfigError("checkpoint: the warp lifter has no checkpoint; drop it or use lifter liftavatar")


def resolve_paths(config: ExpandConfig, base: str | Path) -> ExpandConfig:
    """A copy with the relative paths (input, FLAME files, checkpoint, output) resolved against `base`."""
    base = Path(base)

    def absolute(p: Any) -> Any:
        if isinstance(p, (list, tuple)):
            return [absolute(x) for x in p]
        return p if p is None or Path(p).is_absolute() else str((base / p).resolve())

    return config.replace(**{name: absolute(getattr(config, name)) for name in
                             ("video", "images", "tracked", "flame_model", "flame_embedding", "checkpoint", "out")})


def checkpoint_digest(directory: str | Path) -> str:
    """A cheap digest of a checkpoint directory: every file's relative path and size, and the
    contents of the small ones (configs); weights are named by path and size, not read."""
    h = hashlib.sha256()
    root = Path(directory)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(root)}\0{size}\0".encode())
        if size < 1 << 20:
            h.update(f.read_bytes())
    return h.hexdigest()
