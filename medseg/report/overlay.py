"""Orthogonal-view overlays of reference and prediction contours (PNG bytes).

Layout: axial top left, coronal below it (same left-right axis), sagittal right of the coronal
(same superior-inferior axis), one mm scale for all three so every panel has its true aspect
ratio; the top-right cell holds the legend and notes. Views are cropped to the segmented
region plus a margin (boundaries are what a reader checks). When the volume is a thin slab
(e.g. 20 slices under a 500 mm field of view) the coronal and sagittal panels are magnified
around the cross so they stay readable; the figure says by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from skimage.measure import find_contours

from medseg.report.figures import MARK_COLOUR, PRED_COLOUR, REF_COLOUR, png_bytes
from medseg.report.slices import (
    VIEW_AXIS,
    VIEW_EDGES,
    VIEWS,
    DisplayFrame,
    view_pixel_mm,
    view_plane,
    view_point,
)

#: bottom row at least this fraction of the axial height, else magnified (thin slabs)
MIN_BOTTOM_RATIO = 0.3
MAX_ZOOM = 6.0


@dataclass(frozen=True)
class Limits:
    """Axis limits (mm, on the view image) of each view and the bottom-row magnification."""

    xlim: dict[str, tuple[float, float]]
    ylim: dict[str, tuple[float, float]]  # (bottom, top): images run downward
    size_mm: tuple[float, float, float]   # shown extent along display x, y, z
    zoom: float


def focus_box(fg: np.ndarray, frame: DisplayFrame, keep: Sequence[int],
              margin_mm: float = 20.0, rel: float = 0.15) -> tuple[list[int], list[int]]:
    """Display-voxel box ``[lo, hi)`` of the foreground ``fg`` (``[x, y, z]`` bool) plus a
    margin of ``max(margin_mm, rel * extent)``, grown to contain the voxel ``keep``."""
    lo, hi = [0, 0, 0], list(frame.shape)
    for d in range(3):
        idx = np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != d)))
        if idx.size == 0:
            continue
        sp = frame.spacing[d]
        extent = (idx[-1] + 1 - idx[0]) * sp
        m = int(np.ceil(max(margin_mm, rel * extent) / sp))
        lo[d] = max(0, min(int(idx[0]) - m, keep[d]))
        hi[d] = min(frame.shape[d], max(int(idx[-1]) + 1 + m, keep[d] + 1))
    return lo, hi


def view_limits(frame: DisplayFrame, lo: Sequence[int], hi: Sequence[int],
                cross: Sequence[int]) -> Limits:
    """Axis limits of the three views for the box ``[lo, hi)`` and cross voxel ``(x, y, z)``."""
    sx, sy, sz = frame.spacing
    nz = frame.shape[2]
    size = ((hi[0] - lo[0]) * sx, (hi[1] - lo[1]) * sy, (hi[2] - lo[2]) * sz)
    zoom = max(1.0, MIN_BOTTOM_RATIO * size[1] / size[2])
    zoom = 1.0 if zoom < 1.15 else min(zoom, MAX_ZOOM)

    def window(d: int, sp: float) -> tuple[float, float]:
        full = (lo[d] * sp, hi[d] * sp)
        width = (full[1] - full[0]) / zoom
        centre = (cross[d] + 0.5) * sp
        start = min(max(centre - width / 2, full[0]), full[1] - width)
        return (start, start + width)

    zrows = ((nz - lo[2]) * sz, (nz - hi[2]) * sz)
    return Limits(
        xlim={"axial": (lo[0] * sx, hi[0] * sx), "coronal": window(0, sx),
              "sagittal": window(1, sy)},
        ylim={"axial": (hi[1] * sy, lo[1] * sy), "coronal": zrows, "sagittal": zrows},
        size_mm=size, zoom=zoom)


def _edge_letters(ax: Axes, view: str) -> None:
    top, bottom, left, right = VIEW_EDGES[view]
    style: dict[str, Any] = {"color": "white", "fontsize": 9, "fontweight": "bold",
                             "transform": ax.transAxes}
    ax.text(0.5, 0.985, top, ha="center", va="top", **style)
    ax.text(0.5, 0.015, bottom, ha="center", va="bottom", **style)
    ax.text(0.012, 0.5, left, ha="left", va="center", **style)
    ax.text(0.988, 0.5, right, ha="right", va="center", **style)


def _contours(ax: Axes, plane: np.ndarray, labels: Sequence[int], colour: str,
              px: tuple[float, float], width: float) -> None:
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
           cross: tuple[int, int]) -> None:
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
    ax.axvline((cross[0] + 0.5) * pw, color="white", lw=0.6, ls="--", alpha=0.45)
    ax.axhline((cross[1] + 0.5) * ph, color="white", lw=0.6, ls="--", alpha=0.45)
    _edge_letters(ax, view)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax: Axes, marker: bool, notes: Sequence[str], subject: str = "prediction") -> None:
    ax.set_axis_off()
    ref_h = Line2D([], [], color=REF_COLOUR, lw=2.8)
    pred_h = Line2D([], [], color=PRED_COLOUR, lw=1.0)
    handles: list[Any] = [ref_h, pred_h, (ref_h, pred_h)]
    texts = ["reference only", f"{subject} only", "both (boundaries agree)"]
    if marker:
        handles.append(Line2D([], [], ls="none", marker="o", ms=9, mfc="none",
                              mec=MARK_COLOUR, mew=2))
        texts.append("worst boundary point")
    ax.legend(handles, texts, loc="upper left", frameon=False, fontsize=8,
              handler_map={tuple: HandlerTuple(ndivide=1)})
    ax.text(0.04, 0.05, "\n".join(notes), transform=ax.transAxes, ha="left", va="bottom",
            fontsize=7)


def overlay_panels(background: np.ndarray, pred: np.ndarray, ref: np.ndarray,
                   frame: DisplayFrame, slices: Mapping[str, int], labels: Sequence[int],
                   title: str, *, window: tuple[float, float] | None,
                   marker: tuple[int, int, int] | None = None,
                   panel_notes: Mapping[str, str] | None = None,
                   notes: Sequence[str] = (), subject: str = "prediction") -> bytes:
    """Axial, coronal and sagittal panels with reference and prediction contours
    (``subject``: what the legend calls the prediction, e.g. "annotation").

    ``background``, ``pred`` and ``ref`` are display-frame arrays ``[x, y, z]`` (see
    :mod:`medseg.report.slices`); ``slices`` gives the index along each view's fixed axis;
    ``window`` is the grey-level window of an image, or ``None`` when the background is the
    reference label map (drawn as grey fill). ``marker`` is a display voxel to ring.
    """
    cross = (slices["sagittal"], slices["coronal"], slices["axial"])
    lo, hi = focus_box((pred != 0) | (ref != 0), frame, cross)
    lim = view_limits(frame, lo, hi, cross)
    sx, sy, sz = lim.size_mm
    bottom = sz * lim.zoom
    scale = min(8.4 / (sx + sy), 8.0 / (sy + bottom))
    fig = Figure(figsize=(scale * (sx + sy) + 0.3, scale * (sy + bottom) + 0.75))
    w, h = fig.get_figwidth(), fig.get_figheight()
    grid = fig.add_gridspec(2, 2, width_ratios=[sx, sy], height_ratios=[sy, bottom],
                            left=0.15 / w, right=1 - 0.15 / w, bottom=0.1 / h,
                            top=1 - 0.6 / h, wspace=0.02, hspace=0.02)
    cells = {"axial": grid[0, 0], "coronal": grid[1, 0], "sagittal": grid[1, 1]}
    nz = frame.shape[2]
    lines = {"axial": (cross[0], cross[1]), "coronal": (cross[0], nz - 1 - cross[2]),
             "sagittal": (cross[1], nz - 1 - cross[2])}
    for view in VIEWS:
        ax = fig.add_subplot(cells[view])
        planes = tuple(view_plane(a, view, slices[view]) for a in (background, ref, pred))
        _panel(ax, view, frame, planes, labels, window, lines[view])
        if marker is not None and slices[view] == marker[VIEW_AXIS[view]]:
            col, row = view_point(frame, view, marker)
            pw, ph = view_pixel_mm(frame, view)
            ax.plot([(col + 0.5) * pw], [(row + 0.5) * ph], marker="o", ms=15, mfc="none",
                    mec=MARK_COLOUR, mew=2.0)
        ax.set_xlim(*lim.xlim[view])
        ax.set_ylim(*lim.ylim[view])
        note = f" {panel_notes[view]}" if panel_notes and view in panel_notes else ""
        ax.text(0.01, 0.99, f"{view}{note}", transform=ax.transAxes, ha="left", va="top",
                fontsize=7.5, color="white", bbox={"facecolor": "black", "alpha": 0.55,
                                                   "pad": 1.5, "lw": 0})
    extra = [f"coronal and sagittal magnified x{lim.zoom:.1f}", "around the cross (thin slab)"] \
        if lim.zoom > 1 else []
    _legend(fig.add_subplot(grid[0, 1]), marker is not None, [*notes, *extra], subject)
    fig.suptitle(title, fontsize=9.5, y=1 - 0.08 / h, va="top")
    return png_bytes(fig)
