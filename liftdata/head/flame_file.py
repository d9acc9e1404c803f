"""Reading FLAME model files and mediapipe landmark embeddings, without chumpy.

FLAME 2020 (`generic_model.pkl`, `FLAME_NEUTRAL.pkl`) pickles `chumpy.ch.Ch` objects, and chumpy
does not import on numpy >= 1.24. `_FlameUnpickler` replaces every chumpy class with a stub that
keeps the pickled state (the array sits under `.x`). It also loads only the globals a FLAME file
needs (numpy arrays, scipy sparse matrices, a few builtins), so a pickle cannot run code.

FLAME 2023 / 2023-Open pickles hold plain numpy arrays and a `scipy.sparse` `J_regressor`;
a converted `.npz` holds the same keys (plus an optional `flame_version` string).

Every problem with a user's file raises `FlameFileError` naming the file and what is wrong.
Never vendor FLAME data: the user supplies it (it is licensed by MPI).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from liftdata.errors import LiftdataError

__all__ = ["FlameFileError", "read_flame_file", "check_flame_arrays", "read_landmark_embedding",
           "FLAME_KEYS", "EMBEDDING_KEYS"]

#: Keys a FLAME file must hold.
FLAME_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
#: Keys of `mediapipe_landmark_embedding.npz`.
EMBEDDING_KEYS = ("lmk_face_idx", "lmk_b_coords", "landmark_indices")
N_JOINTS = 5  # global, neck, jaw, left eye, right eye
N_MEDIAPIPE = 478  # face-mesh points with the refined iris

# Other SMPL-family models a user may pick up by mistake: vertex and joint counts.
_BODY_MODELS = {"SMPL": (6890, 24), "SMPL-H": (6890, 52), "SMPL-X": (10475, 55), "MANO": (778, 16)}

_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image",
          b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"\x93NUMPY": "a single .npy array"}


class FlameFileError(LiftdataError, ValueError):
    """A FLAME model file or landmark embedding that is missing, unreadable or malformed."""


# ---------------------------------------------------------------------- chumpy-free unpickling
class _ChumpyStub:
    """Stands in for any chumpy class: keeps the pickled state (`x` holds the array)."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


_ALLOWED_GLOBALS = {
    "numpy": set(),  # plus its classes (ndarray, dtype, scalar types): see find_class
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.numeric": {"_frombuffer"},
    "copyreg": {"_reconstructor"},
    "_codecs": {"encode"},
    "collections": {"OrderedDict"},
    "builtins": {"object", "set", "frozenset", "slice", "complex", "bytearray", "list", "dict",
                 "tuple", "int", "float", "str", "bytes", "bool"},
}
_PY2_MODULES = {"copy_reg": "copyreg", "__builtin__": "builtins"}
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


class _FlameUnpickler(pickle.Unpickler):
    """Unpickler for FLAME files: chumpy -> stub, old scipy/numpy paths -> current ones."""

    used_chumpy = False

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            self.used_chumpy = True
            return _ChumpyStub
        if module.startswith("scipy.sparse"):  # scipy.sparse.csc.csc_matrix (old), ._csc (new)
            cls = getattr(scipy.sparse, name, None)
            if isinstance(cls, type) and issubclass(cls, scipy.sparse.sparray | scipy.sparse.spmatrix):
                return cls
        module = _PY2_MODULES.get(module, module)
        if module.startswith(("numpy.core.", "numpy._core.")):  # numpy 2 renamed numpy.core
            module = "numpy._core." + module.split(".", 2)[2]
        allowed = _ALLOWED_GLOBALS.get(module, set())
        if name in allowed or (module == "numpy" and isinstance(getattr(np, name, None), type)):
            return super().find_class(module.replace("numpy._core", _NUMPY_CORE), name)
        raise FlameFileError(f"refusing to load `{module}.{name}`: a FLAME file holds only numpy "
                             "arrays, scipy sparse matrices and chumpy arrays")


def _as_array(key: str, value: Any, path: Path) -> Any:
    """chumpy stub -> its array; sparse matrices stay sparse; the rest through np.asarray."""
    if isinstance(value, _ChumpyStub):
        if "x" not in value.__dict__:
            raise FlameFileError(f"{path}: `{key}` is a chumpy object without an array (`x`)")
        return np.asarray(value.__dict__["x"])
    if scipy.sparse.issparse(value):
        return value
    return np.asarray(value)


