"""Named lifter evaluation cases on held-out synthetic subjects (issues 14 and 17).

Each case is one synthetic subject (`liftdata.synthetic`, chosen by the caller's seed), one
frontal, neutral, closed-mouth reference (or K references from the narrow, closed-mouth, frontal
part of a capture) and a short driving clip that ramps from near the reference to the case's
target kinematics:

    yaw10 / yaw20 / yaw30 / yaw40   head turned by that many degrees
    jaw                             jawOpen 0.8 (the references never show the mouth open)
    smile                           mouthSmileLeft/Right 1.0
    jaw_yaw30                       jawOpen 0.8 and yaw 30 together

Metrics, against the ground truth (the same subject rendered under the driving kinematics):

* `psnr`, `ssim`: on the case's target frame (the clip's last), inside the ground-truth head mask
  (the subject's rendered mask: face, eyes and mouth interior); `psnr_clip` / `ssim_clip` average
  every frame of the clip;
* the same for the "reference returned unchanged" baseline (`*_reference`): the first reference
  for every driving frame;
* `temporal`: frame-to-frame temporal error, the mean absolute difference (0..1 scale) between the
  lifted clip's and the ground truth's frame-to-frame changes, inside the union of the two
  frames' head masks (0 = the lifted clip changes exactly as the truth does);
  `temporal_reference` is the same for the unchanged reference (i.e. the truth's own motion).

`evaluate_cases(lifter, seeds)` returns `{case: {metric: mean over seeds, ..., "per_seed": {metric:
[...]}}}`. Seeds are the caller's choice: use subjects the lifter never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from liftdata.kinematics import Camera, Kinematics
from liftdata.lifters.base import Conditions, References, render_conditions

__all__ = ["CASES", "CaseSpec", "CaseData", "case_data", "evaluate_cases", "head_mask", "score_clip",
           "temporal_error"]


@dataclass(frozen=True)
class CaseSpec:
    """Target kinematics of a named case: head pose in degrees and named expression coefficients."""

    yaw: float = 0.0
    pitch: float = 0.0
    expression: dict[str, float] = field(default_factory=dict)


CASES: dict[str, CaseSpec] = {
    "yaw10": CaseSpec(yaw=10), "yaw20": CaseSpec(yaw=20), "yaw30": CaseSpec(yaw=30), "yaw40": CaseSpec(yaw=40),
    "jaw": CaseSpec(expression={"jawOpen": 0.8}),
    "smile": CaseSpec(expression={"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    "jaw_yaw30": CaseSpec(yaw=30, expression={"jawOpen": 0.8}),
}


@dataclass(frozen=True, eq=False)
class CaseData:
    """One subject under one case: inputs of a lifter and the ground truth."""

    references: References
    driving: Conditions
    truth: np.ndarray  # [F, H, W, 3] uint8 ground-truth frames
    mask: np.ndarray  # [F, H, W] bool ground-truth head mask


def _kinematics(model: Any, spec: CaseSpec, fractions: np.ndarray) -> Kinematics:
    """Frames at `fractions` of the way from the neutral frontal pose to the case's target."""
    from liftdata.head.base import neutral_kinematics

    k = neutral_kinematics(model, len(fractions))
    expr = np.array(k.expression, dtype=np.float32)
    for name, value in spec.expression.items():
        expr[:, model.expression_index(name)] = value * fractions
    rot = np.zeros((len(fractions), 3), np.float32)
    rot[:, 0], rot[:, 1] = np.radians(spec.pitch) * fractions, np.radians(spec.yaw) * fractions
    return k.replace(expression=expr, rotation=rot)


def _reference_kinematics(model: Any, k: int, seed: int) -> Kinematics:
    """Frame 0: exactly frontal, neutral, closed mouth; the rest: a narrow, closed-mouth, near-frontal capture."""
    from liftdata.head.base import neutral_kinematics
    from liftdata.synthetic import sample_kinematics

    first = neutral_kinematics(model, 1)
    if k == 1:
        return first
    rest = sample_kinematics(model, k - 1, np.random.default_rng([seed, 17]), max_yaw_deg=6.0, max_pitch_deg=4.0,
                             max_roll_deg=2.0, expression_scale=0.25)
    expr = np.array(rest.expression)
    for name in ("jawOpen", "mouthFunnel", "mouthPucker"):
        if name in model.expression_names:
            expr[:, model.expression_index(name)] = 0.0  # closed mouth: its interior is never seen
    return Kinematics.concat([first, rest.replace(expression=expr)])


def head_mask(subject: Any, kinematics: Kinematics, camera: Camera, backend: str = "auto") -> np.ndarray:
    """[T, H, W] bool: pixels covered by the subject's rendered geometry (face, caps of eyes and mouth)."""
    from liftdata.render import rasterize
    from liftdata.synthetic import _scene

    verts, faces, _ = _scene(subject, kinematics)
    return rasterize(verts, faces, camera, backend=backend).mask.numpy().astype(bool)


