"""The VHAP / GaussianAvatars dataset layout (FLAME captures only): export and import.

Layout (as VHAP's `export_as_nerf_dataset.py` writes and GaussianAvatars'
`readMeshesFromTransforms` reads)::

    out/images/00000.png ...               frames, RGB
    out/flame_param/00000.npz ...          per timestep: translation [1,3], rotation [1,3] (global,
                                           axis-angle), neck_pose [1,3], jaw_pose [1,3],
                                           eyes_pose [1,6], shape [n_shape], expr [1,n_expr],
                                           static_offset [1,V,3] (zeros)
    out/canonical_flame_param.npz          the same keys for the canonical (rest) pose, jaw open 0.3
    out/transforms_{train,val,test}.json   fl_x, fl_y, cx, cy, w, h, camera_angle_x/y and `frames`:
                                           timestep_index, file_path, flame_param_path,
                                           transform_matrix (OpenGL camera-to-world, see
                                           `Camera.c2w_opengl`) plus per-frame intrinsics

FLAME's `rotation`/`translation` are our `Kinematics.rotation`/`translation` (the global joint,
translation added after skinning); `neck_pose`, `jaw_pose`, `eyes_pose` map to neck, jaw, eyes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from liftdata.capture import Capture, ImageFolderFrames
from liftdata.errors import LiftdataError
from liftdata.kinematics import Camera, Kinematics

__all__ = ["export_vhap", "write_vhap", "import_vhap", "VhapError", "SPLITS"]

SPLITS = ("train", "val", "test")
_PARAM_KEYS = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr")
_KINEMATIC_OF = {"translation": "translation", "rotation": "rotation", "neck_pose": "neck",
                 "jaw_pose": "jaw", "eyes_pose": "eyes", "expr": "expression"}


class VhapError(LiftdataError, ValueError):
    """Not a VHAP/GaussianAvatars layout, or not a FLAME capture; the message names the path."""


def _check_flame(head_model: Any, what: str) -> None:
    if getattr(head_model, "name", None) != "flame":
        raise VhapError(f"{what}: the VHAP/GaussianAvatars layout holds FLAME parameters; the head model "
                        f"is {getattr(head_model, 'name', type(head_model).__name__)!r}, not 'flame'")


def _n_vertices(head_model: Any) -> int:
    return int(np.asarray(head_model.faces).max()) + 1


def export_vhap(capture: Capture, out_dir: str | os.PathLike,
                splits: Mapping[str, Sequence[int]] | None = None) -> Path:
    """Write `capture` (FLAME) in the VHAP/GaussianAvatars layout under `out_dir` (must not exist).

    `splits` maps "train"/"val"/"test" to timestep indices (default: every frame in train, val and
    test empty).
    """
    frames = ((np.asarray(capture.frames[i]), capture.kinematics[i], {}) for i in range(len(capture)))
    return write_vhap(frames, out_dir, capture.head_model, capture.identity, capture.camera, splits,
                      what=f"capture {capture.capture_id!r}")


def write_vhap(frames: Iterable[tuple[np.ndarray, Kinematics, Mapping[str, Any]]], out_dir: str | os.PathLike,
               head_model: Any, identity: np.ndarray, camera: Camera,
               splits: Mapping[str, Sequence[int]] | None = None, what: str = "frames") -> Path:
    """Stream (RGB frame, T=1 kinematics, extra frame-entry fields) into the VHAP layout.

    Written under a temporary name and renamed when complete. `extra` fields go into the frame's
    transforms entry (e.g. `{"synthetic": True, "key": ...}` for lifted frames).
    """
    _check_flame(head_model, what)
    out = Path(out_dir)
    if out.exists():
        raise VhapError(f"{out}: already exists; choose a new directory")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "flame_param").mkdir()
    static_offset = np.zeros((1, _n_vertices(head_model), 3), np.float32)
    cam = camera.to_transforms_frame()
    entries = []
    for i, (frame, k, extra) in enumerate(frames):
        if not cv2.imwrite(str(tmp / "images" / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise VhapError(f"{tmp}: cannot write frame {i} (disk full or not writable?)")
        np.savez(tmp / "flame_param" / f"{i:05d}.npz", translation=k.translation, rotation=k.rotation,
                 neck_pose=k.neck, jaw_pose=k.jaw, eyes_pose=k.eyes, shape=identity, expr=k.expression,
                 static_offset=static_offset)
        entries.append(dict(cam, timestep_index=i, timestep_index_original=i, timestep_id=f"frame_{i:05d}",
                            camera_index=0, camera_id="0", file_path=f"images/{i:05d}.png",
                            flame_param_path=f"flame_param/{i:05d}.npz", **extra))
    z = lambda w: np.zeros((1, w), np.float32)  # noqa: E731
    np.savez(tmp / "canonical_flame_param.npz", translation=z(3), rotation=z(3), neck_pose=z(3),
             jaw_pose=np.array([[0.3, 0, 0]], np.float32), eyes_pose=z(6), shape=identity,
             expr=z(head_model.n_expression), static_offset=static_offset)
    splits = {"train": range(len(entries)), "val": [], "test": []} if splits is None else splits
    meta = {key: cam[key] for key in ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")}
    for split in SPLITS:
        chosen = [entries[i] for i in splits.get(split, [])]
        (tmp / f"transforms_{split}.json").write_text(json.dumps(dict(meta, frames=chosen), indent=1))
    tmp.rename(out)
    return out


def _read_frames(d: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    files = [d / f"transforms_{s}.json" for s in SPLITS if (d / f"transforms_{s}.json").is_file()]
    if not files:
        raise VhapError(f"{d}: not a VHAP/GaussianAvatars directory (no transforms_{{train,val,test}}.json)")
    meta, frames = {}, []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise VhapError(f"{f}: corrupt JSON ({e})") from None
        meta = meta or {k: v for k, v in doc.items() if k != "frames"}
        for fr in doc.get("frames", []):
            missing = [k for k in ("timestep_index", "file_path", "flame_param_path", "transform_matrix") if k not in fr]
            if missing:
                raise VhapError(f"{f}: a frame entry lacks {missing}")
            frames.append(fr)
    if not frames:
        raise VhapError(f"{d}: the transforms_*.json files list no frames")
    frames.sort(key=lambda fr: int(fr["timestep_index"]))
    return meta, frames


def _load_param(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise VhapError(f"{path}: FLAME parameter file not found")
    with np.load(path) as z:
        missing = [k for k in _PARAM_KEYS if k not in z.files]
        if missing:
            raise VhapError(f"{path}: missing key(s) {missing} (has {sorted(z.files)})")
        return {k: np.asarray(z[k], np.float32) for k in _PARAM_KEYS}


def import_vhap(directory: str | os.PathLike, head_model: Any) -> Capture:
    """Read a VHAP/GaussianAvatars directory (all splits, ordered by timestep) into a `Capture`.

    `head_model` must be the FLAME model (`FlameHeadModel`) the parameters belong to, with the same
    number of shape and expression components.
    """
    d = Path(directory)
    _check_flame(head_model, str(d))
    meta, frames = _read_frames(d)
    params = [_load_param(d / fr["flame_param_path"]) for fr in frames]
    shape = params[0]["shape"].reshape(-1)
    expr_w = params[0]["expr"].shape[-1]
    if (len(shape), expr_w) != (head_model.n_shape, head_model.n_expression):
        raise VhapError(f"{d}: parameters have {len(shape)} shape / {expr_w} expression components, the head "
                        f"model {head_model.n_shape} / {head_model.n_expression}; load FLAME with matching "
                        "n_shape and n_expression")
    arrays = {kin: np.concatenate([p[key].reshape(1, -1) for p in params]) for key, kin in _KINEMATIC_OF.items()}
    kinematics = Kinematics(**arrays, head_model=head_model.name, head_model_version=head_model.version)
    camera = Camera.from_transforms(meta, frames[0])
    images = ImageFolderFrames([d / fr["file_path"] for fr in frames])
    return Capture(frames=images, kinematics=kinematics, camera=camera, identity=shape, head_model=head_model,
                   capture_id=d.name, subject_id=d.name, extra={"vhap": {"source": str(d)}})
