"""The human-readable side of an evaluation report: `summary.png` and `report.html`.

summary.png: per-frame PSNR histogram; metrics per extremeness bin (or the extremeness
histogram note when binning was skipped); the worst frames by PSNR as rows of
render | ground truth | error map (mean absolute error over channels, 0..0.25 -> colour).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["error_map", "write_summary_png", "write_html"]


def error_map(render: np.ndarray, gt: np.ndarray) -> np.ndarray:  # uint8 [H, W, 3] x2 -> float [H, W]
    """Mean absolute error over channels, in [0, 1]."""
    return np.abs(render.astype(np.float32) - gt.astype(np.float32)).mean(axis=-1) / 255.0


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else html.escape(str(x))


def write_summary_png(report: dict[str, Any], renders, gt, path: str | Path) -> None:
    from liftdata._extras import require

    matplotlib = require("matplotlib", "viz")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = report["worst_frames"]
    fig = plt.figure(figsize=(10, 3.2 + 2.6 * len(worst)))
    grid = fig.add_gridspec(1 + len(worst), 3, height_ratios=[1.2] + [1] * len(worst))
    values = np.array([f["psnr"] for f in report["per_frame"]], dtype=np.float64)
    ax = fig.add_subplot(grid[0, 0])
    ax.hist(values[np.isfinite(values)], bins=20, color="tab:blue")
    ax.set_title(f"PSNR per frame (n={report['n_frames']})")
    ax.set_xlabel("dB")
    ax = fig.add_subplot(grid[0, 1:])
    if "bins" in report:
        labels = [b["bin"] for b in report["bins"]]
        ax.bar(labels, [b.get("psnr", np.nan) for b in report["bins"]], color="tab:orange")
        for i, b in enumerate(report["bins"]):
            ax.text(i, 0, f"n={b['n_frames']}", ha="center", va="bottom")
        ax.set_title("PSNR per expression-extremeness bin (training percentiles)")
    else:
        ax.axis("off")
        ax.text(0, 0.5, "binning skipped:\n" + report["binning"]["skipped"], wrap=True, fontsize=9)
    for row, name in enumerate(worst, start=1):
        r, g = renders.load(name), gt.load(name)
        for col, (img, title) in enumerate([(r, f"render {name}"), (g, "ground truth"),
                                            (error_map(r, g), "|error| (0-0.25)")]):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(img, cmap="inferno" if img.ndim == 2 else None, vmin=0, vmax=0.25 if img.ndim == 2 else None)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"{report['renders']} vs {report['gt']} — {report['lpips']}", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.98, bottom=0.03, top=0.93, hspace=0.35, wspace=0.1)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(report: dict[str, Any], path: str | Path, png_name: str) -> None:
    metrics = list(report["metrics"])
    parts = [
        "<!doctype html><meta charset='utf-8'><title>liftdata eval</title>",
        "<style>body{font-family:sans-serif} td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>",
        f"<h1>Evaluation: {html.escape(report['renders'])} vs {html.escape(report['gt'])}</h1>",
        f"<p>{report['n_frames']} frames, split {html.escape(report['split'])}, "
        f"{'masked (head region)' if report['masked'] else 'full image'}; LPIPS: {html.escape(str(report['lpips']))}</p>",
        "<h2>Metrics (mean over frames)</h2>", _table([report["metrics"]], metrics),
    ]
    if "kinematic" in report:
        parts += ["<h2>Kinematic accuracy</h2>", f"<p>{html.escape(report['kinematic']['note'])}</p>",
                  _table([report["kinematic"]["mean"]], list(report["kinematic"]["mean"]))]
    parts.append("<h2>Per expression-extremeness bin</h2>")
    if "bins" in report:
        parts += [f"<p>{html.escape(report['binning']['measure'])}; training: "
                  f"{html.escape(report['binning']['training'])}</p>", _table(report["bins"], ["bin", "n_frames"] + metrics)]
    else:
        parts.append(f"<p>Skipped: {html.escape(report['binning']['skipped'])}</p>")
    columns = list(report["per_frame"][0]) if report["per_frame"] else ["name"]
    parts += [f"<h2>Summary</h2><img src='{html.escape(png_name)}'>",
              f"<h2>Worst frames (PSNR)</h2><p>{html.escape(', '.join(report['worst_frames']))}</p>",
              "<h2>Per frame</h2>", _table(report["per_frame"], columns)]
    Path(path).write_text("\n".join(parts) + "\n")
