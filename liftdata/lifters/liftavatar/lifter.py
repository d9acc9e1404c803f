"""`LiftAvatarLifter`: the `Lifter` protocol on top of `LiftAvatarPipeline`.

Turns `References` / `Conditions` (numpy images, maps dict, `Kinematics`) into the pipeline's
tensors: maps [N, 4, H, W] = shading + normal, coefficients [N, C] = expression, jaw, neck, eyes,
rotation, translation. Frame sizes that are not multiples of 16 are resized for the model and
back; clips whose length is not 4n + 1 are padded with their last driving frame and cropped.

Checkpoints trained with warp guidance get the warp lifter's frames and confidence
(`guidance.warp_guidance`), and by default their output is blended with the warp by that
confidence (`warp_blend`). With a frame-wise autoencoder (temporal factor 1) the clip is lifted
`clip_frames` frames per pipeline call (default: the `num_frames` the checkpoint was trained on,
from its `training_config.json`), each call with the same seed.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from liftdata.kinematics import KINEMATIC_FIELDS, Kinematics
from liftdata.lifters.base import Conditions, References
from liftdata.lifters.liftavatar.pipeline import LOADING_OPTIONS, LiftAvatarPipeline, resolve_pretrained

__all__ = ["LiftAvatarLifter", "pack_coefficients", "pack_maps", "coefficient_dim"]


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def coefficient_dim(n_expression: int) -> int:
    """Width of `pack_coefficients` for a head model with `n_expression` coefficients."""
    return n_expression + sum(w for w in KINEMATIC_FIELDS.values() if w is not None)


def pack_coefficients(kinematics: Kinematics) -> torch.Tensor:  # [N, coefficient_dim(E)]
    """Expression, jaw, neck, eyes, rotation, translation of each frame, concatenated."""
    return torch.from_numpy(np.concatenate([getattr(kinematics, f) for f in KINEMATIC_FIELDS], axis=1))


def pack_maps(maps: dict[str, torch.Tensor]) -> torch.Tensor:  # [N, 4, H, W] in [0, 1]
    """Shading [N, H, W, 1] and normal [N, H, W, 3] maps as one channels-first tensor."""
    return torch.cat([maps["shading"], maps["normal"]], dim=-1).permute(0, 3, 1, 2).float()


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # [N, C, H, W] -> [N, C, *size]
    if tuple(x.shape[-2:]) == size:
        return x
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


class LiftAvatarLifter:
    """The paper's lifter: a trained `LiftAvatarPipeline` behind `lift(references, driving)`."""

    name = "liftavatar"
    version = "1"

    def __init__(self, pipeline: LiftAvatarPipeline, num_inference_steps: int = 30, guidance_scale: float = 1.0,
                 warp_blend: bool = True, clip_frames: int | None = None, num_samples: int = 1):
        if not (isinstance(num_samples, int) and not isinstance(num_samples, bool) and num_samples >= 1):
            raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")
        self.pipeline = pipeline
        # per-clip step bars under expand's own bar; off when stderr is not a terminal (a log file),
        # where a closing nested bar writes cursor-up escapes (ESC[A) into the log
        pipeline.set_progress_bar_config(leave=False, disable=None)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.warp_blend = warp_blend
        self.clip_frames = clip_frames
        #: each frame is the mean of this many samples (initial noises seeded `seed`, then
        #: `(seed, 1)`, `(seed, 2)`, ...): the estimate with the least expected squared error, at
        #: `num_samples` times the time; detail the samples disagree on (what no reference shows)
        #: comes out smoother instead of as one sample's noise
        self.num_samples = num_samples

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "auto",
                        torch_dtype: torch.dtype | str | None = None, **options) -> LiftAvatarLifter:
        """Load a pipeline saved by `liftdata train-lifter` (or `LiftAvatarPipeline.save_pretrained`).

        path: a local folder or a Hub repo id; the loading options of `LiftAvatarPipeline.from_pretrained`
        (revision, cache_dir, token, local_files_only, force_download, use_safetensors, variant) pass
        through, the other `options` are this class's (num_inference_steps, guidance_scale, ...).
        device: "auto" = CUDA when available (GPU LOCAL_RANK in a multi-process run), else CPU.
        torch_dtype (or `dtype`, diffusers' newer name): the transformer's dtype
        (a torch dtype or its name, e.g. "bfloat16"; norms, RoPE and time embedding stay float32).

        A checkpoint may carry its own sampling defaults in `lifter_config.json` (`SAMPLING_KEYS`:
        e.g. `{"num_inference_steps": 1}` for a sample-prediction model measured at one step); an
        option passed here wins over it, and it wins over this class's defaults.
        """
        if device == "auto":  # one GPU per process under torchrun / accelerate launch
            device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
        dtype = options.pop("dtype", None)  # diffusers' newer name for torch_dtype
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise ValueError(f"dtype / torch_dtype: two names for one option, got {dtype} and {torch_dtype}")
        torch_dtype = torch_dtype if dtype is None else dtype
        if isinstance(torch_dtype, str):
            if torch_dtype not in DTYPES:
                raise ValueError(f"torch_dtype: expected one of {sorted(DTYPES)}, got {torch_dtype!r}")
            torch_dtype = DTYPES[torch_dtype]
        unknown = sorted(set(options) - (set(inspect.signature(cls.__init__).parameters) - {"self", "pipeline"})
                        - set(LOADING_OPTIONS))
        if unknown:
            raise ValueError(f"LiftAvatarLifter.from_pretrained: unsupported option(s) {unknown}")
        loading = {k: options.pop(k) for k in LOADING_OPTIONS if k in options}
        weights = {k: loading.pop(k) for k in ("use_safetensors", "variant", "trust_remote_code") if k in loading}
        path = resolve_pretrained(path, use_safetensors=weights.get("use_safetensors"), **loading)
        trained = path / "training_config.json"
        if "clip_frames" not in options and trained.is_file():
            options["clip_frames"] = json.loads(trained.read_text()).get("num_frames")
        options = {**_sampling_defaults(path / LIFTER_CONFIG), **options}
        return cls(LiftAvatarPipeline.from_pretrained(path, torch_dtype=torch_dtype, **weights).to(device), **options)

    def lift(self, references: References, driving: Conditions, *, seed: int = 0) -> np.ndarray:
        """One clip: [F, H, W, 3] uint8 RGB frames at the driving camera's size."""
        self._check_inputs(references)
        guided = self.pipeline.transformer.config.warp_guidance
        return self._lift(references, driving, seed, _warp_details(references, driving) if guided else None)

    def lift_with_quality(self, references: References, driving: Conditions, *, seed: int = 0
                          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Frames and the warp lifter's per-frame quality terms (`liftdata.lifters.quality`) from ONE
        warp pass, which is also this model's warp guidance when it has it."""
        self._check_inputs(references)
        details = _warp_details(references, driving)
        return self._lift(references, driving, seed, details), details.quality

    def _check_inputs(self, references: References) -> None:
        want = self.pipeline.transformer.config.coefficient_dim
        got = coefficient_dim(references.conditions.kinematics.expression.shape[1])
        if got != want:
            raise ValueError(f"references/driving: kinematics pack to {got} coefficients, the checkpoint "
                             f"expects {want} (another head model?)")
        if len(references) == 0:
            raise ValueError("references: need at least one reference frame")

    def _lift(self, references: References, driving: Conditions, seed: int, details) -> np.ndarray:
        n, (height, width) = len(driving), (driving.camera.height, driving.camera.width)
        step = self.pipeline.spatial_factor * self.pipeline.transformer.config.patch_size[1]
        size = (max(step, round(height / step) * step), max(step, round(width / step) * step))
        factor = self.pipeline.temporal_factor
        padded = (n - 1 + factor - 1) // factor * factor + 1
        pad = lambda x: torch.cat([x, x[-1:].expand(padded - n, *x.shape[1:])])  # noqa: E731

        images = torch.from_numpy(np.asarray(references.images)).permute(0, 3, 1, 2).float() / 255
        inputs = dict(references=_resize(images, size),
                      reference_maps=_resize(pack_maps(references.conditions.maps), size),
                      reference_coefficients=pack_coefficients(references.conditions.kinematics),
                      driving_maps=pad(_resize(pack_maps(driving.maps), size)),
                      driving_coefficients=pad(pack_coefficients(driving.kinematics)))
        if self.pipeline.transformer.config.warp_guidance:
            warped, confidence = np.asarray(details.frames), np.asarray(details.confidence, np.float32)
            inputs.update(warp_frames=pad(_resize(torch.from_numpy(warped).permute(0, 3, 1, 2).float() / 255, size)),
                          warp_confidence=pad(_resize(torch.from_numpy(confidence)[:, None].float(), size)))
        chunk = self.clip_frames if factor == 1 and self.clip_frames else padded
        driving_keys = ("driving_maps", "driving_coefficients", "warp_frames", "warp_confidence")
        out = np.mean([np.concatenate([self.pipeline(
            **{k: (v[s:s + chunk] if k in driving_keys else v) for k, v in inputs.items()},
            warp_blend=self.warp_blend and "warp_frames" in inputs,
            num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
            generator=_generator(seed, j)).frames for s in range(0, padded, chunk)])[:n]
            for j in range(self.num_samples)], axis=0)
        frames = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        if (height, width) != size:
            frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames])
        return frames


