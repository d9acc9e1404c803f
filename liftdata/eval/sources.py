"""Where frames to evaluate come from: image folders, liftdata captures and liftdata datasets.

A `FrameSet` is an ordered list of frame names, a way to load each as RGB uint8 [H, W, 3], and
(for captures and datasets) the per-frame kinematics. Renders and ground truth are matched by
name = the file name without extension (a dataset sample's name is its key with "/" -> "_",
e.g. `subject_000000_007`; a capture's frames are `000000`, `000001`, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from liftdata.errors import LiftdataError
from liftdata.kinematics import Kinematics

__all__ = ["EvalInputError", "FrameSet", "open_frames", "open_masks", "load_kinematics", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class EvalInputError(LiftdataError, ValueError):
    """Evaluation inputs do not fit together; the message names the files."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:  # [H, W, 3] uint8
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EvalInputError(f"{path}: cannot read image (missing, unreadable or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass
class FrameSet:
    """Named frames of one source, in order.

    Attributes:
        root: the directory they come from.
        names: frame names (matching keys between sources).
        where: name -> a human-readable location (file path or dataset key) for messages.
        loader: name -> RGB uint8 [H, W, 3].
        kinematics: [len(names)] per-frame kinematics, or None for plain image folders.
        kind: "images" | "capture" | "webdataset" | "parquet".
    """

    root: Path
    names: list[str]
    where: dict[str, str]
    loader: Callable[[str], np.ndarray]
    kinematics: Kinematics | None
    kind: str

    def __len__(self) -> int:
        return len(self.names)

    def load(self, name: str) -> np.ndarray:
        return self.loader(name)

    def subset(self, names: Sequence[str]) -> FrameSet:
        index = {n: i for i, n in enumerate(self.names)}
        kin = None if self.kinematics is None else self.kinematics[np.array([index[n] for n in names], dtype=int)]
        return FrameSet(self.root, list(names), self.where, self.loader, kin, self.kind)

    def frames(self) -> _Frames:
        """A frame source (len + getitem -> RGB uint8) in `names` order, e.g. for trackers."""
        return _Frames(self)


class _Frames:
    def __init__(self, fs: FrameSet):
        self.fs = fs

    def __len__(self) -> int:
        return len(self.fs)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.fs.load(self.fs.names[i])


def _image_files(directory: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            if p.stem in files:
                raise EvalInputError(f"{directory}: two images named {p.stem!r}: {files[p.stem].name} and {p.name}")
            files[p.stem] = p
    return files


def _image_folder(directory: Path, kinematics: Kinematics | None = None, kind: str = "images") -> FrameSet:
    files = _image_files(directory)
    if not files:
        raise EvalInputError(f"{directory}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    names = list(files)
    return FrameSet(directory, names, {n: str(p) for n, p in files.items()}, lambda n: read_rgb(files[n]),
                    kinematics, kind)


def _dataset(directory: Path, fmt: str) -> FrameSet:
    from liftdata.io import read_parquet, read_webdataset
    from liftdata.io.schema import decode_png

    read = read_webdataset if fmt == "webdataset" else read_parquet
    encoded, kin, where = {}, [], {}
    for s in read(directory):
        name = s.key.replace("/", "_")
        encoded[name] = s.image
        where[name] = f"{directory} sample {s.key}"
        kin.append(s.kinematics)
    if not encoded:
        raise EvalInputError(f"{directory}: the {fmt} dataset holds no samples")
    return FrameSet(directory, list(encoded), where, lambda n: decode_png(encoded[n]), Kinematics.concat(kin), fmt)


def open_frames(path: str | os.PathLike) -> FrameSet:
    """An image folder, a liftdata capture directory (`capture.json`) or a liftdata dataset
    directory (`manifest.json` of a webdataset / parquet write)."""
    directory = Path(path)
    if not directory.is_dir():
        raise EvalInputError(f"{directory}: not a directory")
    if (directory / "manifest.json").is_file():
        fmt = json.loads((directory / "manifest.json").read_text()).get("format")
        if fmt not in ("webdataset", "parquet"):
            raise EvalInputError(f"{directory}/manifest.json: unknown dataset format {fmt!r}")
        return _dataset(directory, fmt)
    if (directory / "capture.json").is_file():
        doc = json.loads((directory / "capture.json").read_text())
        kin = Kinematics.from_dict(doc["kinematics"])
        fs = _image_folder(directory / "frames", kin, "capture")
        if len(fs) != len(kin):
            raise EvalInputError(f"{directory}: {len(fs)} frames but {len(kin)} kinematics in capture.json")
        return fs
    return _image_folder(directory)


def open_masks(path: str | os.PathLike) -> tuple[dict[str, Path], Callable[[str], np.ndarray]]:
    """Mask images by name (grey or RGB; > 127 = head) and a loader name -> bool [H, W]."""
    directory = Path(path)
    if not directory.is_dir():
        raise EvalInputError(f"--mask-dir {directory}: not a directory")
    files = _image_files(directory)

    def load(name: str) -> np.ndarray:
        grey = cv2.imread(str(files[name]), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise EvalInputError(f"{files[name]}: cannot read mask image")
        return grey > 127

    return files, load


def load_kinematics(path: str | os.PathLike) -> Kinematics:
    """All kinematics of a liftdata capture directory or dataset directory (training frames)."""
    fs = open_frames(path)
    if fs.kinematics is None:
        raise EvalInputError(f"{path}: holds images only; training kinematics need a liftdata capture "
                             "(capture.json) or dataset (manifest.json)")
    return fs.kinematics
