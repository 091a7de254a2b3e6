"""Decode a DICOM-SEG (BINARY, FRACTIONAL or LABELMAP) into per-segment Volumes.

Every frame is placed by its own PlanePositionSequence/ImagePositionPatient and the
orientation/pixel spacing of its functional groups (LPS mm), never by frame order. Frame pixel
``(row r, column c)`` lies at ``IPP + c * PixelSpacing[1] * IOP[0:3] + r * PixelSpacing[0] *
IOP[3:6]``. With a reference Volume the frames must fall on its voxel centres (axes may be
permuted/flipped, e.g. an LPS SEG onto a RAS NIfTI grid); without one, the grid is the SEG's own:
``i`` along IOP[0:3], ``j`` along IOP[3:6], ``k`` along their cross product, spanning the
frames' positions (slices between frames with no segment are empty).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from medseg.errors import (
    CorruptFileError,
    GeometryError,
    GeometryMismatchError,
    UnsupportedFormatError,
)
from medseg.volume import Volume

__all__ = ["SEG_SOP_CLASSES", "read_segments"]

SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
                   "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage"}
#: Largest distance (in voxels) of a frame position from a voxel centre of the target grid.
INDEX_TOL = 0.05


def _group(ds: Dataset, frame: int, seq: str) -> Dataset | None:
    """Item of functional-group sequence ``seq`` for ``frame`` (per-frame wins over shared)."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per and frame < len(per) and seq in per[frame] and per[frame][seq].value:
        return per[frame][seq].value[0]  # type: ignore[no-any-return]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and seq in shared[0] and shared[0][seq].value:
        return shared[0][seq].value[0]  # type: ignore[no-any-return]
    return None


def _frame_geometry(ds: Dataset, path: Path) -> tuple[npt.NDArray[np.float64],
                                                        npt.NDArray[np.float64],
                                                        tuple[float, float], float | None]:
    """Positions (F, 3), orientation (6,), (row, column) spacing, spacing between slices."""
    n = int(ds.get("NumberOfFrames", 1))
    positions = []
    for f in range(n):
        pos = _group(ds, f, "PlanePositionSequence")
        if pos is None or "ImagePositionPatient" not in pos:
            raise CorruptFileError(f"{path}: frame {f + 1} has no ImagePositionPatient, so the "
                                   "segmentation cannot be placed in space.")
        positions.append([float(v) for v in pos.ImagePositionPatient])
    orient = _group(ds, 0, "PlaneOrientationSequence")
    measures = _group(ds, 0, "PixelMeasuresSequence")
    if orient is None or measures is None or "PixelSpacing" not in measures:
        raise CorruptFileError(f"{path}: missing PlaneOrientationSequence or "
                               "PixelMeasuresSequence; the file is not a complete DICOM-SEG.")
    iop = np.array([float(v) for v in orient.ImageOrientationPatient])
    ps = measures.PixelSpacing
    between = measures.get("SpacingBetweenSlices") or measures.get("SliceThickness")
    return (np.asarray(positions), iop, (float(ps[0]), float(ps[1])),
            float(between) if between else None)


def _own_grid(positions: npt.NDArray[np.float64], iop: npt.NDArray[np.float64],
              spacing_rc: tuple[float, float], between: float | None, rows: int, cols: int,
              path: Path) -> Volume:
    """The grid spanned by the frames (empty array): i along IOP[:3], k along the normal."""
    r, c = iop[:3], iop[3:]
    normal = np.cross(r, c)
    d = positions @ normal
    inplane = positions - np.outer(d, normal)
    if np.abs(inplane - inplane[0]).max() > 1e-3 * max(spacing_rc):
        raise GeometryError(f"{path}: frames are shifted within their plane; pass the source "
                            "image as reference to place them.")
    levels = np.unique(np.round(d, 4))
    steps = np.diff(levels)
    step = float(steps.min()) if steps.size else (between or 1.0)
    if between and steps.size and np.all(np.abs(steps / between - np.round(steps / between))
                                         < 0.02):
        step = between
    k = np.round((levels - levels[0]) / step)
    if np.abs((levels - levels[0]) / step - k).max() > 0.02:
        raise GeometryError(f"{path}: frame positions are not on a regular slice grid; pass "
                            "the source image as reference.")
    origin = inplane[0] + levels[0] * normal
    direction = np.stack([r, c, normal], axis=1)
    shape = (cols, rows, int(k[-1]) + 1)
    return Volume(np.zeros(shape, dtype=np.uint8), (spacing_rc[1], spacing_rc[0], step),
                  tuple(origin), direction)


def _axis_step(grid: Volume, vec: npt.NDArray[np.float64], what: str) -> tuple[int, int]:
    """The grid axis and sign (+1/-1) that world step ``vec`` advances by exactly one voxel."""
    steps = np.linalg.solve(grid.affine_lps[:3, :3], vec)
    axis = int(np.argmax(np.abs(steps)))
    unit = np.zeros(3)
    unit[axis] = np.sign(steps[axis])
    if np.abs(steps - unit).max() > INDEX_TOL:
        raise GeometryMismatchError(
            f"The SEG's {what} (one pixel = {np.round(steps, 3).tolist()} voxels of the "
            "reference) does not follow the reference grid's axes and spacing. Pass the image "
            "series the segmentation was made on as reference, or none to use the SEG's grid.")
    return axis, int(unit[axis])


