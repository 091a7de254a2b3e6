"""Report figures as PNG bytes (matplotlib, Agg canvas; no pyplot global state).

Colours are fixed across every figure so a reader learns them once: reference = cyan,
prediction = orange (a pair that stays distinct with red-green colour blindness), the worst
boundary point = magenta ring.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medseg.io.labels import display_name

REF_COLOUR = "#00d0ff"
PRED_COLOUR = "#ff8c00"
MARK_COLOUR = "#ff00ff"
DPI = 80


def label_text(name: str, width: int = 28) -> str:
    """A label name as figure text: one line, at most about ``width`` characters (elided in
    the middle), ``$`` escaped so matplotlib never parses it as mathtext."""
    return display_name(str(name), width).replace("$", r"\$")


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


def surface_histograms(names: Mapping[int, str],
                       distances: Mapping[int, tuple[np.ndarray, np.ndarray]],
                       hd95: Mapping[int, float], tolerance_mm: float,
                       subject: str = "prediction") -> bytes:
    """Histogram of the directed surface distances of every label, one row per label on a
    shared mm axis: prediction -> reference drawn upward (orange), reference -> prediction
    downward (cyan), each row scaled to its own largest bin.

    ``distances[label] = (pred_to_ref, ref_to_pred)``, float arrays of any length; ``inf``
    entries (distances to an empty mask) are not drawn. Distances beyond the axis end (set by
    the largest HD95) are counted in the last bin; each row states its HD95 and maximum.
    One axes for all labels: 40 separate panels would dominate the report's run time.
    ``subject`` is what the texts call the prediction (e.g. "annotation").
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
            which = subject if raw[0].size == 0 else "reference"
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
    ax.set_yticks(range(len(labels)), [label_text(names[lab], 26) for lab in labels], fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("surface distance (mm); last bin includes larger distances", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.25)
    handles = [Line2D([], [], color=PRED_COLOUR, lw=5, label=f"{subject} -> reference (up)"),
               Line2D([], [], color=REF_COLOUR, lw=5, label=f"reference -> {subject} (down)"),
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
            ax.plot(np.arange(n), dice[lab], marker="o", ms=3, lw=1.2, label=label_text(names[lab]))
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
        ax.set_yticks(range(len(labels)), [label_text(names[lab], 24) for lab in labels],
                      fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="Dice")
    ax.set_xlabel(f"slice index ({axis_note})", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def volumes_figure(names: Mapping[int, str], pred_ml: Mapping[int, float],
                   ref_ml: Mapping[int, float], subject: str = "prediction") -> bytes:
    """Horizontal grouped bars of predicted and reference volume (ml) per label; log scale
    when volumes span more than two orders of magnitude (``subject`` names the prediction)."""
    labels = sorted(names)
    y = np.arange(len(labels))
    p = np.array([pred_ml[lab] for lab in labels], dtype=float)
    r = np.array([ref_ml[lab] for lab in labels], dtype=float)
    fig = Figure(figsize=(8.0, 1.0 + 0.22 * len(labels)))
    ax = fig.subplots()
    ax.barh(y - 0.2, r, height=0.4, color=REF_COLOUR, label="reference")
    ax.barh(y + 0.2, p, height=0.4, color=PRED_COLOUR, label=subject)
    positive = np.concatenate([p[p > 0], r[r > 0]])
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    for yi, (pv, rv) in enumerate(zip(p, r, strict=True)):
        if pv == 0 or rv == 0:
            ax.text(max(pv, rv, 1e-9), yi, "  missing " + (subject if pv == 0 else
                    "reference"), va="center", fontsize=6, color="crimson")
    ax.set_yticks(y, [label_text(names[lab]) for lab in labels], fontsize=7)
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
    ax.set_yticks(range(1, len(labels) + 1), [label_text(names[lab]) for lab in labels],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)
