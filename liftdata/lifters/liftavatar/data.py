"""Training data that teaches what geometry cannot: full-range synthetic subjects + warp guidance.

Each training subject (`liftdata.synthetic`, seeds disjoint from the evaluation's) is rendered under
`training_kinematics`: a few *narrow* frames (near-frontal, closed mouth: what a user's capture
gives) followed by *wide* frames through the full range (jaw open with the mouth interior and
teeth, smiles, blinks, yaw up to +-45 deg, pitch up to +-20 deg). Training pairs take their
references from OTHER frames of the same subject: mostly the narrow ones, sometimes any frame.
For every reference set the warp lifter's frames and confidence (`warp_guidance`) are computed once
and VAE-encoded: the transformer learns to keep what the warp knows and to generate the rest.

`GuidedSubject` holds one subject's tensors (float16 to halve memory); `sample_guided_batch` draws
a training batch from a list of them (the counterpart of `training.sample_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from liftdata.kinematics import Kinematics
from liftdata.lifters.base import References, render_conditions
from liftdata.lifters.liftavatar.guidance import warp_guidance
from liftdata.lifters.liftavatar.transformer import confidence_to_latent

__all__ = ["training_kinematics", "GuidedSubject", "prepare_guided_subject", "sample_guided_batch"]

CLOSED_MOUTH = ("jawOpen", "mouthFunnel", "mouthPucker")


def training_kinematics(model, n_narrow: int, n_wide: int, rng: np.random.Generator, *,
                        max_yaw_deg: float = 45.0, max_pitch_deg: float = 20.0) -> Kinematics:
    """[n_narrow + n_wide] frames: narrow (yaw <= 6, pitch <= 4 deg, closed mouth) then wide, independent draws."""
    from liftdata.head.base import neutral_kinematics

    n = n_narrow + n_wide
    k = neutral_kinematics(model, n)
    prior = model.expression_prior()
    names = list(model.expression_names)
    expr = rng.uniform(0, 0.25, (n, model.n_expression)) * (rng.random((n, model.n_expression)) < 0.15)
    wide = np.arange(n_narrow, n)
    for name, p, lo in (("jawOpen", 0.55, 0.3), ("mouthSmileLeft", 0.3, 0.3), ("eyeBlinkLeft", 0.15, 0.5)):
        on = wide[rng.random(len(wide)) < p]
        expr[on, names.index(name)] = rng.uniform(lo, 1.0, len(on))
    for left, right in (("mouthSmileLeft", "mouthSmileRight"), ("eyeBlinkLeft", "eyeBlinkRight")):
        expr[:, names.index(right)] = np.maximum(expr[:, names.index(right)], expr[:, names.index(left)])
    expr[:n_narrow] *= 0.5
    expr[:n_narrow, [names.index(c) for c in CLOSED_MOUTH if c in names]] = 0
    limits = np.radians([[4, 6, 2]] * n_narrow + [[max_pitch_deg, max_yaw_deg, 5]] * n_wide)
    pose = rng.uniform(-1, 1, (n, 3)) * limits
    pose[:n_narrow][rng.random(n_narrow) < 0.5] = 0  # often exactly frontal
    trans = rng.normal(0, 0.004, (n, 3))
    expr = np.clip(expr, prior.lower, prior.upper).astype(np.float32)
    return k.replace(expression=expr, rotation=pose.astype(np.float32), translation=trans.astype(np.float32))


@dataclass
class GuidedSubject:
    """One subject's training tensors (S = size, s = S / p latent size, T frames, R reference sets)."""

    latents: torch.Tensor  # [z, T, s, s] float16, each frame encoded alone
    maps: torch.Tensor  # [4, T, S, S] float16 in [0, 1]
    coefficients: torch.Tensor  # [T, C]
    reference_sets: list[np.ndarray]  # R x [K_r] frame indices
    warp_latents: torch.Tensor  # [R, z, T, s, s] float16: the warp from each reference set
    warp_confidence: torch.Tensor  # [R, 1, T, s, s] float16, at latent resolution


