"""Training the avatar: one frame per iteration, L1 + D-SSIM + position/scale regularizers.

Loss (GaussianAvatars Sec. 3.4): (1 - l) L1 + l (1 - SSIM), l = 0.2, on the frame composited over
the background colour with its head mask; plus `lambda_xyz * mean(relu(|mu_local| - 1))` and
`lambda_scale * mean(relu(exp(s_local) - 0.6))` (local units: triangle sizes). Head-model
parameters are not fine-tuned: lifted frames carry exact kinematics, and captured ones are
evaluated with the tracked kinematics, as they are.

`train(frames, out_dir, config)` writes the avatar into `out_dir` every `checkpoint_every`
iterations plus `checkpoint.pt` (optimizer, density statistics, iteration); calling it again on a
directory with a checkpoint of the same config resumes there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from liftdata.avatar.data import AvatarFrames, composite, reachable_masks
from liftdata.avatar.densify import GradStats, densify_and_prune
from liftdata.avatar.model import SH_C0, AvatarConfig, AvatarError, GaussianAvatar, resolve_mesh
from liftdata.avatar.raster import RasterCamera, resolve_backend

__all__ = ["TrainConfig", "train", "prepare", "PreparedFrames"]


@dataclass
class TrainConfig:
    """How an avatar is trained (the budget and the losses)."""

    iterations: int = 1500
    """Optimisation steps, one frame each."""
    seed: int = 0
    """Seeds the frame order and the split noise."""
    size: int = 128
    """Longer image side the frames are resampled to."""
    backend: str = "auto"
    """Rasterizer: "torch" (any device), "gsplat" (CUDA), "auto" (gsplat when CUDA and gsplat are there)."""
    lambda_dssim: float = 0.2
    lambda_xyz: float = 0.01
    xyz_threshold: float = 1.0
    """Local position beyond which the position regularizer acts (triangle sizes)."""
    lambda_scale: float = 1.0
    scale_threshold: float = 0.6
    """Local scale beyond which the scale regularizer acts (triangle sizes)."""
    lr_xyz: tuple[float, float] = (1e-2, 1e-4)
    """Local position learning rate, start and end (exponential decay), in triangle sizes."""
    lr_scale: float = 0.017
    lr_quat: float = 2e-3
    lr_opacity: float = 0.05
    lr_color: float = 0.01
    densify_from: int = 100
    densify_until: float = 0.7
    """Fraction of the iterations after which the Gaussian count is frozen."""
    densify_every: int = 100
    grad_threshold: float = 2e-4
    """Mean screen-space gradient (NDC-scaled, as 3DGS) above which a Gaussian is densified."""
    dense_percent: float = 0.01
    """Gaussians larger than this fraction of the head extent split, smaller ones clone."""
    prune_opacity: float = 0.005
    max_gaussians: int = 2500
    """Densification stops adding Gaussians beyond this count (CPU budget)."""
    checkpoint_every: int = 250
    avatar: AvatarConfig = field(default_factory=AvatarConfig)


@dataclass
class PreparedFrames:
    """Frames as training tensors: targets [T, H, W, 3] composited, vertices [T, V', 3], cameras."""

    targets: torch.Tensor
    masks: torch.Tensor
    vertices: torch.Tensor
    cameras: list[RasterCamera]


def prepare(avatar: GaussianAvatar, frames: AvatarFrames, size: int) -> PreparedFrames:  # on avatar's device
    """Resample frames to `size` (longer side), composite them, pose the binding mesh per frame."""
    import cv2

    h, w = frames.images.shape[1:3]
    scale = size / max(h, w)
    W, H = max(1, round(w * scale)), max(1, round(h * scale))
    imgs = np.stack([cv2.resize(im, (W, H), interpolation=cv2.INTER_AREA) for im in frames.images])
    masks = np.stack([cv2.resize(m, (W, H), interpolation=cv2.INTER_AREA) for m in frames.masks])
    targets = composite(imgs, masks, avatar.config.background)
    dev = avatar.identity.device
    cams = [RasterCamera.from_camera(c.resized(W, H), dev) for c in frames.cameras]
    return PreparedFrames(torch.as_tensor(targets, device=dev), torch.as_tensor(masks, device=dev),
                          avatar.mesh(frames.kinematics), cams)


def _init_colors(avatar: GaussianAvatar, data: PreparedFrames) -> None:
    """Colour every initial Gaussian with the target pixel under its mean in the first frame."""
    from liftdata.avatar.binding import world_gaussians

    with torch.no_grad():
        means, _, _ = world_gaussians(data.vertices[0], avatar.faces, avatar.binding, avatar.xyz, avatar.log_scale,
                                      avatar.quat)
        cam = data.cameras[0]
        p = means @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
        uv = (p @ cam.K.T)[:, :2] / p[:, 2:3].clamp_min(1e-6)
        x = uv[:, 0].round().long().clamp(0, cam.width - 1)
        y = uv[:, 1].round().long().clamp(0, cam.height - 1)
        rgb = data.targets[0][y, x]
        avatar.sh[:, 0] = (rgb - 0.5) / SH_C0


def _optimizer(avatar: GaussianAvatar, cfg: TrainConfig) -> torch.optim.Adam:
    groups = [("xyz", cfg.lr_xyz[0]), ("log_scale", cfg.lr_scale), ("quat", cfg.lr_quat),
              ("opacity_logit", cfg.lr_opacity), ("sh", cfg.lr_color)]
    return torch.optim.Adam([{"params": [getattr(avatar, n)], "lr": lr, "name": n} for n, lr in groups], eps=1e-15)


def loss_terms(avatar: GaussianAvatar, render: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> dict:
    from liftdata.eval.metrics import ssim_map

    pred, gt = render.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
    l1 = (pred - gt).abs().mean()
    dssim = 1.0 - ssim_map(pred, gt).mean()
    reg_xyz = F.relu(avatar.xyz.norm(dim=-1) - cfg.xyz_threshold).mean()
    reg_scale = F.relu(torch.exp(avatar.log_scale) - cfg.scale_threshold).norm(dim=-1).mean()
    total = ((1 - cfg.lambda_dssim) * l1 + cfg.lambda_dssim * dssim + cfg.lambda_xyz * reg_xyz
             + cfg.lambda_scale * reg_scale)
    return {"total": total, "l1": l1, "dssim": dssim, "xyz": reg_xyz, "scale": reg_scale}


def _config_doc(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def train(frames: AvatarFrames, out_dir: str | Path, cfg: TrainConfig | None = None, *,
          progress: Callable[[int, int, dict], None] | None = None, resume: bool = True) -> GaussianAvatar:
    """Train an avatar on `frames` into `out_dir` (module docstring); returns it."""
    cfg = cfg or TrainConfig()
    cfg = dataclasses.replace(cfg, avatar=resolve_mesh(cfg.avatar, frames.head_model, frames.matted))
    out = Path(out_dir)
    backend = resolve_backend(cfg.backend)
    if len(frames) == 0:
        raise AvatarError("no training frames")
    torch.manual_seed(cfg.seed)
    device = "cuda" if backend == "gsplat" else "cpu"
    avatar = GaussianAvatar(frames.head_model, frames.identity, cfg.avatar).to(device)
    data = prepare(avatar, reachable_masks(frames, avatar), cfg.size)
    _init_colors(avatar, data)
    optimizer = _optimizer(avatar, cfg)
    stats, start = GradStats(len(avatar)), 0
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        avatar, optimizer, stats, start = _resume(out, cfg, frames, device, gen)
    order = np.random.default_rng(cfg.seed).integers(len(frames), size=cfg.iterations)
    extent = avatar.head_extent()
    stop_densify = int(cfg.densify_until * cfg.iterations)
    t0, log = time.perf_counter(), {}
    for it in range(start, cfg.iterations):
        frac = it / max(1, cfg.iterations - 1)
        optimizer.param_groups[0]["lr"] = cfg.lr_xyz[0] * (cfg.lr_xyz[1] / cfg.lr_xyz[0]) ** frac
        i = int(order[it])
        render, _, means2d = avatar.render(data.vertices[i], data.cameras[i], backend=backend)
        if means2d is not None:
            means2d.retain_grad()
        terms = loss_terms(avatar, render, data.targets[i], cfg)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        if means2d is not None and means2d.grad is not None and it < stop_densify:
            stats.add(means2d.grad, data.cameras[i].width, data.cameras[i].height)
        if cfg.densify_from <= it < stop_densify and (it + 1) % cfg.densify_every == 0:
            log = densify_and_prune(avatar, optimizer, stats, grad_threshold=cfg.grad_threshold,
                                    dense_scale=cfg.dense_percent * extent, prune_opacity=cfg.prune_opacity,
                                    max_gaussians=cfg.max_gaussians, generator=gen)
            stats = GradStats(len(avatar))
        if progress is not None:
            progress(it + 1, cfg.iterations, {"loss": float(terms["total"].detach()), "n": len(avatar), **log})
        if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
            _checkpoint(out, avatar, optimizer, stats, gen, it + 1, cfg, frames, time.perf_counter() - t0)
    return avatar


def _state_extra(cfg: TrainConfig, frames: AvatarFrames, iteration: int, seconds: float) -> dict[str, Any]:
    return {"train": {"config": _config_doc(cfg), "iteration": iteration, "seconds_this_run": round(seconds, 2),
                      "n_frames": len(frames), "n_captured": int((np.array(frames.sources) == "captured").sum()),
                      "n_lifted": int((np.array(frames.sources) == "lifted").sum())}}


def _checkpoint(out: Path, avatar: GaussianAvatar, optimizer, stats: GradStats, gen: torch.Generator, iteration: int,
                cfg: TrainConfig, frames: AvatarFrames, seconds: float) -> None:
    avatar.save(out, _state_extra(cfg, frames, iteration, seconds))
    state = {"iteration": iteration, "config": _config_doc(cfg), "optimizer": optimizer.state_dict(),
             "grad_total": stats.total, "grad_count": stats.count, "generator": gen.get_state(),
             "n_frames": len(frames)}
    torch.save(state, out / ".checkpoint.tmp.pt")
    (out / ".checkpoint.tmp.pt").replace(out / "checkpoint.pt")


def _resume(out: Path, cfg: TrainConfig, frames: AvatarFrames, device: str, gen: torch.Generator):
    state = torch.load(out / "checkpoint.pt", weights_only=False, map_location=device)
    if state["n_frames"] != len(frames):
        raise AvatarError(f"{out}: holds a checkpoint trained on {state['n_frames']} frames, the dataset has "
                          f"{len(frames)}; use another --out or delete it")
    if state["config"] != _config_doc(cfg):
        diff = [k for k in state["config"] if state["config"][k] != _config_doc(cfg).get(k)]
        raise AvatarError(f"{out}: holds a checkpoint trained with other settings ({', '.join(diff)}); "
                          "use another --out or delete it")
    avatar, _ = GaussianAvatar.load(out, frames.head_model)
    avatar = avatar.to(device)
    optimizer = _optimizer(avatar, cfg)
    optimizer.load_state_dict(state["optimizer"])
    stats = GradStats(len(avatar))
    stats.total, stats.count = state["grad_total"].cpu(), state["grad_count"].cpu()
    gen.set_state(state["generator"].cpu())
    return avatar, optimizer, stats, int(state["iteration"])


def render_frames(avatar: GaussianAvatar, frames: AvatarFrames, size: int, backend: str = "auto") -> np.ndarray:
    """Renders [T, H, W, 3] uint8 of the avatar under the frames' kinematics and cameras (at `size`)."""
    backend = resolve_backend(backend)
    avatar = avatar.to("cuda" if backend == "gsplat" else "cpu")
    data = prepare(avatar, frames, size)
    out = []
    with torch.no_grad():
        for i in range(len(frames)):
            rgb, _, _ = avatar.render(data.vertices[i], data.cameras[i], backend=backend)
            out.append((rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8))
    return np.stack(out)
