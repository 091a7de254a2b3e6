"""Surface voxels and surface-to-surface distances between two binary masks (MONAI convention).

Conventions (stated once here and in ``docs/metrics.md``):

* Masks are boolean arrays indexed ``[i, j, k]`` (2D ``[i, j]`` also works) on the same voxel grid;
  ``spacing`` is the voxel size along each array axis in mm. Distances are Euclidean, in mm, between
  voxel centres, so anisotropic spacing is exact.
* A **surface voxel** is a foreground voxel with at least one face (6-connected in 3D,
  4-connected in 2D) neighbour in the background; the image border counts as background. This is
  ``mask & ~scipy.ndimage.binary_erosion(mask)``, MONAI's ``get_mask_edges`` without subvoxels.
* ``pred_to_ref[n]`` is the distance from the n-th surface voxel of ``pred`` (C order) to the
  nearest surface voxel of ``ref``; ``ref_to_pred`` the other way round. When one mask is empty,
  its list is empty and every distance of the other list is ``inf`` (there is nothing to reach).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from medseg.errors import GeometryMismatchError, MetricInputError

Crop = tuple[slice, ...]


def _no_points() -> npt.NDArray[np.int64]:
    return np.zeros((0, 3), dtype=np.int64)


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) between the surface voxels of a prediction and of a reference.

    Attributes:
        pred_to_ref: float64, shape ``(Np,)``: for each surface voxel of ``pred``, the distance to
            the nearest surface voxel of ``ref``; ``inf`` everywhere when ``ref`` is empty.
        ref_to_pred: float64, shape ``(Nr,)``: the same from ``ref`` to ``pred``.
        pred_surface_ijk: int64, shape ``(Np, ndim)``: voxel indices (full array, not the crop) of
            the surface voxels of ``pred``, in the order of ``pred_to_ref``.
        ref_surface_ijk: int64, shape ``(Nr, ndim)``: the same for ``ref``.
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray
    pred_surface_ijk: np.ndarray = field(default_factory=_no_points)
    ref_surface_ijk: np.ndarray = field(default_factory=_no_points)

    @property
    def both_empty(self) -> bool:
        """True when neither mask has a voxel (so neither has a surface)."""
        return self.pred_to_ref.size == 0 and self.ref_to_pred.size == 0

    @property
    def one_empty(self) -> bool:
        """True when exactly one of the two masks is empty."""
        return (self.pred_to_ref.size == 0) != (self.ref_to_pred.size == 0)

    def hausdorff(self, percentile: float = 100.0) -> float:
        """Symmetric (percentile) Hausdorff distance in mm, MONAI's convention.

        The ``percentile`` of each directed distance set (linear interpolation, as
        ``numpy.percentile`` and ``torch.quantile``), then the larger of the two. ``100`` is the
        classic Hausdorff distance, ``95`` the HD95. Both masks empty: ``0.0``; one empty: ``inf``.
        """
        if not 0.0 <= float(percentile) <= 100.0:
            raise MetricInputError(f"Hausdorff percentile must lie in [0, 100], got {percentile}.")
        if self.both_empty:
            return 0.0
        if self.one_empty:
            return float("inf")
        if percentile == 100.0:
            return float(max(self.pred_to_ref.max(), self.ref_to_pred.max()))
        q = float(percentile)
        return float(max(np.percentile(self.pred_to_ref, q), np.percentile(self.ref_to_pred, q)))

    def assd(self) -> float:
        """Average symmetric surface distance (mm): mean over the union of both directed sets.

        ``(sum(pred_to_ref) + sum(ref_to_pred)) / (Np + Nr)``, as MONAI's
        ``compute_average_surface_distance(symmetric=True)``. Both empty: ``0.0``; one: ``inf``.
        """
        if self.both_empty:
            return 0.0
        if self.one_empty:
            return float("inf")
        total = float(self.pred_to_ref.sum()) + float(self.ref_to_pred.sum())
        return total / (self.pred_to_ref.size + self.ref_to_pred.size)

    def nsd(self, tolerance_mm: float) -> float:
        """Normalised surface Dice at ``tolerance_mm``, MONAI's voxel-count convention.

        Fraction of surface voxels of both masks whose distance to the other surface is
        ``<= tolerance_mm``. Both empty: ``1.0``; one empty: ``0.0``.
        """
        tau = check_tolerance(tolerance_mm)
        if self.both_empty:
            return 1.0
        hits = np.count_nonzero(self.pred_to_ref <= tau) + np.count_nonzero(self.ref_to_pred <= tau)
        return float(hits) / (self.pred_to_ref.size + self.ref_to_pred.size)


def check_tolerance(tolerance_mm: float) -> float:
    """Validate an NSD tolerance (finite, >= 0, in mm) and return it as a float."""
    try:
        tau = float(tolerance_mm)
    except (TypeError, ValueError):
        tau = float("nan")
    if not np.isfinite(tau) or tau < 0:
        raise MetricInputError(
            f"NSD tolerance must be a finite distance >= 0 mm, got {tolerance_mm!r}. "
            "Use e.g. 1 or 2 mm (or the inter-rater variability of the structure)."
        )
    return tau


def check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Return ``spacing`` as ``ndim`` positive finite floats (mm) or raise MetricInputError."""
    try:
        values = tuple(float(s) for s in np.ravel(np.asarray(spacing, dtype=np.float64)))
    except (TypeError, ValueError):
        values = ()
    if len(values) != ndim or not all(np.isfinite(s) and s > 0 for s in values):
        raise MetricInputError(
            f"Voxel spacing must be {ndim} positive numbers in mm (one per mask axis), "
            f"got {spacing!r}. Pass Volume.spacing of the image the masks were drawn on."
        )
    return values