def _reference_sets(n_narrow: int, n_frames: int, n_sets: int, max_refs: int, rng: np.random.Generator):
    """Mostly narrow frames (the first set: frame 0 alone, the frontal neutral case), sometimes any frame."""
    sets = [np.array([0])]
    while len(sets) < n_sets:
        k = int(rng.integers(1, max_refs + 1))
        pool = n_narrow if rng.random() < 0.75 else n_frames
        sets.append(np.sort(rng.choice(pool, size=min(k, pool), replace=False)))
    return sets


@torch.no_grad()
def prepare_guided_subject(capture, vae, size: int, *, n_narrow: int, n_sets: int = 3, max_refs: int = 3,
                           rng: np.random.Generator) -> GuidedSubject:
    """Encode a capture (narrow frames first) and the warp guidance from `n_sets` reference sets."""
    from liftdata.lifters.liftavatar.pipeline import encode_frames
    from liftdata.lifters.liftavatar.training import capture_tensors

    frames, maps, coefs = capture_tensors(capture, size)
    model = capture.head_model
    images = np.stack([np.asarray(f) for f in capture.frames])
    cond = render_conditions(model, capture.identity, capture.kinematics, capture.camera)
    spatial = vae.config.scale_factor_spatial
    encode = lambda x: torch.cat([encode_frames(vae, x[i:i + 16].permute(1, 0, 2, 3)[None])  # noqa: E731
                                  for i in range(0, len(x), 16)], dim=2)[0].half().cpu()
    sets = _reference_sets(n_narrow, len(images), n_sets, max_refs, rng)
    warp_z, warp_c = [], []
    for ref_idx in sets:
        ref_cond = render_conditions(model, capture.identity, capture.kinematics[ref_idx], capture.camera)
        warped, conf = warp_guidance(References(images[ref_idx], ref_cond), cond)
        warp_frames = torch.from_numpy(warped).permute(0, 3, 1, 2).float() / 255
        warp_z.append(encode(_resize(warp_frames, size)))
        c = _resize(torch.from_numpy(conf)[:, None].float(), size)
        warp_c.append(confidence_to_latent(c.permute(1, 0, 2, 3)[None], spatial, 1)[0].half())
    return GuidedSubject(encode(frames), maps.permute(1, 0, 2, 3).half(), coefs, sets,
                         torch.stack(warp_z), torch.stack(warp_c))


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    from liftdata.lifters.liftavatar.lifter import _resize as resize

    return resize(x, (size, size))


def sample_guided_batch(data: list[GuidedSubject], cfg, rng: np.random.Generator, *, residual: bool
                        ) -> dict[str, torch.Tensor | None]:
    """A batch of `cfg.num_frames`-frame targets (temporal factor 1) with their reference set's warp.

    Targets are frames outside the reference set; x0 is the target latents, or x0 - z_warp when
    `residual`. Reference / shading / coefficient dropout as in `training.sample_batch`; the warp
    guidance is never dropped (it is what the lifter always has at inference).
    """
    from liftdata.lifters.liftavatar.training import apply_dropout

    drops = rng.random(3)
    r = int(rng.integers(len(data[0].reference_sets)))
    k = None
    items = []
    for _ in range(cfg.batch_size):
        d = data[rng.integers(len(data))]
        refs = d.reference_sets[r]
        k = len(refs) if k is None else k
        refs = refs[:k] if len(refs) >= k else np.resize(refs, k)  # one K per batch
        free = np.setdiff1d(np.arange(d.latents.shape[1] - cfg.num_frames + 1), refs)
        start = int(rng.choice(free))
        span = np.arange(start, start + cfg.num_frames)
        x0 = d.latents[:, span].float()
        warp = d.warp_latents[r][:, span].float()
        items.append(dict(x0=x0 - warp if residual else x0, reference_latents=d.latents[:, refs].float(),
                          reference_maps=d.maps[:, refs].float() * 2 - 1, reference_coefficients=d.coefficients[refs],
                          driving_maps=d.maps[:, span].float() * 2 - 1, driving_coefficients=d.coefficients[span],
                          warp_latents=warp, warp_confidence=d.warp_confidence[r][:, span].float()))
    return apply_dropout({key: torch.stack([it[key] for it in items]) for key in items[0]}, cfg, drops)
