"""Brush strokes on a displayed slice: the pixels within a radius (in mm) of a polyline.

A stroke is the pointer's path during one drag, as points ``(row, col)`` in the slice's pixel
index units (pixel ``(r, c)`` has its centre at ``(r, c)``; fractions allowed). The painted
region is the union of discs of ``radius_mm`` centred on every point of every segment between
consecutive points (a "capsule" per segment), so a fast drag whose pointer events are far
apart still paints a continuous band with no gaps, as in ITK-SNAP and 3D Slicer. Distances are
in millimetres (``row_mm``/``col_mm`` pixel size), so the band is round on anisotropic slices.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]


def _segment_distance(rr: np.ndarray, cc: np.ndarray, a: Point, b: Point, row_mm: float,
                      col_mm: float) -> np.ndarray:
    """Distance in mm from each pixel ``(rr, cc)`` to the segment ``a``-``b`` (pixel units)."""
    ay, ax = a[0] * row_mm, a[1] * col_mm
    by, bx = b[0] * row_mm, b[1] * col_mm
    py, px = rr * row_mm, cc * col_mm
    dy, dx = by - ay, bx - ax
    length2 = dy * dy + dx * dx
    if length2 == 0:
        t = np.zeros_like(py)
    else:
        t = np.clip(((py - ay) * dy + (px - ax) * dx) / length2, 0.0, 1.0)
    return np.asarray(np.hypot(py - (ay + t * dy), px - (ax + t * dx)))


def stroke_mask(shape: tuple[int, int], points: Sequence[Point], radius_mm: float,
                row_mm: float, col_mm: float) -> np.ndarray:
    """Bool ``[rows, cols]`` mask of the pixels within ``radius_mm`` of the polyline ``points``.

    The pixel under each point is always included (a radius below the pixel size still
    paints). Points outside the slice are allowed (the band is clipped to it); an empty
    ``points`` gives an empty mask.
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    if not points:
        return mask
    pts = [(float(r), float(c)) for r, c in points]
    arr = np.asarray(pts)
    pad_r, pad_c = radius_mm / row_mm + 1, radius_mm / col_mm + 1
    r0 = max(int(np.floor(arr[:, 0].min() - pad_r)), 0)
    r1 = min(int(np.ceil(arr[:, 0].max() + pad_r)) + 1, rows)
    c0 = max(int(np.floor(arr[:, 1].min() - pad_c)), 0)
    c1 = min(int(np.ceil(arr[:, 1].max() + pad_c)) + 1, cols)
    if r0 >= r1 or c0 >= c1:
        return mask
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    best = np.full(rr.shape, np.inf)
    segments = list(itertools.pairwise(pts)) or [(pts[0], pts[0])]
    for a, b in segments:
        np.minimum(best, _segment_distance(rr, cc, a, b, row_mm, col_mm), out=best)
    mask[r0:r1, c0:c1] = best <= radius_mm
    for r, c in pts:
        ri, ci = round(r), round(c)
        if 0 <= ri < rows and 0 <= ci < cols:
            mask[ri, ci] = True
    return mask