def _sniff(path: Path, head: bytes) -> str:
    if not head:
        return "the file is empty"
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return f"it looks like {what}"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it looks like a text file"
    return "it is not a pickle or a zip archive"


def _read_pickle(path: Path) -> tuple[dict, bool]:
    with path.open("rb") as fh:
        unpickler = _FlameUnpickler(fh, encoding="latin1")  # latin1: Python 2 pickles
        try:
            data = unpickler.load()
        except FlameFileError as e:
            raise FlameFileError(f"{path}: {e}") from None
        except EOFError:
            raise FlameFileError(f"{path}: the pickle is truncated (unexpected end of file); "
                                 "download the FLAME model again") from None
        except Exception as e:  # noqa: BLE001 - any parse failure of a user's file
            if "truncated" in str(e):
                raise FlameFileError(f"{path}: the pickle is truncated ({e}); "
                                     "download the FLAME model again") from None
            raise FlameFileError(f"{path}: cannot read the pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise FlameFileError(f"{path}: expected a pickled dict of FLAME arrays, got {type(data).__name__}")
    return data, unpickler.used_chumpy


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise FlameFileError(f"{path}: cannot read the .npz archive, truncated or corrupt "
                             f"({type(e).__name__}: {e})") from None


def read_flame_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Read a FLAME `.pkl` (2020 chumpy, 2023, 2023-Open) or `.npz` -> (raw arrays, version).

    The detected version is "2020" for chumpy pickles, "2023" for other pickles, and an
    `.npz`'s `flame_version` entry if it has one ("2023" otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(f"FLAME model file not found: {path}")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(b"PK"):
        data = _read_npz(path)
        version = str(data.pop("flame_version", "2023"))
    elif head.startswith(b"\x80") or head[:1] in (b"(", b"}", b"]"):  # protocol >= 2, or 0/1 dict
        data, used_chumpy = _read_pickle(path)
        version = "2020" if used_chumpy else "2023"
    else:
        raise FlameFileError(f"{path}: not a FLAME .pkl or .npz file ({_sniff(path, head)})")
    return {k: _as_array(k, v, path) for k, v in data.items()}, version


# ---------------------------------------------------------------------- validation
def _shape_error(path: Path, key: str, want: str, got: Any) -> FlameFileError:
    return FlameFileError(f"{path}: `{key}` should have shape {want}, got {list(np.shape(got))}")


def _check_body_model(path: Path, n_vertices: int, n_joints: int) -> None:
    for name, (nv, nj) in _BODY_MODELS.items():
        if n_vertices == nv or n_joints == nj:
            raise FlameFileError(f"{path}: this looks like {name}, not FLAME ({n_vertices} vertices, "
                                 f"{n_joints} joints; FLAME has 5023 vertices and 5 joints)")


def _posedirs_vx3p(path: Path, posedirs: np.ndarray, n_vertices: int) -> np.ndarray:
    """Accept (V, 3, P), (V*3, P) (as smplx) or (P, V*3) -> (V, 3, P) with P = 9 (J - 1)."""
    n_pose = 9 * (N_JOINTS - 1)
    if posedirs.shape == (n_vertices, 3, n_pose):
        return posedirs
    if posedirs.shape == (n_vertices * 3, n_pose):
        return posedirs.reshape(n_vertices, 3, n_pose)
    if posedirs.shape == (n_pose, n_vertices * 3):
        return posedirs.T.reshape(n_vertices, 3, n_pose)
    raise _shape_error(path, "posedirs", f"[{n_vertices}, 3, {n_pose}] (or flattened)", posedirs)


def check_flame_arrays(raw: dict[str, Any], path: str | Path = "<arrays>") -> dict[str, np.ndarray]:
    """Validate raw FLAME arrays -> float64 / int64 arrays in canonical layouts.

    Returns v_template [V,3], f [F,3] int64, shapedirs [V,3,K], posedirs [V,3,36],
    J_regressor [5,V] dense, weights [V,5], parents [5] int64 (root -1).
    """
    path = Path(path)
    missing = [k for k in FLAME_KEYS if k not in raw]
    if missing:
        raise FlameFileError(f"{path}: missing key(s) {missing}; a FLAME file holds {list(FLAME_KEYS)}")
    j_reg = raw["J_regressor"]
    j_reg = np.asarray(j_reg.toarray() if scipy.sparse.issparse(j_reg) else j_reg, np.float64)
    v_template = np.asarray(raw["v_template"], np.float64)
    kintree = np.asarray(raw["kintree_table"])
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise _shape_error(path, "v_template", "[V, 3]", v_template)
    n_vertices = v_template.shape[0]
    _check_body_model(path, n_vertices, kintree.shape[-1] if kintree.ndim == 2 else j_reg.shape[0])
    if kintree.shape != (2, N_JOINTS):
        raise _shape_error(path, "kintree_table", f"[2, {N_JOINTS}] ({N_JOINTS} joints expected)", kintree)
    if j_reg.shape != (N_JOINTS, n_vertices):
        raise _shape_error(path, "J_regressor", f"[{N_JOINTS}, {n_vertices}] ({N_JOINTS} joints expected)", j_reg)
    weights = np.asarray(raw["weights"], np.float64)
    if weights.shape != (n_vertices, N_JOINTS):
        raise _shape_error(path, "weights", f"[{n_vertices}, {N_JOINTS}]", weights)
    shapedirs = np.asarray(raw["shapedirs"], np.float64)
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (n_vertices, 3):
        raise _shape_error(path, "shapedirs", f"[{n_vertices}, 3, K] (V as in v_template)", shapedirs)
    faces = np.asarray(raw["f"])
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise _shape_error(path, "f", "[F, 3] integer", faces)
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= n_vertices):
        raise FlameFileError(f"{path}: `f` indexes vertex {int(faces.max())} (or {int(faces.min())}), "
                             f"out of range for {n_vertices} vertices")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # the root is stored as -1 or as uint32 4294967295
    if any(not 0 <= parents[i] < i for i in range(1, N_JOINTS)):
        raise FlameFileError(f"{path}: `kintree_table` parents {kintree[0].tolist()} do not form a "
                             "chain where each parent precedes its child")
    return {"v_template": v_template, "f": faces, "shapedirs": shapedirs,
            "posedirs": _posedirs_vx3p(path, np.asarray(raw["posedirs"], np.float64), n_vertices),
            "J_regressor": j_reg, "weights": weights, "parents": parents}


