"""Does the LiftAvatar lifter learn? Train a small config on synthetic identities, lift held-out ones.

Stages:
  0. a tiny Wan VAE (AutoencoderKLWan) fitted for reconstruction on the training frames, unless
     --pretrained points at a real Wan2.1-T2V diffusers checkpoint;
  1. a small LiftAvatar transformer trained with `liftdata.lifters.liftavatar.training.train` on
     synthetic captures (moderate expressions) of --train-identities subjects;
  2. held-out subjects, driven by held-out *extreme* expressions (several coefficients near their
     upper bound), are lifted from K references of their own moderate-expression frames by the
     trained lifter and by the warp lifter; PSNR / SSIM against the ground-truth renders.

Prints ONE JSON line; --out also writes it (commit it only from a real run).
Ablations: --no-shading, --no-coefficients, --references K (K=1 vs K=5).

Runs on CUDA when it is there (bf16 autocast with --mixed-precision bf16); --vae-seconds and
--train-seconds cap the two training stages by wall clock (the step counts are upper bounds).

Usage: python benchmarks/lifter_quality.py [--steps 2000] [--vae-steps 500] [--out results/lifter_quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from liftdata.lifters.base import References, render_conditions
from liftdata.lifters.liftavatar import LiftAvatarLifter, LiftAvatarPipeline, coefficient_dim
from liftdata.lifters.liftavatar.training import TrainConfig, prepare_data, train
from liftdata.synthetic import make_capture, sample_kinematics


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-identities", type=int, default=8)
    p.add_argument("--test-identities", type=int, default=2)
    p.add_argument("--frames", type=int, default=48, help="frames per training capture")
    p.add_argument("--num-frames", type=int, default=9, help="frames per clip (4n + 1)")
    p.add_argument("--references", type=int, default=5, help="max K in training, K at evaluation")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--vae-steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=24)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--inference-steps", type=int, default=20)
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--vae-dim", type=int, default=16, help="AutoencoderKLWan base_dim of the fitted VAE")
    p.add_argument("--vae-batch", type=int, default=1)
    p.add_argument("--vae-seconds", type=float, help="wall-clock cap of the VAE fit")
    p.add_argument("--train-seconds", type=float, help="wall-clock cap of the transformer training")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16"])
    p.add_argument("--no-shading", action="store_true", help="ablation: zero shading/normal maps")
    p.add_argument("--no-coefficients", action="store_true", help="ablation: zero coefficients")
    p.add_argument("--pretrained", help="a Wan2.1-T2V diffusers directory (skips the tiny VAE/DiT)")
    p.add_argument("--workdir", default="/tmp/lifter_quality")
    p.add_argument("--out")
    return p.parse_args(argv)


# ---------------------------------------------------------------------- data
def extreme_kinematics(model, n: int, rng: np.random.Generator):
    """Moderate head motion with 3 random expression coefficients held near their upper bound."""
    k = sample_kinematics(model, n, rng, expression_scale=0.3)
    expr = np.array(k.expression)
    idx = rng.choice(model.n_expression, size=3, replace=False)
    expr[:, idx] = rng.uniform(0.85, 1.0, size=3)
    return k.replace(expression=np.clip(expr, model.expression_prior().lower, model.expression_prior().upper))


def fit_vae(frames: torch.Tensor, steps: int, num_frames: int, seed: int = 0, *, base_dim: int = 16,
            batch: int = 1, max_seconds: float | None = None, device: str = "cpu"):
    """A small AutoencoderKLWan fitted to reconstruct clips [N, 3, T, S, S]; latent stats set from data.

    Returns (vae, steps run)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=base_dim, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    rng, began, step = np.random.default_rng(seed), time.time(), 0
    for step in range(steps):
        if max_seconds is not None and time.time() - began > max_seconds:
            break
        i, s = rng.integers(len(frames), size=batch), rng.integers(frames.shape[2] - num_frames + 1, size=batch)
        x = torch.stack([frames[a, :, b:b + num_frames] for a, b in zip(i, s, strict=True)]).to(device) * 2 - 1
        post = vae.encode(x).latent_dist
        loss = torch.nn.functional.mse_loss(vae.decode(post.mode()).sample, x) + 1e-4 * post.mode().pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        if (step + 1) % 100 == 0:
            print(f"vae step {step + 1} recon {loss.item():.4f}", flush=True)
    with torch.no_grad():
        z = vae.encode(frames[:4, :, :num_frames].to(device) * 2 - 1).latent_dist.mode()
    vae.register_to_config(latents_mean=z.mean((0, 2, 3, 4)).tolist(), latents_std=z.std((0, 2, 3, 4)).tolist())
    return vae.eval(), step + 1


