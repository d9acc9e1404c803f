"""GPU readiness of the LiftAvatar lifter at the Wan2.1-1.3B size: train step, sampling, ours vs stock.

On one GPU, with the 1.3B-sized transformer (dim 1536 = 12 heads x 128, FFN 8960, 30 layers, text
dim 4096) at random init (no weights are downloaded) and a default-sized `AutoencoderKLWan`:

* `train_step_*`: one optimizer step of `liftdata.lifters.liftavatar.training.train` (accelerate,
  bf16 mixed precision, gradient checkpointing) on a clip of --frames frames + K=--references
  references at --size^2; full fine-tuning and LoRA (rank --lora-rank, new encoders trained
  fully). Median seconds per step after a warm-up step, and peak GPU memory.
* `sampling`: `LiftAvatarPipeline.__call__` (bf16 transformer) with --steps flow-matching steps:
  total seconds (references VAE-encoded, clip VAE-decoded), and peak memory; with and without
  classifier-free guidance (guidance doubles the batch).
* `forward_ours_over_stock`: one bf16 forward of our transformer (references + driving maps and
  coefficients) / one of the stock `WanTransformer3DModel` on the same number of tokens
  ((K + F') frames of latents), CUDA-event timed, median of --repeats. Target <= 1.2.

On a machine without CUDA (or with --quick) it runs a tiny config so the script itself is tested.

    python benchmarks/lifter_gpu.py [--size 512] [--frames 33] [--references 5] [--steps 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from liftdata.lifters.liftavatar import LiftAvatarPipeline, LiftAvatarTransformer3DModel, coefficient_dim
from liftdata.lifters.liftavatar.transformer import cast_model
from liftdata.lifters.liftavatar.training import ClipData, TrainConfig, train

WAN_1_3B = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096,
                freq_dim=256)
TINY = dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=32, freq_dim=32)
TINY_VAE = dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1)
N_COEF = coefficient_dim(33)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=33, help="driving frames, 4n + 1")
    p.add_argument("--references", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="sampling steps")
    p.add_argument("--train-steps", type=int, default=4, help="timed optimizer steps (after 1 warm-up)")
    p.add_argument("--lora-rank", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="tiny config (also used when there is no GPU)")
    return p.parse_args(argv)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else float("nan")


def _reset_peak():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def fake_data(args, z_dim: int = 16) -> list[ClipData]:
    """One subject of random latents/maps/coefficients shaped like `prepare_data`'s output."""
    g = torch.Generator().manual_seed(0)
    s, f_lat, t = args.size // 8, (args.frames - 1) // 4 + 1, args.frames + args.references
    return [ClipData(frame_latents=torch.randn(z_dim, t, s, s, generator=g),
                     maps=torch.rand(4, t, args.size, args.size, generator=g),
                     coefficients=torch.randn(t, N_COEF, generator=g) * 0.3,
                     clip_starts=[0], clip_latents=torch.randn(1, z_dim, f_lat, s, s, generator=g))]


def train_step_figures(args, model_cfg, vae_cfg, lora_rank: int, workdir: str) -> dict:
    _reset_peak()
    cfg = TrainConfig(output_dir=workdir, model={**model_cfg, "coefficient_dim": N_COEF}, vae=vae_cfg, size=args.size, num_frames=args.frames,
                      max_references=args.references, steps=args.train_steps + 1, learning_rate=1e-5,
                      dropout_references=0.0, dropout_shading=0.0, dropout_coefficients=0.0,
                      mixed_precision="bf16" if torch.cuda.is_available() else "no",
                      gradient_checkpointing=True, lora_rank=lora_rank, checkpoint_every=0, log_every=0,
                      save_final=False)
    result = train(cfg, fake_data(args))
    times = result.step_seconds[1:]
    return {"seconds_per_step": round(statistics.median(times), 3), "peak_memory_gb": _peak_gb(),
            "loss_finite": bool(np.isfinite(result.losses).all()), "lora_rank": lora_rank}