# ---------------------------------------------------------------------- landmark embedding
def read_landmark_embedding(path: str | Path, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read `mediapipe_landmark_embedding.npz` -> (face index [L] int64, barycentrics [L,3]
    float64, mediapipe index [L] int64), checked against a mesh of `n_faces` triangles."""
    path = Path(path)
    if not path.is_file():
        raise FlameFileError(f"landmark embedding file not found: {path}")
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head.startswith(b"PK"):
        raise FlameFileError(f"{path}: not a landmark embedding .npz ({_sniff(path, head)})")
    data = _read_npz(path)
    missing = [k for k in EMBEDDING_KEYS if k not in data]
    if missing:
        raise FlameFileError(f"{path}: missing key(s) {missing}; a landmark embedding holds {list(EMBEDDING_KEYS)}")
    face_idx, bary, mp_index = (np.asarray(data[k]) for k in EMBEDDING_KEYS)
    n = face_idx.shape[0] if face_idx.ndim == 1 else -1
    if n < 0 or bary.shape != (n, 3) or mp_index.shape != (n,):
        raise FlameFileError(f"{path}: mismatched landmark counts: lmk_face_idx {list(face_idx.shape)}, "
                             f"lmk_b_coords {list(bary.shape)} (want [L, 3]), landmark_indices {list(mp_index.shape)}")
    if n and (face_idx.min() < 0 or face_idx.max() >= n_faces):
        raise FlameFileError(f"{path}: lmk_face_idx references face {int(face_idx.max())} "
                             f"(or {int(face_idx.min())}), out of range for a mesh of {n_faces} faces")
    sums = bary.sum(1)
    if not np.allclose(sums, 1.0, atol=1e-4):
        bad = int(np.argmax(np.abs(sums - 1)))
        raise FlameFileError(f"{path}: barycentric coordinates of landmark {bad} sum to {sums[bad]:.4f}, not 1")
    if n and (mp_index.min() < 0 or mp_index.max() >= N_MEDIAPIPE):
        raise FlameFileError(f"{path}: landmark_indices must be mediapipe ids in [0, {N_MEDIAPIPE})")
    return face_idx.astype(np.int64), bary.astype(np.float64), mp_index.astype(np.int64)
