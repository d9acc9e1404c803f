"""The dataset card (README.md with Hugging Face YAML metadata) and license note of a written dataset.

The card declares the dataset's `features` (`dataset_info`), so `datasets.load_dataset(DIR)` and
the Hub viewer take the column types from it instead of inferring them from the first samples:
kinematics as float32 lists, the camera, the schema-v2 meta struct, one image column per member
the samples have. Its `configs` point at the shards, so `load_dataset(DIR)` needs no arguments.

License: the frames derive from the user's own video, whose license liftdata cannot know; the
card says so (`license: other`, `license_name: source-footage`, `license_link: LICENSE.md`) and
`LICENSE.md`, written next to it, explains what to set before publishing.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dataset_card", "license_note", "card_features", "LICENSE_FILE"]

LICENSE_FILE = "LICENSE.md"
_MEMBER_NAMES = {"png": "image", "jpg": "image", "shading.png": "shading", "normal.png": "normal",
                 "mask.png": "mask", "alpha.png": "alpha"}


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((label for bound, label in bounds if n < bound), "1M<n<10M")


def card_features(manifest: dict[str, Any]) -> Any:
    """The `datasets.Features` of the dataset as `load_dataset` gives it back.

    Parquet: the shards' own `FEATURES`. WebDataset: one `Image()` column per member of the
    samples (`manifest["members"]`, e.g. `png`, `shading.png`), the `json` document as a struct
    with the Parquet types, `__key__` and `__url__`.
    """
    from datasets import Features, Image, Value

    from liftdata.io.parquet import CAMERA_FEATURES, FEATURES, KINEMATICS_FEATURES, META_FEATURES

    if manifest["format"] == "parquet":
        return FEATURES
    members = manifest.get("members") or ["png"]
    return Features({**{m: Image() for m in members},
                     "json": {"kinematics": KINEMATICS_FEATURES, "camera": CAMERA_FEATURES, "meta": META_FEATURES},
                     "__key__": Value("string"), "__url__": Value("string")})


def _front_matter(manifest: dict[str, Any]) -> dict[str, Any]:
    from datasets import DatasetInfo

    front: dict[str, Any] = {
        "pretty_name": f"{manifest['name']} (liftdata)",
        "license": "other",  # the license of the user's source footage, which liftdata cannot know
        "license_name": "source-footage",
        "license_link": LICENSE_FILE,
        "tags": ["liftdata", "3d-head-avatar", "gaussian-splatting", "faces", "synthetic", manifest["format"]],
        "task_categories": ["image-to-image"],
        "size_categories": [_size_category(manifest["n_samples"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": manifest["shards_glob"]}]}],
    }
    if manifest.get("schema_version") != "1":  # v1 documents have no fixed shape to declare
        front["dataset_info"] = {"config_name": "default",
                                 **DatasetInfo(features=card_features(manifest))._to_yaml_dict()}
    return front


def _load_snippet(manifest: dict[str, Any]) -> str:
    if manifest["format"] == "webdataset":
        return f"""```python
from datasets import load_dataset
ds = load_dataset("webdataset", data_files="{manifest['shards_glob']}")["train"]  # in this directory
row = ds[0]  # row["png"]: PIL image; row["json"]["meta"]["source"]: "captured" | "lifted"
```"""
    return """```python
from datasets import load_dataset
ds = load_dataset("parquet", data_dir=".")["train"]  # in this directory
row = ds[0]  # row["image"]: PIL image; row["meta"]["source"]: "captured" | "lifted"
```"""


def dataset_card(manifest: dict[str, Any]) -> str:
    """README.md with Hugging Face YAML front matter for a finished dataset."""
    fmt, name, version = manifest["format"], manifest["name"], manifest["schema_version"]
    counts = ""
    if manifest.get("n_captured") is not None:
        counts = f" ({manifest['n_captured']} captured, {manifest['n_lifted']} lifted)"
    members = ", ".join(_MEMBER_NAMES.get(m, m) for m in manifest.get("members") or [])
    body = f"""# {name}

Training frames for 3D Gaussian head avatars, written by {manifest["generator"]}: captured frames
of a face video plus frames *lifted* to novel expressions and poses (LiftAvatar kinematic-space
completion).

- {manifest["n_samples"]} samples{counts} in {len(manifest["shards"])} {fmt} shard(s), sample schema
  v{version} (`schemas/sample-v{version}.json` in liftdata).
- One sample = one frame, key `{{capture}}/{{clip:06d}}/{{frame:03d}}`; members: {members or "none"}.
  `image` is RGB, `shading`/`normal` (0.5 n + 0.5)/`mask` are condition maps of the head model,
  `alpha` the foreground matte; the JSON document holds the head-model `kinematics`, the OpenCV
  `camera` and `meta` (captured or lifted, sampler, lifter, seed, reference keys). In `meta`,
  `sampler.params` and `extra` are JSON texts (`json.loads`); captured frames have empty
  sampler/lifter names and seed -1.
- `manifest.json` lists the shards with their sample counts and sha256 (`liftdata verify`).

Load with `datasets`, or with `liftdata.io.read_{fmt}("<this directory>")`:

{_load_snippet(manifest)}

`load_dataset("<this directory>")` reads it too (the card's `configs` and `dataset_info`).

## License

See [{LICENSE_FILE}]({LICENSE_FILE}): the frames derive from the source video, and its license
applies. Set `license` here before publishing.
"""
    return "---\n" + yaml.safe_dump(_front_matter(manifest), sort_keys=False) + "---\n\n" + body


def license_note(manifest: dict[str, Any]) -> str:
    """LICENSE.md: what the card's `license: other` stands for."""
    return f"""# License of {manifest["name"]}

This dataset was written by {manifest["generator"]} from a video or photos supplied by whoever
ran it. Every captured frame is a frame of that footage, and every lifted frame is derived from
it (generated from reference frames of the footage). liftdata does not know the footage's
license: the rights in this dataset are those of the source footage (and of the people shown in
it), together with the terms of the lifter's weights where a pretrained lifter was used.

Before publishing, replace `license: other` in README.md with the license of the source footage
(for example `cc-by-4.0`, if the footage is yours and you choose that license) and update this
file.
"""
