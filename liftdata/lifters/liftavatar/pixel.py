"""`PixelSpaceAutoencoder`: the identity "VAE" of the small, from-scratch LiftAvatar configuration.

Without pretrained Wan2.1 weights, a small autoencoder fitted on a few synthetic subjects caps what
any latent lifter can reach (21.7 dB reconstruction in `benchmarks/results/lifter_quality.json`
before this module). Here the "latents" are the pixels themselves, rearranged space-to-depth:

    encode: [B, 3, T, H, W] in [-1, 1]  ->  [B, 3 p^2, T, H / p, W / p]   (exact, no weights)
    decode: the inverse rearrangement                                      (exact)

so reconstruction is lossless (PSNR = infinity) and the transformer works on p x p pixel patches.
It has the slice of `AutoencoderKLWan`'s interface the pipeline and the training use (`encode(x)
.latent_dist.mode()`, `decode(z).sample`, `config.z_dim`, `scale_factor_temporal/spatial`,
`latents_mean/std`, `save_pretrained` / `from_pretrained`); every frame is its own latent frame
(temporal factor 1). The Wan VAE path stays as it was for real weights.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

__all__ = ["PixelSpaceAutoencoder", "ExactLatent"]


class ExactLatent:
    """A deterministic "posterior": `mode()` and `sample()` both return the encoding."""

    def __init__(self, z: torch.Tensor):
        self.z = z

    def mode(self) -> torch.Tensor:
        return self.z

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.z


class PixelSpaceAutoencoder(ModelMixin, ConfigMixin):
    """Space-to-depth by `patch` pixels: an exact, weight-free autoencoder.

    Args:
        patch: p; z_dim = 3 p^2, spatial factor p, temporal factor 1.
        pixel_mean, pixel_std: latents are normalised as (x - mean) / std with x in [-1, 1]
            (the pipeline reads them as the per-channel `latents_mean` / `latents_std`).
    """

    @register_to_config
    def __init__(self, patch: int = 4, pixel_mean: float = 0.0, pixel_std: float = 0.5):
        super().__init__()
        if patch < 1:
            raise ValueError(f"patch: expected >= 1, got {patch}")
        z_dim = 3 * patch * patch
        self.register_to_config(z_dim=z_dim, scale_factor_temporal=1, scale_factor_spatial=patch,
                                latents_mean=[pixel_mean] * z_dim, latents_std=[pixel_std] * z_dim)
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)  # gives the model a device / dtype

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> PixelSpaceAutoencoder:
        """From a `save_pretrained` directory: the config is all there is (no weights)."""
        config = cls.load_config(path)
        return cls(**{k: config[k] for k in ("patch", "pixel_mean", "pixel_std") if k in config})

    def enable_tiling(self) -> None:  # the pipeline's API; nothing to tile
        pass

    def encode(self, x: torch.Tensor,  # [B, 3, T, H, W] in [-1, 1]
               return_dict: bool = True) -> AutoencoderKLOutput | tuple[ExactLatent]:
        p = self.config.patch
        b, c, t, h, w = x.shape
        if h % p or w % p:
            raise ValueError(f"frames: height and width must be multiples of {p}, got {h} x {w}")
        z = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)
        z = z.reshape(b, c * p * p, t, h // p, w // p)
        dist = ExactLatent(z)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor,  # [B, 3 p^2, T, h, w]
               return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        p = self.config.patch
        b, _, t, h, w = z.shape
        x = z.reshape(b, 3, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, 3, t, h * p, w * p)
        return DecoderOutput(sample=x) if return_dict else (x,)
