"""LPIPS (Zhang et al. 2018, v0.1) with AlexNet or VGG16 features, in plain torch (no torchvision).

    d(x, y) = sum_l  mean_{h,w}  w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2

f_l: the activations of layer l of the backbone (AlexNet: relu1..relu5; VGG16: relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3) on the input after the scaling layer ((2x - 1 - shift) / scale),
unit-normalized over channels (eps 1e-10); w_l: the learned non-negative 1x1 "linear heads".
Papers mix the two backbones; always name it ("lpips_alex" / "lpips_vgg").

Weights are never downloaded. They are read from disk:
* backbones: torchvision's ImageNet checkpoints `alexnet-owt-7be5be79.pth` /
  `vgg16-397923af.pth` (keys `features.{i}.weight/bias`), looked for in the given directory and
  in the torch hub cache `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/hub/checkpoints`);
* linear heads: `alex.pth` / `vgg.pth` of the `lpips` pip package (keys `lin{l}.model.1.weight`,
  shape [1, C_l, 1, 1]), looked for in the given directory, in `<dir>/weights/v0.1/` and in an
  installed `lpips` package (its files are read; the package is never imported: it needs
  torchvision). `pip download lpips==0.1.4 --no-deps` fetches the wheel, which holds them.

Masked LPIPS (our definition): each layer's distance map is averaged with weights given by
the mask area-resampled to that layer's resolution instead of the plain spatial mean.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liftdata.errors import LiftdataError

__all__ = ["LpipsWeightsError", "LPIPS", "BACKBONES", "find_weights", "load_lpips", "lpips_reference"]

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


@dataclass(frozen=True)
class Backbone:
    """A torchvision `features` stack: conv layers by index, pools by index, taps (layers whose ReLU output is used)."""

    checkpoint: str  # torchvision file name
    url: str
    convs: dict[int, tuple[int, int, int, int, int]]  # index -> (in, out, kernel, stride, padding)
    pools: dict[int, tuple[int, int]]  # index -> (kernel, stride)
    taps: tuple[int, ...]  # indices of the ReLUs whose outputs feed LPIPS
    channels: tuple[int, ...]  # channels of each tap


ALEX = Backbone(
    "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    convs={0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1), 8: (384, 256, 3, 1, 1),
           10: (256, 256, 3, 1, 1)},
    pools={2: (3, 2), 5: (3, 2)}, taps=(1, 4, 7, 9, 11), channels=(64, 192, 384, 256, 256))


def _vgg16() -> Backbone:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    convs, pools, i, c_in = {}, {}, 0, 3
    for v in cfg:
        if v == "M":
            pools[i], i = (2, 2), i + 1
        else:
            convs[i], c_in, i = (c_in, v, 3, 1, 1), v, i + 2
    return Backbone("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                    convs, pools, taps=(3, 8, 15, 22, 29), channels=(64, 128, 256, 512, 512))


BACKBONES: dict[str, Backbone] = {"alex": ALEX, "vgg": _vgg16()}
HEADS = {"alex": "alex.pth", "vgg": "vgg.pth"}


class LpipsWeightsError(LiftdataError, FileNotFoundError):
    """A weight file LPIPS needs was not found; the message says which, where, and how to get it."""


def _hub_dir() -> Path:
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def _lpips_package_dir() -> Path | None:
    spec = importlib.util.find_spec("lpips")  # locates the package without importing it
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "weights" / "v0.1"


def find_weights(backbone: str, weights_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(backbone checkpoint, linear heads) for `backbone` ("alex" | "vgg"); raises LpipsWeightsError."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone: expected one of {sorted(BACKBONES)}, got {backbone!r}")
    user = [] if weights_dir is None else [Path(weights_dir).expanduser()]
    if user and not user[0].is_dir():
        raise LpipsWeightsError(f"--lpips-weights {user[0]}: not a directory")
    net_name, head_name = BACKBONES[backbone].checkpoint, HEADS[backbone]
    net_dirs = user + [_hub_dir()]
    head_dirs = user + [d / "weights" / "v0.1" for d in user] + [p for p in [_lpips_package_dir()] if p]
    net = next((d / net_name for d in net_dirs if (d / net_name).is_file()), None)
    head = next((d / head_name for d in head_dirs if (d / head_name).is_file()), None)
    if net is None:
        raise LpipsWeightsError(
            f"LPIPS ({backbone}): backbone weights {net_name} not found; looked in "
            f"{', '.join(map(str, net_dirs))}. Download {BACKBONES[backbone].url} on a machine with "
            f"internet and copy it into one of those directories (or pass its directory).")
    if head is None:
        raise LpipsWeightsError(
            f"LPIPS ({backbone}): linear-head weights {head_name} not found; looked in "
            f"{', '.join(map(str, head_dirs)) or '(no directory)'}. They ship inside the lpips wheel: "
            f"`pip download lpips==0.1.4 --no-deps` and unzip lpips/weights/v0.1/{head_name} into the "
            f"weights directory (or `pip install --no-deps lpips`; liftdata reads the file, never imports it).")
    return net, head


class LPIPS(nn.Module):
    """The LPIPS network: backbone `features` (conv/ReLU/max-pool, torchvision layer indices) + heads."""

    def __init__(self, backbone: str = "alex"):
        super().__init__()
        spec = BACKBONES[backbone]
        self.backbone, self.spec = backbone, spec
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        n_layers = max(spec.taps) + 1
        layers: list[nn.Module] = []
        for i in range(n_layers):
            if i in spec.convs:
                c_in, c_out, k, s, p = spec.convs[i]
                layers.append(nn.Conv2d(c_in, c_out, k, s, p))
            elif i in spec.pools:
                layers.append(nn.MaxPool2d(*spec.pools[i]))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.heads = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in spec.channels])
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, net_path: str | os.PathLike, head_path: str | os.PathLike) -> LPIPS:
        """Load a torchvision checkpoint (only `features.*` used) and lpips heads (`lin{l}.model.1.weight`)."""
        net = torch.load(net_path, map_location="cpu", weights_only=True)
        heads = torch.load(head_path, map_location="cpu", weights_only=True)
        feats = {k[len("features."):]: v for k, v in net.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(feats)
        except RuntimeError as e:
            raise LpipsWeightsError(f"{net_path}: not a torchvision {self.backbone} checkpoint ({e})") from None
        for l, p in enumerate(self.heads):
            key = f"lin{l}.model.1.weight"
            if key not in heads or heads[key].shape != p.shape:
                raise LpipsWeightsError(f"{head_path}: expected {key} of shape {list(p.shape)} "
                                        f"(an lpips v0.1 {HEADS[self.backbone]})")
            p.data.copy_(heads[key])
        return self

    def features_at_taps(self, x: torch.Tensor) -> list[torch.Tensor]:  # [N, 3, H, W] in [0, 1]
        """The backbone activations at the LPIPS taps (after the scaling layer)."""
        h = (2 * x - 1 - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.spec.taps:
                out.append(h)
        return out

    def forward(self, pred: torch.Tensor,  # [N, 3, H, W] in [0, 1]
                target: torch.Tensor,  # [N, 3, H, W] in [0, 1]
                mask: torch.Tensor | None = None,  # [N, H, W] or [N, 1, H, W]
                ) -> torch.Tensor:  # [N]
        from liftdata.eval.metrics import check_pair

        m = check_pair(pred, target, mask)
        total = pred.new_zeros(pred.shape[0])
        for fx, fy, w in zip(self.features_at_taps(pred), self.features_at_taps(target), self.heads):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + EPS)  # 1. unit-normalize over channels
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            d = ((nx - ny) ** 2 * w).sum(1, keepdim=True)  # 2. the 1x1 linear head
            if m is None:  # 3. spatial average (weighted by the mask at this resolution)
                total = total + d.mean(dim=(1, 2, 3))
            else:
                ml = F.adaptive_avg_pool2d(m, d.shape[-2:])
                total = total + (d * ml).sum(dim=(1, 2, 3)) / ml.sum(dim=(1, 2, 3))
        return total


def load_lpips(backbone: str = "alex", weights_dir: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> LPIPS:
    """An LPIPS network with weights from `weights_dir` or the usual caches (see module doc)."""
    net_path, head_path = find_weights(backbone, weights_dir)
    return LPIPS(backbone).load_weights(net_path, head_path).to(device)


def lpips_reference(features_x: list[np.ndarray],  # per layer [C, H, W] of one image
                    features_y: list[np.ndarray],
                    heads: list[np.ndarray],  # per layer [C]
                    ) -> float:
    """The slow, obvious LPIPS formula on one image pair's tap features (loops, float64)."""
    total = 0.0
    for fx, fy, w in zip(features_x, features_y, heads):
        c, h, wd = fx.shape
        layer = 0.0
        for i in range(h):
            for j in range(wd):
                a, b = fx[:, i, j].astype(np.float64), fy[:, i, j].astype(np.float64)
                a = a / (np.sqrt(np.sum(a * a)) + EPS)
                b = b / (np.sqrt(np.sum(b * b)) + EPS)
                layer += float(np.sum(w * (a - b) ** 2))
        total += layer / (h * wd)
    return total
