"""The LiftAvatar diffusion lifter (DESIGN.md section 8) on diffusers' Wan2.1.

* `LiftAvatarTransformer3DModel` (transformer.py): Wan's DiT with reference and driving tokens;
* `LiftAvatarPipeline` (pipeline.py): references + driving conditions -> frames;
* `training.main` / `training.train` (training.py): flow-matching training (`liftdata train-lifter`);
* `LiftAvatarLifter` (lifter.py): the `Lifter` protocol on top of the pipeline;
* `PixelSpaceAutoencoder` (pixel.py): the exact "VAE" of the small from-scratch configuration;
* `warp_guidance` (guidance.py): the warp lifter's frames + confidence as extra driving inputs;
* full-range synthetic training data (data.py) and training from a stream of shards (stream.py).
"""

from liftdata.lifters.liftavatar.lifter import LiftAvatarLifter, coefficient_dim, pack_coefficients, pack_maps
from liftdata.lifters.liftavatar.pipeline import LiftAvatarPipeline, LiftAvatarPipelineOutput
from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder
from liftdata.lifters.liftavatar.transformer import LiftAvatarTransformer3DModel

__all__ = ["LiftAvatarTransformer3DModel", "LiftAvatarPipeline", "LiftAvatarPipelineOutput", "LiftAvatarLifter",
           "PixelSpaceAutoencoder",
           "coefficient_dim", "pack_coefficients", "pack_maps"]
