"""Geometry of a DICOM series: one record per 2D slice, sorted and checked before any decoding.

Rule: slices are sorted by their position along the slice normal ``n = row x col`` (the cross
product of the two direction cosines of ImageOrientationPatient), never by file name or
InstanceNumber. The voxel grid is then ``array[i, j, k]`` with ``i`` along the row direction
(``IOP[0:3]``, the pixel column index), ``j`` along ``IOP[3:6]`` and ``k`` along ``n``;
spacing ``(PixelSpacing[1], PixelSpacing[0], step)``; origin = ImagePositionPatient of the
first sorted slice; all in the DICOM LPS patient frame (mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from medseg.errors import (
    GantryTiltError,
    GeometryError,
    InconsistentSeriesError,
    SliceSpacingError,
)
from medseg.volume import ORTHONORMAL_TOL

#: Two slices closer than this along the normal (mm) occupy the same position.
DUPLICATE_TOL_MM = 0.01
#: Largest in-plane offset (mm) of a slice position from the stack's mean line along the normal
#: before the series counts as gantry-tilted (covers positions rounded to 0.01 mm).
TILT_TOL_MM = 0.05
#: Largest deviation of a slice from the uniform grid, as a fraction of the step ...
UNEVEN_TOL_REL = 0.02
#: ... but never less than this many mm (covers positions rounded to 0.01 mm).
UNEVEN_TOL_MM = 0.02
#: Cosines of two slices differing by more than this mean a different orientation.
ORIENT_TOL = 1e-3
#: Relative tolerance on PixelSpacing equality between slices.
SPACING_TOL_REL = 1e-4


@dataclass
class SliceGeom:
    """Geometry and rescale of one 2D slice (a single-frame file or one frame of a multi-frame).

    ``ipp``: ImagePositionPatient (3,) LPS mm; ``iop``: ImageOrientationPatient (6,);
    ``pixel_spacing``: (row spacing, column spacing) as in the header, i.e. (j, i) spacing.
    ``item``: index of the dataset/file; ``frame``: 1-based frame number or ``None``.
    """

    name: str
    item: int
    frame: int | None
    ipp: npt.NDArray[np.float64] | None
    iop: npt.NDArray[np.float64] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    slope: float = 1.0
    intercept: float = 0.0
    thickness: float | None = None
    between: float | None = None

    @property
    def label(self) -> str:
        return self.name if self.frame is None else f"{self.name} (frame {self.frame})"


@dataclass
class Grid:
    """Result of sorting: ``order[k]`` is the index (into the input list) of slice ``k``."""

    order: list[int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: npt.NDArray[np.float64]


def _floats(value: Any, n: int) -> npt.NDArray[np.float64] | None:
    if value is None:
        return None
    if isinstance(value, bytes):  # raw DS value: parsing it directly is ~10x faster
        value = value.replace(b"\x00", b"").split(b"\\")
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _raw(ds: Dataset, keyword: str) -> Any:
    """Value of a top-level element, as raw bytes when pydicom has not converted it yet."""
    return ds.get_item(keyword).value if keyword in ds else None


def _num(value: Any, default: float | None) -> float | None:
    """A finite float from a DS value (also raw bytes), else ``default``."""
    if isinstance(value, bytes):
        value = value.strip(b"\x00 ")
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if np.isfinite(out) else default


def slice_from_dataset(ds: Dataset, name: str, item: int) -> SliceGeom:
    """Geometry of a classic single-frame image (attributes at the top level)."""
    ps = _floats(_raw(ds, "PixelSpacing"), 2)
    return SliceGeom(
        name=name, item=item, frame=None,
        ipp=_floats(_raw(ds, "ImagePositionPatient"), 3),
        iop=_floats(_raw(ds, "ImageOrientationPatient"), 6),
        pixel_spacing=None if ps is None else (float(ps[0]), float(ps[1])),
        rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
        slope=_num(_raw(ds, "RescaleSlope"), 1.0) or 1.0,
        intercept=_num(_raw(ds, "RescaleIntercept"), 0.0) or 0.0,
        thickness=_num(_raw(ds, "SliceThickness"), None),
        between=_num(_raw(ds, "SpacingBetweenSlices"), None),
    )


def _fg(groups: list[Dataset | None], seq: str, attr: str) -> Any:
    """First value of ``seq[0].attr`` in the functional groups, per-frame before shared."""
    for grp in groups:
        if grp is not None and seq in grp and len(grp[seq].value) and attr in grp[seq].value[0]:
            return grp[seq].value[0][attr].value
    return None


def slices_from_multiframe(ds: Dataset, name: str, item: int = 0) -> list[SliceGeom]:
    """One record per frame of an enhanced multi-frame image (per-frame groups override shared).

    Geometry comes from PlanePositionSequence, PlaneOrientationSequence and PixelMeasuresSequence,
    rescale from PixelValueTransformationSequence (falling back to top-level Rescale*).
    """
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") \
        else None
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per_frame) != n_frames:
        raise InconsistentSeriesError(
            f"{name}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has "
            f"{len(per_frame)} items. The multi-frame header is inconsistent; re-export it."
        )
    out = []
    for f, frame_group in enumerate(per_frame):
        groups = [frame_group, shared]
        ps = _floats(_fg(groups, "PixelMeasuresSequence", "PixelSpacing"), 2)
        out.append(SliceGeom(
            name=name, item=item, frame=f + 1,
            ipp=_floats(_fg(groups, "PlanePositionSequence", "ImagePositionPatient"), 3),
            iop=_floats(_fg(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            pixel_spacing=None if ps is None else (float(ps[0]), float(ps[1])),
            rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
            slope=_num(_fg(groups, "PixelValueTransformationSequence", "RescaleSlope"),
                       _num(ds.get("RescaleSlope"), 1.0)) or 1.0,
            intercept=_num(_fg(groups, "PixelValueTransformationSequence", "RescaleIntercept"),
                           _num(ds.get("RescaleIntercept"), 0.0)) or 0.0,
            thickness=_num(_fg(groups, "PixelMeasuresSequence", "SliceThickness"), None),
            between=_num(_fg(groups, "PixelMeasuresSequence", "SpacingBetweenSlices"), None),
        ))
    return out


def _check_consistent(slices: list[SliceGeom], series: str) -> None:
    """Every slice has a position/orientation/spacing, and all share orientation and size."""
    for s in slices:
        missing = [n for n, v in (("ImagePositionPatient", s.ipp),
                                  ("ImageOrientationPatient", s.iop),
                                  ("PixelSpacing", s.pixel_spacing)) if v is None]
        if missing:
            raise GeometryError(
                f"{s.label}: no valid {' / '.join(missing)}, so its place in space is unknown. "
                f"medseg cannot build a 3D volume from series {series} without it; remove this "
                "file or re-export the series from the scanner/PACS."
            )
        spacing = s.pixel_spacing or (0.0, 0.0)
        if min(spacing) <= 0:
            raise GeometryError(
                f"{s.label}: PixelSpacing {list(spacing)} (row, column mm) must be two positive "
                "numbers; the header is damaged. Remove this file or re-export the series "
                f"{series} from the scanner/PACS.")
    ref = slices[0]
    ref_iop = np.asarray(ref.iop)
    ref_ps = np.asarray(ref.pixel_spacing)
    for s in slices[1:]:
        what = None
        if np.abs(np.asarray(s.iop) - ref_iop).max() > ORIENT_TOL:
            what = f"orientation {_fmt(s.iop)} vs {_fmt(ref_iop)}"
        elif (s.rows, s.columns) != (ref.rows, ref.columns):
            what = f"size {s.rows}x{s.columns} vs {ref.rows}x{ref.columns} (rows x columns)"
        elif np.abs(np.asarray(s.pixel_spacing) - ref_ps).max() > \
                SPACING_TOL_REL * max(1.0, float(ref_ps.max())):
            what = f"pixel spacing {s.pixel_spacing} vs {ref.pixel_spacing} mm"
        if what:
            raise InconsistentSeriesError(
                f"Series {series}: {s.label} and {ref.label} differ in {what}. One series must "
                "hold slices of one stack; split the files into separate folders (or pass the "
                "right --series) and read each stack on its own."
            )


def _axes(iop: npt.NDArray[np.float64], label: str) -> npt.NDArray[np.float64]:
    """Direction matrix (columns: row cosine, column cosine, normal), checked orthonormal."""
    row, col = iop[:3], iop[3:]
    err = max(abs(float(np.linalg.norm(row)) - 1.0), abs(float(np.linalg.norm(col)) - 1.0),
              abs(float(row @ col)))
    if err > ORTHONORMAL_TOL:
        raise GeometryError(
            f"{label}: ImageOrientationPatient {_fmt(iop)} is not two orthogonal unit vectors "
            f"(error {err:.3g}). The header is corrupt or the grid is sheared; medseg refuses "
            "to guess. Fix the header or resample the series onto an orthogonal grid."
        )
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return np.stack([row, col, np.cross(row, col)], axis=1)


def sort_slices(slices: list[SliceGeom], series: str) -> Grid:
    """Sort slices along the normal and check the stack is a regular, untilted grid.

    Raises :class:`InconsistentSeriesError`, :class:`GeometryError`, :class:`SliceSpacingError`
    (duplicate positions, missing slices, uneven spacing) or :class:`GantryTiltError`.
    """
    if not slices:
        raise SliceSpacingError(f"Series {series} has no slices.")
    _check_consistent(slices, series)
    direction = _axes(np.asarray(slices[0].iop), slices[0].label)
    normal = direction[:, 2]
    pos = np.stack([s.ipp for s in slices])  # type: ignore[misc]
    dist = pos @ normal
    order = [int(i) for i in np.argsort(dist, kind="stable")]
    d, p = dist[order], pos[order]
    ps = slices[0].pixel_spacing
    assert ps is not None
    if len(order) == 1:
        step = _single_slice_step(slices[0])
    else:
        _check_duplicates(d, [slices[i] for i in order], series)
        _check_tilt(p, normal, series)
        _check_steps(d, p, normal, [slices[i] for i in order], series)
        step = float((d[-1] - d[0]) / (len(d) - 1))
    return Grid(order=order, spacing=(ps[1], ps[0], step),
                origin=tuple(float(x) for x in p[0]),  # type: ignore[arg-type]
                direction=direction)


def _single_slice_step(s: SliceGeom) -> float:
    """Slice step of a one-slice series: SpacingBetweenSlices, else SliceThickness, else 1 mm."""
    for value in (s.between, s.thickness):
        if value is not None and value > 0:
            return float(value)
    return 1.0


def _check_duplicates(d: npt.NDArray[np.float64], ordered: list[SliceGeom], series: str) -> None:
    steps = np.diff(d)
    dup = np.flatnonzero(steps < DUPLICATE_TOL_MM)
    if dup.size:
        k = int(dup[0])
        raise SliceSpacingError(
            f"Series {series}: {ordered[k].label} and {ordered[k + 1].label} lie at the same "
            f"position ({d[k]:.4g} mm along the slice normal); {dup.size} duplicate position(s) in "
            "all. The series mixes several stacks (echoes, phases, repeated scans) or holds copies "
            "of a slice; remove the duplicates or split the stacks into separate folders."
        )


def _check_tilt(p: npt.NDArray[np.float64], normal: npt.NDArray[np.float64], series: str) -> None:
    offsets = p - p[0]
    along = offsets @ normal
    perp = offsets - np.outer(along, normal)
    dev = np.linalg.norm(perp - perp.mean(axis=0), axis=1)
    if dev.max() > TILT_TOL_MM:
        last = offsets[-1]
        angle = float(np.degrees(np.arctan2(np.linalg.norm(perp[-1]), abs(last @ normal))))
        raise GantryTiltError(
            f"Series {series}: slice positions drift within the slice plane (up to "
            f"{dev.max():.3g} mm off the stack axis), i.e. the stack is tilted {angle:.2f} deg "
            "from the slice normal (gantry tilt). medseg reads only orthogonal grids; resample "
            "the series first (e.g. dcm2niix corrects gantry tilt) and read the result."
        )


def _check_steps(d: npt.NDArray[np.float64], p: npt.NDArray[np.float64],
                 normal: npt.NDArray[np.float64], ordered: list[SliceGeom], series: str) -> None:
    steps = np.diff(d)
    median = float(np.median(steps))
    tol = max(UNEVEN_TOL_MM, UNEVEN_TOL_REL * median)
    for k, s in enumerate(steps):
        ratio = s / median
        n_missing = round(ratio) - 1
        if n_missing >= 1 and abs(s - round(ratio) * median) <= max(tol, 0.1 * median):
            where = [p[k] + normal * median * (m + 1) for m in range(n_missing)]
            raise SliceSpacingError(
                f"Series {series}: {n_missing} slice(s) missing between {ordered[k].label} "
                f"and {ordered[k + 1].label}: the gap is {s:.4g} mm where the step is "
                f"{median:.4g} mm; missing position(s) (LPS mm) "
                + ", ".join(_fmt(w) for w in where)
                + ". Find the missing file(s) (incomplete transfer?) and read the complete series."
            )
    uniform = d[0] + np.arange(len(d)) * (d[-1] - d[0]) / (len(d) - 1)
    dev = np.abs(d - uniform)
    if dev.max() > tol:
        k = int(np.argmax(np.abs(steps - median)))
        raise SliceSpacingError(
            f"Series {series}: slice spacing is uneven (steps from {steps.min():.4g} to "
            f"{steps.max():.4g} mm; {ordered[k].label} -> {ordered[k + 1].label} is "
            f"{steps[k]:.4g} mm); a slice lies {dev.max():.3g} mm off a regular grid "
            f"(tolerance {tol:.3g} mm). medseg does not interpolate; resample the series onto a "
            "regular grid first (e.g. with dcm2niix or 3D Slicer)."
        )


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