def case_data(seed: int, case: str | CaseSpec, *, size: int = 128, frames: int = 5, references: int = 1,
              backend: str = "auto", head: str = "face") -> CaseData:
    """The lifter inputs and ground truth of `case` for the synthetic subject `seed` (`head`: the
    synthetic world's "face" or "proxy" subject, see `liftdata.synthetic.make_subject`)."""
    from liftdata.synthetic import make_subject, render_subject

    spec = CASES[case] if isinstance(case, str) else case
    subject = make_subject(seed, size=size, head=head)
    model = subject.head_model
    camera = Camera.frontal(24.0, size, size, 0.55)  # make_capture's default camera
    ref_k = _reference_kinematics(model, references, seed)
    drv_k = _kinematics(model, spec, np.linspace(1.0 / frames, 1.0, frames))
    ref_images = render_subject(subject, ref_k, camera, backend=backend)
    refs = References(ref_images, render_conditions(model, subject.identity, ref_k, camera, backend=backend),
                      tuple(f"synthetic-{seed}/ref/{i:03d}" for i in range(references)))
    driving = render_conditions(model, subject.identity, drv_k, camera, backend=backend)
    return CaseData(refs, driving, render_subject(subject, drv_k, camera, backend=backend),
                    head_mask(subject, drv_k, camera, backend))


# ---------------------------------------------------------------------- metrics
def temporal_error(pred: np.ndarray,  # [F, H, W, 3] uint8
                   truth: np.ndarray,  # [F, H, W, 3] uint8
                   mask: np.ndarray,  # [F, H, W] bool
                   ) -> float:
    """Mean |(pred[t+1] - pred[t]) - (truth[t+1] - truth[t])| (0..1 scale) inside mask[t] | mask[t+1]."""
    if len(pred) < 2:
        return float("nan")
    p, g = pred.astype(np.float64) / 255, truth.astype(np.float64) / 255
    diff = np.abs(np.diff(p, axis=0) - np.diff(g, axis=0)).mean(-1)  # [F-1, H, W]
    m = mask[1:] | mask[:-1]
    return float(diff[m].mean()) if m.any() else float("nan")


def score_clip(pred: np.ndarray, data: CaseData, lpips: Any = None) -> dict[str, float]:
    """PSNR/SSIM in the head mask (target frame and clip mean) and the temporal error of one lifted clip;
    with an `LPIPS` network (`liftdata.eval.lpips.load_lpips`) also its masked LPIPS, as
    `lpips_{backbone}` (target frame) and `lpips_{backbone}_clip`."""
    from liftdata.eval.metrics import psnr, ssim, to_nchw

    if pred.shape != data.truth.shape or pred.dtype != np.uint8:
        raise ValueError(f"lifted frames: expected uint8 {list(data.truth.shape)}, got {pred.dtype} {list(pred.shape)}")
    x, y = to_nchw(pred, dtype=torch.float64), to_nchw(data.truth, dtype=torch.float64)
    m = torch.from_numpy(data.mask).to(torch.float64)
    p, s = psnr(x, y, m).numpy(), ssim(x, y, m).numpy()
    out = {"psnr": float(p[-1]), "ssim": float(s[-1]), "psnr_clip": float(p.mean()), "ssim_clip": float(s.mean()),
           "temporal": temporal_error(pred, data.truth, data.mask)}
    if lpips is not None:
        with torch.no_grad():
            d = lpips(x.float(), y.float(), m.float()).numpy()
        out.update({f"lpips_{lpips.backbone}": float(d[-1]), f"lpips_{lpips.backbone}_clip": float(d.mean())})
    return out


LiftFn = Callable[[References, Conditions, int], np.ndarray]


def evaluate_cases(lifter: Any, seeds: list[int] | range, *, size: int = 128, cases: list[str] | None = None,
                   frames: int = 5, references: int = 1, backend: str = "auto", head: str = "face",
                   on_clip: Callable[[str, int, CaseData, np.ndarray], None] | None = None,
                   lpips: Any = None) -> dict[str, dict[str, Any]]:
    """Lift every case for every seed; mean metrics per case, with the unchanged-reference baseline.

    Args:
        lifter: an object with `.lift(references, driving, seed=...)` (a `Lifter`) or a callable
            `(references, driving, seed) -> [F, H, W, 3] uint8`.
        seeds: synthetic subjects (held out from any training: the caller's choice).
        cases: names from `CASES` (default: all).
        frames: driving frames per clip (the last is the case's target; 5 = 4n + 1 for video lifters).
        references: K (1 = one frontal neutral reference).
        head: "face" (default) or "proxy": subjects with hair and a neck; the head mask then covers them.
        on_clip: called as `on_clip(case, seed, data, lifted)` for every clip (e.g. to save images).
        lpips: an `LPIPS` network: adds masked LPIPS to the metrics (see `score_clip`).
    """
    names = list(CASES) if cases is None else list(cases)
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise ValueError(f"cases: unknown {unknown}; known: {list(CASES)}")
    if len(seeds) == 0:
        raise ValueError("seeds: need at least one synthetic subject")
    lift: LiftFn = (lambda r, d, s: lifter.lift(r, d, seed=s)) if hasattr(lifter, "lift") else lifter
    out: dict[str, dict[str, Any]] = {}
    for case in names:
        per_seed: dict[str, list[float]] = {}
        for seed in seeds:
            data = case_data(seed, case, size=size, frames=frames, references=references, backend=backend, head=head)
            lifted = np.asarray(lift(data.references, data.driving, seed))
            unchanged = np.repeat(data.references.images[:1], len(data.truth), axis=0)
            scores = score_clip(lifted, data, lpips)
            scores.update({f"{k}_reference": v for k, v in score_clip(unchanged, data, lpips).items()})
            for k, v in scores.items():
                per_seed.setdefault(k, []).append(v)
            if on_clip is not None:
                on_clip(case, seed, data, lifted)
        out[case] = {k: float(np.mean(v)) for k, v in per_seed.items()}
        out[case]["per_seed"] = per_seed
        out[case]["seeds"] = list(seeds)
    return out
