"""liftdata: expand a short face video into a large training set for 3D Gaussian head avatars."""

from liftdata.config import ExpandConfig
from liftdata.errors import LiftdataError
from liftdata.kinematics import Camera, Kinematics, KinematicsError

__version__ = "0.1.0"
__all__ = ["Camera", "Kinematics", "KinematicsError", "LiftDataset", "ExpandConfig", "LiftdataError", "run_expand",
           "__version__"]


def __getattr__(name: str):
    if name == "LiftDataset":  # imported lazily: it pulls torch and the renderers
        from liftdata.dataset import LiftDataset

        return LiftDataset
    if name == "run_expand":
        from liftdata.run import run_expand

        return run_expand
    raise AttributeError(f"module 'liftdata' has no attribute {name!r}")