def _place(out: npt.NDArray[Any], frame: npt.NDArray[Any], grid: Volume,
           pos: npt.NDArray[np.float64], col_ax: tuple[int, int], row_ax: tuple[int, int],
           path: Path) -> None:
    """Write ``frame`` (rows, cols) into ``out`` (I, J, K) at world position ``pos``."""
    base = grid.world_to_index(pos)
    if np.abs(base - np.round(base)).max() > INDEX_TOL:
        raise GeometryMismatchError(
            f"{path}: a frame at {np.round(pos, 3).tolist()} mm (LPS) falls between voxel "
            f"centres of the reference (index {np.round(base, 3).tolist()}). Pass the series "
            "the SEG was made on as reference.")
    base_i = np.round(base).astype(int)
    rows, cols = frame.shape
    idx = [np.full((1, 1), base_i[a]) for a in range(3)]
    idx[col_ax[0]] = base_i[col_ax[0]] + col_ax[1] * np.arange(cols)[None, :]
    idx[row_ax[0]] = base_i[row_ax[0]] + row_ax[1] * np.arange(rows)[:, None]
    full = np.broadcast_arrays(*idx)
    inside = np.ones(frame.shape, dtype=bool)
    for a in range(3):
        inside &= (full[a] >= 0) & (full[a] < out.shape[a])
    if np.any(frame[~inside]):
        raise GeometryMismatchError(
            f"{path}: part of the segmentation lies outside the reference grid "
            f"{out.shape}. Pass the series the SEG was made on as reference.")
    out[full[0][inside], full[1][inside], full[2][inside]] = frame[inside]


def _segment_meta(item: Dataset) -> dict[str, Any]:
    def code(seq: str) -> str | None:
        if seq in item and item[seq].value:
            c = item[seq].value[0]
            return f"{c.get('CodingSchemeDesignator', '')} {c.get('CodeValue', '')} " \
                   f"{c.get('CodeMeaning', '')}".strip()
        return None

    algo = item.get("SegmentationAlgorithmIdentificationSequence")
    return {"number": int(item.SegmentNumber), "label": str(item.get("SegmentLabel", "")),
            "category": code("SegmentedPropertyCategoryCodeSequence"),
            "type": code("SegmentedPropertyTypeCodeSequence"),
            "algorithm_type": str(item.get("SegmentAlgorithmType", "")),
            "algorithm_name": str(algo[0].AlgorithmName) if algo else None}


def read_segments(path: str | Path, reference: Volume | None = None) -> list[Volume]:
    """One Volume per segment, in SegmentSequence order (see module docstring for placement).

    BINARY and LABELMAP segments are uint8 0/1 label maps (``labels={1: SegmentLabel}``);
    FRACTIONAL ones float32 in [0, 1] (``labels=None``). ``meta["segment"]`` holds number,
    label, codes and algorithm of the segment; ``meta["path"]`` the file.
    """
    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:  # pydicom raises many types for broken files
        raise CorruptFileError(f"{p}: not a readable DICOM file ({exc}).") from exc
    if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise UnsupportedFormatError(f"{p}: not a DICOM Segmentation (SOP class "
                                     f"{ds.get('SOPClassUID', 'missing')}).")
    positions, iop, spacing_rc, between = _frame_geometry(ds, p)
    pixels = ds.pixel_array
    pixels = pixels.reshape((-1, int(ds.Rows), int(ds.Columns)))
    grid = reference if reference is not None else _own_grid(
        positions, iop, spacing_rc, between, int(ds.Rows), int(ds.Columns), p)
    col_ax = _axis_step(grid, iop[:3] * spacing_rc[1], "column direction")
    row_ax = _axis_step(grid, iop[3:] * spacing_rc[0], "row direction")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    scale = float(ds.get("MaximumFractionalValue", 255)) if seg_type == "FRACTIONAL" else 1.0
    out: list[Volume] = []
    for item in ds.SegmentSequence:
        meta = _segment_meta(item)
        number = meta["number"]
        arr = np.zeros(grid.shape, dtype=np.float32 if seg_type == "FRACTIONAL" else np.uint8)
        for f in range(pixels.shape[0]):
            if seg_type == "LABELMAP":
                frame = (pixels[f] == number).astype(np.uint8)
            else:
                ident = _group(ds, f, "SegmentIdentificationSequence")
                if ident is None or int(ident.ReferencedSegmentNumber) != number:
                    continue
                frame = pixels[f] / scale if seg_type == "FRACTIONAL" else (pixels[f] > 0)
            _place(arr, np.asarray(frame, dtype=arr.dtype), grid, positions[f], col_ax,
                   row_ax, p)
        labels = None if seg_type == "FRACTIONAL" else {1: meta["label"] or f"segment_{number}"}
        out.append(Volume(arr, grid.spacing, grid.origin, grid.direction, modality="SEG",
                          labels=labels, meta={"segment": meta, "path": str(p)}))
    return out
