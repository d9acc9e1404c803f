"""LiftAvatar's expression-controllable video diffusion transformer, on diffusers' Wan2.1 blocks.

The denoiser sees one token sequence made of

* reference tokens x^R: K reference frames, each VAE-encoded on its own (one latent frame each),
  concatenated on the channel axis with the Reference Shading Encoder's features of their
  shading/normal maps S^R, patch-embedded by the Reference Patch Embedding, plus the embedded
  reference coefficients E^R;
* target tokens: the noisy latents of F pixel frames ((F - 1) / 4 + 1 latent frames), patch-embedded
  exactly as in Wan, plus the driving tokens x^D: the Driven Shading Encoder brings the driving
  maps S^D to latent resolution (4x in time, causal like Wan's VAE; 8x in space) and a
  zero-initialised Driven Patch Embedding projects them; plus the embedded driving coefficients
  E^D (expression, jaw, pose), compressed to the latent frame rate.

`driving_mode="add"` adds x^D to the target tokens (Wan-Animate, UniAnimate-DiT); "tokens"
appends them as separate tokens at the target tokens' positions (the paper's "concatenated as a
unified condition", read literally). `reference_rope="prefix"` puts the references at RoPE frames
0..K-1 and the targets after them (the stock 3D RoPE over K + F' frames, as in VACE);
"offset" keeps the targets at 0..F'-1, as the base model saw them, and the references after.
Only the target frames are returned.

Every condition path is optional (None skips it) and every new projection into the token stream
is zero-initialised, so a model made by `from_wan` starts as the base model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
    WanTransformer3DModel,
    WanTransformerBlock,
)
from torch import nn

__all__ = ["LiftAvatarTransformer3DModel", "ShadingEncoder", "CoefficientEmbedding", "causal_time_pad",
           "confidence_to_latent", "rope_at", "cast_model"]

DRIVING_MODES = ("add", "tokens")
REFERENCE_ROPES = ("prefix", "offset")
PREDICTION_TYPES = ("velocity", "sample")


# ---------------------------------------------------------------------- helpers
def causal_time_pad(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Repeat the first frame `factor - 1` times in front, so that frame 0 forms a group alone.

    With F = factor * n + 1 frames this gives n + 1 groups of `factor`: (F - 1) / factor + 1, the
    frame count of Wan's causal VAE (first frame alone, then groups of 4).
    """
    first = x.narrow(dim, 0, 1)
    return torch.cat([first] * (factor - 1) + [x], dim=dim)


