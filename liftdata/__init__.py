"""liftdata: expand a short face video into a large training set for 3D Gaussian head avatars."""

from liftdata.kinematics import Camera, Kinematics, KinematicsError

__version__ = "0.1.0"
__all__ = ["Camera", "Kinematics", "KinematicsError", "__version__"]
