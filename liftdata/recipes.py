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

Every key is an `ExpandConfig` field (`liftdata.config`); an unknown key is an error naming it
and the closest valid one, and `liftdata build` runs the same function as `liftdata expand`
(`liftdata.run.run_expand`).

Sampler specs: `{NAME: {params}}` with NAME one of `interpolate`, `mine_extremes`, `pose_sweep`
(the constructors in `liftdata.samplers`), or `{mix: [spec + weight, ...]}`,
`{concat: [spec, ...]}`, `{product: [expression spec, pose spec]}`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from liftdata.config import ConfigError, ExpandConfig, recipe_paths, resolve_paths
from liftdata.errors import LiftdataError

__all__ = ["RecipeError", "load_recipe", "recipe_config", "run_recipe", "sampler_from_spec", "apply_overrides"]


class RecipeError(LiftdataError, ValueError):
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
    """Read a recipe and apply `--set` overrides; every key is checked against `ExpandConfig`
    (an unknown key is a `RecipeError` naming it and the closest valid one)."""
    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a directory, not a recipe file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text (YAML) file") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(recipe, dict) or not {"input", "expand", "output"} <= set(recipe):
        raise RecipeError(f"{path}: a recipe needs the sections input, expand and output")
    recipe = apply_overrides(recipe, overrides)
    for section in ("input", "expand", "output"):
        if not isinstance(recipe[section], dict):
            raise RecipeError(f"{path}: section {section!r} must be a mapping")
    if "n" not in recipe["expand"]:
        raise RecipeError(f"{path}: expand.n (the number of lifted frames) is required")
    recipe["_path"] = str(path)
    recipe_config(recipe)  # check every key and value now, before any work
    return recipe


def recipe_config(recipe: Mapping[str, Any]) -> ExpandConfig:
    """The `ExpandConfig` of a loaded recipe, relative paths resolved against the recipe's folder."""
    where = recipe.get("_path", "recipe")
    paths = {name: path for path, name in recipe_paths().items()}
    try:
        config = ExpandConfig.from_recipe(recipe, where)
    except ConfigError as e:
        message = str(e)
        field_name = message.split(":", 1)[0]
        if field_name in paths:  # "n: expected ..." -> "recipe.yaml: expand.n: expected ..."
            message = f"{paths[field_name]}{message[len(field_name):]}"
        raise RecipeError(message if message.startswith(f"{where}:") else f"{where}: {message}") from None
    if config.out is None:
        raise RecipeError(f"{where}: output.dir is required")
    if config.sampler is not None:
        try:
            sampler_from_spec(config.sampler, "expand.sampler")
        except RecipeError as e:
            raise RecipeError(f"{where}: {e}") from None
    base = Path(where).resolve().parent if "_path" in recipe else Path.cwd()
    return resolve_paths(config, base)


def run_recipe(recipe: Mapping[str, Any], overwrite: bool = False) -> dict[str, str]:
    """Build the dataset a recipe describes (`liftdata.run.run_expand`); returns where things went."""
    from liftdata.run import run_expand

    result = run_expand(recipe_config(recipe), overwrite=overwrite)
    return {"dataset": str(result.dataset), **({"preview": str(result.preview)} if result.preview else {})}
