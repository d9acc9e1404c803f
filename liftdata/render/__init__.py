"""Mesh rendering: rasterization (moderngl EGL or pure torch), condition maps, textured renders.

See `liftdata.render.raster` for the conventions (OpenCV cameras, winding, near plane) and
`liftdata.render.maps` for the shading-light convention.
"""

from liftdata.render.maps import DEFAULT_LIGHT, condition_maps, render_textured, to_uint8
from liftdata.render.raster import (EGLUnavailableError, Fragments, RenderError, interpolate, rasterize,
                                    vertex_normals)

__all__ = ["Fragments", "rasterize", "interpolate", "vertex_normals", "condition_maps", "render_textured",
           "to_uint8", "DEFAULT_LIGHT", "EGLUnavailableError", "RenderError"]
