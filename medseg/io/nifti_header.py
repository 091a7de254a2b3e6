"""Geometry of a NIfTI-1/2 or Analyze header, from the header bytes as stored in the file.

nibabel repairs some header fields when it loads them (``pixdim`` 0 becomes 1, a negative one its
absolute value, with only a log line); medseg decides from the raw values instead:

1. ``sform_code > 0``: the sform (``srow_x/y/z``) is the geometry; it must be finite, non-singular
   and orthogonal. ``pixdim`` is then irrelevant (the NIfTI standard) and not checked. A broken
   sform is refused even when the qform is valid (the header says the sform is meant); the
   message says so and how to switch to the qform.
2. else ``qform_code > 0``: the qform, built from ``quatern_b/c/d``, ``qoffset_x/y/z``,
   ``pixdim[0]`` (qfac) and ``pixdim[1..3]``; those must be finite and ``pixdim[i] > 0``.
3. else (or Analyze 7.5, which has no sform/qform): ``pixdim`` scaling only, no rotation;
   ``pixdim[i]`` must be finite and > 0.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt

from medseg.errors import CorruptFileError, GeometryError
from medseg.io.grid_checks import check_affine
from medseg.io.voxels import check_declared_size

__all__ = ["affine_and_source", "check_data_size", "raw_header"]

_SFORM = "sform (srow_x/srow_y/srow_z)"


def raw_header(block: bytes, path: object) -> np.ndarray:
    """The header fields exactly as stored (NIfTI-1/Analyze layout for 348 bytes, NIfTI-2 for
    540), in the file's byte order; nibabel's repairs are not applied."""
    for order in ("<", ">"):
        size = int.from_bytes(block[:4], "little" if order == "<" else "big")
        if size in (348, 540) and len(block) >= size:
            dtype = (nib.nifti1.header_dtype if size == 348 else nib.nifti2.header_dtype)
            return np.frombuffer(block[:size], dtype=dtype.newbyteorder(order))[0]
    raise CorruptFileError(f"{path}: the header does not start with a NIfTI/Analyze size "
                           "(348 or 540); the file is damaged or not NIfTI/Analyze.")


def is_nifti_magic(raw: np.ndarray) -> bool:
    """True for a NIfTI header (``n+1``/``ni1``/``n+2``/``ni2``), False for Analyze 7.5."""
    return bytes(raw["magic"])[:3] in (b"n+1", b"ni1", b"n+2", b"ni2")


def _check_pixdim(raw: np.ndarray, path: object, used_by: str) -> None:
    ndim = int(raw["dim"][0])
    for i in range(1, min(max(ndim, 1), 3) + 1):
        v = float(raw["pixdim"][i])
        if not np.isfinite(v) or v <= 0:
            raise GeometryError(
                f"{path}: pixdim[{i}] is {v:g}, but {used_by} uses it as the voxel size along "
                f"axis {i - 1}, so it must be a positive number of mm (nibabel would silently use "
                "1 or its absolute value). Fix pixdim in the header or re-export the image.")


def _qform_fields_ok(raw: np.ndarray) -> bool:
    vals = [float(raw[k]) for k in ("quatern_b", "quatern_c", "quatern_d",
                                    "qoffset_x", "qoffset_y", "qoffset_z")]
    bcd = np.asarray(vals[:3])
    return bool(np.all(np.isfinite(vals)) and bcd @ bcd <= 1 + 1e-5
                and float(raw["pixdim"][0]) in (-1.0, 0.0, 1.0))


def _qform(img: Any, raw: np.ndarray, path: object) -> npt.NDArray[np.float64]:
    _check_pixdim(raw, path, "the qform")
    if not _qform_fields_ok(raw):
        raise GeometryError(
            f"{path}: the qform (quatern_b/c/d, qoffset_x/y/z, qfac pixdim[0]) holds NaN, "
            "infinite or impossible values (b^2+c^2+d^2 > 1, qfac not +/-1). Fix the header or "
            "re-export the image.")
    qform = np.asarray(img.header.get_qform(), dtype=np.float64)
    check_affine(path, qform, source="qform (quatern_b/c/d, qoffset_x/y/z, pixdim)")
    return qform


def _sform(raw: np.ndarray, img: Any, path: object) -> npt.NDArray[np.float64]:
    sform = np.eye(4)
    sform[:3] = np.stack([raw["srow_x"], raw["srow_y"], raw["srow_z"]]).astype(np.float64)
    try:
        check_affine(path, sform, source=_SFORM)
    except GeometryError as exc:
        qcode = int(raw["qform_code"])
        hint = ""
        if qcode > 0:
            try:
                _qform(img, raw, path)
                hint = (f" Its qform (qform_code {qcode}) is valid: set sform_code to 0 to use "
                        "it, if it is right.")
            except GeometryError:
                hint = " Its qform is not valid either."
        raise GeometryError(f"{exc}{hint}") from None
    return sform


def affine_and_source(img: Any, raw: np.ndarray, path: object
                      ) -> tuple[npt.NDArray[np.float64], str]:
    """The RAS voxel-to-world affine and where it came from: ``sform``, ``qform``, ``fallback``
    (NIfTI without either) or ``analyze`` (Analyze 7.5, pixdim only); refused when invalid.

    ``img`` is a nibabel NIfTI-1/2 image or pair, or an Analyze image; ``raw`` its header fields
    as stored (:func:`raw_header`)."""
    if not is_nifti_magic(raw):
        _check_pixdim(raw, path, "an Analyze header")
        affine = np.asarray(img.header.get_base_affine(), dtype=np.float64)
        check_affine(path, affine, source="pixdim")
        return affine, "analyze"
    if int(raw["sform_code"]) > 0:
        return _sform(raw, img, path), "sform"
    if int(raw["qform_code"]) > 0:
        return _qform(img, raw, path), "qform"
    _check_pixdim(raw, path, "a header without sform or qform")
    affine = np.asarray(img.header.get_base_affine(), dtype=np.float64)
    check_affine(path, affine, source="pixdim")
    return affine, "fallback"


def check_data_size(raw: np.ndarray, path: object, available: int | None) -> None:
    """Refuse, before nibabel allocates anything, voxel data the header declares but the file
    cannot hold (``available`` bytes after the header; ``None`` for compressed files) or that
    exceeds this machine's physical memory (see :func:`medseg.io.voxels.check_declared_size`)."""
    ndim = int(raw["dim"][0])
    dims = [int(d) for d in raw["dim"][1:1 + ndim]] if 0 < ndim <= 7 else []
    if not dims or any(d < 0 for d in dims):
        raise CorruptFileError(f"{path}: the header's dim field {list(raw['dim'])} gives no "
                               "valid image size; the file is damaged or not NIfTI/Analyze.")
    check_declared_size(dims, max(int(raw["bitpix"]), 8) // 8, path, available)