def as_binary_mask(mask: npt.ArrayLike, what: str) -> np.ndarray:
    """``mask`` as a bool array; integer/float masks must hold only 0 and 1.

    Raises:
        MetricInputError: wrong dimensionality or values other than 0/1 (e.g. a label map).
    """
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise MetricInputError(
            f"The {what} mask must be a 2D or 3D array, got shape {arr.shape}. "
            "Drop batch/channel axes first (e.g. mask[0, 1] of a one-hot tensor)."
        )
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "biuf" or not np.all((arr == 0) | (arr == 1)):
        raise MetricInputError(
            f"The {what} mask must be binary (bool or 0/1), got dtype {arr.dtype} with other "
            "values. For a label map pass `labels == value`, or use evaluate_label_maps()."
        )
    return arr != 0


def check_pair(pred: npt.ArrayLike, ref: npt.ArrayLike, spacing: Sequence[float]
               ) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Validate a prediction/reference pair: bool masks of one shape and a matching spacing."""
    p = as_binary_mask(pred, "prediction")
    r = as_binary_mask(ref, "reference")
    if p.shape != r.shape:
        raise GeometryMismatchError(
            f"Prediction mask of shape {p.shape} and reference mask of shape {r.shape} differ. "
            "Resample the prediction onto the reference grid (nearest neighbour) first."
        )
    return p, r, check_spacing(spacing, p.ndim)


def union_crop(boxes: Sequence[Crop | None], shape: tuple[int, ...]) -> Crop | None:
    """Bounding box of the union of ``boxes`` grown by one voxel, clipped to ``shape``.

    ``None`` entries are empty masks; returns ``None`` when every box is empty.
    """
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(
        slice(max(min(b[ax].start for b in present) - 1, 0),
              min(max(b[ax].stop for b in present) + 1, n))
        for ax, n in enumerate(shape)
    )


def bounding_box(mask: np.ndarray) -> Crop | None:
    """Tight bounding box (slices) of the True voxels of a bool mask; ``None`` if empty."""
    box = []
    for ax in range(mask.ndim):
        hits = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a bool mask: foreground with a background face neighbour.

    The image border counts as background. Same shape as ``mask``, dtype bool. Equal to
    ``mask & ~scipy.ndimage.binary_erosion(mask)`` (cross structuring element), but faster.
    """
    inner = np.array(mask, dtype=bool, copy=True)
    for ax in range(mask.ndim):
        hi = [slice(None)] * mask.ndim
        lo = [slice(None)] * mask.ndim
        hi[ax], lo[ax] = slice(1, None), slice(None, -1)
        inner[tuple(hi)] &= mask[tuple(lo)]
        inner[tuple(lo)] &= mask[tuple(hi)]
        first = [slice(None)] * mask.ndim
        last = [slice(None)] * mask.ndim
        first[ax], last[ax] = slice(0, 1), slice(-1, None)
        inner[tuple(first)] = False  # the image border is background
        inner[tuple(last)] = False
    np.logical_xor(inner, mask, out=inner)
    return inner


#: Number of neighbour offsets tried before the k-d tree (see :func:`_ball_offsets`).
BALL_OFFSETS = 200


