"""`LiftAvatarPipeline`: references + driving conditions -> frames, with a flow-matching scheduler.

`__call__` reads as one story: check inputs -> encode references -> timesteps -> latents ->
denoise (classifier-free guidance on the driving condition) -> decode.

Images and maps are float tensors in [0, 1], channels first: references [K, 3, H, W], maps
[N, 4, H, W] (shading, then the normal map 0.5 n + 0.5); coefficients [N, C]. The number of
driving frames F must be 4n + 1 (Wan's VAE compresses time causally: (F - 1) / 4 + 1 latent frames).

Warp guidance (optional, for transformers built with `warp_guidance`): the warp lifter's frames
[F, 3, H, W] and per-pixel confidence [F, 1, H, W] enter as extra driving inputs; with
`warp_blend` the decoded frames are blended with the warp frames by the confidence
(out = c * warp + (1 - c) * decoded): exact where geometry knows, generated where it cannot.

The autoencoder is Wan's `AutoencoderKLWan` or the exact `PixelSpaceAutoencoder` (pixel.py).

`from_pretrained` reads our own saved pipelines and base Wan2.1-T2V diffusers checkpoints
(`transformer/`, `vae/`, `scheduler/`, optional `text_encoder/` + `tokenizer/`), from a local folder
or a Hub repo id; from the latter the empty prompt is encoded once and cached in the transformer,
then umT5 is dropped. `save_pretrained` also writes this module, the transformer's and the pixel
autoencoder's as self-contained files (`write_remote_code`), so that diffusers' own
`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads the folder without liftdata.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from diffusers import __version__ as diffusers_version
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder
from liftdata.lifters.liftavatar.transformer import LiftAvatarTransformer3DModel, cast_model, confidence_to_latent

__all__ = ["LiftAvatarPipeline", "LiftAvatarPipelineOutput", "normalize_latents", "denormalize_latents",
           "encode_frames", "empty_prompt_embedding", "write_remote_code", "resolve_pretrained"]


@dataclass
class LiftAvatarPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor  # [F, H, W, 3] in [0, 1] ("np") or [F, 3, H, W] ("pt")


# ---------------------------------------------------------------------- latents
def _latent_stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(like.device, like.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(like.device, like.dtype)
    return mean, std


def normalize_latents(z: torch.Tensor, vae: AutoencoderKLWan) -> torch.Tensor:
    mean, std = _latent_stats(vae, z)
    return (z - mean) / std


def denormalize_latents(z: torch.Tensor, vae: AutoencoderKLWan) -> torch.Tensor:
    mean, std = _latent_stats(vae, z)
    return z * std + mean


@torch.no_grad()
def encode_frames(vae: AutoencoderKLWan,
                  frames: torch.Tensor,  # [B, 3, T, H, W] in [0, 1]
                  ) -> torch.Tensor:  # [B, z_dim, (T - 1) / 4 + 1, H / 8, W / 8], normalised
    """VAE-encode clips (posterior mode) and normalise with the VAE's latents_mean/std."""
    x = frames.to(vae.device, vae.dtype) * 2 - 1
    return normalize_latents(vae.encode(x).latent_dist.mode(), vae)


