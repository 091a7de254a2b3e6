"""Geometry read from a file header, checked before it becomes a :class:`~medseg.volume.Volume`.

Readers call :func:`check_grid` with the spacing, origin and direction they derived, and the
name of the header field(s) they came from, so a NaN, a zero-length axis or a sheared grid is
refused with a message naming the file and the field (``Volume`` itself would refuse them too,
but could not say which file or field is at fault).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medseg.errors import GeometryError
from medseg.volume import ORTHONORMAL_TOL

__all__ = ["check_affine", "check_grid"]


def check_grid(path: object, spacing: npt.ArrayLike, origin: npt.ArrayLike,
               direction: npt.ArrayLike, *, source: str) -> None:
    """Spacing finite and > 0, origin finite, direction finite and orthonormal (within tol)."""
    sp = np.asarray(spacing, dtype=np.float64)
    for i, s in enumerate(sp):
        if not np.isfinite(s) or s <= 0:
            raise GeometryError(
                f"{path}: voxel spacing along axis {i} is {s:g} (from {source}); it must be a "
                "positive number of mm. Fix the header or re-export the image.")
    if not np.all(np.isfinite(np.asarray(origin, dtype=np.float64))):
        raise GeometryError(f"{path}: the origin from {source} is not finite "
                            f"({np.asarray(origin).tolist()}). Fix the header or re-export the "
                            "image.")
    d = np.asarray(direction, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise GeometryError(f"{path}: the direction from {source} holds NaN or infinite values. "
                            "Fix the header or re-export the image.")
    err = float(np.abs(d.T @ d - np.eye(d.shape[0])).max())
    if err > ORTHONORMAL_TOL:
        raise GeometryError(
            f"{path}: the axes from {source} are not orthogonal unit directions (max |D^T D - I| "
            f"= {err:.3g}): the grid is sheared or degenerate, which medseg cannot represent. "
            "Fix the header, or resample the image onto an orthogonal grid first.")


def check_affine(path: object, affine: npt.ArrayLike, *, source: str) -> None:
    """A 4x4 voxel-to-world affine: finite, no zero-length axis, orthogonal axes."""
    a = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise GeometryError(f"{path}: the {source} holds NaN or infinite values. Fix the header "
                            "or re-export the image.")
    m = a[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    for i, n in enumerate(norms):
        if n <= 0:
            raise GeometryError(
                f"{path}: the {source} is singular (axis {i} has zero length), so voxel size "
                "and orientation are unknown. Fix the header or re-export the image.")
    check_grid(path, norms, a[:3, 3], m / norms, source=source)