def base_checkpoint(args, vae, directory: Path) -> Path:
    """A Wan2.1-T2V diffusers layout (random tiny DiT + fitted VAE) to start training from."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    torch.manual_seed(0)
    WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=args.heads, attention_head_dim=args.head_dim,
                          in_channels=16, out_channels=16, text_dim=32, freq_dim=64,
                          ffn_dim=4 * args.heads * args.head_dim,
                          num_layers=args.layers, rope_max_seq_len=64).save_pretrained(directory / "transformer")
    vae.save_pretrained(directory / "vae")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(directory / "scheduler")
    (directory / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return directory


def ablate(data, args):
    for d in data:
        if args.no_shading:
            d.maps = torch.full_like(d.maps, 0.5)  # 0 after the model's [-1, 1] mapping
        if args.no_coefficients:
            d.coefficients = torch.zeros_like(d.coefficients)
    return data


# ---------------------------------------------------------------------- evaluation
def psnr_ssim(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    p = np.mean([peak_signal_noise_ratio(g, f, data_range=255) for f, g in zip(pred, gt, strict=True)])
    s = np.mean([structural_similarity(g, f, channel_axis=-1, data_range=255) for f, g in zip(pred, gt, strict=True)])
    return float(p), float(s)


def evaluate(args, lifter, seeds: list[int]) -> dict:
    from liftdata.lifters.warp import WarpLifter

    lifters = {"liftavatar": lifter, "warp": WarpLifter()}
    scores = {name: [] for name in [*lifters, "vae_reconstruction"]}
    for seed in seeds:
        cap = make_capture(seed, args.frames, size=args.size, expression_scale=0.5)  # the subject's capture
        model = cap.head_model
        driving_k = extreme_kinematics(model, args.num_frames, np.random.default_rng([seed, 99]))
        gt = make_capture(seed, kinematics=driving_k, size=args.size)
        refs_idx = np.linspace(0, len(cap) - 1, args.references).round().astype(int)
        ref_cond = render_conditions(model, cap.identity, cap.kinematics[refs_idx], cap.camera)
        refs = References(np.stack([cap.frames[i] for i in refs_idx]), ref_cond)
        driving = render_conditions(model, cap.identity, driving_k, cap.camera)
        gt_frames = np.stack([gt.frames[i] for i in range(len(gt))])
        inputs = {"liftavatar": _ablated(refs, driving, args), "warp": (refs, driving)}
        for name, lf in lifters.items():
            scores[name].append(psnr_ssim(lf.lift(*inputs[name], seed=seed), gt_frames))
        scores["vae_reconstruction"].append(psnr_ssim(vae_roundtrip(lifter.pipeline, gt_frames), gt_frames))
    return {name: {"psnr": float(np.mean([s[0] for s in v])), "ssim": float(np.mean([s[1] for s in v]))}
            for name, v in scores.items()}


def vae_roundtrip(pipeline, frames: np.ndarray) -> np.ndarray:
    """The clip through the lifter's VAE (encode + decode): the ceiling of any latent lifter."""
    from liftdata.lifters.liftavatar.pipeline import encode_frames

    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255
    n = len(frames)
    padded = (n - 1 + 3) // 4 * 4 + 1
    clip = torch.cat([clip, clip[:, :, -1:].expand(-1, -1, padded - n, -1, -1)], dim=2)
    with torch.no_grad():
        out = pipeline.decode(encode_frames(pipeline.vae, clip))[:n]
    return (out.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _ablated(refs, driving, args):
    """Zero the ablated inputs of the diffusion lifter (the warp lifter always gets the real ones)."""
    import dataclasses

    def cond(c):
        maps = {k: (torch.full_like(v, 0.5) if args.no_shading and k in ("shading", "normal") else v)
                for k, v in c.maps.items()}
        kin = c.kinematics
        if args.no_coefficients:
            kin = neutral_kinematics_like(kin)
        return dataclasses.replace(c, maps=maps, kinematics=kin)

    return References(refs.images, cond(refs.conditions), refs.keys), cond(driving)


def neutral_kinematics_like(k):
    from liftdata.kinematics import Kinematics

    return Kinematics.zeros(len(k), k.expression.shape[1], k.head_model, k.head_model_version)


# ---------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse(argv)
    torch.set_num_threads(int(os.environ.get("LIFTDATA_THREADS", "1")))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_seeds = list(range(1000, 1000 + args.train_identities))
    test_seeds = list(range(2000, 2000 + args.test_identities))
    captures = [make_capture(s, args.frames, size=args.size, expression_scale=0.5) for s in train_seeds]
    t_data = time.time() - t0
    n_coef = coefficient_dim(captures[0].kinematics.expression.shape[1])
    vae_steps = 0
    if args.pretrained:
        base = Path(args.pretrained)
        vae = LiftAvatarPipeline.from_pretrained(base, text_length=512, coefficient_dim=n_coef).vae.to(device)
    else:
        frames = torch.stack([torch.from_numpy(np.stack(list(c.frames))).permute(3, 0, 1, 2) / 255.0
                              for c in captures]).float()
        vae, vae_steps = fit_vae(frames, args.vae_steps, args.num_frames, base_dim=args.vae_dim, batch=args.vae_batch,
                                 max_seconds=args.vae_seconds, device=device)
        base = base_checkpoint(args, vae, work / "base")
    t_vae = time.time() - t0 - t_data
    data = ablate(prepare_data(captures, vae, args.size, args.num_frames, stride=4), args)
    new_paths = {"coefficient_dim": n_coef, "text_length": 8 if not args.pretrained else 512,
                 "shading_hidden": 32, "shading_channels": 16}
    cfg = TrainConfig(output_dir=str(work / "run"), pretrained=str(base), model=new_paths, size=args.size,
                      num_frames=args.num_frames, max_references=args.references, steps=args.steps,
                      max_seconds=args.train_seconds, batch_size=args.batch_size,
                      mixed_precision=args.mixed_precision, learning_rate=args.lr, checkpoint_every=0, log_every=50)
    result = train(cfg, data)
    t_train = time.time() - t0 - t_vae - t_data
    lifter = LiftAvatarLifter.from_pretrained(result.pipeline_dir, device=device,
                                              num_inference_steps=args.inference_steps,
                                              guidance_scale=args.guidance_scale)
    scores = evaluate(args, lifter, test_seeds)
    curve = [float(np.mean(result.losses[i:i + 50])) for i in range(0, len(result.losses), 50)]
    report = {
        "benchmark": "lifter_quality", "scores": scores,
        "psnr_gain_over_warp_db": scores["liftavatar"]["psnr"] - scores["warp"]["psnr"],
        "training": {"steps": result.steps, "vae_steps": vae_steps, "batch_size": args.batch_size,
                     "vae_base_dim": args.vae_dim, "vae_batch": args.vae_batch,
                     "mixed_precision": args.mixed_precision, "data_seconds": round(t_data, 1),
                     "train_identities": args.train_identities, "frames_per_identity": args.frames,
                     "size": args.size, "num_frames": args.num_frames, "max_references": args.references,
                     "transformer": f"{args.layers} layers x {args.heads} heads x {args.head_dim}",
                     "loss_curve_per_50_steps": curve, "vae_seconds": round(t_vae, 1),
                     "train_seconds": round(t_train, 1)},
        "evaluation": {"test_identities": args.test_identities, "references": args.references,
                       "inference_steps": args.inference_steps, "guidance_scale": args.guidance_scale, "driving": "held-out extreme expressions"},
        "ablations": {"no_shading": args.no_shading, "no_coefficients": args.no_coefficients},
        "hardware": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(),
                     "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"},
    }
    print(json.dumps(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