def empty_prompt_embedding(path: str | Path, text_length: int, text_dim: int) -> torch.Tensor:
    """[1, text_length, text_dim] umT5 embedding of "" (zeros after its tokens, as WanPipeline).

    Zeros when the checkpoint has no `text_encoder/` + `tokenizer/` (tiny test checkpoints).
    """
    path = Path(path)
    if not ((path / "text_encoder").is_dir() and (path / "tokenizer").is_dir()):
        return torch.zeros(1, text_length, text_dim)
    from transformers import AutoTokenizer, UMT5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    encoder = UMT5EncoderModel.from_pretrained(path / "text_encoder")
    inputs = tokenizer([""], padding="max_length", max_length=text_length, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        emb = encoder(inputs.input_ids, inputs.attention_mask).last_hidden_state.float()
    return emb * inputs.attention_mask[..., None]


# ---------------------------------------------------------------------- pipeline
class LiftAvatarPipeline(DiffusionPipeline):
    """Synthesizes frames of the referenced subject under driving shading maps and coefficients."""

    model_cpu_offload_seq = "transformer->vae"

    def __init__(self, transformer: LiftAvatarTransformer3DModel, vae: AutoencoderKLWan | PixelSpaceAutoencoder,
                 scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler)
        self.temporal_factor = vae.config.scale_factor_temporal
        self.spatial_factor = vae.config.scale_factor_spatial

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, torch_dtype: torch.dtype | None = None,
                        dtype: torch.dtype | None = None, use_safetensors: bool | None = None,
                        variant: str | None = None, revision: str | None = None,
                        cache_dir: str | Path | None = None, token: str | bool | None = None,
                        local_files_only: bool = False, force_download: bool = False, trust_remote_code: bool = False,
                        **transformer_config: Any) -> LiftAvatarPipeline:
        """Our saved pipeline, or a base Wan2.1-T2V diffusers checkpoint to start training from.

        pretrained_model_name_or_path: a local folder, or a Hub repo id fetched with
            `huggingface_hub.snapshot_download` (`revision`, `cache_dir`, `token`, `local_files_only`,
            `force_download`; HF_HUB_OFFLINE and the local cache apply as everywhere in the Hub client).
        torch_dtype / dtype (diffusers' newer name): the transformer's dtype (norms, RoPE and time
            embedding stay float32: `cast_model`); the autoencoder stays float32.
        use_safetensors, variant: which weight files to read, as in diffusers' `from_pretrained`.
        trust_remote_code: accepted for symmetry with `DiffusionPipeline.from_pretrained` and not needed:
            this loader runs the installed liftdata code, never code shipped in the folder.
        transformer_config: new-path options such as driving_mode, for base Wan checkpoints only.
        """
        del trust_remote_code
        _check_options(transformer_config)
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            raise ValueError(f"dtype / torch_dtype: two names for one option, got {dtype} and {torch_dtype}")
        torch_dtype = torch_dtype if dtype is None else dtype
        path = resolve_pretrained(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir, token=token,
                                  local_files_only=local_files_only, force_download=force_download,
                                  use_safetensors=use_safetensors)
        config_file = path / "transformer" / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: not a pipeline directory (no transformer/config.json)")
        weights = lambda name: _weight_files(path / name, use_safetensors, variant)  # noqa: E731
        if variant is not None and not any(weights(name)["variant"] for name in ("transformer", "vae")):
            raise ValueError(f"variant: no {variant!r} weight files in {path / 'transformer'} or {path / 'vae'}")
        class_name = json.loads(config_file.read_text())["_class_name"]
        if class_name == LiftAvatarTransformer3DModel.__name__:
            if transformer_config:
                raise ValueError(f"{path}: a saved LiftAvatar pipeline keeps its own transformer config; "
                                 f"got options {sorted(transformer_config)}")
            transformer = LiftAvatarTransformer3DModel.from_pretrained(path / "transformer", **weights("transformer"))
        elif class_name == WanTransformer3DModel.__name__:
            wan = WanTransformer3DModel.from_pretrained(path / "transformer", **weights("transformer"))
            context = empty_prompt_embedding(path, transformer_config.pop("text_length", 512), wan.config.text_dim)
            transformer = LiftAvatarTransformer3DModel.from_wan(wan, context, text_length=context.shape[1],
                                                                **transformer_config)
        else:
            raise ValueError(f"{config_file}: unsupported transformer class {class_name!r}")
        vae_class = json.loads((path / "vae" / "config.json").read_text())["_class_name"]
        vae = (PixelSpaceAutoencoder.from_pretrained(path / "vae") if vae_class == PixelSpaceAutoencoder.__name__
               else AutoencoderKLWan.from_pretrained(path / "vae", **weights("vae")))
        scheduler = _load_scheduler(path / "scheduler")
        if torch_dtype is not None:
            transformer = cast_model(transformer, torch_dtype)
        return cls(transformer=transformer, vae=vae, scheduler=scheduler)

    def save_pretrained(self, save_directory: str | Path, push_to_hub: bool = False, **kwargs: Any) -> None:
        """diffusers' `save_pretrained`, plus the code that `DiffusionPipeline.from_pretrained(...,
        trust_remote_code=True)` needs (`write_remote_code`)."""
        if push_to_hub:
            raise ValueError("push_to_hub: not supported here; save, then upload the folder with "
                             "huggingface_hub.upload_folder (the model code files must go along)")
        super().save_pretrained(save_directory, **kwargs)
        write_remote_code(save_directory)

    def enable_vae_tiling(self) -> None:
        self.vae.enable_tiling()

    # ------------------------------------------------------------------ steps
    def check_inputs(self, references, reference_maps, reference_coefficients, driving_maps,
                     driving_coefficients, warp_frames=None, warp_confidence=None) -> None:
        k, n = len(references), len(driving_maps)
        if references.ndim != 4 or references.shape[1] != 3:
            raise ValueError(f"references: expected [K, 3, H, W], got {list(references.shape)}")
        if len(reference_maps) != k or len(reference_coefficients) != k:
            raise ValueError(f"reference_maps / reference_coefficients: expected {k} frames, got "
                             f"{len(reference_maps)} / {len(reference_coefficients)}")
        if len(driving_coefficients) != n:
            raise ValueError(f"driving_coefficients: expected {n} frames, got {len(driving_coefficients)}")
        if (n - 1) % self.temporal_factor:
            raise ValueError(f"driving_maps: the frame count must be {self.temporal_factor}n + 1, got {n}")
        size = self.spatial_factor * self.transformer.config.patch_size[1]
        h, w = driving_maps.shape[-2:]
        if h % size or w % size or references.shape[-2:] != (h, w):
            raise ValueError(f"references / driving_maps: sizes must match and be multiples of {size}, "
                             f"got {list(references.shape[-2:])} and {[h, w]}")
        guided = self.transformer.config.warp_guidance
        if guided != (warp_frames is not None) or (warp_frames is None) != (warp_confidence is None):
            raise ValueError(f"warp_frames / warp_confidence: the transformer {'needs' if guided else 'takes no'} "
                             "warp guidance; pass both or neither accordingly")
        if warp_frames is not None and (warp_frames.shape != (n, 3, h, w) or warp_confidence.shape != (n, 1, h, w)):
            raise ValueError(f"warp_frames / warp_confidence: expected [{n}, 3|1, {h}, {w}], got "
                             f"{list(warp_frames.shape)} / {list(warp_confidence.shape)}")

    def prepare_latents(self, n_frames: int, height: int, width: int, generator: torch.Generator | None,
                        dtype: torch.dtype) -> torch.Tensor:
        shape = (1, self.vae.config.z_dim, (n_frames - 1) // self.temporal_factor + 1,
                 height // self.spatial_factor, width // self.spatial_factor)
        return randn_tensor(shape, generator=generator, device=self._execution_device, dtype=torch.float32).to(dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:  # -> [F, 3, H, W] in [0, 1]
        z = denormalize_latents(latents.to(self.vae.device, self.vae.dtype), self.vae)
        video = self.vae.decode(z, return_dict=False)[0]
        return ((video[0].float() + 1) / 2).clamp(0, 1).permute(1, 0, 2, 3)

    @torch.no_grad()
    def __call__(self,
                 references: torch.Tensor,  # [K, 3, H, W] in [0, 1]
                 reference_maps: torch.Tensor,  # [K, 4, H, W] in [0, 1]
                 reference_coefficients: torch.Tensor,  # [K, C]
                 driving_maps: torch.Tensor,  # [F, 4, H, W] in [0, 1], F = 4n + 1
                 driving_coefficients: torch.Tensor,  # [F, C]
                 warp_frames: torch.Tensor | None = None,  # [F, 3, H, W] in [0, 1]
                 warp_confidence: torch.Tensor | None = None,  # [F, 1, H, W] in [0, 1]
                 warp_blend: bool = False,
                 num_inference_steps: int = 30,
                 guidance_scale: float = 1.0,
                 generator: torch.Generator | None = None,
                 output_type: str = "np",
                 ) -> LiftAvatarPipelineOutput:
        # 1. Check inputs.
        self.check_inputs(references, reference_maps, reference_coefficients, driving_maps, driving_coefficients,
                          warp_frames, warp_confidence)
        device, dtype = self._execution_device, self.transformer.dtype
        video = lambda x: x.permute(1, 0, 2, 3)[None].to(device, dtype) * 2 - 1  # noqa: E731  [1, C, T, H, W]

        # 2. Encode the references, each alone (one latent frame each), and the conditions.
        ref_latents = torch.cat([encode_frames(self.vae, r[None, :, None]) for r in references], dim=2).to(dtype)
        cond = dict(reference_latents=ref_latents, reference_maps=video(reference_maps),
                    reference_coefficients=reference_coefficients[None].to(device, dtype),
                    driving_maps=video(driving_maps), driving_coefficients=driving_coefficients[None].to(device, dtype))
        if warp_frames is not None:
            warp_latents = encode_frames(self.vae, warp_frames.permute(1, 0, 2, 3)[None]).to(dtype)
            cond.update(warp_latents=warp_latents, warp_confidence=confidence_to_latent(
                warp_confidence.permute(1, 0, 2, 3)[None].to(device, dtype), self.spatial_factor, self.temporal_factor))
        do_cfg = guidance_scale > 1.0
        if do_cfg:  # the null driving condition is the one used for dropout in training: zeros
            null = {k: torch.zeros_like(cond[k]) for k in ("driving_maps", "driving_coefficients")}
            cond = {k: torch.cat([v, null.get(k, v)]) for k, v in cond.items()}

        # 3. Timesteps, 4. initial noise.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = self.prepare_latents(len(driving_maps), *driving_maps.shape[-2:], generator, torch.float32)

        # 5. Denoise.
        for t in self.progress_bar(self.scheduler.timesteps):
            x = latents.to(dtype).expand(len(cond["driving_maps"]), -1, -1, -1, -1)
            pred = self.transformer(x, t.expand(len(x)).to(dtype), **cond, return_dict=False)[0].float()
            if self.transformer.config.prediction_type == "sample":  # x0_hat -> velocity (x_t - x0_hat) / sigma
                sigma = (t.float() / self.scheduler.config.num_train_timesteps).clamp(min=1e-3)
                pred = (x.float() - pred) / sigma
            if do_cfg:
                pred_cond, pred_null = pred.chunk(2)
                pred = pred_null + guidance_scale * (pred_cond - pred_null)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]

        # 6. Decode (the warp residual added back), 7. blend with the warp where it is confident.
        if self.transformer.config.warp_residual:
            latents = latents + warp_latents.float()
        frames = self.decode(latents)
        if warp_blend:
            c = warp_confidence.to(frames)
            frames = c * warp_frames.to(frames) + (1 - c) * frames
        self.maybe_free_model_hooks()
        if output_type == "np":
            frames = frames.permute(0, 2, 3, 1).cpu().numpy()
        return LiftAvatarPipelineOutput(frames=frames)


def _weight_files(folder: Path, use_safetensors: bool | None, variant: str | None) -> dict[str, Any]:
    """A component's weight options; the variant only where that folder has it (as diffusers' pipelines do)."""
    has = variant is not None and any(f".{variant}." in f.name for f in folder.iterdir())
    return dict(use_safetensors=use_safetensors, variant=variant if has else None)


def _load_scheduler(path: Path):
    import diffusers

    name = json.loads((path / "scheduler_config.json").read_text())["_class_name"]
    return getattr(diffusers, name).from_pretrained(path)


# ---------------------------------------------------------------------- files on disk
#: the options `from_pretrained` honours (diffusers' names)
LOADING_OPTIONS = ("torch_dtype", "dtype", "use_safetensors", "variant", "revision", "cache_dir", "token",
                   "local_files_only", "force_download", "trust_remote_code")
#: the self-contained module files a saved pipeline ships for diffusers' `trust_remote_code`
REMOTE_CODE = {"pipeline": "pipeline_liftavatar", "transformer": "transformer_liftavatar", "pixel": "pixel_liftavatar"}
_LIFTDATA_IMPORT = re.compile(r"^(\s*)from liftdata\.lifters\.liftavatar\.(pipeline|transformer|pixel) import", re.M)
_HEADER = "# Written by liftdata (LiftAvatarPipeline.save_pretrained) from its module"


def write_remote_code(directory: str | Path) -> Path:
    """Make a saved pipeline folder load with `DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)`.

    Writes the pipeline, transformer and pixel-autoencoder modules as self-contained files (liftdata's
    imports among them made relative): at the top, where the pipeline module imports them from, and
    in the component folders, where diffusers looks for a custom component's code; then a
    model_index.json that names them. No liftdata is needed to load the folder, and the code stays
    the one its weights were saved with. Upgrades in place folders written by `training.save_pipeline`
    or an older liftdata (they named `liftdata` modules, which diffusers does not import).
    """
    directory = Path(directory)
    read = lambda *parts: json.loads(directory.joinpath(*parts).read_text())["_class_name"]  # noqa: E731
    if read("transformer", "config.json") != LiftAvatarTransformer3DModel.__name__:
        raise ValueError(f"{directory}: not a saved LiftAvatar pipeline (transformer/config.json names "
                         f"{read('transformer', 'config.json')!r})")
    vae_class, scheduler_class = read("vae", "config.json"), read("scheduler", "scheduler_config.json")
    pixel = vae_class == PixelSpaceAutoencoder.__name__
    modules = {"pipeline": sys.modules[__name__], "transformer": sys.modules[LiftAvatarTransformer3DModel.__module__],
               "pixel": sys.modules[PixelSpaceAutoencoder.__module__]}
    for name, module in modules.items():
        source = _remote_source(Path(module.__file__), name)
        (directory / f"{REMOTE_CODE[name]}.py").write_text(source)
        if name == "transformer" or (name == "pixel" and pixel):
            (directory / ("transformer" if name == "transformer" else "vae") / f"{REMOTE_CODE[name]}.py"
             ).write_text(source)
    index = {"_class_name": [REMOTE_CODE["pipeline"], LiftAvatarPipeline.__name__],
             "_diffusers_version": diffusers_version,
             "scheduler": ["diffusers", scheduler_class],
             "transformer": [REMOTE_CODE["transformer"], LiftAvatarTransformer3DModel.__name__],
             "vae": [REMOTE_CODE["pixel"], vae_class] if pixel else ["diffusers", vae_class]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return directory


def _remote_source(file: Path, name: str) -> str:
    """The module's source with `from liftdata.lifters.liftavatar.X import` made `from .X_liftavatar import`."""
    lines = [line for line in file.read_text().splitlines(keepends=True) if not line.startswith(_HEADER)]
    source = _LIFTDATA_IMPORT.sub(lambda m: f"{m[1]}from .{REMOTE_CODE[m[2]]} import", "".join(lines))
    left = re.findall(r"^\s*(?:from|import)\s+liftdata\b.*$", source, re.M)
    if left:
        raise RuntimeError(f"{file}: cannot ship it as self-contained code, it imports {left}")
    return f"{_HEADER} {name}; loaded by diffusers with trust_remote_code=True.\n{source}"


def _check_options(options: dict[str, Any]) -> None:
    """Refuse loading options this loader cannot honour, by name, before any download."""
    wan = set(inspect.signature(WanTransformer3DModel.__init__).parameters)
    fields = set(inspect.signature(LiftAvatarTransformer3DModel.__init__).parameters) - wan
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"LiftAvatarPipeline.from_pretrained: unsupported option(s) {unknown}; it takes "
                         f"{sorted(LOADING_OPTIONS)} and, for a base Wan2.1 checkpoint, the new transformer "
                         f"fields {sorted(fields)}")


def resolve_pretrained(name_or_path: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                       token: str | bool | None = None, local_files_only: bool = False, force_download: bool = False,
                       use_safetensors: bool | None = None) -> Path:
    """A local folder as it is; a Hub repo id through `huggingface_hub.snapshot_download` (its cache, token,
    HF_HUB_OFFLINE / `local_files_only`); `use_safetensors` skips the other weight format's files."""
    path = Path(name_or_path)
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision: {path} is a local folder; a revision applies to Hub repo ids only")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        raise FileNotFoundError(f"{name_or_path}: no such pipeline folder, and not a Hub repo id") from None
    ignore = {True: ["*.bin", "*.pt", "*.pth", "*.ckpt"], False: ["*.safetensors"], None: None}[use_safetensors]
    try:
        return Path(snapshot_download(str(name_or_path), revision=revision, cache_dir=cache_dir, token=token,
                                      local_files_only=local_files_only, force_download=force_download,
                                      ignore_patterns=ignore))
    except Exception as error:  # the Hub client's own error, told that no local folder has this name either
        error.add_note(f"{name_or_path}: not a local folder either; read it as a Hub repo id")
        raise
