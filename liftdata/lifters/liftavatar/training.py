"""Flow-matching training of the LiftAvatar transformer (`liftdata train-lifter CONFIG`).

One step (paper section "training"; Wan / SD3 rectified flow):
    x0 = VAE latents of a clip of F frames (precomputed), eps ~ N(0, I), sigma ~ logit-normal or shifted
    x_t = (1 - sigma) x0 + sigma eps,           target = eps - x0,    t = 1000 sigma
    loss = || v_theta(x_t, t | x^R, x^D) - target ||^2   on the target frames only
with K in 1..max_references references of the same subject (each encoded alone) and independent
dropout of the references, the driving shading maps and the driving coefficients (the null
condition of classifier-free guidance: no references / zero maps / zero coefficients).

Data: saved `Capture` directories and/or synthetic multi-identity captures. VAE latents of every
frame (as a reference) and of every training clip are computed once before training. The text
context is the transformer's cached empty-prompt embedding: umT5 never loads.

Checkpoints: `output_dir/checkpoint-{step}/pipeline` (a `LiftAvatarPipeline` with LoRA merged, for
`LiftAvatarLifter.from_pretrained`) and `.../state` (accelerate state, for `resume`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from liftdata._extras import require
from liftdata.lifters.liftavatar.pipeline import LiftAvatarPipeline, encode_frames
from liftdata.lifters.liftavatar.transformer import LiftAvatarTransformer3DModel

__all__ = ["TrainConfig", "ClipData", "prepare_data", "sample_batch", "flow_matching_loss", "train",
           "save_pipeline", "load_config", "main"]

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
NEW_MODULES = ("reference_", "driven_", "driving_", "warp_")  # prefixes of the paths trained fully
LR_SCHEDULES = ("constant", "cosine")  #: TrainConfig.lr_schedule


@dataclass
class TrainConfig:
    """Everything `train` needs; read from a YAML/JSON file by `load_config`."""

    output_dir: str
    pretrained: str | None = None  #: our pipeline or a base Wan2.1-T2V diffusers directory
    model: dict[str, Any] = field(default_factory=dict)  #: transformer kwargs (fresh model, or new-path options)
    vae: dict[str, Any] = field(default_factory=dict)  #: autoencoder kwargs when `pretrained` is None
    autoencoder: str = "wan"  #: "wan" (AutoencoderKLWan) or "pixel" (the exact PixelSpaceAutoencoder)
    captures: list[str] = field(default_factory=list)  #: `Capture.save` directories
    synthetic_identities: int = 0  #: add this many synthetic captures (seeds synthetic_seed + i)
    synthetic_frames: int = 32
    synthetic_seed: int = 0
    synthetic_motion: dict[str, Any] = field(default_factory=dict)  #: sample_kinematics options
    synthetic_narrow: int = 0  #: > 0: full-range subjects (data.training_kinematics), this many narrow frames first
    reference_sets: int = 3  #: warp-guided training: reference sets (and warps) per subject
    stream: list[str] = field(default_factory=list)  #: dataset dirs / capture folders read as a stream (stream.py)
    stream_buffer: int = 32  #: frames of one subject buffered at a time when streaming
    size: int = 64  #: frames and maps are resized to size x size
    num_frames: int = 9  #: pixel frames per training clip, 4n + 1
    clip_stride: int = 4
    max_references: int = 5  #: K is drawn from 1..max_references
    steps: int = 1000
    max_seconds: float | None = None  #: stop (and save) after the step that exceeds this wall-clock budget
    batch_size: int = 1
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    """"constant", or "cosine": from `learning_rate` down to 0 at step `steps` (set `steps` to what the
    run will reach: a `max_seconds` stop before it leaves the rate where it was)."""
    lr_warmup_steps: int = 0  #: linear warm-up from 0 over the first steps (either schedule)
    weight_decay: float = 0.0
    sigma_sampling: str = "logit_normal"  #: "logit_normal" or "shift"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 3.0
    dropout_references: float = 0.1
    dropout_shading: float = 0.1
    dropout_coefficients: float = 0.1
    confident_weight: float = 1.0
    """Warp-guided training: the loss weight where the warp is confident (c = 1), per pixel
    `confident_weight * c + (1 - c)`. 1 is the plain loss. The lifter's blend replaces confident
    pixels with the warp anyway, so a lower weight spends the model on what the warp does not know."""
    lora_rank: int = 0  #: 0 trains every weight; > 0 LoRA on attention + FFN, new encoders fully
    lora_alpha: float | None = None  #: defaults to lora_rank
    mixed_precision: str = "no"  #: accelerate: "no", "bf16", "fp16"
    gradient_checkpointing: bool = False
    gradient_accumulation_steps: int = 1
    checkpoint_every: int = 500
    save_final: bool = True  #: write output_dir/final (a loadable pipeline) at the end
    resume: str | None = None  #: "latest" or a checkpoint directory
    seed: int = 0
    log_every: int = 10


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """A `TrainConfig` from YAML or JSON; unknown keys raise an error naming them."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown := sorted(set(raw) - known):
        raise ValueError(f"{path}: unknown config keys {unknown}")
    if "output_dir" not in raw:
        raise ValueError(f"{path}: missing required key 'output_dir'")
    return TrainConfig(**raw)


