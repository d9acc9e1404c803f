"""`liftdata demo`: the whole pipeline on inputs every install has, no model files needed.

1. A real portrait: the public-domain astronaut photo (Eileen Collins, NASA) that ships with
   scikit-image -> tracked -> expanded with extreme expressions under gentle head turns.
2. A short synthetic video (a procedural subject with ground-truth kinematics, encoded to mp4)
   -> tracked like any user video -> expanded with the default sampler.
Each gets WebDataset shards and a preview (contact sheet, coverage plot, HTML page).
"""

from __future__ import annotations

from pathlib import Path

import cv2

__all__ = ["run_demo"]


def _astronaut(path: Path) -> Path:
    try:
        from skimage import data
    except ImportError as e:
        raise ImportError("the demo portrait ships with scikit-image: pip install 'liftdata[demo]'") from e
    if not path.is_file():
        cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def _synthetic_video(path: Path, size: int) -> Path:
    from liftdata.synthetic import make_capture, write_video

    if not path.is_file():
        write_video(make_capture(0, n_frames=48, size=size), path)
    return path


def run_demo(out: Path, n: int = 64, size: int = 256) -> dict[str, str]:
    """Run both demo inputs into `out`; rerunning resumes. Returns where everything went."""
    from liftdata.dataset import LiftDataset
    from liftdata.samplers import mine_extremes, pose_sweep

    out.mkdir(parents=True, exist_ok=True)
    inputs = {
        "astronaut": (LiftDataset.from_images(_astronaut(out / "astronaut.png")),
                      mine_extremes(clip_length=16, strength=0.9) * pose_sweep(yaw=(-20, 20), pitch=(-8, 8), clip_length=16)),
        "synthetic": (LiftDataset.from_video(_synthetic_video(out / "synthetic.mp4", size)), None),
    }
    written = {}
    for name, (dataset, sampler) in inputs.items():
        expansion = dataset.expand(n, sampler, seed=0, size=size)
        result = expansion.write_webdataset(out / name / "webdataset", max_count=64)
        written[f"{name} dataset"] = f"{result.out_dir} ({result.n_samples} samples)"
        for i, note in enumerate(n for n in (expansion.captured_summary(), expansion.gate_summary()) if n):
            written[f"{name} note {i + 1}"] = note
        written[f"{name} preview"] = str(expansion.preview(out / name / "preview"))
    return written
