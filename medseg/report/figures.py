"""Report figures as PNG bytes (matplotlib, Agg canvas; no pyplot global state).

Colours are fixed across every figure so a reader learns them once: reference = cyan,
prediction = orange (a pair that stays distinct with red-green colour blindness), the worst
boundary point = magenta ring.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from skimage.measure import find_contours

from medseg.report.slices import (
    VIEW_AXIS,
    VIEW_EDGES,
    VIEWS,
    DisplayFrame,
    view_pixel_mm,
    view_plane,
    view_point,
)

REF_COLOUR = "#00d0ff"
PRED_COLOUR = "#ff8c00"
MARK_COLOUR = "#ff00ff"
DPI = 80


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg canvas."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def intensity_window(image: np.ndarray) -> tuple[float, float]:
    """Display window of an image: soft-tissue CT (W 400 / L 40 HU) when it looks like CT
    (values below -500), else the 1st-99.5th percentile of non-zero voxels."""
    vals = image[::2, ::2, ::2]
    if vals.size and float(vals.min()) < -500:
        return -160.0, 240.0
    nz = vals[vals != 0]
    if nz.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(nz, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _edge_letters(ax: Axes, view: str) -> None:
    top, bottom, left, right = VIEW_EDGES[view]
    style: dict[str, Any] = {"color": "white", "fontsize": 9, "fontweight": "bold",
                             "transform": ax.transAxes}
    ax.text(0.5, 0.985, top, ha="center", va="top", **style)
    ax.text(0.5, 0.015, bottom, ha="center", va="bottom", **style)
    ax.text(0.012, 0.5, left, ha="left", va="center", **style)
    ax.text(0.988, 0.5, right, ha="right", va="center", **style)


def _contours(ax: Axes, plane: np.ndarray, labels: Sequence[int], colour: str,
              px: tuple[float, float], width: float = 1.1) -> None:
    """Draw the 0.5-level contour of every label present on a label-map ``plane``
    (rows, columns) as one line collection; ``px`` is the pixel (width, height) in mm."""
    present = set(np.unique(plane).tolist()) & set(labels)
    segments = []
    padded = np.zeros((plane.shape[0] + 2, plane.shape[1] + 2), dtype=np.float32)
    for lab in sorted(present):
        padded[1:-1, 1:-1] = plane == lab
        for c in find_contours(padded, 0.5):
            # padded (row, col) -> mm of the pixel centre on the unpadded plane
            segments.append(np.column_stack(((c[:, 1] - 0.5) * px[0], (c[:, 0] - 0.5) * px[1])))
    if segments:
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=width))


def _panel(ax: Axes, view: str, frame: DisplayFrame, planes: tuple[np.ndarray, ...],
           labels: Sequence[int], window: tuple[float, float] | None,
           cross: tuple[float | None, float | None]) -> None:
    """One view: background, both contour sets, where the other views cut (dashed lines)."""
    bg, ref, pred = planes
    pw, ph = view_pixel_mm(frame, view)
    extent = (0.0, bg.shape[1] * pw, bg.shape[0] * ph, 0.0)
    if window is None:
        shade = np.where(bg != 0, 0.35 + 0.3 * ((bg.astype(np.int64) * 7) % 5) / 4, 0.0)
        ax.imshow(shade, cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    else:
        ax.imshow(bg, cmap="gray", vmin=window[0], vmax=window[1], extent=extent,
                  interpolation="bilinear")
    # reference wider and underneath: where both boundaries agree it shows as a cyan rim
    _contours(ax, ref, labels, REF_COLOUR, (pw, ph), width=2.8)
    _contours(ax, pred, labels, PRED_COLOUR, (pw, ph), width=1.0)
    if cross[0] is not None:
        ax.axvline((cross[0] + 0.5) * pw, color="white", lw=0.6, ls="--", alpha=0.45)
    if cross[1] is not None:
        ax.axhline((cross[1] + 0.5) * ph, color="white", lw=0.6, ls="--", alpha=0.45)
    _edge_letters(ax, view)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])


def overlay_panels(background: np.ndarray, pred: np.ndarray, ref: np.ndarray,
                   frame: DisplayFrame, slices: Mapping[str, int], labels: Sequence[int],
                   title: str, *, window: tuple[float, float] | None,
                   marker: tuple[int, int, int] | None = None,
                   panel_notes: Mapping[str, str] | None = None,
                   notes: Sequence[str] = ()) -> bytes:
    """Orthogonal views at one common mm scale, with reference and prediction contours.

    Layout: axial top left, coronal below it (same left-right axis), sagittal right of the
    coronal (same superior-inferior axis); the top-right cell holds the legend and ``notes``.
    ``background``, ``pred`` and ``ref`` are display-frame arrays ``[x, y, z]`` (see
    :mod:`medseg.report.slices`); ``slices`` gives the index along each view's fixed axis;
    ``window`` is the grey-level window of an image, or ``None`` when the background is the
    reference label map (drawn as grey fill). ``marker`` is a display voxel to ring.
    """
    sx, sy, sz = (n * s for n, s in zip(frame.shape, frame.spacing, strict=True))
    width_in = 8.4
    scale = width_in / (sx + sy)
    if scale * (sy + sz) > 8.0:
        scale = 8.0 / (sy + sz)
    fig = Figure(figsize=(scale * (sx + sy) + 0.3, scale * (sy + sz) + 0.75))
    grid = fig.add_gridspec(2, 2, width_ratios=[sx, sy], height_ratios=[sy, sz],
                            left=0.15 / fig.get_figwidth(), right=1 - 0.15 / fig.get_figwidth(),
                            bottom=0.1 / fig.get_figheight(), top=1 - 0.6 / fig.get_figheight(),
                            wspace=0.02, hspace=0.02)
    cells = {"axial": grid[0, 0], "coronal": grid[1, 0], "sagittal": grid[1, 1]}
    x, y, z = slices["sagittal"], slices["coronal"], slices["axial"]
    nz = frame.shape[2]
    cross = {"axial": (x, y), "coronal": (x, nz - 1 - z), "sagittal": (y, nz - 1 - z)}
    for view in VIEWS:
        ax = fig.add_subplot(cells[view])
        planes = tuple(view_plane(a, view, slices[view]) for a in (background, ref, pred))
        _panel(ax, view, frame, planes, labels, window, cross[view])
        if marker is not None and slices[view] == marker[VIEW_AXIS[view]]:
            col, row = view_point(frame, view, marker)
            pw, ph = view_pixel_mm(frame, view)
            ax.plot([(col + 0.5) * pw], [(row + 0.5) * ph], marker="o", ms=15, mfc="none",
                    mec=MARK_COLOUR, mew=2.0)
        note = f" {panel_notes[view]}" if panel_notes and view in panel_notes else ""
        ax.text(0.01, 0.99, f"{view}{note}", transform=ax.transAxes, ha="left", va="top",
                fontsize=7.5, color="white", bbox={"facecolor": "black", "alpha": 0.55,
                                                   "pad": 1.5, "lw": 0})
    side = fig.add_subplot(grid[0, 1])
    side.set_axis_off()
    ref_h = Line2D([], [], color=REF_COLOUR, lw=2.8)
    pred_h = Line2D([], [], color=PRED_COLOUR, lw=1.0)
    handles: list[Any] = [ref_h, pred_h, (ref_h, pred_h)]
    texts = ["reference only", "prediction only", "both (boundaries agree)"]
    if marker is not None:
        handles.append(Line2D([], [], ls="none", marker="o", ms=9, mfc="none",
                              mec=MARK_COLOUR, mew=2))
        texts.append("worst boundary point")
    side.legend(handles, texts, loc="upper left", frameon=False, fontsize=8,
                handler_map={tuple: HandlerTuple(ndivide=1)})
    side.text(0.04, 0.05, "\n".join(notes), transform=side.transAxes, ha="left", va="bottom",
              fontsize=7, wrap=True)
    fig.suptitle(title, fontsize=9.5, y=1 - 0.08 / fig.get_figheight(), va="top")
    return png_bytes(fig)


def surface_histograms(names: Mapping[int, str],
                       distances: Mapping[int, tuple[np.ndarray, np.ndarray]],
                       hd95: Mapping[int, float], tolerance_mm: float) -> bytes:
    """Histogram of the directed surface distances of every label, one row per label on a
    shared mm axis: prediction -> reference drawn upward (orange), reference -> prediction
    downward (cyan), each row scaled to its own largest bin.

    ``distances[label] = (pred_to_ref, ref_to_pred)``, float arrays of any length; ``inf``
    entries (distances to an empty mask) are not drawn. Distances beyond the axis end (set by
    the largest HD95) are counted in the last bin; each row states its HD95 and maximum.
    One axes for all labels: 40 separate panels would dominate the report's run time.
    """
    labels = sorted(names)
    finite = {lab: tuple(d[np.isfinite(d)] for d in distances.get(lab, (np.zeros(0),) * 2))
              for lab in labels}
    h95 = [hd95[lab] for lab in labels if lab in hd95 and np.isfinite(hd95[lab])]
    tops = [float(d.max()) for pair in finite.values() for d in pair if d.size]
    xmax = max(min(max(h95, default=1.0) * 1.6, max(tops, default=1.0)), 2 * tolerance_mm, 1.0)
    bins = np.linspace(0.0, xmax, 41)
    row_in = max(0.3, 2.2 / max(len(labels), 1))
    fig = Figure(figsize=(10.0, 1.1 + row_in * len(labels)))
    ax = fig.subplots()
    for row, lab in enumerate(labels):
        p2r, r2p = finite[lab]
        if p2r.size == 0 or r2p.size == 0:
            raw = distances.get(lab, (np.zeros(0),) * 2)
            which = "prediction" if raw[0].size == 0 else "reference"
            ax.text(0.01 * xmax, row, f"empty {which}: no surface distance", va="center",
                    fontsize=7, color="crimson")
            continue
        c1, _ = np.histogram(np.minimum(p2r, xmax), bins=bins)
        c2, _ = np.histogram(np.minimum(r2p, xmax), bins=bins)
        scale = 0.44 / max(int(c1.max()), int(c2.max()), 1)
        ax.stairs(row - c1 * scale, bins, baseline=row, fill=True, color=PRED_COLOUR, alpha=0.8)
        ax.stairs(row + c2 * scale, bins, baseline=row, fill=True, color=REF_COLOUR, alpha=0.8)
        h = hd95.get(lab, float("nan"))
        if np.isfinite(h):
            ax.plot([min(h, xmax)] * 2, [row - 0.46, row + 0.46], color="crimson", ls="--", lw=1)
        mx = max(float(p2r.max()), float(r2p.max()))
        ax.text(1.005, row, f"HD95 {h:.1f} / max {mx:.1f}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=6.5)
    ax.axvline(tolerance_mm, color="0.3", ls=":", lw=1)
    ax.set_yticks(range(len(labels)), [f"{names[lab]}"[:26] for lab in labels], fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("surface distance (mm); last bin includes larger distances", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.25)
    handles = [Line2D([], [], color=PRED_COLOUR, lw=5, label="prediction -> reference (up)"),
               Line2D([], [], color=REF_COLOUR, lw=5, label="reference -> prediction (down)"),
               Line2D([], [], color="crimson", ls="--", label="HD95"),
               Line2D([], [], color="0.3", ls=":", label=f"NSD tolerance {tolerance_mm:g} mm")]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4,
              frameon=False, fontsize=7.5)
    h_in = fig.get_figheight()
    fig.subplots_adjust(left=0.17, right=0.86, bottom=0.55 / h_in, top=1 - 0.4 / h_in)
    return png_bytes(fig)


def slice_dice_figure(names: Mapping[int, str], dice: Mapping[int, np.ndarray],
                      axis_note: str) -> bytes:
    """Dice per slice along the slice axis: lines for up to 6 labels, else a label x slice
    heat map (grey where the label is absent from both segmentations on that slice).

    ``dice[label]`` is a float array, one value per slice, NaN where both are empty.
    """
    labels = sorted(names)
    n = len(dice[labels[0]]) if labels else 0
    if len(labels) <= 6:
        fig = Figure(figsize=(10.0, 3.0))
        ax = fig.subplots()
        for lab in labels:
            ax.plot(np.arange(n), dice[lab], marker="o", ms=3, lw=1.2, label=names[lab])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylabel("Dice")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    else:
        fig = Figure(figsize=(10.0, 1.2 + 0.17 * len(labels)))
        ax = fig.subplots()
        mat = np.vstack([dice[lab] for lab in labels])
        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="0.88")
        im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                       interpolation="nearest")
        ax.set_yticks(range(len(labels)), [f"{names[lab]}"[:24] for lab in labels], fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="Dice")
    ax.set_xlabel(f"slice index ({axis_note})", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def volumes_figure(names: Mapping[int, str], pred_ml: Mapping[int, float],
                   ref_ml: Mapping[int, float]) -> bytes:
    """Horizontal grouped bars of predicted and reference volume (ml) per label; log scale
    when volumes span more than two orders of magnitude."""
    labels = sorted(names)
    y = np.arange(len(labels))
    p = np.array([pred_ml[lab] for lab in labels], dtype=float)
    r = np.array([ref_ml[lab] for lab in labels], dtype=float)
    fig = Figure(figsize=(8.0, 1.0 + 0.22 * len(labels)))
    ax = fig.subplots()
    ax.barh(y - 0.2, r, height=0.4, color=REF_COLOUR, label="reference")
    ax.barh(y + 0.2, p, height=0.4, color=PRED_COLOUR, label="prediction")
    positive = np.concatenate([p[p > 0], r[r > 0]])
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    for yi, (pv, rv) in enumerate(zip(p, r, strict=True)):
        if pv == 0 or rv == 0:
            ax.text(max(pv, rv, 1e-9), yi, "  missing " + ("prediction" if pv == 0 else
                    "reference"), va="center", fontsize=6, color="crimson")
    ax.set_yticks(y, [f"{names[lab]}"[:28] for lab in labels], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("volume (ml)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def cohort_boxplot(names: Mapping[int, str], values: Mapping[int, Sequence[float]],
                   metric: str) -> bytes:
    """Box plot of one metric across cases, one box per label (NaN values left out)."""
    labels = sorted(names)
    data = [np.asarray([v for v in values.get(lab, []) if np.isfinite(v)]) for lab in labels]
    fig = Figure(figsize=(8.0, 1.0 + 0.22 * len(labels)))
    ax = fig.subplots()
    ax.boxplot([d if d.size else [np.nan] for d in data], vert=False, widths=0.6)
    for i, d in enumerate(data):
        ax.plot(d, np.full(d.size, i + 1), "o", ms=3, color=PRED_COLOUR, alpha=0.7)
    ax.set_yticks(range(1, len(labels) + 1), [f"{names[lab]}"[:28] for lab in labels],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)
