"""Editing operations on label maps that an annotator runs from the editor.

Contract shared by every function here: a label map is an integer ``numpy`` array (any
shape the caller uses, normally ``(X, Y, Z)`` in the volume's voxel order); a function
returns a NEW array of the same shape and dtype and never modifies its input.

``fill_between`` is 3D Slicer's "Fill between slices" / ITK-SNAP's interpolation: the
slices of one label painted by the annotator along an axis are kept exactly; the gaps
between two consecutive painted slices are filled by shape-based (signed-distance)
interpolation, as in morphological contour interpolation (Albu et al., 2008, the method
behind ITK's ``MorphologicalContourInterpolator`` that Slicer uses). Only background
voxels (value 0) are ever written, so other labels are never overwritten; nothing is
extrapolated beyond the first and last painted slice.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import LabelNotFoundError, NothingToFillError

__all__ = ["annotated_slices", "fill_between", "interpolate_masks"]


def annotated_slices(labels: np.ndarray, value: int, axis: int) -> list[int]:
    """Indices along ``axis`` of the slices holding at least one voxel of ``value``, ascending."""
    axis = _check_axis(labels, axis)
    other = tuple(a for a in range(labels.ndim) if a != axis)
    present = np.any(labels == value, axis=other)
    return [int(i) for i in np.flatnonzero(present)]


def fill_between(
    labels: np.ndarray,
    value: int,
    axis: int,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Interpolate label ``value`` between its painted slices along ``axis``.

    For each pair of consecutive painted slices ``i < j`` with unpainted slices between,
    slice ``k`` gets the zero level set of ``(1 - t) * d_i + t * d_j`` with
    ``t = (k - i) / (j - i)``, where ``d`` is the in-plane signed distance (negative
    inside, in ``spacing`` units). When the two painted masks do not overlap at all (a
    structure that moves between the slices), both are first shifted towards each other
    along the line joining their centroids, so the shape travels instead of vanishing.

    Args:
        labels: integer label map; not modified.
        value: the label to interpolate (non-zero).
        axis: the slicing axis (negative values count from the end).
        spacing: voxel size per axis of ``labels`` (only the in-plane entries are used);
            ``None`` means isotropic.

    Returns:
        A copy of ``labels`` where background voxels (0) inside the interpolated shape
        are set to ``value``. Painted slices, and every voxel of another label, are
        unchanged. With no gap between painted slices the copy equals the input.

    Raises:
        LabelNotFoundError: ``value`` is 0 or has no voxel in ``labels``.
        NothingToFillError: ``value`` is painted on a single slice along ``axis``.
    """
    axis = _check_axis(labels, axis)
    if value == 0:
        raise LabelNotFoundError(
            "fill between slices: label value 0 is the background; choose a label to fill"
        )
    painted = annotated_slices(labels, value, axis)
    if not painted:
        raise LabelNotFoundError(
            f"fill between slices: label {value} has no voxels; paint it on two slices first"
        )
    if len(painted) == 1:
        raise NothingToFillError(
            f"fill between slices: label {value} is painted only on slice {painted[0]} "
            f"along axis {axis}; paint it on a second slice, with unpainted slices between"
        )
    plane_spacing = _plane_spacing(labels.ndim, axis, spacing)
    out = labels.copy()
    moved = np.moveaxis(out, axis, 0)  # a view: writes land in ``out``
    for start, stop in itertools.pairwise(painted):
        if stop - start > 1:
            _fill_gap(moved, value, start, stop, plane_spacing)
    return out


def interpolate_masks(mask_a: np.ndarray, mask_b: np.ndarray, t: float,
                      spacing: Sequence[float] | None = None) -> np.ndarray:
    """The 2D mask a fraction ``t`` (0..1) of the way from ``mask_a`` to ``mask_b`` (both
    bool, same shape): the rule :func:`fill_between` applies to each slice of a gap.
    ``spacing`` is the in-plane voxel size (None: isotropic)."""
    plane = (1.0,) * mask_a.ndim if spacing is None else tuple(float(x) for x in spacing)
    a, b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    offset = _centroid_offset(a, b) if a.any() and b.any() else None
    if offset is not None:
        a, b = _shift(a, offset * t), _shift(b, -offset * (1.0 - t))
    level = (1.0 - t) * _signed_distance(a, plane) + t * _signed_distance(b, plane)
    return np.asarray(level < 0)


def _fill_gap(
    stack: np.ndarray, value: int, start: int, stop: int, spacing: tuple[float, ...]
) -> None:
    """Fill slices ``start+1 .. stop-1`` of ``stack`` (slicing axis first) in place."""
    mask_a = stack[start] == value
    mask_b = stack[stop] == value
    for k in range(start + 1, stop):
        shape = interpolate_masks(mask_a, mask_b, (k - start) / (stop - start), spacing)
        target = stack[k]
        target[shape & (target == 0)] = value


def _signed_distance(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Signed distance to the mask boundary: negative inside, positive outside.

    The half-voxel terms put the zero level between the last voxel inside and the first
    outside, so interpolating a mask with itself gives the mask back exactly.
    """
    if not mask.any():
        return np.full(mask.shape, np.inf)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    half = 0.5 * min(spacing)
    return np.where(mask, half - inside, outside - half)


def _centroid_offset(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray | None:
    """Centroid of ``mask_b`` minus centroid of ``mask_a`` (voxels), or None when they overlap."""
    if np.any(mask_a & mask_b):
        return None
    return np.asarray(ndimage.center_of_mass(mask_b)) - np.asarray(ndimage.center_of_mass(mask_a))


def _shift(mask: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``mask`` translated by ``offset`` voxels (rounded), nearest neighbour, zero padded."""
    steps = np.rint(offset).astype(int)
    return ndimage.shift(mask, steps, order=0, mode="constant", cval=False)


def _plane_spacing(ndim: int, axis: int, spacing: Sequence[float] | None) -> tuple[float, ...]:
    """The in-plane voxel sizes (the entries of ``spacing`` other than ``axis``)."""
    if spacing is None:
        return (1.0,) * (ndim - 1)
    if len(spacing) != ndim or any(not s > 0 for s in spacing):
        raise ValueError(f"spacing must hold {ndim} positive sizes, got {tuple(spacing)}")
    return tuple(float(s) for i, s in enumerate(spacing) if i != axis)


def _check_axis(labels: np.ndarray, axis: int) -> int:
    """``axis`` normalised to ``0 .. ndim-1``; the array must be an integer map of ndim >= 2."""
    if labels.ndim < 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer array of 2 or more dimensions, got "
            f"{labels.dtype} {labels.shape}"
        )
    if not -labels.ndim <= axis < labels.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {labels.ndim} dimensions")
    return axis % labels.ndim
