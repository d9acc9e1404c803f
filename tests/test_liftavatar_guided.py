"""Pixel-space autoencoder, warp guidance and full-range training data of the LiftAvatar lifter.

Independent references: explicit loops for the space-to-depth layout and the latent confidence,
closed-form outputs of the pipeline when the model predicts zero velocity, and the kinematic
ranges the training data promises.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from liftdata.lifters.liftavatar import LiftAvatarPipeline, LiftAvatarTransformer3DModel
from liftdata.lifters.liftavatar.data import GuidedSubject, sample_guided_batch, training_kinematics
from liftdata.lifters.liftavatar.pipeline import encode_frames
from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder
from liftdata.lifters.liftavatar.training import TrainConfig
from liftdata.lifters.liftavatar.transformer import confidence_to_latent

P = 4
MODEL = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=3 * P * P,
             out_channels=3 * P * P, text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32,
             coefficient_dim=5, shading_hidden=8, shading_channels=4, text_length=4, temporal_compression=1,
             spatial_compression=P)


# ---------------------------------------------------------------------- pixel-space autoencoder
def test_pixel_autoencoder_layout_matches_loops_and_round_trips():
    vae = PixelSpaceAutoencoder(patch=P)
    x = torch.randn(2, 3, 2, 8, 12, generator=torch.Generator().manual_seed(0))
    z = vae.encode(x).latent_dist.mode()
    assert z.shape == (2, 3 * P * P, 2, 2, 3)
    expected = torch.empty_like(z)
    for c in range(3):
        for i in range(P):
            for j in range(P):
                for y in range(2):
                    for xx in range(3):
                        expected[:, c * P * P + i * P + j, :, y, xx] = x[:, c, :, P * y + i, P * xx + j]
    assert torch.equal(z, expected)
    assert torch.equal(vae.decode(z).sample, x)
    assert (vae.config.z_dim, vae.config.scale_factor_spatial, vae.config.scale_factor_temporal) == (48, P, 1)


def test_pixel_autoencoder_save_load_and_bad_size(tmp_path):
    PixelSpaceAutoencoder(patch=2, pixel_std=0.25).save_pretrained(tmp_path / "vae")
    vae = PixelSpaceAutoencoder.from_pretrained(tmp_path / "vae")
    assert (vae.config.patch, vae.config.latents_std[0], len(vae.config.latents_mean)) == (2, 0.25, 12)
    with pytest.raises(ValueError, match="multiples of 2"):
        vae.encode(torch.zeros(1, 3, 1, 5, 4))


def test_encode_frames_then_decode_is_lossless():
    pipe = tiny_pipeline()
    clip = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = pipe.decode(encode_frames(pipe.vae, clip))  # [F, 3, H, W]
    assert torch.allclose(out, clip[0].permute(1, 0, 2, 3), atol=1e-6)


def test_confidence_to_latent_matches_loops():
    c = torch.rand(1, 1, 9, 8, 8, generator=torch.Generator().manual_seed(2))
    out = confidence_to_latent(c, spatial=2, temporal=4)
    assert out.shape == (1, 1, 3, 4, 4)
    groups = [[0], [1, 2, 3, 4], [5, 6, 7, 8]]  # causal: frame 0 alone, then groups of 4
    for g, frames in enumerate(groups):
        for y in range(4):
            for x in range(4):
                want = c[0, 0, frames, 2 * y:2 * y + 2, 2 * x:2 * x + 2].mean()
                assert torch.isclose(out[0, 0, g, y, x], want, atol=1e-6)


# ---------------------------------------------------------------------- transformer
def guided_inputs(b=1, k=2, f=2, h=4, w=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    s = P * h
    return dict(reference_latents=torch.randn(b, 48, k, h, w, generator=g),
                reference_maps=torch.rand(b, 4, k, s, s * w // h, generator=g),
                reference_coefficients=torch.randn(b, k, 5, generator=g),
                driving_maps=torch.rand(b, 4, f, s, s * w // h, generator=g),
                driving_coefficients=torch.randn(b, f, 5, generator=g),
                warp_latents=torch.randn(b, 48, f, h, w, generator=g),
                warp_confidence=torch.rand(b, 1, f, h, w, generator=g))


def test_warp_guidance_is_zero_initialised_and_the_paper_model_is_the_special_case():
    torch.manual_seed(0)
    guided = LiftAvatarTransformer3DModel(**MODEL, warp_guidance=True).eval()
    paper = LiftAvatarTransformer3DModel(**MODEL).eval()
    missing, unexpected = paper.load_state_dict(guided.state_dict(), strict=False)
    assert not missing and all(k.startswith("warp_patch_embedding") for k in unexpected)
    x, t = torch.randn(1, 48, 2, 4, 4), torch.tensor([500.0])
    inputs = guided_inputs()
    without = {k: v for k, v in inputs.items() if not k.startswith("warp_")}
    with torch.no_grad():
        out_guided = guided(x, t, **inputs).sample
        assert torch.allclose(out_guided, paper(x, t, **without).sample, atol=1e-6)
        guided.warp_patch_embedding.weight.normal_()
        assert not torch.allclose(guided(x, t, **inputs).sample, out_guided, atol=1e-3)


@pytest.mark.parametrize("bad", [dict(warp_residual=True), dict(spatial_compression=3)])
def test_bad_guidance_config_raises(bad):
    with pytest.raises(ValueError):
        LiftAvatarTransformer3DModel(**{**MODEL, **bad})


def test_shading_encoder_downsamples_by_spatial_compression():
    model = LiftAvatarTransformer3DModel(**MODEL)
    maps = torch.rand(1, 4, 3, 32, 24)
    assert model.driven_shading_encoder(maps).shape == (1, 4, 3, 8, 6)
    assert model.reference_shading_encoder(maps).shape == (1, 4, 3, 8, 6)


# ---------------------------------------------------------------------- pipeline
def tiny_pipeline(**config):
    torch.manual_seed(0)
    return LiftAvatarPipeline(LiftAvatarTransformer3DModel(**MODEL, **config).eval(), PixelSpaceAutoencoder(patch=P),
                              FlowMatchEulerDiscreteScheduler(shift=3.0))


def pipeline_inputs(n=3, size=16, seed=4):
    g = torch.Generator().manual_seed(seed)
    return dict(references=torch.rand(2, 3, size, size, generator=g),
                reference_maps=torch.rand(2, 4, size, size, generator=g),
                reference_coefficients=torch.randn(2, 5, generator=g),
                driving_maps=torch.rand(n, 4, size, size, generator=g),
                driving_coefficients=torch.randn(n, 5, generator=g),
                warp_frames=torch.rand(n, 3, size, size, generator=g))


def run(pipe, inputs, confidence, blend, steps=2):
    return pipe(**inputs, warp_confidence=confidence, warp_blend=blend, num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0), output_type="pt").frames


def test_blend_keeps_the_warp_where_confident_and_the_model_where_not():
    pipe = tiny_pipeline(warp_guidance=True)
    inputs = pipeline_inputs()
    ones, zeros = torch.ones(3, 1, 16, 16), torch.zeros(3, 1, 16, 16)
    assert torch.allclose(run(pipe, inputs, ones, True), inputs["warp_frames"], atol=1e-6)
    raw = run(pipe, inputs, zeros, False)
    assert torch.allclose(run(pipe, inputs, zeros, True), raw, atol=1e-6)
    half = torch.full((3, 1, 16, 16), 0.5)  # the confidence also enters the model: compare with its own raw output
    expected = 0.5 * inputs["warp_frames"] + 0.5 * run(pipe, inputs, half, False)
    assert torch.allclose(run(pipe, inputs, half, True), expected, atol=1e-6)


def test_residual_mode_adds_the_warp_back():
    """With zero velocity the sampler keeps the initial noise: frames = warp + std/2 * noise (pixels)."""
    pipe = tiny_pipeline(warp_guidance=True, warp_residual=True)
    with torch.no_grad():
        pipe.transformer.proj_out.weight.zero_()
        pipe.transformer.proj_out.bias.zero_()
    inputs = pipeline_inputs()
    out = run(pipe, inputs, torch.zeros(3, 1, 16, 16), False)
    noise = torch.randn(1, 48, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    noise_pixels = pipe.vae.decode(noise).sample[0].permute(1, 0, 2, 3)  # [F, 3, H, W]
    expected = (inputs["warp_frames"] + 0.25 * noise_pixels).clamp(0, 1)  # std 0.5 in [-1, 1] = 0.25 in [0, 1]
    assert torch.allclose(out, expected, atol=1e-5)


def test_guided_pipeline_input_errors():
    pipe = tiny_pipeline(warp_guidance=True)
    inputs = pipeline_inputs()
    with pytest.raises(ValueError, match="warp"):
        pipe(**{k: v for k, v in inputs.items() if k != "warp_frames"}, num_inference_steps=1)
    with pytest.raises(ValueError, match="warp_frames / warp_confidence: expected"):
        pipe(**inputs, warp_confidence=torch.ones(2, 1, 16, 16), num_inference_steps=1)
    paper = tiny_pipeline()
    with pytest.raises(ValueError, match="takes no"):
        paper(**inputs, warp_confidence=torch.ones(3, 1, 16, 16), num_inference_steps=1)


# ---------------------------------------------------------------------- training data
def test_training_kinematics_cover_the_missing_cases_and_narrow_frames_stay_narrow():
    from liftdata.head import load_head_model

    model = load_head_model("builtin")
    names = list(model.expression_names)
    k = training_kinematics(model, 40, 400, np.random.default_rng(0))
    narrow, wide = slice(0, 40), slice(40, None)
    yaw, pitch = np.degrees(k.rotation[:, 1]), np.degrees(k.rotation[:, 0])
    jaw, smile, blink = (k.expression[:, names.index(n)] for n in ("jawOpen", "mouthSmileLeft", "eyeBlinkLeft"))
    assert np.abs(yaw[narrow]).max() <= 6 and np.abs(pitch[narrow]).max() <= 4 and jaw[narrow].max() == 0
    assert np.abs(yaw[wide]).max() > 40 and np.abs(yaw[wide]).max() <= 45 and np.abs(pitch[wide]).max() > 15
    assert (jaw[wide] > 0.8).mean() > 0.1 and (smile[wide] > 0.8).mean() > 0.03 and (blink[wide] > 0.8).mean() > 0.02


def test_guided_batches_take_targets_outside_the_references_and_the_residual_to_the_warp():
    g = torch.Generator().manual_seed(5)
    t = 8
    subject = GuidedSubject(latents=torch.randn(48, t, 4, 4, generator=g).half(),
                            maps=torch.rand(4, t, 16, 16, generator=g).half(),
                            coefficients=torch.randn(t, 5, generator=g),
                            reference_sets=[np.array([0]), np.array([1, 2])],
                            warp_latents=torch.randn(2, 48, t, 4, 4, generator=g).half(),
                            warp_confidence=torch.rand(2, 1, t, 4, 4, generator=g).half())
    cfg = TrainConfig(output_dir="unused", num_frames=1, batch_size=1, dropout_references=0, dropout_shading=0,
                      dropout_coefficients=0)
    for step in range(30):
        batch = sample_guided_batch([subject], cfg, np.random.default_rng(step), residual=True)
        k = batch["reference_latents"].shape[2]
        r = 0 if k == 1 else 1
        refs = subject.reference_sets[r]
        assert torch.equal(batch["reference_latents"][0], subject.latents[:, refs].float())
        matches = [f for f in range(t) if torch.equal(batch["driving_coefficients"][0, 0], subject.coefficients[f])]
        assert len(matches) == 1 and matches[0] not in refs
        f = matches[0]
        want = subject.latents[:, [f]].float() - subject.warp_latents[r][:, [f]].float()
        assert torch.equal(batch["x0"][0], want)
        assert torch.equal(batch["warp_confidence"][0], subject.warp_confidence[r][:, [f]].float())


# ---------------------------------------------------------------------- end to end
def test_shipped_pixel_recipe_is_a_valid_guided_config():
    from liftdata.lifters.liftavatar import coefficient_dim
    from liftdata.lifters.liftavatar.training import load_config

    path = Path(__file__).resolve().parent.parent / "recipes" / "lifter" / "liftavatar-pixel-128.yaml"
    cfg = load_config(path, output_dir="elsewhere")
    model = LiftAvatarTransformer3DModel(**cfg.model)
    assert model.config.warp_guidance and model.config.coefficient_dim == coefficient_dim(33)
    assert cfg.autoencoder == "pixel" and PixelSpaceAutoencoder(**cfg.vae).config.z_dim == model.config.in_channels
    assert sum(p.numel() for p in model.parameters()) * 4 < 20e6  # the shipped checkpoint stays under 20 MB


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parent.parent / "recipes"
                                                           / "lifter").glob("*.yaml")))
def test_every_lifter_recipe_loads(name):
    """Every shipped train-lifter recipe parses into a TrainConfig (a renamed key would fail here, not
    after an hour of training); the pixel-space ones also build their transformer."""
    from liftdata.lifters.liftavatar.training import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "recipes" / "lifter" / name, output_dir="elsewhere")
    assert cfg.output_dir == "elsewhere" and cfg.steps > 0
    if cfg.autoencoder == "pixel":
        model = LiftAvatarTransformer3DModel(**cfg.model)
        assert PixelSpaceAutoencoder(**cfg.vae).config.z_dim == model.config.in_channels


@pytest.mark.slow
def test_guided_training_from_the_command_line_and_load_lifter(tmp_path):
    import yaml

    from liftdata.eval.lifter_cases import case_data
    from liftdata.lifters import load_lifter
    from liftdata.lifters.liftavatar.training import main

    model = {**MODEL, "coefficient_dim": 51, "warp_guidance": True, "warp_residual": True, "prediction_type": "sample"}
    cfg = {"output_dir": str(tmp_path / "run"), "autoencoder": "pixel", "vae": {"patch": P}, "model": model,
           "synthetic_identities": 1, "synthetic_frames": 6, "synthetic_narrow": 2, "reference_sets": 2, "size": 32,
           "num_frames": 1, "max_references": 2, "steps": 2, "log_every": 1}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main([str(tmp_path / "cfg.yaml")]) == 0
    # an x0 model samples with one step by default: the run writes that beside the weights
    assert json.loads((tmp_path / "run" / "final" / "lifter_config.json").read_text()) == {"num_inference_steps": 1}
    lifter = load_lifter("liftavatar", str(tmp_path / "run" / "final"))
    assert lifter.clip_frames == 1 and lifter.warp_blend and lifter.num_inference_steps == 1
    data = case_data(3000, "jaw", size=32, frames=3)
    frames = lifter.lift(data.references, data.driving)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    # expand scores it from its own guidance pass: the same frames and the same terms as two separate calls
    from liftdata.lifters.quality import lift_scored
    from liftdata.lifters.warp import WarpLifter

    scored = lift_scored(lifter, data.references, data.driving)
    expected = WarpLifter().lift_detailed(data.references, data.driving).quality
    assert np.array_equal(scored.frames, frames) and scored.terms.keys() == expected.keys()
    assert all(np.array_equal(scored.terms[k], expected[k]) for k in expected)


@pytest.mark.parametrize("steps", [1, 3])
def test_sample_prediction_with_residual_starts_as_the_warp(steps):
    """Sample prediction zero-initialises the head: x0_hat = 0 residual, so any sampler ends on the warp."""
    pipe = tiny_pipeline(warp_guidance=True, warp_residual=True, prediction_type="sample")
    inputs = pipeline_inputs()
    out = run(pipe, inputs, torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(6)), False, steps=steps)
    assert torch.allclose(out, inputs["warp_frames"], atol=1e-5)


class Fixed(torch.nn.Module):
    """A stand-in transformer that outputs a known tensor whatever the input."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t, return_dict=False, **kw):
        return (self.out,)