# ---------------------------------------------------------------------- data
@dataclass
class ClipData:
    """Precomputed tensors of one capture (size S, latent size s = S / 8, T frames)."""

    frame_latents: torch.Tensor  # [z, T, s, s] every frame encoded alone (references)
    maps: torch.Tensor  # [4, T, S, S] in [0, 1]
    coefficients: torch.Tensor  # [T, C]
    clip_starts: list[int]
    clip_latents: torch.Tensor  # [n_clips, z, F', s, s]


def _captures(cfg: TrainConfig) -> list:
    from liftdata.capture import Capture
    from liftdata.synthetic import make_capture

    caps = [Capture.load(p) for p in cfg.captures]
    for i in range(cfg.synthetic_identities):
        kin = None
        if cfg.synthetic_narrow:
            from liftdata.head import load_head_model
            from liftdata.lifters.liftavatar.data import training_kinematics

            kin = training_kinematics(load_head_model("builtin"), cfg.synthetic_narrow,
                                      cfg.synthetic_frames - cfg.synthetic_narrow,
                                      np.random.default_rng([cfg.synthetic_seed + i, 3]), **cfg.synthetic_motion)
        caps.append(make_capture(cfg.synthetic_seed + i, cfg.synthetic_frames, kinematics=kin, size=cfg.size,
                                 **({} if cfg.synthetic_narrow else cfg.synthetic_motion)))
    if not caps:
        raise ValueError("config: no training data (set captures and/or synthetic_identities)")
    return caps


