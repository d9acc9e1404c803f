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
(`transformer/`, `vae/`, `scheduler/`, optional `text_encoder/` + `tokenizer/`); from the latter
the empty prompt is encoded once and cached in the transformer, then umT5 is dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder
from liftdata.lifters.liftavatar.transformer import LiftAvatarTransformer3DModel, cast_model, confidence_to_latent

__all__ = ["LiftAvatarPipeline", "LiftAvatarPipelineOutput", "normalize_latents", "denormalize_latents",
           "encode_frames", "empty_prompt_embedding"]


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

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype | None = None,
                        **transformer_config: Any) -> LiftAvatarPipeline:
        """Our saved pipeline, or a base Wan2.1-T2V diffusers checkpoint to start training from.

        `transformer_config` (new-path options such as driving_mode) applies to base checkpoints.
        """
        path = Path(path)
        config_file = path / "transformer" / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: not a pipeline directory (no transformer/config.json)")
        class_name = json.loads(config_file.read_text())["_class_name"]
        if class_name == LiftAvatarTransformer3DModel.__name__:
            if transformer_config:
                raise ValueError(f"{path}: a saved LiftAvatar pipeline keeps its own transformer config; "
                                 f"got options {sorted(transformer_config)}")
            transformer = LiftAvatarTransformer3DModel.from_pretrained(path / "transformer")
        elif class_name == WanTransformer3DModel.__name__:
            wan = WanTransformer3DModel.from_pretrained(path / "transformer")
            context = empty_prompt_embedding(path, transformer_config.pop("text_length", 512), wan.config.text_dim)
            transformer = LiftAvatarTransformer3DModel.from_wan(wan, context, text_length=context.shape[1],
                                                                **transformer_config)
        else:
            raise ValueError(f"{config_file}: unsupported transformer class {class_name!r}")
        vae_class = json.loads((path / "vae" / "config.json").read_text())["_class_name"]
        vae = (PixelSpaceAutoencoder if vae_class == PixelSpaceAutoencoder.__name__ else AutoencoderKLWan
               ).from_pretrained(path / "vae")
        scheduler = _load_scheduler(path / "scheduler")
        if torch_dtype is not None:
            transformer = cast_model(transformer, torch_dtype)
        return cls(transformer=transformer, vae=vae, scheduler=scheduler)

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


def _load_scheduler(path: Path):
    import diffusers

    name = json.loads((path / "scheduler_config.json").read_text())["_class_name"]
    return getattr(diffusers, name).from_pretrained(path)
