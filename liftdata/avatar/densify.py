"""Binding-aware adaptive density control (3DGS, Kerbl et al. 2023, Sec. 5; GaussianAvatars Sec. 3.3).

Every `densify_every` iterations the Gaussians whose mean screen-space gradient exceeds a threshold
are densified: small ones (world max scale <= `dense_percent` x the head extent) are cloned, large
ones split into two children sampled from the parent's local Gaussian, with local scale / (0.8 * 2).
Children keep the parent's triangle. Then Gaussians with opacity below `prune_opacity` are removed,
except that a triangle never loses its last Gaussian (the most opaque one is kept).
Parameters and Adam moments are edited together (new Gaussians start with zero moments).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from liftdata.avatar.binding import quat_to_matrix
from liftdata.avatar.model import PARAMS, GaussianAvatar

__all__ = ["GradStats", "densify_and_prune", "protect_last_per_triangle"]


class GradStats:
    """Running sum of screen-space mean-gradient norms (in NDC units, as 3DGS) and visibility counts."""

    def __init__(self, n: int):
        self.total, self.count = torch.zeros(n), torch.zeros(n)

    def add(self, means2d_grad: Tensor, width: int, height: int) -> None:
        g = means2d_grad.detach().reshape(-1, 2).cpu() * torch.tensor([width / 2.0, height / 2.0])  # px -> NDC-ish
        norm = g.norm(dim=-1)
        visible = norm > 0
        self.total[visible] += norm[visible]
        self.count[visible] += 1

    def mean(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


def protect_last_per_triangle(prune: Tensor, binding: Tensor, opacity: Tensor, n_faces: int) -> Tensor:
    """`prune` [N] bool with, for every triangle that would lose all its Gaussians, its most
    opaque Gaussian un-marked."""
    dev = binding.device
    survivors = torch.zeros(n_faces, dtype=torch.long, device=dev).index_add_(0, binding, (~prune).long())
    emptied = survivors[binding] == 0  # Gaussians of triangles left without any
    if not emptied.any():
        return prune
    key = torch.where(emptied, opacity, torch.full_like(opacity, -1.0))
    best = torch.full((n_faces,), -2.0, device=dev, dtype=key.dtype).scatter_reduce(0, binding, key, "amax")
    keep = emptied & (key == best[binding])
    # ties: keep only the first per triangle
    idx = torch.nonzero(keep).squeeze(1)
    first = torch.full((n_faces,), len(binding), dtype=torch.long, device=dev).scatter_reduce(0, binding[idx], idx,
                                                                                              "amin")
    keep = torch.zeros_like(keep)
    keep[first[first < len(binding)]] = True
    return prune & ~keep


def _edit(avatar: GaussianAvatar, optimizer: torch.optim.Optimizer, keep: Tensor,
          new: dict[str, Tensor], new_binding: Tensor) -> None:
    """Replace every parameter p by cat(p[keep], new[p]) and its Adam moments by cat(m[keep], 0)."""
    for name in PARAMS:
        old = getattr(avatar, name)
        param = torch.nn.Parameter(torch.cat([old.detach()[keep], new[name]]))
        for group in optimizer.param_groups:
            if group["params"][0] is old:
                state = optimizer.state.pop(old, None)
                group["params"][0] = param
                if state:
                    for k in ("exp_avg", "exp_avg_sq"):
                        state[k] = torch.cat([state[k][keep], torch.zeros_like(new[name])])
                    optimizer.state[param] = state
        setattr(avatar, name, param)
    avatar.binding = torch.cat([avatar.binding[keep], new_binding])


def densify_and_prune(avatar: GaussianAvatar, optimizer: torch.optim.Optimizer, stats: GradStats, *,
                      grad_threshold: float, dense_scale: float, prune_opacity: float, max_gaussians: int,
                      generator: torch.Generator) -> dict[str, int]:
    """One density-control step (module docstring). `dense_scale` = dense_percent x head extent (metres);
    world scales are measured on the neutral head. Returns counts of cloned, split and pruned Gaussians."""
    from liftdata.avatar.binding import triangle_frames
    from liftdata.head.base import neutral_kinematics

    n = len(avatar)
    with torch.no_grad():
        _, _, k = triangle_frames(avatar.mesh(neutral_kinematics(avatar.head_model, 1))[0], avatar.faces)
        world_max = k[avatar.binding] * torch.exp(avatar.log_scale.max(-1).values)
        grads = stats.mean().to(world_max.device)
        cand = grads >= grad_threshold
        room = max(0, max_gaussians - n)
        if int(cand.sum()) > room:  # over budget: densify the largest gradients first
            top = torch.topk(torch.where(cand, grads, torch.full_like(grads, -1.0)), room).indices
            cand = torch.zeros_like(cand)
            cand[top] = True
        clone, split = cand & (world_max <= dense_scale), cand & (world_max > dense_scale)
        new = {name: [getattr(avatar, name).detach()[clone]] for name in PARAMS}
        binding = [avatar.binding[clone]]
        if split.any():
            idx = torch.nonzero(split).squeeze(1).repeat(2)
            std = torch.exp(avatar.log_scale.detach()[idx])
            noise = torch.randn(std.shape, generator=generator).to(std.device)
            offset = (quat_to_matrix(avatar.quat.detach()[idx]) @ (std * noise)[..., None])[..., 0]
            for name in PARAMS:
                new[name].append(getattr(avatar, name).detach()[idx])
            new["xyz"][-1] = new["xyz"][-1] + offset
            new["log_scale"][-1] = new["log_scale"][-1] - math.log(0.8 * 2)
            binding.append(avatar.binding[idx])
        keep = ~split
        _edit(avatar, optimizer, keep, {k: torch.cat(v) for k, v in new.items()}, torch.cat(binding))
        opacity = torch.sigmoid(avatar.opacity_logit.detach())
        prune = protect_last_per_triangle(opacity < prune_opacity, avatar.binding, opacity, len(avatar.faces))
        if prune.any():
            _edit(avatar, optimizer, ~prune, {k: getattr(avatar, k).detach()[:0] for k in PARAMS},
                  avatar.binding[:0])
    return {"cloned": int(clone.sum()), "split": int(split.sum()), "pruned": int(prune.sum())}
