"""The VHAP / GaussianAvatars dataset layout (FLAME captures only): import and export.

Layout (as VHAP's `export_as_nerf_dataset.py` writes it, VHAP's `NeRFDataset` and
GaussianAvatars' `readDynamicNerfInfo` read it)::

    out/images/{t:05d}_{c:02d}.png         frame of timestep t seen by camera c, RGB, composited on
                                           the background (white / black, or kept)
    out/fg_masks/{t:05d}_{c:02d}.png       its foreground matte, uint8 (255 = person)
    out/flame_param/{t:05d}.npz            per timestep: translation [1,3], rotation [1,3] (global,
                                           axis-angle), neck_pose [1,3], jaw_pose [1,3],
                                           eyes_pose [1,6], shape [n_shape], expr [1,n_expr],
                                           static_offset [1,V,3]
    out/canonical_flame_param.npz          the same keys for the canonical (rest) pose, jaw open 0.3
    out/transforms.json                    every frame; top level: shared intrinsics (fl_x, fl_y, cx,
                                           cy, w, h, camera_angle_x/y), `timestep_indices`,
                                           `camera_indices`
    out/transforms_{train,val,test}.json   the splits, same fields
    out/liftdata.json                      what liftdata wrote: settings identity, counts

A frame entry holds `timestep_index`, `timestep_index_original`, `timestep_id`, `camera_index`,
`camera_id`, `file_path`, `fg_mask_path`, `flame_param_path`, `transform_matrix` (OpenGL
camera-to-world, see `Camera.c2w_opengl`) and its intrinsics; liftdata adds `synthetic` (lifted
frames) and `key` (the sample key). FLAME's `rotation`/`translation` are our
`Kinematics.rotation`/`translation`; `neck_pose`, `jaw_pose`, `eyes_pose` map to neck, jaw, eyes.

`static_offset` (VHAP's per-subject vertex offsets, added to the shaped template before skinning)
is kept: `import_vhap` bakes it into a copy of the FLAME model (`with_static_offset`) so rendered
geometry matches VHAP's, and the export writes it back unchanged (rows for VHAP's teeth included).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from liftdata.capture import Capture, ImageFolderFrames
from liftdata.errors import LiftdataError
from liftdata.kinematics import Camera, Kinematics

__all__ = ["export_vhap", "import_vhap", "VhapWriter", "VhapFrame", "VhapError", "SPLITS", "BACKGROUNDS",
           "SPLIT_RULES", "captured_splits", "with_static_offset", "static_offset_of", "read_vhap_frames"]

SPLITS = ("train", "val", "test")
BACKGROUNDS = {"white": 255, "black": 0, "keep": None}
#: how captured frames are split (lifted frames are always train): see `captured_splits`
SPLIT_RULES = ("auto", "none", "source", "extremes", "last30", "last350", "last500")
HOLDOUT = 0.1  #: fraction held out by the "extremes" rule (as `liftdata avatar compare`)
_PARAM_KEYS = ("translation", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "shape", "expr")
_KINEMATIC_OF = {"translation": "translation", "rotation": "rotation", "neck_pose": "neck",
                 "jaw_pose": "jaw", "eyes_pose": "eyes", "expr": "expression"}
_SHARED = ("cx", "cy", "fl_x", "fl_y", "h", "w", "camera_angle_x", "camera_angle_y")
_POSE_ATOL, _K_ATOL = 1e-6, 1e-3  # metres / pixels: a camera whose frames differ more is not one camera


class VhapError(LiftdataError, ValueError):
    """Not a VHAP/GaussianAvatars layout, or not a FLAME capture; the message names the path."""


def _check_flame(head_model: Any, what: str) -> None:
    if getattr(head_model, "name", None) != "flame":
        raise VhapError(f"{what}: the VHAP/GaussianAvatars layout holds FLAME parameters; the head model "
                        f"is {getattr(head_model, 'name', type(head_model).__name__)!r}, not 'flame'")


# ---------------------------------------------------------------------- static offset
def with_static_offset(head_model: Any, static_offset: np.ndarray) -> Any:  # static_offset [1, V', 3]
    """A copy of the FLAME model whose template carries the subject's static offset.

    VHAP adds it to the shaped template before skinning (v = T + B_S(shape) + offset, joints
    regressed from that), which is what adding it to FLAME's template does. Rows beyond the
    model's vertices (VHAP's teeth) are not applied; the copy keeps the whole array
    (`static_offset_of`) so an export writes it back unchanged.
    """
    import torch

    offset = np.asarray(static_offset, np.float32).reshape(-1, 3)
    template = getattr(head_model, "plain_template", head_model.arrays["v_template"])  # replaces an earlier offset
    applied = np.zeros(template.shape, np.float32)
    applied[:min(len(offset), len(template))] = offset[:len(template)]
    model = copy.copy(head_model)
    model.arrays = dict(head_model.arrays, v_template=template + applied)
    model._v_template = torch.as_tensor(template + applied, dtype=torch.float32, device=head_model._v_template.device)
    model.plain_template, model.static_offset = template, offset[None]
    return model


def static_offset_of(head_model: Any) -> np.ndarray:  # [1, V', 3]
    """The static offset a model carries (`with_static_offset`), else zeros for its vertices."""
    offset = getattr(head_model, "static_offset", None)
    if offset is not None:
        return offset
    return np.zeros((1, len(head_model.arrays["v_template"]), 3), np.float32)


# ---------------------------------------------------------------------- splits
def captured_splits(capture: Capture, rule: str = "auto") -> list[str]:
    """The split ("train" / "val" / "test") of each captured frame under `rule`.

    * "source": the VHAP input's own: frames of its test timesteps stay test, the rest is train
      (its val split holds other cameras at train timesteps: one camera has no novel view);
    * "none": all train; "auto": "source" for a VHAP input, else "none";
    * "extremes": the `HOLDOUT` fraction of frames farthest (Mahalanobis distance of expression +
      jaw) from the capture's distribution is test, as `liftdata avatar compare` holds out;
    * "last30" / "last350" / "last500": the standard monocular tails (`monocular_split`).
    """
    from liftdata.eval.splits import ExtremenessModel, monocular_split

    t, source = len(capture), capture.extra.get("vhap", {}).get("split")
    source = source if source and any(s is not None for s in source) else None
    if rule == "auto":
        rule = "source" if source else "none"
    out, test = ["train"] * t, []
    if rule == "source":
        if not source:
            raise VhapError(f"split source: capture {capture.capture_id!r} is not from a VHAP folder with splits")
        return ["test" if s == "test" else "train" for s in source]
    if rule == "extremes":
        if t < 4:
            raise VhapError(f"split extremes: {t} captured frames, need at least 4 to hold some out")
        order = np.argsort(-ExtremenessModel(capture.kinematics).train_distances, kind="stable")
        test = order[:max(1, math.ceil(HOLDOUT * t))]
    elif rule in ("last30", "last350", "last500"):
        try:
            test = monocular_split(t, rule)[1]
        except ValueError as e:
            raise VhapError(str(e)) from None
    elif rule != "none":
        raise VhapError(f"split: expected one of {', '.join(SPLIT_RULES)}, got {rule!r}")
    for i in test:
        out[int(i)] = "test"
    return out


# ---------------------------------------------------------------------- export
@dataclass
class VhapFrame:
    """One frame to write."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    kinematics: Kinematics  # T = 1
    camera: Camera
    alpha: np.ndarray | None = None  # [H, W] uint8 foreground matte (255 = person), None: no fg_mask
    split: str = "train"
    fields: dict[str, Any] = field(default_factory=dict)  # more frame-entry fields (timestep_id, synthetic, ...)
    alpha_source: str | None = None  # where the matte came from (counted in liftdata.json)


