"""Slice extraction and drawing for the viewer: display orientation, windowing, overlays.

Display convention (radiological): the volume is first reoriented exactly to LPS
(:meth:`medseg.Volume.reorient`), then

* axial (k fixed): patient's right on screen left, anterior at the top;
* coronal (j fixed): patient's right on screen left, superior at the top;
* sagittal (i fixed): anterior on screen left, superior at the top.

Each 2D slice is returned with its pixel size in mm so it can be shown with the correct
physical aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from medseg.report.slices import VIEWS, view_plane
from medseg.volume import Volume

PLANES = VIEWS

#: (width, level) in HU.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "CT soft tissue": (400.0, 40.0),
    "CT lung": (1500.0, -600.0),
    "CT bone": (1800.0, 400.0),
    "CT brain": (80.0, 40.0),
    "CT liver": (150.0, 60.0),
}


@dataclass(frozen=True)
class SliceView:
    """A 2D slice in display orientation: ``pixels[row, col]``, row 0 at the top."""

    pixels: np.ndarray
    row_mm: float
    col_mm: float


def plane_axis(plane: str) -> int:
    """The LPS-reoriented array axis that a plane's slider moves along."""
    return {"axial": 2, "coronal": 1, "sagittal": 0}[plane]


def extract(vol_lps: Volume, plane: str, index: int) -> SliceView:
    """Slice ``index`` of an LPS-oriented volume, in display orientation (see module doc).

    Uses the report's display convention (:mod:`medseg.report.slices`), so the app and the
    reports show every case the same way.
    """
    pixels = view_plane(vol_lps.array, plane, index)
    sx, sy, sz = vol_lps.spacing
    col_mm, row_mm = {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[plane]
    return SliceView(pixels, row_mm, col_mm)


def display_to_voxel(vol_lps: Volume, plane: str, index: int, row: int, col: int
                     ) -> tuple[int, int, int]:
    """Voxel index (in the LPS-oriented volume) of a pixel of :func:`extract`'s slice."""
    nk = vol_lps.shape[2]
    if plane == "axial":
        return (col, row, index)
    if plane == "coronal":
        return (col, index, nk - 1 - row)
    return (index, col, nk - 1 - row)


def voxel_to_display(shape: tuple[int, ...], plane: str, ijk: tuple[int, ...]
                     ) -> tuple[int, int]:
    """Pixel ``(row, col)`` of voxel ``ijk`` in ``plane``'s slice through it (the inverse of
    :func:`display_to_voxel` for a volume of ``shape``, LPS-oriented)."""
    i, j, k = (int(v) for v in ijk[:3])
    nk = shape[2]
    if plane == "axial":
        return j, i
    if plane == "coronal":
        return nk - 1 - k, i
    return nk - 1 - k, j


def extract_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """(rows, cols) of :func:`extract`'s slice of a volume of ``shape`` (LPS-oriented)."""
    return {"axial": (shape[1], shape[0]), "coronal": (shape[2], shape[0]),
            "sagittal": (shape[2], shape[1])}[plane]


def display_to_voxel_arrays(shape: tuple[int, ...], plane: str, index: int, rows: np.ndarray,
                            cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`display_to_voxel` for a volume of ``shape``: index arrays (i, j, k)."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    fixed = np.full(rows.shape, index)
    nk = shape[2]
    if plane == "axial":
        return cols, rows, fixed
    if plane == "coronal":
        return cols, fixed, nk - 1 - rows
    return fixed, cols, nk - 1 - rows


def auto_window(array: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """(width, level) from intensity percentiles (MR and unknown modalities)."""
    sample = array[:: max(1, array.shape[0] // 64), :: max(1, array.shape[1] // 64), :]
    lo, hi = np.percentile(sample, [low, high])
    width = max(float(hi - lo), 1e-3)
    return width, float(lo + width / 2)


def to_gray(pixels: np.ndarray, width: float, level: float) -> np.ndarray:
    """uint8 grey levels of ``pixels`` under a window."""
    lo = level - width / 2
    scaled = (pixels.astype(np.float32) - lo) * (255.0 / max(width, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


#: Distinct, saturated overlay colours (Trubetskoy's 20-colour list, grey/white dropped).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128))


def label_colors(values: list[int]) -> dict[int, tuple[int, int, int]]:
    """A stable, distinct colour per label value (value 1 red, 2 green, 3 yellow...)."""
    return {v: PALETTE[(int(v) - 1) % len(PALETTE)] for v in values}


def compose(gray: np.ndarray, labels: np.ndarray | None, colors: dict[int, tuple[int, int, int]],
            opacity: float, visible: set[int] | None = None) -> np.ndarray:
    """RGB uint8 image: grey slice with the visible labels blended at ``opacity``."""
    rgb = np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)
    if labels is not None and opacity > 0:
        for value, color in colors.items():
            if visible is not None and value not in visible:
                continue
            m = labels == value
            if m.any():
                rgb[m] = (1 - opacity) * rgb[m] + opacity * np.asarray(color, np.float32)
    return rgb.astype(np.uint8)


def physical_size(view: SliceView, target_width: int) -> tuple[int, int]:
    """(width, height) in screen pixels that keeps the physical aspect ratio."""
    rows, cols = view.pixels.shape
    width_mm, height_mm = cols * view.col_mm, rows * view.row_mm
    height = max(1, round(target_width * height_mm / width_mm))
    return target_width, height


def to_image(rgb: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Resize to the physical-aspect display size (nearest: voxels stay visible)."""
    return Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST)
