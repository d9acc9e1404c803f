"""Dataset-building recipes: one YAML file says where the subject comes from, how to expand it and
where the dataset goes; `liftdata build RECIPE.yaml` runs it (see `recipes/`).

    input:            # exactly one of video | images | tracked | synthetic
      video: selfie.mp4               # paths are relative to the recipe file
      head_model: builtin             # or flame (+ flame: {model: PATH, embedding: PATH})
      max_frames: 600
    expand:
      n: 2000
      seed: 0
      size: 512                       # longer image side of the output
      include_captured: true
      sampler:                        # a sampler spec (below)
        mix:
          - {mine_extremes: {}, weight: 0.6}
          - {product: [{interpolate: {}}, {pose_sweep: {yaw: [-40, 40]}}], weight: 0.4}
      lifter: {name: warp}            # or {name: liftavatar, checkpoint: PATH, device: cuda, dtype: bfloat16}
    output:
      dir: out/selfie
      format: webdataset              # webdataset | parquet | vhap
      shard_size: 1000
      preview: true

Sampler specs: `{NAME: {params}}` with NAME one of `interpolate`, `mine_extremes`, `pose_sweep`
(the constructors in `liftdata.samplers`), or `{mix: [spec + weight, ...]}`,
`{concat: [spec, ...]}`, `{product: [expression spec, pose spec]}`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

__all__ = ["RecipeError", "load_recipe", "run_recipe", "sampler_from_spec", "apply_overrides"]


class RecipeError(ValueError):
    """A malformed recipe; the message names the recipe file and the key."""


def sampler_from_spec(spec: Any, where: str = "sampler") -> Any:
    """Build a sampler from its YAML spec (see the module docstring)."""
    from liftdata import samplers

    leaves = {"interpolate": samplers.interpolate, "mine_extremes": samplers.mine_extremes,
              "pose_sweep": samplers.pose_sweep}
    if not isinstance(spec, Mapping):
        raise RecipeError(f"{where}: expected a mapping like {{mine_extremes: {{}}}}, got {spec!r}")
    keys = [k for k in spec if k != "weight"]
    if len(keys) != 1:
        raise RecipeError(f"{where}: expected exactly one sampler name, got {keys}")
    name, value = keys[0], spec[keys[0]]
    if name in leaves:
        if not isinstance(value, (Mapping, type(None))):
            raise RecipeError(f"{where}.{name}: expected a mapping of parameters, got {value!r}")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in (value or {}).items()}
        try:
            return leaves[name](**params)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"{where}.{name}: {e}") from None
    if name in ("mix", "concat", "product"):
        if not isinstance(value, list) or not value:
            raise RecipeError(f"{where}.{name}: expected a non-empty list of sampler specs")
        parts = [sampler_from_spec(v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
        if name == "mix":
            return samplers.mix(parts, [float(v.get("weight", 1.0)) for v in value])
        if name == "product":
            if len(parts) != 2:
                raise RecipeError(f"{where}.product: expected [expression sampler, pose sampler]")
            return parts[0] * parts[1]
        result = parts[0]
        for p in parts[1:]:
            result = result + p
        return result
    raise RecipeError(f"{where}: unknown sampler {name!r}; choose from {sorted(leaves) + ['mix', 'concat', 'product']}")


def apply_overrides(recipe: dict, overrides: Sequence[str]) -> dict:
    """`["expand.n=64", "input.video=clip.mp4"]` -> a copy with those keys set (values parsed as YAML)."""
    out = copy.deepcopy(recipe)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected KEY.PATH=VALUE")
        path, value = item.split("=", 1)
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {item!r}: {p!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise RecipeError(f"--set {item!r}: value is not valid YAML ({e})") from None
    return out


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Read a recipe, apply `--set` overrides, resolve relative paths against the recipe's folder."""
    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe not found") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(recipe, dict) or not {"input", "expand", "output"} <= set(recipe):
        raise RecipeError(f"{path}: a recipe needs the sections input, expand and output")
    recipe = apply_overrides(recipe, overrides)
    for section in ("input", "expand", "output"):
        if not isinstance(recipe[section], dict):
            raise RecipeError(f"{path}: section {section!r} must be a mapping")
    if "n" not in recipe["expand"]:
        raise RecipeError(f"{path}: expand.n (the number of lifted frames) is required")
    base = path.resolve().parent
    for section, key in [("input", "video"), ("input", "images"), ("input", "tracked"), ("output", "dir")]:
        value = recipe[section].get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            recipe[section][key] = str(base / value)
    flame = recipe["input"].get("flame") or {}
    for key in ("model", "embedding"):
        if isinstance(flame.get(key), str) and not Path(flame[key]).is_absolute():
            flame[key] = str(base / flame[key])
    recipe["_path"] = str(path)
    return recipe


