"""Per-label metric rows: overlap, volume and surface-distance scores of two segmentations.

Empty masks never raise; they get a defined value and a flag (see ``docs/metrics.md``):

* ``both_empty`` (the label is absent from both): dice = iou = sensitivity = precision = nsd = 1,
  hd = hd95 = assd = 0, rel_volume_diff = 0. Absence was predicted correctly.
* ``empty_pred`` (missed structure): dice = iou = sensitivity = nsd = 0, precision = NaN (0/0),
  hd = hd95 = assd = inf, rel_volume_diff = -1.
* ``empty_ref`` (false-positive structure): dice = iou = precision = nsd = 0,
  sensitivity = NaN (0/0), hd = hd95 = assd = inf, rel_volume_diff = inf.

Distances to an empty mask are ``inf`` rather than NaN: inf is what the definition gives (no
point to reach), it sorts as the worst case and it is not silently skipped by ``nanmean``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.errors import MetricInputError
from medseg.metrics.surface import (
    Crop,
    bounding_box,
    check_pair,
    check_tolerance,
    cropped_surface_distances,
    union_crop,
)
from medseg.volume import Volume

NAN = float("nan")
INF = float("inf")


@dataclass
class LabelMetrics:
    """Scores of one label (pred vs ref). Volumes in mL, distances in mm; see module docstring."""

    label: int
    name: str
    dice: float
    iou: float
    sensitivity: float
    precision: float
    volume_pred_ml: float
    volume_ref_ml: float
    rel_volume_diff: float
    hd: float
    hd95: float
    assd: float
    nsd: float
    nsd_tolerance_mm: float
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of every field (floats may be ``inf``/``nan``; flags is a new list)."""
        return dataclasses.asdict(self)


def _ratio(num: int, den: int) -> float:
    return num / den if den else NAN


def _metrics_from_crop(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                       offset: Sequence[int], tau: float, label: int, name: str) -> LabelMetrics:
    """All scores of two bool masks cropped (with a one-voxel margin) to their union's box."""
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref))
    voxel_ml = math.prod(spacing) / 1000.0
    flags: list[str] = []
    if n_pred == 0 and n_ref == 0:
        flags.append("both_empty")
    elif n_pred == 0:
        flags.append("empty_pred")
    elif n_ref == 0:
        flags.append("empty_ref")
    dist = cropped_surface_distances(pred, ref, spacing, offset)
    union = n_pred + n_ref - tp
    nothing = not n_pred and not n_ref  # both empty: perfect agreement on absence
    return LabelMetrics(
        label=int(label), name=str(name),
        dice=2.0 * tp / (n_pred + n_ref) if n_pred + n_ref else 1.0,
        iou=tp / union if union else 1.0,
        sensitivity=1.0 if nothing else _ratio(tp, n_ref),
        precision=1.0 if nothing else _ratio(tp, n_pred),
        volume_pred_ml=n_pred * voxel_ml,
        volume_ref_ml=n_ref * voxel_ml,
        rel_volume_diff=((n_pred - n_ref) / n_ref if n_ref else (INF if n_pred else 0.0)),
        hd=dist.hausdorff(100.0), hd95=dist.hausdorff(95.0), assd=dist.assd(),
        nsd=dist.nsd(tau), nsd_tolerance_mm=tau, flags=flags,
    )


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                   nsd_tolerance_mm: float = 2.0, label: int = 1,
                   name: str = "label_1") -> LabelMetrics:
    """Every score of one binary prediction against one binary reference.

    Args:
        pred: bool (or 0/1) mask ``[i, j, k]`` (2D ``[i, j]`` allowed).
        ref: reference mask, same shape and grid.
        spacing: voxel size (mm) along each array axis.
        nsd_tolerance_mm: tolerance of the normalised surface Dice, in mm.
        label, name: copied into the row.
    """
    p, r, sp = check_pair(pred, ref, spacing)
    tau = check_tolerance(nsd_tolerance_mm)
    crop = union_crop([bounding_box(p), bounding_box(r)], p.shape)
    if crop is None:  # nothing anywhere: a 1-voxel crop gives the both-empty row
        crop = tuple(slice(0, 1) for _ in p.shape)
    return _metrics_from_crop(p[crop], r[crop], sp, [c.start for c in crop], tau, label, name)


