"""`liftdata expand` on a real clip with two people, cuts and black frames (issue 16, "done when").

Ground truth is how the clip is made: two real photos (the astronaut of scikit-image, Grace Hopper
of matplotlib's sample data) moved like a camera shot each, joined by hard cuts and black frames.
The written dataset must hold only the astronaut's frames with a face, head-cropped and matted,
and the command must say what it dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from liftdata.cli import main
from liftdata.io import read_webdataset
from liftdata.track.segment import dlib_available

torch.set_num_threads(1)


def _shot(img: np.ndarray, n: int, size: int = 384) -> list[np.ndarray]:
    """n frames of a still photo under a slow pan and a small rotation (a camera shot)."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    out = []
    for i in range(n):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 3.0 * np.sin(2 * np.pi * i / n), s)
        m[:, 2] += ((size - w * s) / 2 + 2 * i, (size - h * s) / 2)
        out.append(cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT))
    return out


@pytest.mark.skipif(not dlib_available(), reason="needs the identity extra (installed by the test extra)")
def test_expand_keeps_one_person_clean_cropped_and_matted(tmp_path, capsys):
    matplotlib = pytest.importorskip("matplotlib", reason="Grace Hopper's photo ships with matplotlib")
    from skimage.data import astronaut

    hopper = cv2.cvtColor(cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")),
                          cv2.COLOR_BGR2RGB)
    frames = _shot(astronaut(), 12) + _shot(hopper, 8) + [np.zeros((384, 384, 3), np.uint8)] * 3 + _shot(astronaut(), 10)
    truth = np.r_[np.zeros(12), np.ones(8), np.full(3, -1), np.zeros(10)]  # 0 astronaut, 1 Hopper, -1 black
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (384, 384))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()

    out = tmp_path / "out"
    assert main(["expand", str(video), "--n", "4", "--out", str(out), "--no-preview"]) == 0
    printed = capsys.readouterr()
    assert "dropped 11 frames of 1 other person" in printed.err  # Hopper's 8 + the 3 black frames after her
    capture = json.loads((out / "capture" / "capture.json").read_text())
    source = np.array(capture["extra"]["tracking"]["source_frames"])
    samples = list(read_webdataset(out / "webdataset"))
    captured = [s for s in samples if s.meta["source"] == "captured"]
    lifted = [s for s in samples if s.meta["source"] == "lifted"]
    assert len(lifted) == 4 and len(captured) >= 18  # the astronaut's 22 frames, less any unfit ones
    for s in captured:
        i = s.meta["clip"] * 1000 + s.meta["frame"]
        assert truth[source[i]] == 0  # only the astronaut; never Hopper, never a black frame
        assert s.meta["extra"]["face_found"] and s.meta["extra"]["fit"]["ok"]
    for s in lifted:
        assert all(truth[source[int(k.rsplit("/", 1)[1]) + 1000 * int(k.split("/")[1])]] == 0
                   for k in s.meta["reference_keys"])
    for s in samples:
        a = s.to_arrays()
        h, w = a["image"].shape[:2]
        assert h == w < 384  # the square head box (2.5 x the face), not the 384 x 384 frame; never upsampled
        assert a["alpha"] is not None and (a["alpha"][a["mask"] > 127] == 255).all()
        assert a["alpha"].mean() < 250  # some background
    side = captured[0].camera.width
    assert side == captured[0].camera.height and all(s.camera.width == side for s in samples)
    assert "dataset : " in printed.out
    # `liftdata track` lists the pieces of the video (ground truth: astronaut 0-11, Hopper 12-19, black
    # 20-22 attached to her shot, astronaut 23-32), the kept subject marked; --subject 1 keeps Hopper
    assert main(["track", str(video), "--out", str(tmp_path / "cap")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "segments: 3 piece(s), 2 shot cut(s), 2 subject(s) [identity: dlib]"
    rows = [line.split() for line in table[2:5]]
    assert [r[0] for r in rows] == ["0-11", "12-22", "23-32"]
    assert [" ".join(r[2:-3]) for r in rows] == ["0 (kept)", "1", "0 (kept)"]
    assert rows[1][-2:] == ["of", "11"] and 0 < int(rows[1][-3]) <= 8  # faces: some of Hopper's 8, no black frame
    assert table[5].startswith(f"capture : {tmp_path / 'cap'}  (22 frames")
    assert main(["track", str(video), "--out", str(tmp_path / "cap1"), "--subject", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [" ".join(line.split()[2:-3]) for line in table[2:5]] == ["0", "1 (kept)", "0"]
    assert table[5].startswith(f"capture : {tmp_path / 'cap1'}  (11 frames")  # Hopper's shot and its black frames
