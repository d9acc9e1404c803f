"""`GaussianAvatar`: the bound Gaussians of one subject, their rendering and binding-aware densification.

An avatar directory is self-describing::

    avatar/avatar.json     format version, head model id/version, config, training state
    avatar/identity.npy    the head model's identity of the subject
    avatar/gaussians.npz   binding [N], xyz [N, 3], log_scale [N, 3], quat [N, 4], opacity_logit [N], sh [N, K, 3]
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liftdata.avatar.binding import binding_mesh, covariances, extend_vertices, world_gaussians
from liftdata.avatar.raster import RasterCamera, rasterize_gaussians
from liftdata.errors import LiftdataError

__all__ = ["AvatarConfig", "GaussianAvatar", "AvatarError", "SH_C0", "eval_sh", "resolve_mesh", "MESHES"]

AVATAR_FORMAT_VERSION = 1
SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


class AvatarError(LiftdataError, ValueError):
    """A bad avatar directory, dataset or setting; the message names it."""


@dataclass
class AvatarConfig:
    """What the avatar is (saved in avatar.json; training settings live in `TrainConfig`)."""

    sh_degree: int = 0
    """Spherical-harmonics degree of the colour (0: view-independent, recommended for monocular data)."""
    init_opacity: float = 0.1
    """Opacity of the initial Gaussians (one per binding triangle, at its centroid, the triangle's size)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """The fixed colour renders and targets are composited over outside the head mask."""
    mesh: str = "auto"
    """The triangles the Gaussians bind to: "face" (the head model's mesh, caps over eyes and mouth),
    "whole_head" (plus the builtin model's head proxy: skull, hair region, ears, neck), or "auto":
    whole_head when the training frames carry alpha mattes (which hold hair and neck) and the head
    model has a proxy, else face. A trained avatar stores the resolved value."""


MESHES = ("auto", "face", "whole_head")


def resolve_mesh(config: AvatarConfig, head_model: Any, matted: bool) -> AvatarConfig:
    """`config` with `mesh` resolved ("auto" -> "whole_head" or "face"; see `AvatarConfig.mesh`)."""
    if config.mesh not in MESHES:
        raise AvatarError(f"mesh: expected one of {list(MESHES)}, got {config.mesh!r}")
    has_proxy = callable(getattr(head_model, "head_proxy", None))
    if config.mesh == "whole_head" and not has_proxy:
        raise AvatarError(f"mesh: 'whole_head' needs a head model with a whole-head proxy (builtin); "
                          f"{getattr(head_model, 'name', type(head_model).__name__)} has none")
    if config.mesh != "auto":
        return config
    return dataclasses.replace(config, mesh="whole_head" if matted and has_proxy else "face")


def eval_sh(sh: Tensor,  # [N, K, 3], K = (degree + 1)^2
            dirs: Tensor,  # [N, 3] unit view directions (camera -> Gaussian)
            degree: int) -> Tensor:  # [N, 3] RGB (clamped at 0 after the +0.5 offset, as 3DGS)
    """Real spherical harmonics up to degree 3 (the 3DGS basis and sign convention)."""
    out = SH_C0 * sh[:, 0]
    if degree > 0:
        x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
        out = out - _SH_C1 * y * sh[:, 1] + _SH_C1 * z * sh[:, 2] - _SH_C1 * x * sh[:, 3]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            out = (out + _SH_C2[0] * xy * sh[:, 4] + _SH_C2[1] * yz * sh[:, 5]
                   + _SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6] + _SH_C2[3] * xz * sh[:, 7]
                   + _SH_C2[4] * (xx - yy) * sh[:, 8])
            if degree > 2:
                out = (out + _SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + _SH_C3[1] * xy * z * sh[:, 10]
                       + _SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                       + _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                       + _SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + _SH_C3[5] * z * (xx - yy) * sh[:, 14]
                       + _SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return (out + 0.5).clamp_min(0.0)


PARAMS = ("xyz", "log_scale", "quat", "opacity_logit", "sh")


class GaussianAvatar(nn.Module):
    """Gaussians bound to a head model's triangles for one subject (identity)."""

    def __init__(self, head_model: Any, identity: np.ndarray | Tensor, config: AvatarConfig | None = None,
                 gaussians: dict[str, np.ndarray] | None = None):
        super().__init__()
        if not 0 <= (config or AvatarConfig()).sh_degree <= 3:
            raise AvatarError(f"sh_degree: expected 0..3, got {config.sh_degree}")
        self.head_model = head_model
        self.config = resolve_mesh(config or AvatarConfig(), head_model, matted=False)
        self.register_buffer("identity", torch.as_tensor(np.asarray(identity, np.float32)))
        self.proxy = head_model.head_proxy(self.identity) if self.config.mesh == "whole_head" else None
        faces, self.loops = (binding_mesh(head_model.faces) if self.proxy is None
                             else binding_mesh(self.proxy.all_faces, holes_of=head_model.faces))
        self.register_buffer("faces", torch.as_tensor(faces))
        g = gaussians or self._initial()
        if len(g["binding"]) and int(np.max(g["binding"])) >= len(faces):
            raise AvatarError(f"gaussians: bound to triangle {int(np.max(g['binding']))}, the {self.config.mesh} "
                              f"binding mesh has {len(faces)} triangles (another mesh setting?)")
        self.register_buffer("binding", torch.as_tensor(np.asarray(g["binding"], np.int64)))
        for name in PARAMS:
            setattr(self, name, nn.Parameter(torch.as_tensor(np.asarray(g[name], np.float32))))

    def _initial(self) -> dict[str, np.ndarray]:
        n, k = len(self.faces), (self.config.sh_degree + 1) ** 2
        o = self.config.init_opacity
        sh = np.zeros((n, k, 3), np.float32)  # colour 0.5 grey
        return {"binding": np.arange(n), "xyz": np.zeros((n, 3)), "log_scale": np.zeros((n, 3)),
                "quat": np.tile([1.0, 0, 0, 0], (n, 1)), "opacity_logit": np.full(n, np.log(o / (1 - o))), "sh": sh}

    def __len__(self) -> int:
        return len(self.binding)

    # ------------------------------------------------------------------ geometry and rendering
    def mesh(self, kinematics) -> Tensor:  # -> [T, V', 3] posed binding-mesh vertices
        """Posed vertices of the binding mesh (model vertices [+ head proxy] + cap centres) under `kinematics`."""
        from liftdata.head.builtin import pose_head_proxy

        with torch.no_grad():
            v = self.head_model.vertices(self.identity.cpu(), kinematics).float()
        if self.proxy is not None:
            shell = pose_head_proxy(self.proxy, v.double().numpy())
            v = torch.cat([v, torch.as_tensor(shell, dtype=v.dtype)], 1)
        return extend_vertices(v, self.loops).to(self.identity.device)

    def head_extent(self) -> float:
        """The scene extent for densification: the neutral head's bounding-box diagonal (metres)."""
        from liftdata.head.base import neutral_kinematics

        v = self.mesh(neutral_kinematics(self.head_model, 1))[0]
        return float((v.max(0).values - v.min(0).values).norm())

    def render(self, vertices: Tensor,  # [V', 3] one frame of `mesh(...)`
               camera: RasterCamera, *, backend: str = "torch", background: Tensor | None = None,
               ) -> tuple[Tensor, Tensor, Tensor | None]:  # image [H, W, 3], alpha [H, W], means2d
        means, rot, scales = world_gaussians(vertices, self.faces, self.binding, self.xyz, self.log_scale, self.quat)
        cam_centre = -camera.world_to_camera[:3, :3].T @ camera.world_to_camera[:3, 3]
        dirs = torch.nn.functional.normalize(means.detach() - cam_centre, dim=-1)
        colors = eval_sh(self.sh, dirs, self.config.sh_degree)
        bg = (torch.as_tensor(self.config.background, dtype=torch.float32, device=means.device) if background is None
              else background)
        return rasterize_gaussians(means, covariances(rot, scales), colors, torch.sigmoid(self.opacity_logit),
                                   camera, bg, backend=backend)

    # ------------------------------------------------------------------ save / load
    def state(self) -> dict[str, np.ndarray]:
        return {"binding": self.binding.cpu().numpy(),
                **{k: getattr(self, k).detach().cpu().numpy() for k in PARAMS}}

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write avatar.json, identity.npy and gaussians.npz into `directory` (files replaced atomically)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / ".gaussians.tmp.npz", **self.state())
        (out / ".gaussians.tmp.npz").replace(out / "gaussians.npz")
        np.save(out / "identity.npy", self.identity.cpu().numpy())
        doc = {"format_version": AVATAR_FORMAT_VERSION, "kind": "liftdata.avatar.GaussianAvatar",
               "head_model": {"id": self.head_model.name, "version": self.head_model.version},
               "n_gaussians": len(self), "config": dataclasses.asdict(self.config), **(extra or {})}
        (out / ".avatar.tmp.json").write_text(json.dumps(doc, indent=1))
        (out / ".avatar.tmp.json").replace(out / "avatar.json")
        return out

    @classmethod
    def load(cls, directory: str | Path, head_model: Any = None) -> tuple[GaussianAvatar, dict[str, Any]]:
        """(avatar, avatar.json document). `head_model` defaults to loading it by id."""
        d = Path(directory)
        if not (d / "avatar.json").is_file() or not (d / "gaussians.npz").is_file():
            raise AvatarError(f"{d}: not a liftdata avatar (needs avatar.json and gaussians.npz)")
        doc = json.loads((d / "avatar.json").read_text())
        if head_model is None:
            from liftdata.head import load_head_model

            head_model = load_head_model(doc["head_model"]["id"])
        if (head_model.name, head_model.version) != (doc["head_model"]["id"], doc["head_model"]["version"]):
            raise AvatarError(f"{d}: avatar of {doc['head_model']}, head model given is "
                              f"{head_model.name} v{head_model.version}")
        cfg = doc["config"]
        config = AvatarConfig(**{"mesh": "face", **cfg, "background": tuple(cfg["background"])})  # v1: face only
        with np.load(d / "gaussians.npz") as z:
            gaussians = {k: z[k] for k in z.files}
        return cls(head_model, np.load(d / "identity.npy"), config, gaussians), doc
