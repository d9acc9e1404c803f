"""LiftAvatar transformer, pipeline and lifter at tiny configs (CPU, seconds).

Independent references: diffusers' stock `WanTransformer3DModel` (with the same weights) and its
rope; causality checked by perturbing later frames.
"""

import json
import sys

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanTransformer3DModel

from liftdata.lifters.liftavatar import LiftAvatarLifter, LiftAvatarPipeline, LiftAvatarTransformer3DModel
from liftdata.lifters.liftavatar.transformer import CoefficientEmbedding, ShadingEncoder, rope_at

WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
           text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32)
NEW = dict(coefficient_dim=7, shading_hidden=8, shading_channels=4, text_length=8)
VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
C = 7


def tiny_wan(seed=0):
    torch.manual_seed(seed)
    return WanTransformer3DModel(**WAN).eval()


def ours(wan, seed=1, **config):
    context = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(seed))
    return LiftAvatarTransformer3DModel.from_wan(wan, context, **NEW, **config).eval()


def randomize_new_paths(model, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("reference_", "driven_", "driving_")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def conditions(k, n_pixel_frames, h=4, w=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    out = dict(driving_maps=torch.rand(1, 4, n_pixel_frames, 8 * h, 8 * w, generator=g),
               driving_coefficients=torch.randn(1, n_pixel_frames, C, generator=g))
    if k:
        out.update(reference_latents=torch.randn(1, 16, k, h, w, generator=g),
                   reference_maps=torch.rand(1, 4, k, 8 * h, 8 * w, generator=g),
                   reference_coefficients=torch.randn(1, k, C, generator=g))
    return out


T = torch.tensor([700.0])


# ---------------------------------------------------------------------- transformer
@pytest.mark.parametrize("driving_mode", ["add", "tokens"])
@pytest.mark.parametrize("reference_rope", ["prefix", "offset"])
def test_output_shapes_for_k_and_f(driving_mode, reference_rope):
    model = ours(tiny_wan(), driving_mode=driving_mode, reference_rope=reference_rope)
    randomize_new_paths(model)
    with torch.no_grad():
        for n_pixel in (1, 5, 9):
            latent_frames = (n_pixel - 1) // 4 + 1
            x = torch.randn(2, 16, latent_frames, 4, 6)
            for k in range(1, 6):
                cond = {key: v.expand(2, *v.shape[1:]) for key, v in conditions(k, n_pixel, 4, 6).items()}
                out = model(x, T.expand(2), **cond).sample
                assert out.shape == x.shape
                assert torch.isfinite(out).all()


@pytest.mark.parametrize("config", [{}, {"driving_mode": "tokens"}, {"reference_rope": "offset"}])
def test_matches_stock_wan_without_conditions(config):
    wan = tiny_wan()
    model = ours(wan, **config)
    randomize_new_paths(model)  # unused paths: must not matter
    x = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        expected = wan(x, T, model.text_context).sample
        assert torch.equal(model(x, T).sample, expected)


def test_zero_initialized_paths_keep_base_output():
    """At init, driving maps/coefficients change nothing and references act as plain latent frames."""
    wan = tiny_wan()
    model = ours(wan)
    x = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        base = wan(x, T, model.text_context).sample
        torch.testing.assert_close(model(x, T, **conditions(0, 9)).sample, base, rtol=0, atol=1e-6)
        cond = conditions(3, 9)
        stacked = torch.cat([cond["reference_latents"], x], dim=2)  # references prepended on the frame axis
        expected = wan(stacked, T, model.text_context).sample[:, :, 3:]
        torch.testing.assert_close(model(x, T, **cond).sample, expected, rtol=1e-5, atol=1e-5)


def test_offset_rope_places_references_after_targets():
    wan = tiny_wan()
    model = ours(wan, reference_rope="offset")
    x, cond = torch.randn(1, 16, 2, 4, 4), conditions(2, 5)
    with torch.no_grad():
        stacked = torch.cat([x, cond["reference_latents"]], dim=2)
        expected = wan(stacked, T, model.text_context).sample[:, :, :2]
        torch.testing.assert_close(model(x, T, **cond).sample, expected, rtol=1e-5, atol=1e-5)


def test_rope_at_matches_stock_rope():
    rope = tiny_wan().rope
    cos, sin = rope(torch.zeros(1, 16, 5, 6, 8))
    cos2, sin2 = rope_at(rope, torch.arange(5), 3, 4)
    assert torch.equal(cos, cos2) and torch.equal(sin, sin2)


def test_driven_encoders_are_causal_and_compress_4x8():
    torch.manual_seed(0)
    enc, coef = ShadingEncoder(4, 8, 4, temporal_factor=4), CoefficientEmbedding(C, 12, temporal_factor=4)
    torch.nn.init.normal_(coef.mlp[-1].weight)
    maps, c = torch.rand(1, 4, 9, 32, 40), torch.randn(1, 9, C)
    maps2, c2 = maps.clone(), c.clone()
    maps2[:, :, 5:], c2[:, 5:] = torch.rand(1, 4, 4, 32, 40), torch.randn(1, 4, C)  # frames of latent frame 2
    with torch.no_grad():
        a, b = enc(maps), enc(maps2)
        e, f = coef(c), coef(c2)
    assert a.shape == (1, 4, 3, 4, 5) and e.shape == (1, 3, 12)
    assert torch.equal(a[:, :, :2], b[:, :, :2]) and not torch.allclose(a[:, :, 2], b[:, :, 2])
    assert torch.equal(e[:, :2], f[:, :2]) and not torch.allclose(e[:, 2], f[:, 2])


def test_bad_config_raises():
    with pytest.raises(ValueError, match="driving_mode"):
        LiftAvatarTransformer3DModel(**WAN, **NEW, driving_mode="concat")
    with pytest.raises(ValueError, match="reference_rope"):
        LiftAvatarTransformer3DModel(**WAN, **NEW, reference_rope="none")


def test_transformer_save_load_round_trip(tmp_path):
    model = ours(tiny_wan(), driving_mode="tokens")
    randomize_new_paths(model)
    model.save_pretrained(tmp_path)
    loaded = LiftAvatarTransformer3DModel.from_pretrained(tmp_path).eval()
    assert loaded.config.driving_mode == "tokens"
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x, cond = torch.randn(1, 16, 2, 4, 4), conditions(2, 5)
    with torch.no_grad():  # same weights; BLAS may round differently on differently aligned memory
        torch.testing.assert_close(model(x, T, **cond).sample, loaded(x, T, **cond).sample, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- pipeline
def tiny_pipeline(scheduler=None):
    torch.manual_seed(0)
    model = ours(tiny_wan())
    randomize_new_paths(model)
    scheduler = scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0)
    return LiftAvatarPipeline(model, AutoencoderKLWan(**VAE).eval(), scheduler)


def pipeline_inputs(k=2, n=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(references=torch.rand(k, 3, size, size, generator=g),
                reference_maps=torch.rand(k, 4, size, size, generator=g),
                reference_coefficients=torch.randn(k, C, generator=g),
                driving_maps=torch.rand(n, 4, size, size, generator=g),
                driving_coefficients=torch.randn(n, C, generator=g))


def test_pipeline_is_deterministic_under_a_seed():
    pipe = tiny_pipeline()
    run = lambda seed, **kw: pipe(**pipeline_inputs(), num_inference_steps=3,  # noqa: E731
                                  generator=torch.Generator().manual_seed(seed), **kw).frames
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (5, 32, 32, 3) and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    guided = run(0, guidance_scale=3.0)
    assert guided.shape == a.shape and not np.array_equal(guided, a)


def test_pipeline_with_unipc_flow_scheduler():
    pipe = tiny_pipeline(UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 flow_shift=3.0))
    out = pipe(**pipeline_inputs(k=1, n=1), num_inference_steps=3, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_pipeline_rejects_bad_inputs():
    pipe = tiny_pipeline()
    bad = pipeline_inputs(n=6)
    with pytest.raises(ValueError, match="4n \\+ 1"):
        pipe(**bad, num_inference_steps=1)
    bad = pipeline_inputs()
    bad["reference_coefficients"] = bad["reference_coefficients"][:1]
    with pytest.raises(ValueError, match="reference_maps / reference_coefficients"):
        pipe(**bad, num_inference_steps=1)


def test_pipeline_save_load_round_trip(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    loaded = LiftAvatarPipeline.from_pretrained(tmp_path)
    for name in ("transformer", "vae"):
        a, b = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda c: {k: v for k, v in c.items() if k != "_use_default_values"}  # noqa: E731
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert drop(loaded.scheduler.config) == drop(pipe.scheduler.config)
    run = lambda p: p(**pipeline_inputs(), num_inference_steps=2,  # noqa: E731
                      generator=torch.Generator().manual_seed(0)).frames
    np.testing.assert_allclose(run(pipe), run(loaded), rtol=0, atol=1e-5)


def test_pipeline_from_base_wan_checkpoint(tmp_path):
    """A Wan2.1-T2V diffusers layout: Wan weights carried over, new paths initialised, no umT5."""
    wan = tiny_wan()
    wan.save_pretrained(tmp_path / "transformer")
    AutoencoderKLWan(**VAE).save_pretrained(tmp_path / "vae")
    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
                            ).save_pretrained(tmp_path / "scheduler")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    pipe = LiftAvatarPipeline.from_pretrained(tmp_path, text_length=8, coefficient_dim=C, driving_mode="tokens")
    model = pipe.transformer.eval()
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler) and model.config.driving_mode == "tokens"
    assert torch.equal(model.reference_patch_embedding.weight[:, :16], wan.patch_embedding.weight)
    assert torch.count_nonzero(model.reference_patch_embedding.weight[:, 16:]) == 0
    x = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        assert torch.equal(model(x, T).sample, wan(x, T, torch.zeros(1, 8, 16)).sample)


# ---------------------------------------------------------------------- lifter
def test_lifter_returns_uint8_frames_at_driving_size(tmp_path, capfd):
    from liftdata.head import load_head_model
    from liftdata.lifters.base import References, render_conditions
    from liftdata.lifters.liftavatar import coefficient_dim
    from liftdata.synthetic import make_capture

    cap = make_capture(0, n_frames=8, size=40)
    n_expr = cap.kinematics.expression.shape[1]
    torch.manual_seed(0)
    model = LiftAvatarTransformer3DModel(**WAN, **{**NEW, "coefficient_dim": coefficient_dim(n_expr)})
    pipe = LiftAvatarPipeline(model, AutoencoderKLWan(**VAE), FlowMatchEulerDiscreteScheduler())
    pipe.save_pretrained(tmp_path)
    lifter = LiftAvatarLifter.from_pretrained(tmp_path, num_inference_steps=2)
    head = load_head_model("builtin")
    ref_cond = render_conditions(head, cap.identity, cap.kinematics[:2], cap.camera)
    refs = References(np.stack([cap.frames[0], cap.frames[1]]), ref_cond)
    driving = render_conditions(head, cap.identity, cap.kinematics[2:8], cap.camera)
    frames = lifter.lift(refs, driving, seed=3)
    assert frames.shape == (6, 40, 40, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, lifter.lift(refs, driving, seed=3))

    # num_samples=2: the mean of the single-sample lifts seeded 3 and _generator(3, 1); each single
    # lift is rounded to 8 bits twice (model size 48 -> uint8 -> resized to 40 -> uint8), so the two
    # paths agree within 2 levels; the two samples differ, so the mean is neither of them
    from liftdata.lifters.liftavatar.lifter import _generator

    second = lifter.lift(refs, driving, seed=_generator(3, 1).initial_seed()).astype(int)
    assert np.abs(second - frames.astype(int)).max() > 4
    lifter.num_samples = 2
    mean = lifter.lift(refs, driving, seed=3).astype(int)
    gap = np.abs(mean - (frames.astype(int) + second) / 2)
    assert gap.max() <= 2 and gap.mean() < 0.2 * np.abs(second - frames.astype(int)).mean()
    lifter.num_samples = 1
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            LiftAvatarLifter(lifter.pipeline, num_samples=bad)

    # under an outer bar, as in expand, into a log (stderr not a terminal): no cursor-up escapes
    from tqdm.auto import tqdm

    capfd.readouterr()
    with tqdm(total=1, file=sys.stderr) as outer:
        lifter.lift(refs, driving, seed=3)
        outer.update()
    log = capfd.readouterr().err
    assert "1/1" in log and "\x1b[A" not in log

    bad = LiftAvatarLifter(tiny_pipeline())  # coefficient_dim 7: another head model
    with pytest.raises(ValueError, match="coefficients"):
        bad.lift(refs, driving)


def test_lifter_bfloat16_keeps_sensitive_modules_float32_and_agrees_with_float32(tmp_path):
    from liftdata.head import load_head_model
    from liftdata.lifters import load_lifter
    from liftdata.lifters.base import References, render_conditions
    from liftdata.lifters.liftavatar import coefficient_dim
    from liftdata.synthetic import make_capture

    cap = make_capture(0, n_frames=7, size=32)
    torch.manual_seed(0)
    model = LiftAvatarTransformer3DModel(**WAN, **{**NEW, "coefficient_dim": coefficient_dim(cap.kinematics.expression.shape[1])})
    LiftAvatarPipeline(model, AutoencoderKLWan(**VAE), FlowMatchEulerDiscreteScheduler()).save_pretrained(tmp_path)
    f32 = load_lifter("liftavatar", str(tmp_path), device="auto", torch_dtype=None, num_inference_steps=2)
    b16 = load_lifter("liftavatar", str(tmp_path), device="cpu", torch_dtype="bfloat16", num_inference_steps=2)
    t = b16.pipeline.transformer
    assert t.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert t.rope.freqs_cos.dtype == t.blocks[0].scale_shift_table.dtype == torch.float32  # as from_pretrained keeps them
    assert t.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    head = load_head_model("builtin")
    refs = References(np.stack([cap.frames[0]]), render_conditions(head, cap.identity, cap.kinematics[:1], cap.camera))
    driving = render_conditions(head, cap.identity, cap.kinematics[2:7], cap.camera)
    a, b = f32.lift(refs, driving, seed=1).astype(int), b16.lift(refs, driving, seed=1).astype(int)
    other_seed = np.abs(a - f32.lift(refs, driving, seed=2).astype(int)).mean()  # measured 2.3
    assert np.abs(a - b).mean() < 0.2 * other_seed  # bf16 rounding only (measured 0.007)
    with pytest.raises(ValueError, match="torch_dtype"):
        load_lifter("liftavatar", str(tmp_path), torch_dtype="int8")
    assert type(load_lifter("warp", device="cuda", torch_dtype="bfloat16")).__name__ == "WarpLifter"


def test_base_checkpoint_with_umt5_caches_the_empty_prompt(tmp_path):
    """With text_encoder/ + tokenizer/ (a tiny umT5 made here), "" is encoded once into text_context."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
                            ).save_pretrained(tmp_path / "tokenizer")
    torch.manual_seed(0)
    text_dim = WAN["text_dim"]
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=4, d_model=text_dim, d_kv=4, num_heads=2, num_layers=1,
                                          d_ff=32, pad_token_id=0, eos_token_id=1)).eval()
    encoder.save_pretrained(tmp_path / "text_encoder")
    tiny_wan().save_pretrained(tmp_path / "transformer")
    AutoencoderKLWan(**VAE).save_pretrained(tmp_path / "vae")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(tmp_path / "scheduler")

    pipe = LiftAvatarPipeline.from_pretrained(tmp_path, text_length=6, coefficient_dim=C)
    context = pipe.transformer.text_context
    ids = torch.tensor([[1, 0, 0, 0, 0, 0]])  # "" -> [</s>] padded to 6 (as WanPipeline encodes it)
    with torch.no_grad():
        expected = encoder(input_ids=ids, attention_mask=(ids == 1).long()).last_hidden_state[:, :1]
    assert context.shape == (1, 6, text_dim)
    torch.testing.assert_close(context[:, :1], expected)
    assert torch.count_nonzero(context[:, 1:]) == 0 and torch.count_nonzero(context[:, 0]) > 0