def _label_array(vol: Volume, what: str) -> np.ndarray:
    """The label map of ``vol`` as a non-negative integer array (float maps must be integral)."""
    arr = vol.array
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise MetricInputError(
                f"The {what} label map holds non-integer values (dtype {arr.dtype}). "
                "Pass a label map (integers, 0 = background), not probabilities or an image."
            )
        arr = arr.astype(np.int32)
    elif arr.dtype.kind not in "iu":
        raise MetricInputError(f"The {what} label map has unsupported dtype {arr.dtype}.")
    if arr.size and arr.min() < 0:
        raise MetricInputError(
            f"The {what} label map has negative labels (min {arr.min()}); labels must be >= 0."
        )
    return arr


def _label_boxes(arr: np.ndarray) -> list[Crop | None]:
    """``boxes[v - 1]`` is the bounding box of label ``v`` (``None`` when absent)."""
    if arr.size == 0 or not np.any(arr):
        return []
    return list(ndimage.find_objects(arr))


def _label_name(value: int, *tables: dict[int, str] | None) -> str:
    for table in tables:
        if table and value in table:
            return table[value]
    return f"label_{value}"


def evaluate_label_maps(pred: Volume, ref: Volume, labels: dict[int, str] | None = None,
                        nsd_tolerance_mm: float = 2.0) -> list[LabelMetrics]:
    """One :class:`LabelMetrics` row per label of two label maps on the same grid.

    Rows (sorted by label value) cover every non-zero label present in either map, or exactly the
    labels of ``labels`` when it is given (absent ones get a ``both_empty`` row). Names come
    from ``labels``, else ``ref.labels``, else ``pred.labels``, else ``"label_N"``. Each label
    is cropped to the box of its union (plus one voxel) before any per-voxel work.

    Raises:
        GeometryMismatchError: the two volumes are not on the same voxel grid.
        MetricInputError: a map holds negative or non-integer labels, or tolerance is invalid.
    """
    pred.check_same_grid(ref, what="prediction", reference="reference segmentation")
    tau = check_tolerance(nsd_tolerance_mm)
    p_arr = _label_array(pred, "prediction")
    r_arr = _label_array(ref, "reference")
    p_boxes, r_boxes = _label_boxes(p_arr), _label_boxes(r_arr)
    if labels is not None:
        values = sorted(int(v) for v in labels)
        if any(v <= 0 for v in values):
            raise MetricInputError(
                f"Labels to evaluate must be > 0 (0 is background), got {values}."
            )
    else:
        present = {i + 1 for i, b in enumerate(p_boxes) if b is not None}
        present |= {i + 1 for i, b in enumerate(r_boxes) if b is not None}
        values = sorted(present)
    rows = []
    for value in values:
        name = _label_name(value, labels, ref.labels, pred.labels)
        boxes = [b[value - 1] if value <= len(b) else None for b in (p_boxes, r_boxes)]
        crop = union_crop(boxes, p_arr.shape) or tuple(slice(0, 1) for _ in p_arr.shape)
        rows.append(_metrics_from_crop(p_arr[crop] == value, r_arr[crop] == value, pred.spacing,
                                       [c.start for c in crop], tau, value, name))
    return rows


def per_slice_dice(pred: np.ndarray, ref: np.ndarray, axis: int = 2) -> np.ndarray:
    """Dice of each slice along ``axis``; NaN where both masks are empty in that slice.

    Args:
        pred, ref: bool (or 0/1) masks of one shape, indexed ``[i, j, k]``.
        axis: slice axis (2 = k, the usual axial slice axis of medseg volumes).

    Returns:
        float64 array of length ``pred.shape[axis]``.
    """
    p, r, _ = check_pair(pred, ref, [1.0] * np.ndim(pred))
    if not -p.ndim <= axis < p.ndim:
        raise MetricInputError(f"axis {axis} does not exist for masks of shape {p.shape}.")
    others = tuple(a for a in range(p.ndim) if a != axis % p.ndim)
    inter = np.count_nonzero(p & r, axis=others).astype(np.float64)
    total = (np.count_nonzero(p, axis=others) + np.count_nonzero(r, axis=others)).astype(
        np.float64)
    out = np.full(total.shape, np.nan)
    np.divide(2.0 * inter, total, out=out, where=total > 0)
    return out