def rope_at(rope: WanRotaryPosEmbed, frames: torch.Tensor, height: int, width: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [1, len(frames)*height*width, 1, head_dim] for latent frames at RoPE positions `frames`.

    The stock `WanRotaryPosEmbed.forward` is the special case frames = arange(F').
    """
    split = [rope.t_dim, rope.h_dim, rope.w_dim]
    out = []
    for table in (rope.freqs_cos, rope.freqs_sin):
        t_tab, h_tab, w_tab = table.split(split, dim=1)
        n = len(frames)
        grid = torch.cat([t_tab[frames].view(n, 1, 1, -1).expand(n, height, width, -1),
                          h_tab[:height].view(1, height, 1, -1).expand(n, height, width, -1),
                          w_tab[:width].view(1, 1, width, -1).expand(n, height, width, -1)], dim=-1)
        out.append(grid.reshape(1, n * height * width, 1, -1))
    return out[0], out[1]


def cast_model(model: ModelMixin, dtype: torch.dtype) -> ModelMixin:
    """`model` in `dtype`, except its `_keep_in_fp32_modules` (RoPE tables, time embedder, norms,
    modulation tables), which stay float32 as `from_pretrained(torch_dtype=...)` keeps them."""
    nn.Module.to(model, dtype)  # ModelMixin.to would warn about exactly what is undone below
    keep = set(model._keep_in_fp32_modules or []) if dtype in (torch.float16, torch.bfloat16) else set()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:  # buffers: RoPE tables too
        if keep.intersection(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()
    return model


def _patchify(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> tokens [B, T'*H'*W', dim] (Wan's patch embedding + flatten)."""
    return conv(x).flatten(2).transpose(1, 2)


# ---------------------------------------------------------------------- encoders
class ShadingEncoder(nn.Module):
    """Shading/normal maps [B, C, T, H, W] -> features at latent resolution [B, out, T', H/s, W/s].

    `levels` stride-2 spatial convolutions (s = 2^levels: 8x as Wan's VAE, 4x for the pixel-space
    autoencoder with patch 4), then either a causal temporal convolution with stride 4 (driving
    maps: T' = (T - 1) / 4 + 1) or none (reference maps or temporal factor 1: T' = T).
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, temporal_factor: int = 1,
                 levels: int = 3):
        super().__init__()
        self.temporal_factor = temporal_factor
        layers = []
        for i in range(levels):
            layers += [nn.Conv3d(in_channels if i == 0 else hidden, hidden, (1, 3, 3), (1, 2, 2), (0, 1, 1)), nn.SiLU()]
        self.spatial = nn.Sequential(*layers)
        self.temporal = nn.Conv3d(hidden if levels else in_channels, out_channels, (temporal_factor, 1, 1),
                                  (temporal_factor, 1, 1))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = self.spatial(maps)
        if self.temporal_factor > 1:
            x = causal_time_pad(x, self.temporal_factor, dim=2)
        return self.temporal(x)


def confidence_to_latent(confidence: torch.Tensor,  # [B, 1, T, H, W] in [0, 1]
                         spatial: int, temporal: int) -> torch.Tensor:  # [B, 1, (T - 1) / temporal + 1, H/s, W/s]
    """A per-pixel confidence map averaged over each latent cell (causal groups in time, like the VAE)."""
    x = causal_time_pad(confidence, temporal, dim=2) if temporal > 1 else confidence
    return torch.nn.functional.avg_pool3d(x, (temporal, spatial, spatial))


class CoefficientEmbedding(nn.Module):
    """Per-frame coefficients [B, T, C] -> one embedding per (latent) frame [B, T', dim].

    With `temporal_factor` 4 the frames are grouped causally like the VAE's (frame 0 alone, then
    groups of 4) and each group's coefficients are concatenated before the MLP. The last layer is
    zero-initialised.
    """

    def __init__(self, in_features: int, dim: int, temporal_factor: int = 1):
        super().__init__()
        self.temporal_factor = temporal_factor
        self.mlp = nn.Sequential(nn.Linear(in_features * temporal_factor, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        x = coefficients
        if self.temporal_factor > 1:
            x = causal_time_pad(x, self.temporal_factor, dim=1)
            x = x.reshape(x.shape[0], x.shape[1] // self.temporal_factor, -1)
        return self.mlp(x)


# ---------------------------------------------------------------------- model
class LiftAvatarTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Wan2.1's DiT with reference tokens, driving tokens and a cached text context.

    The first block of arguments is `WanTransformer3DModel`'s (T2V, no image branch); module
    names match Wan's so a Wan state dict loads into this model (`from_wan`).

    Args (new):
        map_channels: channels of the shading maps S (shading 1 + normal 3).
        coefficient_dim: width of the per-frame coefficient vector (expression, jaw, pose ...).
        shading_hidden, shading_channels: hidden / output channels of the shading encoders.
        temporal_compression: frames per latent frame of the VAE (4 for Wan).
        text_length: tokens of the cached empty-prompt embedding (512 for umT5).
        driving_mode: "add" (x^D added to the target tokens) or "tokens" (appended).
        reference_rope: "prefix" (references at RoPE frames 0..K-1) or "offset" (after targets).
        spatial_compression: pixels per latent cell of the autoencoder (8 for Wan's VAE, the patch
            of a `PixelSpaceAutoencoder`); a power of two, the shading encoders downsample by it.
        warp_guidance: add warp-guidance tokens: the latents of the warp lifter's frames and its
            per-pixel confidence (at latent resolution) through a zero-initialised Warp Patch
            Embedding, added to the target tokens like x^D (off: the paper's model).
        warp_residual: the model denoises the residual x0 - z_warp instead of x0 (needs
            warp_guidance); the pipeline adds z_warp back before decoding.
        prediction_type: "velocity" (eps - x0, Wan's) or "sample" (x0 itself; the output head is
            zero-initialised, so a warp-residual model starts as the warp). Sample prediction suits
            pixel patches wider than the token dimension (Li & He 2025, "Back to Basics: Let
            Denoising Generative Models Denoise"): a velocity must carry the full-width noise.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["WanTransformerBlock"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _repeated_blocks = ["WanTransformerBlock"]

    @register_to_config
    def __init__(self, patch_size: tuple[int, ...] = (1, 2, 2), num_attention_heads: int = 12,
                 attention_head_dim: int = 128, in_channels: int = 16, out_channels: int = 16,
                 text_dim: int = 4096, freq_dim: int = 256, ffn_dim: int = 8960, num_layers: int = 30,
                 cross_attn_norm: bool = True, qk_norm: str | None = "rms_norm_across_heads",
                 eps: float = 1e-6, rope_max_seq_len: int = 1024,
                 map_channels: int = 4, coefficient_dim: int = 51, shading_hidden: int = 64,
                 shading_channels: int = 16, temporal_compression: int = 4, text_length: int = 512,
                 driving_mode: str = "add", reference_rope: str = "prefix", spatial_compression: int = 8,
                 warp_guidance: bool = False, warp_residual: bool = False, prediction_type: str = "velocity") -> None:
        super().__init__()
        if driving_mode not in DRIVING_MODES:
            raise ValueError(f"driving_mode: expected one of {DRIVING_MODES}, got {driving_mode!r}")
        if reference_rope not in REFERENCE_ROPES:
            raise ValueError(f"reference_rope: expected one of {REFERENCE_ROPES}, got {reference_rope!r}")
        levels = int(math.log2(spatial_compression))
        if spatial_compression < 1 or 2**levels != spatial_compression:
            raise ValueError(f"spatial_compression: expected a power of two, got {spatial_compression}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type: expected one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if warp_residual and not warp_guidance:
            raise ValueError("warp_residual: needs warp_guidance=True (the residual is taken from the warp)")
        dim = num_attention_heads * attention_head_dim
        patch = tuple(patch_size)

        # Wan2.1 modules, same names as in WanTransformer3DModel.
        self.rope = WanRotaryPosEmbed(attention_head_dim, patch, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)
        self.condition_embedder = WanTimeTextImageEmbedding(dim=dim, time_freq_dim=freq_dim,
                                                            time_proj_dim=dim * 6, text_embed_dim=text_dim)
        self.blocks = nn.ModuleList([WanTransformerBlock(dim, ffn_dim, num_attention_heads, qk_norm,
                                                         cross_attn_norm, eps) for _ in range(num_layers)])
        self.norm_out = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, out_channels * math.prod(patch))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        if prediction_type == "sample":
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

        # Reference tokens x^R.
        self.reference_shading_encoder = ShadingEncoder(map_channels, shading_hidden, shading_channels, levels=levels)
        self.reference_patch_embedding = nn.Conv3d(in_channels + shading_channels, dim, patch, patch)
        self.reference_coefficient_embedding = CoefficientEmbedding(coefficient_dim, dim)

        # Driving tokens x^D.
        self.driven_shading_encoder = ShadingEncoder(map_channels, shading_hidden, shading_channels,
                                                     temporal_compression, levels)
        self.driven_patch_embedding = nn.Conv3d(shading_channels, dim, patch, patch)
        nn.init.zeros_(self.driven_patch_embedding.weight)
        nn.init.zeros_(self.driven_patch_embedding.bias)
        self.driving_coefficient_embedding = CoefficientEmbedding(coefficient_dim, dim, temporal_compression)

        # Warp guidance (ours): concat(z_warp, confidence) -> zero-initialised Warp Patch Embedding.
        if warp_guidance:
            self.warp_patch_embedding = nn.Conv3d(in_channels + 1, dim, patch, patch)
            nn.init.zeros_(self.warp_patch_embedding.weight)
            nn.init.zeros_(self.warp_patch_embedding.bias)

        # The cached empty-prompt umT5 embedding: the text encoder never loads.
        self.register_buffer("text_context", torch.zeros(1, text_length, text_dim))
        self.init_reference_patch_embedding()
        self.gradient_checkpointing = False

    def init_reference_patch_embedding(self) -> None:
        """First `in_channels` inputs <- the latent patch embedding, the shading inputs <- 0."""
        c = self.config.in_channels
        with torch.no_grad():
            self.reference_patch_embedding.weight.zero_()
            self.reference_patch_embedding.weight[:, :c] = self.patch_embedding.weight
            self.reference_patch_embedding.bias.copy_(self.patch_embedding.bias)

    @classmethod
    def from_wan(cls, wan: WanTransformer3DModel, text_context: torch.Tensor | None = None,
                 **config: Any) -> LiftAvatarTransformer3DModel:
        """Our model on a (pretrained) Wan2.1 T2V transformer: Wan weights copied, new paths at init."""
        if wan.config.image_dim is not None or wan.config.in_channels != wan.config.out_channels:
            raise ValueError("from_wan: expected a Wan2.1 T2V transformer (no image branch, in == out channels)")
        keys = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
                "text_dim", "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps",
                "rope_max_seq_len")
        model = cls(**{k: wan.config[k] for k in keys}, **config)
        missing, unexpected = model.load_state_dict(wan.state_dict(), strict=False)
        if unexpected:
            raise ValueError(f"from_wan: unexpected Wan weights {unexpected[:5]}")
        model.init_reference_patch_embedding()
        if text_context is not None:
            model.text_context.copy_(text_context.reshape(model.text_context.shape))
        return model if wan.dtype == model.dtype else cast_model(model, wan.dtype)

    def forward(self,
                hidden_states: torch.Tensor,  # [B, C, F', h, w] noisy target latents
                timestep: torch.Tensor,  # [B] in [0, 1000]
                reference_latents: torch.Tensor | None = None,  # [B, C, K, h, w]
                reference_maps: torch.Tensor | None = None,  # [B, map_channels, K, 8h, 8w]
                reference_coefficients: torch.Tensor | None = None,  # [B, K, coefficient_dim]
                driving_maps: torch.Tensor | None = None,  # [B, map_channels, 4(F'-1)+1, 8h, 8w]
                driving_coefficients: torch.Tensor | None = None,  # [B, 4(F'-1)+1, coefficient_dim]
                warp_latents: torch.Tensor | None = None,  # [B, C, F', h, w] the warp lifter's frames
                warp_confidence: torch.Tensor | None = None,  # [B, 1, F', h, w] at latent resolution
                encoder_hidden_states: torch.Tensor | None = None,  # [B, L, text_dim]; None: cached
                return_dict: bool = True,
                ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        b, _, n_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        frames, gh, gw = n_frames // p_t, height // p_h, width // p_w
        n_refs = 0 if reference_latents is None else reference_latents.shape[2] // p_t
        tokens_per_frame = gh * gw

        # 1. Target tokens: Wan's patch embedding of the noisy latents.
        target = _patchify(self.patch_embedding, hidden_states)

        # 2. Driving tokens x^D = DrivenPatchEmbed(DrivenShadingEncoder(S^D)) + E^D.
        driving = []
        if driving_maps is not None:
            driving.append(_patchify(self.driven_patch_embedding, self.driven_shading_encoder(driving_maps)))
        if driving_coefficients is not None:
            e_d = self.driving_coefficient_embedding(driving_coefficients)  # [B, F', dim]
            driving.append(e_d.repeat_interleave(tokens_per_frame, dim=1))
        if warp_latents is not None:  # warp guidance: what the geometry knows, and how sure it is
            driving.append(_patchify(self.warp_patch_embedding, torch.cat([warp_latents, warp_confidence], dim=1)))

        # 3. Reference tokens x^R = RefPatchEmbed(concat(z^R, RefShadingEncoder(S^R))) + E^R.
        parts = []
        if n_refs:
            ref_maps = (self.reference_shading_encoder(reference_maps) if reference_maps is not None else
                        reference_latents.new_zeros(b, self.config.shading_channels, *reference_latents.shape[2:]))
            ref = _patchify(self.reference_patch_embedding, torch.cat([reference_latents, ref_maps], dim=1))
            if reference_coefficients is not None:
                e_r = self.reference_coefficient_embedding(reference_coefficients)  # [B, K, dim]
                ref = ref + e_r.repeat_interleave(tokens_per_frame, dim=1)
            parts.append(ref)

        # 4. The unified sequence [x^R | targets (+ x^D)] (| x^D) and its 3D RoPE positions.
        ref_pos, target_pos = self._frame_positions(n_refs, frames, hidden_states.device)
        positions = [ref_pos, target_pos]
        if self.config.driving_mode == "add":
            parts.append(target + sum(driving))
        else:
            parts.append(target)
            if driving:
                parts.append(sum(driving))
                positions.append(target_pos)
        x = torch.cat(parts, dim=1).contiguous()
        rotary_emb = rope_at(self.rope, torch.cat(positions), gh, gw)

        # 5. Time and (cached) text embeddings, as in Wan.
        context = self.text_context.expand(b, -1, -1) if encoder_hidden_states is None else encoder_hidden_states
        temb, timestep_proj, context, _ = self.condition_embedder(timestep, context.to(x.dtype))
        timestep_proj = timestep_proj.unflatten(1, (6, -1))

        # 6. Wan transformer blocks over all tokens.
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, context, timestep_proj, rotary_emb)
            else:
                x = block(x, context, timestep_proj, rotary_emb)

        # 7. Output only the target tokens: Wan's head and unpatchify.
        start = n_refs * tokens_per_frame
        x = x[:, start:start + frames * tokens_per_frame]
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        x = x.reshape(b, frames, gh, gw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)

    def _frame_positions(self, n_refs: int, frames: int, device: torch.device
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE frame indices of the reference and target latent frames."""
        if self.config.reference_rope == "prefix":
            ref, target = torch.arange(n_refs), torch.arange(n_refs, n_refs + frames)
        else:
            ref, target = torch.arange(frames, frames + n_refs), torch.arange(frames)
        return ref.to(device), target.to(device)
