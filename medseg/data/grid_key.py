"""Voxel grids read from headers only, to tell which files share a grid without reading voxels.

A :class:`GridKey` is the size, spacing, origin and direction of a voxel grid in LPS
millimetres (ITK's convention, also DICOM's), from a file header (NIfTI, NRRD, MetaImage
through SimpleITK's ``ReadImageInformation``, which reads no voxel data) or from the
headers of a DICOM image series (``ImagePositionPatient``, ``ImageOrientationPatient``,
``PixelSpacing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GridKey", "dicom_series_grid", "file_grid"]

#: millimetres two origins may differ by and still be one grid (rounding in headers)
ORIGIN_TOL_MM = 0.05
SPACING_TOL = 1e-3
DIRECTION_TOL = 1e-3


@dataclass(frozen=True)
class GridKey:
    """A voxel grid: ``size`` (i, j, k), ``spacing`` mm, ``origin`` LPS mm of voxel 0, and
    ``direction`` (row-major 3x3, columns = axis directions in LPS)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def canonical(self) -> GridKey:
        """The same voxel centres with axes flipped and permuted so that each axis points
        along the positive LPS axis it is closest to (a label map stored with a flipped or
        transposed axis, which ``Volume.conform_to`` maps exactly, is still the same grid)."""
        d = np.asarray(self.direction, float).reshape(3, 3)
        origin = np.asarray(self.origin, float)
        cols, sizes, spacings = [], [], []
        for ax in range(3):
            vec = d[:, ax]
            if vec[int(np.argmax(np.abs(vec)))] < 0:
                origin = origin + (self.size[ax] - 1) * self.spacing[ax] * vec
                vec = -vec
            cols.append(vec)
            sizes.append(self.size[ax])
            spacings.append(self.spacing[ax])
        order = sorted(range(3), key=lambda a: int(np.argmax(np.abs(cols[a]))))
        direction = np.stack([cols[a] for a in order], axis=1)
        return GridKey(tuple(sizes[a] for a in order), tuple(spacings[a] for a in order),
                       tuple(float(x) for x in origin), tuple(float(x) for x in direction.ravel()))

    def matches(self, other: GridKey) -> bool:
        """The same voxel centres (after :meth:`canonical`): same sizes, spacing, origin and
        direction within the tolerances."""
        a, b = self.canonical(), other.canonical()
        if a.size != b.size:
            return False
        return (np.allclose(a.spacing, b.spacing, rtol=SPACING_TOL, atol=0)
                and np.allclose(a.origin, b.origin, atol=ORIGIN_TOL_MM, rtol=0)
                and np.allclose(a.direction, b.direction, atol=DIRECTION_TOL, rtol=0))


def file_grid(path: Path) -> tuple[GridKey, bool] | None:
    """``(grid, integer voxel type)`` from an image file's header, or None when unreadable.

    Only the header is parsed (SimpleITK ``ReadImageInformation``); detached data files
    named by a header are not opened.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) == 2:
        size = (*size, 1)
    if len(size) != 3:
        return None
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    integer = "integer" in pixel and reader.GetNumberOfComponents() == 1
    spacing = tuple(float(s) for s in reader.GetSpacing())
    origin = tuple(float(s) for s in reader.GetOrigin())
    direction = tuple(float(s) for s in reader.GetDirection())
    if len(spacing) == 2:
        spacing, origin = (*spacing, 1.0), (*origin, 0.0)
        d = direction
        direction = (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0)
    return GridKey(size, spacing, origin, direction), integer


def dicom_series_grid(files: Sequence[Path]) -> GridKey | None:
    """The grid of one DICOM image series (its files, any order), or None when the headers
    lack geometry or the slices are not one evenly stacked grid."""
    import pydicom

    tags = ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
            "Columns"]
    heads = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=tags)
            heads.append((np.asarray(ds.ImagePositionPatient, float),
                          np.asarray(ds.ImageOrientationPatient, float),
                          np.asarray(ds.PixelSpacing, float), int(ds.Rows), int(ds.Columns)))
        except (AttributeError, ValueError, TypeError, OSError, pydicom.errors.InvalidDicomError):
            return None
    if not heads:
        return None
    iop, ps, rows, cols = heads[0][1], heads[0][2], heads[0][3], heads[0][4]
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    positions = sorted((h[0] for h in heads), key=lambda p: float(p @ normal))
    gap = float((positions[-1] - positions[0]) @ normal) / (len(positions) - 1) \
        if len(positions) > 1 else 1.0
    direction = np.stack([row_dir, col_dir, normal], axis=1)  # columns: i, j, k
    return GridKey((cols, rows, len(positions)), (float(ps[1]), float(ps[0]), abs(gap) or 1.0),
                   tuple(float(x) for x in positions[0]),
                   tuple(float(x) for x in direction.ravel()))