class VhapWriter:
    """Streams `VhapFrame`s into the layout under `out_dir`; an interrupted write resumes.

    Frames go to `.{name}.tmp/` beside `out_dir` (their files, then one line of `progress.jsonl`);
    `finish()` writes the transforms files and renames the folder. With an `identity` (what made
    the frames: settings, capture, plan), a rerun with the same identity continues after the last
    complete frame (`start`) or, when finished, does nothing (`complete`); another identity is
    refused, naming the fields that differ. Without one (`export_vhap`), `out_dir` must not exist.
    """

    def __init__(self, out_dir: str | os.PathLike, head_model: Any, shape: np.ndarray, *,
                 static_offset: np.ndarray | None = None, camera_index: int = 0, camera_id: str | None = None,
                 background: str = "white", identity: Mapping[str, Any] | None = None, what: str = "frames"):
        _check_flame(head_model, what)
        if background not in BACKGROUNDS:
            raise VhapError(f"background: expected one of {', '.join(BACKGROUNDS)}, got {background!r}")
        self.out, self.head_model, self.shape = Path(out_dir), head_model, np.asarray(shape, np.float32)
        self.static_offset = static_offset_of(head_model) if static_offset is None else static_offset
        self.camera_index, self.camera_id = int(camera_index), str(camera_index if camera_id is None else camera_id)
        self.background, self.identity = background, None if identity is None else dict(identity)
        self.tmp = self.out.with_name(f".{self.out.name}.tmp")
        self.complete, self.start, self.last_key = self._check_out(), 0, None
        if not self.complete:
            self.start = self._open_tmp()

    def _check_out(self) -> bool:
        if not self.out.exists():
            return False
        doc = _read_json(self.out / "liftdata.json") if self.identity is not None else None
        if doc is None:
            raise VhapError(f"{self.out}: already exists; choose a new directory")
        self._check_identity(doc.get("identity"), self.out)
        return True

    def _check_identity(self, recorded: Any, where: Path) -> None:
        from liftdata.io.shards import identity_diff

        diff = identity_diff(recorded, self.identity)
        if diff:
            raise VhapError(f"{where}: holds a VHAP export made with other settings ({diff}); rerun with the same "
                            "settings to resume, or --overwrite to start over")

    def _open_tmp(self) -> int:
        """Frames already written by an interrupted run with the same identity (0 if none)."""
        doc = _read_json(self.tmp / "liftdata.json") if self.identity is not None else None
        if doc is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            for sub in ("images", "fg_masks", "flame_param"):
                (self.tmp / sub).mkdir(parents=True)
            (self.tmp / "liftdata.json").write_text(json.dumps({"identity": self.identity, "complete": False}))
            return 0
        self._check_identity(doc.get("identity"), self.tmp)
        lines = (self.tmp / "progress.jsonl").read_text().splitlines() if (self.tmp / "progress.jsonl").exists() else []
        done = []
        for line in lines:  # a line torn by a crash (the last one) ends what counts
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:
                break
        (self.tmp / "progress.jsonl").write_text("".join(json.dumps(d) + "\n" for d in done))
        self.last_key = done[-1]["entry"].get("key") if done else None
        return len(done)

    def add(self, frame: VhapFrame, index: int) -> None:
        """Write frame number `index` (timestep index `index`; frames come in order from `start`)."""
        stem = f"{index:05d}_{self.camera_index:02d}"
        image, entry = frame.image, dict(frame.camera.to_transforms_frame())
        if frame.alpha is not None:
            if BACKGROUNDS[self.background] is not None:
                a = frame.alpha[..., None].astype(np.float32) / 255
                image = np.round(image * a + BACKGROUNDS[self.background] * (1 - a)).astype(np.uint8)
            _imwrite(self.tmp / "fg_masks" / f"{stem}.png", frame.alpha)
            entry["fg_mask_path"] = f"fg_masks/{stem}.png"
        _imwrite(self.tmp / "images" / f"{stem}.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        k = frame.kinematics
        np.savez(self.tmp / "flame_param" / f"{index:05d}.npz", translation=k.translation, rotation=k.rotation,
                 neck_pose=k.neck, jaw_pose=k.jaw, eyes_pose=k.eyes, shape=self.shape, expr=k.expression,
                 static_offset=self.static_offset)
        entry.update(timestep_index=index, timestep_index_original=index, timestep_id=f"frame_{index:05d}",
                     camera_index=self.camera_index, camera_id=self.camera_id, file_path=f"images/{stem}.png",
                     flame_param_path=f"flame_param/{index:05d}.npz")
        entry.update(frame.fields)
        with open(self.tmp / "progress.jsonl", "a") as fh:
            fh.write(json.dumps({"split": frame.split, "alpha": frame.alpha_source, "entry": entry}) + "\n")

    def finish(self) -> Path:
        """Write the transforms files and `liftdata.json`, rename the folder into place; return it."""
        if self.complete:
            return self.out
        done = [json.loads(line) for line in (self.tmp / "progress.jsonl").read_text().splitlines()]
        if not done:
            raise VhapError(f"{self.out}: no frames to write")
        entries = [d["entry"] for d in done]
        _write_transforms(self.tmp, entries, "transforms.json")
        for split in SPLITS:
            _write_transforms(self.tmp, [d["entry"] for d in done if d["split"] == split], f"transforms_{split}.json",
                              shared=entries[0])
        z = lambda w: np.zeros((1, w), np.float32)  # noqa: E731
        np.savez(self.tmp / "canonical_flame_param.npz", translation=z(3), rotation=z(3), neck_pose=z(3),
                 jaw_pose=np.array([[0.3, 0, 0]], np.float32), eyes_pose=z(6), shape=self.shape,
                 expr=z(self.head_model.n_expression), static_offset=self.static_offset)
        offset = max(max(abs(e["cx"] - (e["w"] - 1) / 2), abs(e["cy"] - (e["h"] - 1) / 2)) for e in entries)
        if offset > 0.5:  # GaussianAvatars' cameras are field-of-view only: principal point at the centre
            warnings.warn(f"{self.out}: the principal point is up to {offset:.1f} px off the image centre; "
                          "GaussianAvatars ignores cx/cy, so its renders will be shifted by that much", stacklevel=2)
        split_sizes = {s: sum(d["split"] == s for d in done) for s in SPLITS}
        mattes = {str(a): sum(d.get("alpha") == a for d in done) for a in sorted({str(d.get("alpha")) for d in done})}
        (self.tmp / "liftdata.json").write_text(json.dumps({
            "identity": self.identity, "complete": True, "frames": len(done), "splits": split_sizes,
            "synthetic": sum(bool(d["entry"].get("synthetic")) for d in done), "fg_mask_from": mattes,
            "principal_point_offset_px": offset,
            "background": self.background}, indent=1))
        (self.tmp / "progress.jsonl").unlink()
        self.tmp.rename(self.out)
        self.complete = True
        return self.out


def _write_transforms(d: Path, entries: list[dict], name: str, shared: Mapping[str, Any] | None = None) -> None:
    shared = shared or entries[0]
    doc = {k: shared[k] for k in _SHARED}
    doc.update(frames=entries, timestep_indices=sorted({e["timestep_index"] for e in entries}),
               camera_indices=sorted({e["camera_index"] for e in entries}))
    (d / name).write_text(json.dumps(doc, indent=1))


def _imwrite(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise VhapError(f"{path}: cannot write (disk full or not writable?)")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def export_vhap(capture: Capture, out_dir: str | os.PathLike,
                splits: Mapping[str, Sequence[int]] | None = None, background: str = "white") -> Path:
    """Write `capture` (FLAME) in the VHAP/GaussianAvatars layout under `out_dir` (must not exist).

    `splits` maps "train"/"val"/"test" to frame indices (default: `captured_splits(capture)`).
    Frames whose VHAP source had a foreground mask get it (and are composited on `background`).
    """
    source = capture.extra.get("vhap", {})
    split_of = captured_splits(capture) if splits is None else _split_list(splits, len(capture))
    writer = VhapWriter(out_dir, capture.head_model, capture.identity, camera_index=source.get("camera_index", 0),
                        camera_id=source.get("camera_id"), background=background,
                        what=f"capture {capture.capture_id!r}")
    for i in range(len(capture)):
        image = np.asarray(capture.frames[i])
        alpha = source_alpha(capture, i, image.shape[:2])
        writer.add(VhapFrame(image, capture.kinematics[i], capture.camera, alpha, split_of[i],
                             source_fields(capture, i), None if alpha is None else "vhap"), i)
    return writer.finish()


def sample_frame(sample: Any, capture: Capture, splits: Sequence[str], index: int | None) -> VhapFrame:
    """The `VhapFrame` of a sample of `capture`'s expansion; `index`: the captured frame it is (None:
    lifted; lifted frames are train and flagged `synthetic`). Its matte: the VHAP source's mask of
    a captured frame, else the sample's alpha, else its head-model mask."""
    a = sample.to_arrays()
    alpha, origin = (source_alpha(capture, index, a["image"].shape[:2]), "vhap") if index is not None else (None, None)
    if alpha is None:
        alpha, origin = (a["alpha"], "alpha") if a.get("alpha") is not None else (a["mask"], "head_model")
    if index is None:
        fields = {"timestep_index_original": None, "synthetic": True, "key": sample.key,
                  "timestep_id": "lifted_" + sample.key.replace("/", "_")}
        return VhapFrame(a["image"], sample.kinematics, sample.camera, alpha, "train", fields,
                         None if alpha is None else origin)
    fields = {"synthetic": False, "key": sample.key, "timestep_index_original": index,
              "timestep_id": f"frame_{index:05d}", **source_fields(capture, index)}
    return VhapFrame(a["image"], sample.kinematics, sample.camera, alpha, splits[index], fields,
                     None if alpha is None else origin)


def _split_list(splits: Mapping[str, Sequence[int]], t: int) -> list[str]:
    out = ["train"] * t
    for split in ("val", "test"):
        for i in splits.get(split, []):
            out[int(i)] = split
    return out


def source_fields(capture: Capture, i: int) -> dict[str, Any]:
    """Frame-entry fields captured frame `i` keeps from its VHAP source: original timestep index and id."""
    source = capture.extra.get("vhap", {})
    if "timestep_index_original" not in source:
        return {}
    return {"timestep_index_original": source["timestep_index_original"][i], "timestep_id": source["timestep_id"][i]}


def source_alpha(capture: Capture, i: int, shape: tuple[int, int]) -> np.ndarray | None:  # [H, W] uint8
    """Captured frame `i`'s foreground mask from its VHAP source, cropped like the frames
    (`extra["crop"]`, `liftdata.track.crop`) and resized to `shape`; None if it has none."""
    paths = capture.extra.get("vhap", {}).get("fg_mask")
    if not paths or paths[i] is None:
        return None
    mask = cv2.imread(paths[i], cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise VhapError(f"{paths[i]}: cannot read the foreground mask")
    mask = mask[..., -1] if mask.ndim == 3 else mask  # RGBA / RGB masks: the last channel
    if "crop" in capture.extra:
        from liftdata.track.crop import crop_image

        mask = crop_image(mask, np.asarray(capture.extra["crop"]["box"]), int(capture.extra["crop"]["size"]))
    if mask.shape != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return mask.astype(np.uint8)


# ---------------------------------------------------------------------- import
def read_vhap_frames(d: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(top level, frame entries) of a VHAP folder: transforms.json's frames (else the splits'), each
    with "_split" (the transforms_{split}.json listing it; None if none does)."""
    split_files = {s: d / f"transforms_{s}.json" for s in SPLITS if (d / f"transforms_{s}.json").is_file()}
    docs = {s: _load_transforms(f) for s, f in split_files.items()}
    full = _load_transforms(d / "transforms.json") if (d / "transforms.json").is_file() else None
    if full is None and not docs:
        raise VhapError(f"{d}: not a VHAP/GaussianAvatars directory (no transforms.json or "
                        "transforms_{train,val,test}.json)")
    split_of = {_frame_id(fr): s for s, doc in docs.items() for fr in doc.get("frames", [])}
    frames = full["frames"] if full is not None else [fr for doc in docs.values() for fr in doc.get("frames", [])]
    meta = {k: v for k, v in (full or next(iter(docs.values()))).items() if k != "frames"}
    unique = {}
    for fr in frames:
        missing = [k for k in ("timestep_index", "file_path", "flame_param_path", "transform_matrix") if k not in fr]
        if missing:
            raise VhapError(f"{d}: a frame entry lacks {missing}")
        unique.setdefault(_frame_id(fr), dict(fr, _split=split_of.get(_frame_id(fr))))
    if not unique:
        raise VhapError(f"{d}: the transforms files list no frames")
    return meta, list(unique.values())


def _frame_id(fr: Mapping[str, Any]) -> tuple[int, int]:
    return int(fr["timestep_index"]), int(fr.get("camera_index", 0))


def _load_transforms(f: Path) -> dict[str, Any]:
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise VhapError(f"{f}: corrupt JSON ({e})") from None


def _load_param(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise VhapError(f"{path}: FLAME parameter file not found")
    with np.load(path) as z:
        missing = [k for k in _PARAM_KEYS if k not in z.files]
        if missing:
            raise VhapError(f"{path}: missing key(s) {missing} (has {sorted(z.files)})")
        return {k: np.asarray(z[k], np.float32) for k in (*_PARAM_KEYS, "static_offset") if k in z.files}


def _one_camera(d: Path, meta: Mapping[str, Any], frames: list[dict[str, Any]], index: int) -> Camera:
    """The camera of `frames` (all of one camera_index); refused when it moves or zooms over them."""
    cams = [Camera.from_transforms(meta, fr) for fr in frames]
    first = cams[0]
    for fr, cam in zip(frames, cams):
        if (cam.width, cam.height) != (first.width, first.height) or not (
                np.allclose(cam.K, first.K, rtol=0, atol=_K_ATOL)
                and np.allclose(cam.world_to_camera, first.world_to_camera, rtol=0, atol=_POSE_ATOL)):
            raise VhapError(f"{d}: camera {index} changes pose or intrinsics over its frames (timestep "
                            f"{fr['timestep_index']} differs from timestep {frames[0]['timestep_index']}); "
                            "liftdata expands a camera that stays put (per-frame cameras are not supported)")
    return first


def import_vhap(directory: str | os.PathLike, head_model: Any, camera: int | None = None) -> Capture:
    """Read one camera of a VHAP/GaussianAvatars directory into a `Capture` (frames by timestep).

    `head_model` must be the FLAME model (`FlameHeadModel`) the parameters belong to, with the same
    number of shape and expression components. A folder with several cameras (`camera_index`) is
    refused unless `camera` picks one; that camera's own pose and intrinsics are used. The capture's
    `extra["vhap"]` keeps the source's timestep indices and ids, splits, foreground masks and
    `synthetic` flags (frames liftdata lifted); a
    non-zero `static_offset` is baked into the returned capture's head model (`with_static_offset`).
    """
    d = Path(directory)
    _check_flame(head_model, str(d))
    meta, frames = read_vhap_frames(d)
    cameras = sorted({_frame_id(fr)[1] for fr in frames})
    if camera is None and len(cameras) > 1:
        raise VhapError(f"{d}: holds {len(cameras)} cameras (camera_index {cameras}); a capture is one camera: "
                        "pick one with --camera N (import_vhap(..., camera=N))")
    camera = cameras[0] if camera is None else int(camera)
    if camera not in cameras:
        raise VhapError(f"{d}: has no camera {camera} (camera_index {cameras})")
    frames = sorted((fr for fr in frames if _frame_id(fr)[1] == camera), key=_frame_id)
    params = [_load_param(d / fr["flame_param_path"]) for fr in frames]
    shape = params[0]["shape"].reshape(-1)
    expr_w = params[0]["expr"].shape[-1]
    if (len(shape), expr_w) != (head_model.n_shape, head_model.n_expression):
        raise VhapError(f"{d}: parameters have {len(shape)} shape / {expr_w} expression components, the head "
                        f"model {head_model.n_shape} / {head_model.n_expression}; load FLAME with matching "
                        "n_shape and n_expression")
    offset = params[0].get("static_offset")
    model = head_model if offset is None or not offset.any() else with_static_offset(head_model, offset)
    arrays = {kin: np.concatenate([p[key].reshape(1, -1) for p in params]) for key, kin in _KINEMATIC_OF.items()}
    kinematics = Kinematics(**arrays, head_model=model.name, head_model_version=model.version)
    source = {"source": str(d), "camera_index": camera, "camera_id": str(frames[0].get("camera_id", camera)),
              "cameras": cameras, "timestep_index": [fr["timestep_index"] for fr in frames],
              "timestep_index_original": [fr.get("timestep_index_original", fr["timestep_index"]) for fr in frames],
              "timestep_id": [fr.get("timestep_id", f"frame_{fr['timestep_index']:05d}") for fr in frames],
              "split": [fr["_split"] for fr in frames], "synthetic": [bool(fr.get("synthetic")) for fr in frames],
              "fg_mask": [str(d / fr["fg_mask_path"]) if fr.get("fg_mask_path") else None for fr in frames]}
    return Capture(frames=ImageFolderFrames([d / fr["file_path"] for fr in frames]), kinematics=kinematics,
                   camera=_one_camera(d, meta, frames, camera), identity=shape, head_model=model,
                   capture_id=d.name, subject_id=d.name, extra={"vhap": source})
