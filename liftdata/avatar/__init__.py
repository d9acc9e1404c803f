"""The reference downstream avatar: Gaussians bound to head-model triangles (GaussianAvatars-style).

* `binding`  — triangle frames, the binding mesh (model + cap fans), world-space Gaussians;
* `raster`   — `rasterize_gaussians`: a pure-torch tiled rasterizer and gsplat (CUDA only);
* `model`    — `GaussianAvatar` (parameters, render, save/load) and `AvatarConfig`;
* `densify`  — binding-aware clone / split / prune;
* `data`     — `load_frames`: datasets, captures and VHAP directories as training frames + masks;
* `train`    — `TrainConfig`, `train` (checkpoints, resume), `render_frames`;
* `compare`  — captured-only vs captured + lifted, scored with `liftdata eval`'s report;
* `cli`      — `liftdata avatar train | render | compare`.
"""

from liftdata.avatar.data import AvatarFrames, load_frames
from liftdata.avatar.model import AvatarConfig, AvatarError, GaussianAvatar
from liftdata.avatar.train import TrainConfig, render_frames, train

__all__ = ["AvatarFrames", "load_frames", "AvatarConfig", "AvatarError", "GaussianAvatar", "TrainConfig", "train",
           "render_frames"]