def time_forward(fn, repeats: int) -> float:
    """Median seconds of fn() (CUDA events on a GPU)."""
    with torch.no_grad():
        fn()
        fn()
        times = []
        for _ in range(repeats):
            if torch.cuda.is_available():
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_figures(args, model_cfg, device, dtype) -> dict:
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        ours = cast_model(LiftAvatarTransformer3DModel(**model_cfg, coefficient_dim=N_COEF), dtype).eval()
    s, f_lat, k = args.size // 8, (args.frames - 1) // 4 + 1, args.references
    rnd = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    cond = dict(reference_latents=rnd(1, 16, k, s, s), reference_maps=rnd(1, 4, k, args.size, args.size),
                reference_coefficients=rnd(1, k, N_COEF), driving_maps=rnd(1, 4, args.frames, args.size, args.size),
                driving_coefficients=rnd(1, args.frames, N_COEF))
    x, t = rnd(1, 16, f_lat, s, s), torch.tensor([500.0], device=device, dtype=dtype)
    t_ours = time_forward(lambda: ours(x, t, **cond, return_dict=False), args.repeats)
    n_params = sum(p.numel() for p in ours.parameters())
    ours = None  # free it before the stock model is built
    _reset_peak()
    with torch.device(device):
        stock = cast_model(WanTransformer3DModel(**model_cfg, patch_size=(1, 2, 2), in_channels=16,
                                                 out_channels=16, rope_max_seq_len=1024), dtype).eval()
    x_all, text = rnd(1, 16, f_lat + k, s, s), rnd(1, 512, model_cfg["text_dim"])
    t_stock = time_forward(lambda: stock(x_all, t, text, return_dict=False), args.repeats)
    stock = None
    tokens = (f_lat + k) * (s // 2) ** 2
    return {"tokens": tokens, "parameters_millions": round(n_params / 1e6, 1), "ours_seconds": round(t_ours, 4),
            "stock_seconds": round(t_stock, 4), "forward_ours_over_stock": round(t_ours / t_stock, 3)}


def sampling_figures(args, model_cfg, vae_cfg, device, dtype, guidance: float) -> dict:
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    _reset_peak()
    torch.manual_seed(0)
    with torch.device(device):
        transformer = cast_model(LiftAvatarTransformer3DModel(**model_cfg, coefficient_dim=N_COEF), dtype)
        pipe = LiftAvatarPipeline(transformer, AutoencoderKLWan(**vae_cfg), FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    k, n, size = args.references, args.frames, args.size
    inputs = dict(references=torch.rand(k, 3, size, size, generator=g),
                  reference_maps=torch.rand(k, 4, size, size, generator=g),
                  reference_coefficients=torch.randn(k, N_COEF, generator=g) * 0.3,
                  driving_maps=torch.rand(n, 4, size, size, generator=g),
                  driving_coefficients=torch.randn(n, N_COEF, generator=g) * 0.3)
    pipe(**inputs, num_inference_steps=1, guidance_scale=guidance)  # warm-up (kernels, allocator)
    _sync()
    t0 = time.perf_counter()
    frames = pipe(**inputs, num_inference_steps=args.steps, guidance_scale=guidance,
                  generator=torch.Generator().manual_seed(1)).frames
    _sync()
    seconds = time.perf_counter() - t0
    del pipe
    return {"seconds": round(seconds, 2), "seconds_per_step": round(seconds / args.steps, 3),
            "peak_memory_gb": _peak_gb(), "guidance_scale": guidance, "output_shape": list(frames.shape),
            "output_finite": bool(np.isfinite(frames).all())}


def main(argv=None) -> dict:
    args = parse(argv)
    gpu = torch.cuda.is_available() and not args.quick
    if not gpu:
        torch.set_num_threads(1)
        args.size, args.frames, args.references, args.steps = 64, 9, 2, 2
        args.train_steps, args.repeats, args.lora_rank = 2, 2, 4
    model_cfg = WAN_1_3B if gpu else TINY
    vae_cfg = {} if gpu else TINY_VAE  # {}: AutoencoderKLWan's defaults, the Wan2.1 VAE's size
    device, dtype = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    report = {"benchmark": "lifter_gpu", "config": "wan2.1-1.3b" if gpu else "tiny (no GPU or --quick)",
              "size": args.size, "frames": args.frames, "references": args.references,
              "sampling_steps": args.steps}
    report["forward"] = forward_figures(args, model_cfg, device, dtype)
    print(json.dumps(report["forward"]), flush=True)
    with tempfile.TemporaryDirectory() as work:
        report["train_step_full"] = train_step_figures(args, model_cfg, vae_cfg, 0, work)
        print(json.dumps(report["train_step_full"]), flush=True)
        report["train_step_lora"] = train_step_figures(args, model_cfg, vae_cfg, args.lora_rank, work)
        print(json.dumps(report["train_step_lora"]), flush=True)
    report["sampling"] = sampling_figures(args, model_cfg, vae_cfg, device, dtype, 1.0)
    report["sampling_cfg"] = sampling_figures(args, model_cfg, vae_cfg, device, dtype, 2.0)
    report["forward_ours_over_stock"] = report["forward"]["forward_ours_over_stock"]
    report["hardware"] = {"platform": platform.platform(), "torch": torch.__version__,
                          "device": torch.cuda.get_device_name() if gpu else "cpu"}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