def _generator(seed: int, sample: int) -> torch.Generator:
    """The initial noise of sample `sample` of a lift seeded `seed` (sample 0: `seed` itself)."""
    if sample == 0:
        return torch.Generator().manual_seed(seed)
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed % 2**63, sample]).generate_state(1, np.uint64)[0]) >> 1)


#: a checkpoint's own sampling defaults (read by `LiftAvatarLifter.from_pretrained`)
LIFTER_CONFIG = "lifter_config.json"
SAMPLING_KEYS = {"num_inference_steps": int, "guidance_scale": float, "warp_blend": bool, "num_samples": int}


def _sampling_defaults(path: Path) -> dict:
    """The checkpoint's `lifter_config.json` (checked: known keys, right types), or {} without one."""
    from liftdata.lifters.warp import LifterInputError

    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LifterInputError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except UnicodeDecodeError:
        raise LifterInputError(f"{path}: not UTF-8 text") from None
    if not isinstance(values, dict) or set(values) - set(SAMPLING_KEYS):
        got = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise LifterInputError(f"{path}: expected an object with keys among {sorted(SAMPLING_KEYS)}, got {got}")
    wants = {int: "a positive integer", float: "a positive number", bool: "true or false"}
    for key, value in values.items():
        kind = SAMPLING_KEYS[key]
        if kind is bool:
            ok = isinstance(value, bool)
        else:  # a finite positive number (JSON's Infinity and NaN are not), an integer for int keys
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and value > 0 and (kind is float or float(value).is_integer()))
        if not ok:
            raise LifterInputError(f"{path}: {key} must be {wants[kind]}, got {value!r}")
    return {k: SAMPLING_KEYS[k](v) for k, v in values.items()}


def _warp_details(references: References, driving: Conditions):
    from liftdata.lifters.warp import WarpLifter

    return WarpLifter().lift_detailed(references, driving)
