"""Previews a person can look at: contact sheets, coverage plots and an HTML page.

`write_preview(expansion, out_dir)` lifts a few clips spread over the plan (cheap) and shows them
next to captured frames; `preview_dataset(dataset_dir, out_dir)` does the same from a written
dataset (WebDataset or Parquet). Both write `preview.png`, `coverage.png` and `index.html`, and,
when lifted frames carry a quality score (`meta["quality"]["score"]`, issue 17), `worst.png`: the
lowest-scoring kept frames (of the whole dataset; of the previewed clips for an expansion), so the
floor of the dataset is seen, not only its typical frames.
"""

from __future__ import annotations

import heapq
import html
import json
import os
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from liftdata.io.schema import Sample
from liftdata.kinematics import Kinematics

__all__ = ["preview_samples", "write_preview", "preview_dataset", "quality_of", "worst_samples", "preview_vhap"]


def quality_of(sample: Sample) -> float | None:
    """The lifted sample's quality score (meta["quality"] or meta["extra"]["quality"]), None if unscored."""
    meta = sample.meta or {}
    quality = meta.get("quality") or (meta.get("extra") or {}).get("quality") or {}
    score = quality.get("score") if isinstance(quality, dict) else None
    return None if score is None else float(score)


def worst_samples(samples: Iterable[Sample], k: int) -> list[Sample]:
    """The k lowest-scoring scored samples, worst first (streams: holds k samples at a time)."""
    heap: list[tuple[float, int, Sample]] = []
    for i, sample in enumerate(samples):
        score = quality_of(sample)
        if score is None:
            continue
        item = (-score, -i, sample)  # max-heap on the score: the best of the worst k sits on top
        if len(heap) < k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [s for _, _, s in sorted(heap, key=lambda t: (-t[0], -t[1]))]


def _head_box(mask: np.ndarray | None, shape: tuple[int, int], margin: float = 0.45) -> tuple[slice, slice]:
    """A square crop around the head mask (the whole image when there is no mask)."""
    h, w = shape
    if mask is None or not mask.any():
        return slice(0, h), slice(0, w)
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = int(max(ys.max() - ys.min(), xs.max() - xs.min()) * (0.5 + margin))
    half = min(half, max(h, w) // 2)
    y0, x0 = int(np.clip(cy - half, 0, max(0, h - 2 * half))), int(np.clip(cx - half, 0, max(0, w - 2 * half)))
    return slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half)


def _row(sample: Sample, tile: int) -> np.ndarray:
    a = sample.to_arrays()
    box = _head_box(a["mask"], a["image"].shape[:2])
    parts = [a["image"][box]] + [(np.repeat(a[m][..., None], 3, -1) if a[m].ndim == 2 else a[m])[box]
                                 for m in ("shading", "normal", "mask") if a[m] is not None]
    if a.get("alpha") is not None:  # the frame on white through its foreground alpha
        alpha = a["alpha"][box][..., None].astype(np.float32) / 255
        parts.append((a["image"][box] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8))
    row = np.concatenate([cv2.resize(c, (tile, tile), interpolation=cv2.INTER_AREA) for c in parts], 1)
    score = quality_of(sample)
    label = f"{sample.key} ({sample.meta['source']}" + ("" if score is None else f", score {score:.2f}") + ")"
    cv2.putText(row, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    return row


def preview_samples(samples: Iterable[Sample], path: str | os.PathLike, n: int = 8, tile: int = 160,
                    columns: int = 2) -> str:
    """A contact sheet PNG: per sample image | shading | normal | mask (| the image matted on white, when
    the sample has an alpha), `columns` samples per row."""
    cells = [_row(s, tile) for s, _ in zip(samples, range(n))]
    if not cells:
        raise ValueError("preview: no samples to show")
    width = max(c.shape[1] for c in cells)
    cells = [np.pad(c, ((0, 2), (0, width - c.shape[1] + 2), (0, 0))) for c in cells]
    cells += [np.zeros_like(cells[0])] * (-len(cells) % columns)
    sheet = np.concatenate([np.concatenate(cells[i:i + columns], 1) for i in range(0, len(cells), columns)], 0)
    if not cv2.imwrite(str(path), sheet[..., ::-1]):
        raise OSError(f"{path}: cannot write the preview image")
    return str(path)


def _spread(n_items: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n_items - 1, min(k, n_items)).round().astype(int).tolist())) if n_items else []