def _head_model(inp: Mapping[str, Any]) -> Any:
    from liftdata.head import load_head_model

    name = inp.get("head_model", "builtin")
    if name == "flame":
        flame = inp.get("flame") or {}
        if "model" not in flame:
            raise RecipeError("input.flame.model: the FLAME model file is required with head_model: flame")
        return load_head_model("flame", model_path=flame["model"], landmark_embedding=flame.get("embedding"))
    return load_head_model(name)


def open_dataset(inp: Mapping[str, Any], model: Any = None) -> Any:
    """The `LiftDataset` an `input:` section describes (`model`: its head model, if already loaded)."""
    from liftdata.dataset import LiftDataset

    kinds = [k for k in ("video", "images", "tracked", "synthetic") if k in inp]
    if len(kinds) != 1:
        raise RecipeError(f"input: give exactly one of video, images, tracked, synthetic (got {kinds})")
    kind = kinds[0]
    if kind == "synthetic":
        from liftdata.synthetic import make_capture

        spec = inp["synthetic"] or {}
        return LiftDataset(make_capture(spec.get("seed", 0), n_frames=spec.get("frames", 48), size=spec.get("size", 256)))
    model = _head_model(inp) if model is None else model
    if kind == "video":
        return LiftDataset.from_video(inp["video"], model, max_frames=inp.get("max_frames"), stride=inp.get("stride", 1))
    if kind == "images":
        return LiftDataset.from_images(inp["images"], model)
    return LiftDataset.from_tracked(inp["tracked"], model)


def run_recipe(recipe: Mapping[str, Any]) -> dict[str, str]:
    """Build the dataset a recipe describes; returns where things went."""
    from liftdata.lifters import load_lifter

    exp, out = recipe["expand"], recipe["output"]
    if "dir" not in out:
        raise RecipeError(f"{recipe.get('_path', 'recipe')}: output.dir is required")
    fmt, target = out.get("format", "webdataset"), Path(out["dir"])
    if fmt not in ("webdataset", "parquet", "vhap"):  # checked before the (slow) tracking
        raise RecipeError(f"output.format: expected webdataset, parquet or vhap, got {fmt!r}")
    inp = recipe["input"]
    if "video" in inp or "images" in inp:  # track once into output.dir/capture/ (resume, several processes)
        from liftdata.dataset import input_fingerprint, track_once

        model = _head_model(inp)
        fingerprint = input_fingerprint(inp.get("video") or inp.get("images"),
                                        head_model=inp.get("head_model", "builtin"),
                                        max_frames=inp.get("max_frames"), stride=inp.get("stride", 1))
        dataset = track_once(target / "capture", fingerprint, lambda: open_dataset(inp, model), model)
    else:
        dataset = open_dataset(inp)
    lifter_spec = exp.get("lifter") or {"name": "warp"}
    lifter = load_lifter(lifter_spec.get("name", "warp"), lifter_spec.get("checkpoint"),
                         device=lifter_spec.get("device", "auto"), torch_dtype=lifter_spec.get("dtype"))
    sampler = sampler_from_spec(exp["sampler"], "expand.sampler") if exp.get("sampler") else None
    expansion = dataset.expand(exp["n"], sampler, lifter, seed=exp.get("seed", 0), size=exp.get("size"),
                               include_captured=exp.get("include_captured", True))
    written: dict[str, str] = {}
    if fmt == "vhap":
        written["dataset"] = str(expansion.write_vhap(target / "vhap"))
    else:
        write = expansion.write_webdataset if fmt == "webdataset" else expansion.write_parquet
        result = write(target / fmt, max_count=out.get("shard_size", 1000))
        written["dataset"] = str(result.out_dir)
    from liftdata.dataset import process_rank

    if out.get("preview", True) and process_rank()[0] == 0:  # one preview in a multi-process run
        written["preview"] = str(expansion.preview(target / "preview"))
    return written