def test_sample_prediction_loss_is_the_x0_error_over_sigma():
    from liftdata.lifters.liftavatar.training import flow_matching_loss

    g = torch.Generator().manual_seed(7)
    x0, noise, x0_hat = (torch.randn(2, 48, 1, 4, 4, generator=g) for _ in range(3))
    sigmas = torch.tensor([0.5, 0.01])
    loss = flow_matching_loss(Fixed(x0_hat), {"x0": x0}, sigmas, noise, prediction="sample")
    s = torch.tensor([0.5, 0.05]).view(2, 1, 1, 1, 1)
    x_t = (1 - sigmas.view(2, 1, 1, 1, 1)) * x0 + sigmas.view(2, 1, 1, 1, 1) * noise
    v_hat, v = (x_t - x0_hat) / s, (x_t - x0) / s  # the velocity of the sample prediction, and the exact one
    assert torch.isclose(loss, ((v_hat - v) ** 2).mean(), rtol=1e-5)


@pytest.mark.parametrize("prediction", ["sample", "velocity"])
def test_confident_weight_spends_the_loss_where_the_warp_is_unsure(prediction):
    from liftdata.lifters.liftavatar.training import flow_matching_loss

    g = torch.Generator().manual_seed(3)
    x0, noise, out = (torch.randn(2, 12, 1, 4, 4, generator=g) for _ in range(3))
    c = torch.rand(2, 1, 1, 4, 4, generator=g)
    sigmas = torch.tensor([0.7, 0.3])
    batch = {"x0": x0, "warp_confidence": c}
    plain = flow_matching_loss(Fixed(out), {"x0": x0}, sigmas, noise, prediction=prediction)
    assert torch.isclose(flow_matching_loss(Fixed(out), batch, sigmas, noise, prediction=prediction), plain)
    # a slow per-pixel reference: the squared error of every element, weighted 0.1 c + (1 - c)
    s = sigmas.view(2, 1, 1, 1, 1)
    x_t = (1 - s) * x0 + s * noise
    sq = ((x_t - out) / s.clamp(min=0.05) - (x_t - x0) / s.clamp(min=0.05)) ** 2 if prediction == "sample" \
        else (out - (noise - x0)) ** 2
    num = den = 0.0
    for b, ch, f, y, x in np.ndindex(*sq.shape):
        w = 0.1 * float(c[b, 0, f, y, x]) + 1 - float(c[b, 0, f, y, x])
        num, den = num + w * float(sq[b, ch, f, y, x]), den + w
    weighted = flow_matching_loss(Fixed(out), batch, sigmas, noise, prediction=prediction, confident_weight=0.1)
    assert weighted.item() == pytest.approx(num / den, rel=1e-5)
    sure = {"x0": x0, "warp_confidence": torch.ones_like(c)}  # all confident: the same weight everywhere
    assert torch.isclose(flow_matching_loss(Fixed(out), sure, sigmas, noise, prediction=prediction,
                                            confident_weight=0.1), plain)