def capture_tensors(capture, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames [T, 3, S, S] and maps [T, 4, S, S] in [0, 1], coefficients [T, C] of a capture."""
    from liftdata.lifters.base import render_conditions
    from liftdata.lifters.liftavatar.lifter import _resize, pack_coefficients, pack_maps

    frames = torch.from_numpy(np.stack([np.asarray(f) for f in capture.frames])).permute(0, 3, 1, 2) / 255.0
    cond = render_conditions(capture.head_model, capture.identity, capture.kinematics,
                             capture.camera.resized(size, size))
    return _resize(frames.float(), (size, size)), pack_maps(cond.maps), pack_coefficients(capture.kinematics)


def prepare_data(captures: list, vae, size: int, num_frames: int, stride: int) -> list[ClipData]:
    """VAE latents of every frame (alone) and of every clip window, once, before training."""
    data = []
    for cap in captures:
        frames, maps, coefs = capture_tensors(cap, size)
        if len(frames) < num_frames:
            raise ValueError(f"capture {cap.capture_id!r}: {len(frames)} frames, clips need {num_frames}")
        singles = torch.cat([encode_frames(vae, frames[i:i + 8][:, :, None]) for i in range(0, len(frames), 8)])
        starts = list(range(0, len(frames) - num_frames + 1, stride))
        clips = torch.cat([encode_frames(vae, frames[s:s + num_frames].permute(1, 0, 2, 3)[None]) for s in starts])
        data.append(ClipData(singles[:, :, 0].permute(1, 0, 2, 3).cpu(), maps.permute(1, 0, 2, 3), coefs,
                             starts, clips.cpu()))
    return data


def sample_batch(data: list[ClipData], cfg: TrainConfig, rng: np.random.Generator) -> dict[str, torch.Tensor | None]:
    """One batch of clips with K references of the same subject and the step's condition dropout.

    K and the dropout draws are shared by the batch (one draw per step).
    """
    k = int(rng.integers(1, cfg.max_references + 1))
    drops = rng.random(3)
    items = []
    for _ in range(cfg.batch_size):
        d = data[rng.integers(len(data))]
        c = int(rng.integers(len(d.clip_starts)))
        span = np.arange(d.clip_starts[c], d.clip_starts[c] + cfg.num_frames)
        refs = rng.choice(d.frame_latents.shape[1], size=k, replace=d.frame_latents.shape[1] < k)
        items.append(dict(x0=d.clip_latents[c], reference_latents=d.frame_latents[:, refs],
                          reference_maps=d.maps[:, refs] * 2 - 1, reference_coefficients=d.coefficients[refs],
                          driving_maps=d.maps[:, span] * 2 - 1, driving_coefficients=d.coefficients[span]))
    return apply_dropout({key: torch.stack([it[key] for it in items]) for key in items[0]}, cfg, drops)


def apply_dropout(batch: dict[str, torch.Tensor | None], cfg: TrainConfig, draws: np.ndarray | np.random.Generator
                  ) -> dict[str, torch.Tensor | None]:
    """Condition dropout of a batch: no references / zero driving maps / zero coefficients.

    `draws`: three uniform numbers (or a generator to draw them from), compared with the dropout rates.
    """
    if isinstance(draws, np.random.Generator):
        draws = draws.random(3)
    drop_refs, drop_maps, drop_coefs = draws < [cfg.dropout_references, cfg.dropout_shading, cfg.dropout_coefficients]
    if drop_refs:
        batch.update(reference_latents=None, reference_maps=None, reference_coefficients=None)
    if drop_maps:
        batch["driving_maps"] = torch.zeros_like(batch["driving_maps"])
    if drop_coefs:
        batch["driving_coefficients"] = torch.zeros_like(batch["driving_coefficients"])
    return batch


# ---------------------------------------------------------------------- objective
def sample_sigmas(cfg: TrainConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """sigma in (0, 1): logit-normal (SD3) or uniform mapped by the time shift s u / (1 + (s - 1) u)."""
    if cfg.sigma_sampling == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator) * cfg.logit_std + cfg.logit_mean)
    if cfg.sigma_sampling == "shift":
        u = torch.rand(n, generator=generator)
        return cfg.shift * u / (1 + (cfg.shift - 1) * u)
    raise ValueError(f"sigma_sampling: expected 'logit_normal' or 'shift', got {cfg.sigma_sampling!r}")


def flow_matching_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor | None], sigmas: torch.Tensor,
                       noise: torch.Tensor, dtype: torch.dtype = torch.float32, prediction: str = "velocity",
                       confident_weight: float = 1.0) -> torch.Tensor:
    """MSE between the velocity and eps - x0 on the target frames (the model outputs only those).

    `model` may be wrapped (DDP); `dtype` is the transformer's parameter dtype. With
    `prediction="sample"` the model outputs x0 and its velocity is (x_t - x0_hat) / sigma, so the
    loss is ||x0 - x0_hat||^2 / sigma^2 (sigma clipped at 0.05, as in "Back to Basics").
    `confident_weight` < 1 (with warp guidance) weights each pixel by `w c + (1 - c)` (c: the warp's
    confidence; `TrainConfig.confident_weight`), normalised by the mean weight.
    """
    x0 = batch["x0"]
    s = sigmas.view(-1, 1, 1, 1, 1).to(x0)
    x_t = (1 - s) * x0 + s * noise
    conditions = {k: (v.to(dtype) if v is not None else None) for k, v in batch.items() if k != "x0"}
    pred = model(x_t.to(dtype), (sigmas * 1000).to(x0.device, dtype), **conditions, return_dict=False)[0]
    if prediction == "sample":
        err = ((pred.float() - x0.float()) / s.float().clamp(min=0.05)) ** 2
    else:
        err = (pred.float() - (noise - x0).float()) ** 2
    c = batch.get("warp_confidence")
    if confident_weight == 1.0 or c is None:
        return err.mean()
    w = (confident_weight * c.float() + (1 - c.float())).expand_as(err)
    return (w * err).sum() / w.sum()


# ---------------------------------------------------------------------- model set-up
def build_pipeline(cfg: TrainConfig) -> LiftAvatarPipeline:
    if cfg.pretrained is not None:
        return LiftAvatarPipeline.from_pretrained(cfg.pretrained, **cfg.model)
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder

    if cfg.autoencoder not in ("wan", "pixel"):
        raise ValueError(f"autoencoder: expected 'wan' or 'pixel', got {cfg.autoencoder!r}")
    torch.manual_seed(cfg.seed)
    vae = PixelSpaceAutoencoder(**cfg.vae) if cfg.autoencoder == "pixel" else AutoencoderKLWan(**cfg.vae)
    return LiftAvatarPipeline(LiftAvatarTransformer3DModel(**cfg.model), vae,
                              FlowMatchEulerDiscreteScheduler(shift=cfg.shift))


def make_trainable(model: LiftAvatarTransformer3DModel, lora_rank: int, lora_alpha: float | None) -> list:
    """Full fine-tuning (rank 0) or LoRA on attention + FFN with the new condition paths trained fully."""
    if lora_rank > 0:
        LoraConfig = require("peft", "train").LoraConfig  # noqa: N806

        model.requires_grad_(False)
        model.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_alpha or lora_rank, target_modules=LORA_TARGETS,
                                     init_lora_weights=True))
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name or name.startswith(NEW_MODULES))
    return [p for p in model.parameters() if p.requires_grad]


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with any LoRA merged in, under the plain (adapter-free) names."""
    BaseTunerLayer = require("peft.tuners.tuners_utils", "train").BaseTunerLayer  # noqa: N806

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for m in layers:
        m.merge()
    state = {k.replace(".base_layer.", "."): v.detach().clone().contiguous()
             for k, v in model.state_dict().items() if "lora_" not in k}
    for m in layers:
        m.unmerge()
    return state


def save_pipeline(pipeline: LiftAvatarPipeline, model: torch.nn.Module, directory: str | Path) -> Path:
    """Write a loadable pipeline directory; the transformer's weights from `model` (LoRA merged)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    pipeline.vae.save_pretrained(directory / "vae")
    pipeline.scheduler.save_pretrained(directory / "scheduler")
    model.save_config(directory / "transformer")
    save_file(merged_state_dict(model), directory / "transformer" / "diffusion_pytorch_model.safetensors")
    index = {"_class_name": "LiftAvatarPipeline",
             "transformer": [LiftAvatarTransformer3DModel.__module__, "LiftAvatarTransformer3DModel"],
             "vae": [type(pipeline.vae).__module__.split(".")[0], type(pipeline.vae).__name__],
             "scheduler": ["diffusers", type(pipeline.scheduler).__name__]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    if model.config.prediction_type == "sample":  # x0 models: sample with one step by default (lifter_config.json)
        # (the small pixel-space checkpoints measured best at 1 step: 20 or 30 steps lost 1-5 dB on the easy cases,
        # benchmarks/results/lifter_quality_steps20.json, lifter_quality_sampling_steps{1,30}.json)
        from liftdata.lifters.liftavatar.lifter import LIFTER_CONFIG

        (directory / LIFTER_CONFIG).write_text(json.dumps({"num_inference_steps": 1}))
    from liftdata.lifters.liftavatar.pipeline import write_remote_code

    write_remote_code(directory)  # loadable by diffusers.DiffusionPipeline(..., trust_remote_code=True) too
    return directory


def _latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


# ---------------------------------------------------------------------- loop
@dataclass
class TrainResult:
    losses: list[float]  #: per optimizer step
    pipeline_dir: Path | None  #: the final pipeline (None when cfg.save_final is False)
    steps: int
    step_seconds: list[float] = field(default_factory=list)  #: wall time of each step (GPU synchronised)
    learning_rates: list[float] = field(default_factory=list)  #: the rate each step's optimizer used


def prepare_guided_data(captures: list, vae, cfg: TrainConfig) -> list:
    """Warp-guided training data (data.py): per subject, `cfg.reference_sets` reference sets and their warps."""
    from liftdata.lifters.liftavatar.data import prepare_guided_subject

    if not cfg.synthetic_narrow or cfg.captures:
        raise ValueError("config: warp-guided training needs synthetic_narrow > 0 (full-range synthetic subjects)")
    return [prepare_guided_subject(cap, vae, cfg.size, n_narrow=cfg.synthetic_narrow, n_sets=cfg.reference_sets,
                                   max_refs=cfg.max_references, rng=np.random.default_rng([cfg.seed, i]))
            for i, cap in enumerate(captures)]


def train(cfg: TrainConfig, data: list | None = None) -> TrainResult:
    """Run the flow-matching loop of `cfg`; `data` skips capture loading/encoding (tests, benchmarks)."""
    accelerate = require("accelerate", "train")

    out = Path(cfg.output_dir)
    # condition dropout leaves whole paths without gradients in some steps: DDP must allow that
    ddp = accelerate.utils.DistributedDataParallelKwargs(find_unused_parameters=True)
    acc = accelerate.Accelerator(mixed_precision=cfg.mixed_precision, kwargs_handlers=[ddp],
                                 cpu=not torch.cuda.is_available(),  # CPU-only: torchrun ranks use gloo
                                 gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    pipe = build_pipeline(cfg)
    factor = pipe.vae.config.scale_factor_temporal
    if (cfg.num_frames - 1) % factor:
        raise ValueError(f"num_frames: must be {factor}n + 1, got {cfg.num_frames}")
    if not 0.0 <= cfg.confident_weight <= 1.0:
        raise ValueError(f"confident_weight: expected a weight in [0, 1], got {cfg.confident_weight}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {list(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if not 0 <= cfg.lr_warmup_steps < cfg.steps:
        raise ValueError(f"lr_warmup_steps: expected 0 <= lr_warmup_steps < steps ({cfg.steps}), "
                         f"got {cfg.lr_warmup_steps}")
    pipe.vae.to(acc.device)
    model = pipe.transformer
    guided = model.config.warp_guidance
    if data is None and cfg.stream:
        from liftdata.lifters.liftavatar.stream import StreamingData

        data = StreamingData(cfg.stream, pipe.vae, rank=acc.process_index, world_size=acc.num_processes,
                             size=cfg.size, buffer_frames=cfg.stream_buffer, guided=guided,
                             residual=model.config.warp_residual, seed=cfg.seed)
    elif data is None and guided:
        data = prepare_guided_data(_captures(cfg), pipe.vae, cfg)
    elif data is None:
        data = prepare_data(_captures(cfg), pipe.vae, cfg.size, cfg.num_frames, cfg.clip_stride)
    if hasattr(data, "batch"):  # a stream
        draw = lambda d, c, r: d.batch(c, r)  # noqa: E731
    elif guided:
        from functools import partial

        from liftdata.lifters.liftavatar.data import sample_guided_batch

        draw = partial(sample_guided_batch, residual=model.config.warp_residual)
    else:
        draw = sample_batch
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    params = make_trainable(model, cfg.lora_rank, cfg.lora_alpha)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)

    start = 0
    resume = _latest_checkpoint(out) if cfg.resume == "latest" else (Path(cfg.resume) if cfg.resume else None)
    if resume is not None:
        acc.load_state(str(resume / "state"))
        start = json.loads((resume / "step.json").read_text())["step"]

    losses, step_seconds, rates = [], [], []
    model.train()
    began = time.perf_counter()
    for step in range(start, cfg.steps):
        if cfg.max_seconds is not None and time.perf_counter() - began > cfg.max_seconds:
            acc.print(f"stopping after {step} steps: max_seconds={cfg.max_seconds} reached")
            break
        tic = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, step])  # per-step streams: resuming replays the same batches
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        batch = {k: (v.to(acc.device) if v is not None else None) for k, v in draw(data, cfg, rng).items()}
        sigmas = sample_sigmas(cfg, cfg.batch_size, gen)
        noise = torch.randn(batch["x0"].shape, generator=gen).to(acc.device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(cfg, step)
        with acc.accumulate(model), acc.autocast():
            inner = acc.unwrap_model(model)
            loss = flow_matching_loss(model, batch, sigmas, noise, inner.dtype, inner.config.prediction_type,
                                      cfg.confident_weight)
            acc.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.detach().item())  # .item() synchronises: the step time below is real
        rates.append(optimizer.param_groups[0]["lr"])
        step_seconds.append(time.perf_counter() - tic)
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            acc.print(f"step {step + 1}/{cfg.steps} loss {np.mean(losses[-cfg.log_every:]):.4f} "
                      f"({np.mean(step_seconds[-cfg.log_every:]):.3f} s/step)")
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and acc.is_main_process:
            _checkpoint(acc, pipe, model, out / f"checkpoint-{step + 1}", step + 1, cfg)
    if hasattr(data, "consumed"):  # which shards this rank read (disjoint across ranks)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"stream-rank{acc.process_index}.json").write_text(json.dumps(data.consumed))
    final = out / "final" if cfg.save_final else None
    if final is not None and acc.is_main_process:
        save_pipeline(pipe, acc.unwrap_model(model), final)
        _write_config(final, cfg)
        (final / "training_log.json").write_text(json.dumps({"steps": start + len(losses), "losses": losses,
                                                             "step_seconds": step_seconds,
                                                             "learning_rates": rates}))
    # Ranks leave together and close their process group: a rank that exits with gloo's threads
    # still running can die in teardown ("terminate called without an active exception", SIGABRT)
    # after its work is done.
    acc.wait_for_everyone()
    acc.end_training()
    return TrainResult(losses, final, start + len(losses), step_seconds, rates)


def learning_rate_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based) under `cfg.lr_schedule` and warm-up.

    A function of the step alone, so `resume` continues the schedule exactly."""
    rate = cfg.learning_rate
    if cfg.lr_warmup_steps and step < cfg.lr_warmup_steps:
        rate *= (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "cosine":
        rate *= 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return rate


def _write_config(pipeline_dir: Path, cfg: TrainConfig) -> None:
    """The TrainConfig next to the weights: how to reproduce them, and the lifter's clip length."""
    (pipeline_dir / "training_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))


def _checkpoint(acc, pipe: LiftAvatarPipeline, model, directory: Path, step: int, cfg: TrainConfig) -> None:
    acc.save_state(str(directory / "state"))
    save_pipeline(pipe, acc.unwrap_model(model), directory / "pipeline")
    _write_config(directory / "pipeline", cfg)
    (directory / "step.json").write_text(json.dumps({"step": step}))


def main(argv: list[str] | None = None) -> int:
    """`liftdata train-lifter CONFIG [--output-dir D] [--steps N] [--resume latest|DIR]`."""
    parser = argparse.ArgumentParser(prog="liftdata train-lifter", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML or JSON file with TrainConfig fields")
    parser.add_argument("--output-dir", dest="output_dir")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--resume", help="'latest' or a checkpoint directory")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, output_dir=args.output_dir, steps=args.steps, resume=args.resume)
    result = train(cfg)
    final = np.mean(result.losses[-10:]) if result.losses else math.nan
    where = f"; pipeline at {result.pipeline_dir}" if result.pipeline_dir else ""
    print(f"trained {result.steps} steps; final loss {final:.4f}{where}")
    return 0