def _coverage_figures(captured: Kinematics, lifted: Kinematics | None, head_model: Any, out_dir: Path) -> dict:
    """Coverage numbers before/after and the coverage plot (the plot needs the `viz` extra)."""
    from liftdata.samplers import coverage, plot_coverage

    after_source = [captured] if lifted is None else [captured, lifted]
    plot_coverage(captured, after_source, out_dir / "coverage.png", head_model)
    return {"captured": coverage(captured, head_model).summary(),
            "captured + lifted": coverage(after_source, head_model).summary()}


def _page(out_dir: Path, title: str, numbers: dict, n_captured: int, n_lifted: int, worst: bool = False) -> Path:
    worst_html = ('<h2>Lowest quality scores among the kept lifted frames</h2><img src="worst.png">' if worst else "")
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td><pre>{html.escape(json.dumps(v, indent=1))}</pre></td></tr>"
                   for k, v in numbers.items())
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;background:#111;color:#eee}} img{{max-width:100%}}
pre{{margin:0}} td,th{{vertical-align:top;padding:4px 12px;text-align:left}}</style>
<h1>{html.escape(title)}</h1>
<p>{n_captured} captured and {n_lifted} lifted frames. Each row: image | shading | normal | mask | (with an alpha matte) the image matted on white.</p>
<h2>Captured vs lifted</h2><img src="preview.png">{worst_html}
<h2>Coverage of the expression and pose space</h2><img src="coverage.png">
<table>{rows}</table>
"""
    path = out_dir / "index.html"
    path.write_text(page)
    return path


def _write_worst(samples: Iterable[Sample], out_dir: Path, k: int) -> bool:
    """worst.png with the k lowest-scoring samples; False (and no file) when none is scored."""
    worst = worst_samples(samples, k)
    if worst:
        preview_samples(worst, out_dir / "worst.png", n=len(worst))
    return bool(worst)


def write_preview(expansion: Any, out_dir: Path, n_lifted: int = 8, n_captured: int = 4, n_worst: int = 6) -> Path:
    """Preview an `Expansion` without writing it: a few captured frames and lifted clips."""
    from liftdata.dataset import captured_samples, n_captured_clips

    out_dir.mkdir(parents=True, exist_ok=True)
    cap = expansion.capture
    kept = expansion.captured_indices if len(expansion.captured_indices) else np.arange(len(cap))  # what is written
    samples = [next(captured_samples(cap, indices=kept[[i]], batch=1, matter=expansion._matter))
               for i in _spread(len(kept), n_captured)]
    clips = expansion.plan.clips
    first_clip = n_captured_clips(cap)
    lifted_all: list[Sample] = []
    for j in _spread(len(clips), n_lifted):
        lifted = expansion._lift_clip(first_clip + j, clips[j], j)
        if lifted:  # a quality gate may have dropped every frame of the clip
            samples.append(lifted[len(lifted) // 2])
        lifted_all += lifted
    preview_samples(samples, out_dir / "preview.png", n=len(samples))
    worst = _write_worst(lifted_all, out_dir, n_worst)
    plan_k = Kinematics.concat([c.kinematics for c in clips])
    numbers = _coverage_figures(cap.kinematics, plan_k, cap.head_model, out_dir)
    numbers["plan"] = {"clips": len(clips), "frames": len(plan_k), "lifter": expansion.lifter.name}
    return _page(out_dir, f"liftdata preview: {cap.capture_id}", numbers, len(cap), len(plan_k), worst)


def preview_dataset(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, n: int = 12,
                    head_model: Any = None, verify: bool = True, n_worst: int = 6) -> Path:
    """Preview a written dataset: captured and lifted samples spread over it, coverage before/after.

    The shards are checked against the manifest as they are read (`verify`: their sha256 too); an
    unfinished or damaged dataset raises `DatasetDirError` saying so.
    """
    from liftdata.head import load_head_model
    from liftdata.io import read_parquet, read_webdataset
    from liftdata.io.verify import finished_manifest

    d = Path(dataset_dir)
    if not (d / "manifest.json").is_file() and (any(d.glob("transforms*.json"))):
        return preview_vhap(d, out_dir, n)
    manifest = finished_manifest(d)
    read = read_webdataset if manifest["format"] == "webdataset" else read_parquet

    def reader(path: Path) -> Any:
        return read(path, verify=verify)
    out = Path(out_dir) if out_dir else d / "preview"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(_spread(manifest["n_samples"], n))
    chosen: list[Sample] = []
    kin: dict[str, list[Kinematics]] = {"captured": [], "lifted": []}

    def lifted_stream() -> Iterable[Sample]:
        for i, sample in enumerate(reader(d)):
            kin[sample.meta["source"]].append(sample.kinematics)
            if i in wanted:
                chosen.append(sample)
            if sample.meta["source"] == "lifted":
                yield sample
    worst = _write_worst(lifted_stream(), out, n_worst)
    preview_samples(chosen, out / "preview.png", n=len(chosen))
    first = (kin["captured"] or kin["lifted"])[0]
    model = head_model or load_head_model(first.head_model)
    captured = Kinematics.concat(kin["captured"]) if kin["captured"] else None
    lifted = Kinematics.concat(kin["lifted"]) if kin["lifted"] else None
    numbers = _coverage_figures(captured if captured is not None else lifted, lifted if captured is not None else None,
                                model, out)
    return _page(out, f"liftdata dataset: {d.name}", numbers, len(kin["captured"]), len(kin["lifted"]), worst)


# ---------------------------------------------------------------------- VHAP / GaussianAvatars folders
def _vhap_cell(d: Path, frame: dict, tile: int) -> np.ndarray:
    """image | fg mask of one transforms.json frame entry, labelled with its split and origin."""
    from liftdata.io.vhap import VhapError

    parts = []
    for key in ("file_path", "fg_mask_path"):
        if not frame.get(key):
            continue
        img = cv2.imread(str(d / frame[key]), cv2.IMREAD_COLOR)
        if img is None:
            raise VhapError(f"{d / frame[key]}: cannot read the image this folder's transforms list")
        parts.append(cv2.resize(img[..., ::-1], (tile, tile), interpolation=cv2.INTER_AREA))
    row = np.concatenate(parts, 1)
    label = (f"t{frame['timestep_index']} c{frame.get('camera_index', 0)} {frame['_split'] or '-'}"
             + (" lifted" if frame.get("synthetic") else ""))
    cv2.putText(row, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 0, 255), 1, cv2.LINE_AA)
    return row


def preview_vhap(directory: str | os.PathLike, out_dir: str | os.PathLike | None = None, n: int = 12,
                 tile: int = 160) -> Path:
    """Preview a VHAP/GaussianAvatars folder (no FLAME model needed): frames spread over it as
    image | foreground mask with their split, and counts per split, camera and origin."""
    from liftdata.io.vhap import read_vhap_frames

    d = Path(directory)
    _, frames = read_vhap_frames(d)
    frames.sort(key=lambda fr: (int(fr["timestep_index"]), int(fr.get("camera_index", 0))))
    cells = [_vhap_cell(d, frames[i], tile) for i in _spread(len(frames), n)]
    width = max(c.shape[1] for c in cells)
    cells = [np.pad(c, ((0, 2), (0, width - c.shape[1] + 2), (0, 0))) for c in cells]
    cells += [np.zeros_like(cells[0])] * (-len(cells) % 2)
    sheet = np.concatenate([np.concatenate(cells[i:i + 2], 1) for i in range(0, len(cells), 2)], 0)
    out = Path(out_dir) if out_dir else d / "preview"
    out.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out / "preview.png"), sheet[..., ::-1]):
        raise OSError(f"{out / 'preview.png'}: cannot write the preview image")
    numbers = {"frames": len(frames), "timesteps": len({fr["timestep_index"] for fr in frames}),
               "cameras": sorted({int(fr.get("camera_index", 0)) for fr in frames}),
               "splits": {str(s): sum(fr["_split"] == s for fr in frames) for s in ("train", "val", "test", None)},
               "lifted (synthetic)": sum(bool(fr.get("synthetic")) for fr in frames),
               "with fg_mask": sum(bool(fr.get("fg_mask_path")) for fr in frames)}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
                   for k, v in numbers.items())
    title = html.escape(d.name)
    (out / "index.html").write_text(f"""<!doctype html><meta charset="utf-8"><title>VHAP folder: {title}</title>
<style>body{{font-family:sans-serif;margin:2em;background:#111;color:#eee}} img{{max-width:100%}}
td,th{{padding:4px 12px;text-align:left}}</style>
<h1>VHAP / GaussianAvatars folder: {title}</h1>
<p>Frames spread over the folder: image | foreground mask (timestep, camera, split). Coverage plots need the
FLAME model: preview a WebDataset/Parquet expansion for them.</p><img src="preview.png"><table>{rows}</table>
""")
    return out / "index.html"

