"""Tiny FLAME-shaped files for tests. Random but valid; never real FLAME data.

Layouts written:
- `write_chumpy_pickle`: as FLAME 2020 `generic_model.pkl`: protocol 2, arrays wrapped in
  `chumpy.ch.Ch` objects (a fake module registered only while pickling), numpy 1.x and old
  `scipy.sparse.csc` module paths.
- `write_flame2023_pickle`: plain numpy arrays and a `scipy.sparse.csc_matrix` J_regressor.
- `write_npz`: the converted layout.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

ROOT = np.uint32(4294967295)  # how FLAME pickles store the root's parent


def make_flame_arrays(seed: int = 0, n_vertices: int = 40, n_faces: int = 60, n_shape: int = 20,
                      n_expression: int = 10) -> dict[str, np.ndarray]:
    """A random FLAME-shaped model: weights and J_regressor rows sum to 1, 5 joints."""
    rng = np.random.default_rng(seed)
    v_template = rng.normal(size=(n_vertices, 3)) * 0.08
    faces = np.stack([rng.choice(n_vertices, 3, replace=False) for _ in range(n_faces)]).astype(np.uint32)
    weights = rng.dirichlet(np.full(5, 0.5), size=n_vertices)
    j_regressor = np.zeros((5, n_vertices))
    for j in range(5):  # each joint is a convex combination of 6 vertices, as FLAME's is sparse
        idx = rng.choice(n_vertices, 6, replace=False)
        j_regressor[j, idx] = rng.dirichlet(np.ones(6))
    return {
        "v_template": v_template,
        "f": faces,
        "shapedirs": rng.normal(size=(n_vertices, 3, n_shape + n_expression)) * 0.01,
        "posedirs": rng.normal(size=(n_vertices, 3, 36)) * 0.01,
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": np.array([[ROOT, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
    }


def write_flame2023_pickle(path: Path, arrays: dict, protocol: int = 4) -> Path:
    data = dict(arrays, J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"]),
                J=arrays["J_regressor"] @ arrays["v_template"], bs_style="lbs", bs_type="lrotmin")
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    return path


def _fake_chumpy() -> tuple[types.ModuleType, type]:
    module = types.ModuleType("chumpy.ch")

    class Ch:  # like chumpy.ch.Ch: the state is the instance dict, the array under `x`
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch = Ch
    return module, Ch


def write_chumpy_pickle(path: Path, arrays: dict) -> Path:
    """FLAME 2020 layout. `chumpy` is in sys.modules only while pickling."""
    module, ch = _fake_chumpy()
    package = types.ModuleType("chumpy")
    package.ch = module
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        data = {k: ch(v) for k, v in arrays.items() if k not in ("f", "J_regressor", "kintree_table")}
        data.update(f=arrays["f"], kintree_table=arrays["kintree_table"],
                    J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"]),
                    J=ch(arrays["J_regressor"] @ arrays["v_template"]), bs_style="lbs", bs_type="lrotmin")
        blob = pickle.dumps(data, protocol=2)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    # Old module paths, as in pickles written by numpy 1.x / old scipy (GLOBAL opcodes are text).
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    blob = blob.replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n")
    Path(path).write_bytes(blob)
    return path


def write_npz(path: Path, arrays: dict, **extra) -> Path:
    np.savez(path, **arrays, **extra)
    return path


def make_embedding_arrays(n_faces: int, n_landmarks: int = 12, seed: int = 1) -> dict[str, np.ndarray]:
    """A random `mediapipe_landmark_embedding.npz` layout for a mesh of `n_faces` triangles."""
    rng = np.random.default_rng(seed)
    return {
        "lmk_face_idx": rng.integers(0, n_faces, n_landmarks).astype(np.uint32),
        "lmk_b_coords": rng.dirichlet(np.ones(3), size=n_landmarks),
        "landmark_indices": rng.choice(468, n_landmarks, replace=False).astype(np.int64),
    }