def _ball_offsets(spacing: tuple[float, ...], count: int = BALL_OFFSETS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Integer voxel offsets of every grid point within radius R (mm), sorted by length.

    R is chosen so that the ball holds about ``count`` voxels. Returns ``(offsets (M, ndim)
    int64, lengths (M,) float64 mm)``; the zero offset comes first.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    unit_ball = np.pi ** (sp.size / 2) / math.gamma(sp.size / 2 + 1)
    radius = (count * float(np.prod(sp)) / unit_ball) ** (1.0 / sp.size)
    half = np.ceil(radius / sp).astype(np.int64)
    axes = [np.arange(-h, h + 1) for h in half]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, sp.size)
    lengths = np.sqrt(((grid * sp) ** 2).sum(axis=1))
    keep = lengths <= radius
    order = np.argsort(lengths[keep], kind="stable")
    return grid[keep][order], lengths[keep][order]


def _directed(src_ijk: np.ndarray, dst_surface: np.ndarray, dst_ijk: np.ndarray,
              spacing: tuple[float, ...]) -> np.ndarray:
    """Exact distance (mm) from each voxel ``src_ijk`` to the nearest True voxel of ``dst_surface``.

    First a sweep over the ~200 nearest neighbour offsets in increasing length: a point whose
    offset hits ``dst_surface`` gets that (exact) length, and since shorter offsets missed it is
    the nearest. Points still unresolved are farther than the ball radius and are answered by a
    k-d tree over ``dst_ijk``. The sweep costs about as much as the tree query for the same
    points, so the worst case (nothing near) is at most ~2x the tree alone, and the usual case
    (surfaces a few voxels apart) is several times faster.
    """
    out = np.full(src_ijk.shape[0], np.inf)
    if dst_ijk.shape[0] == 0 or src_ijk.shape[0] == 0:
        return out
    offsets, lengths = _ball_offsets(tuple(spacing))
    pad = offsets.max(axis=0)
    grid = np.ascontiguousarray(np.pad(dst_surface, [(int(p), int(p)) for p in pad]))
    strides = np.asarray(grid.strides, dtype=np.int64) // grid.itemsize
    padded = grid.ravel()
    todo = np.arange(src_ijk.shape[0])
    lin = (src_ijk + pad) @ strides
    for step, length in zip(offsets @ strides, lengths, strict=True):
        hit = padded[lin + step]
        if hit.any():
            out[todo[hit]] = length
            todo, lin = todo[~hit], lin[~hit]
            if todo.size == 0:
                return out
    scale = np.asarray(spacing, dtype=np.float64)
    tree = cKDTree(dst_ijk * scale, leafsize=32, balanced_tree=False, compact_nodes=False)
    out[todo] = tree.query(src_ijk[todo] * scale, k=1)[0]
    return out


def cropped_surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                              offset: Sequence[int]) -> SurfaceDistances:
    """Surface distances of two bool masks already cropped with a one-voxel background margin.

    ``offset`` is the index of the crop's first voxel in the full array (added to the returned
    surface indices). The margin matters: the crop edge is treated as background, which is only
    right when it is background or the true image border (see :func:`union_crop`).
    """
    sp = surface_voxels(pred)
    sr = surface_voxels(ref)
    off = np.asarray(offset, dtype=np.int64)
    pred_ijk = np.argwhere(sp)
    ref_ijk = np.argwhere(sr)
    spacing = tuple(float(s) for s in spacing)
    return SurfaceDistances(
        pred_to_ref=_directed(pred_ijk, sr, ref_ijk, spacing),
        ref_to_pred=_directed(ref_ijk, sp, pred_ijk, spacing),
        pred_surface_ijk=pred_ijk + off,
        ref_surface_ijk=ref_ijk + off,
    )


def surface_distances(pred: np.ndarray, ref: np.ndarray,
                      spacing: Sequence[float]) -> SurfaceDistances:
    """Distances in mm between the surface voxels of two binary masks on the same grid.

    Args:
        pred: bool (or 0/1) mask, shape ``(I, J, K)`` (or ``(I, J)``), indexed ``[i, j, k]``.
        ref: reference mask of the same shape.
        spacing: voxel size in mm along each array axis (``Volume.spacing``).

    Returns:
        :class:`SurfaceDistances`; both masks are cropped to the bounding box of their union
        (plus one voxel) before anything else, so cost scales with the structure, not the image.
    """
    p, r, sp = check_pair(pred, ref, spacing)
    crop = union_crop([bounding_box(p), bounding_box(r)], p.shape)
    if crop is None:
        empty = np.zeros(0, dtype=np.float64)
        none = np.zeros((0, p.ndim), dtype=np.int64)
        return SurfaceDistances(empty, empty.copy(), none, none.copy())
    return cropped_surface_distances(p[crop], r[crop], sp, [c.start for c in crop])
