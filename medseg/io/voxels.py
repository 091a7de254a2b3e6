"""What voxel types medseg accepts from a file, and how each is read (one policy, every reader).

- uint8/int8/uint16/int16/uint32/int32, float32/float64: as stored (native byte order).
- bool: uint8. float16: float32 (exact; what torch on CPU and every writer take).
- int64/uint64 with every value in int32's range: int32 (exact; uint64 breaks torch and NIfTI
  writing, int32 goes everywhere). Beyond int32: refused (a narrowing would change values).
- complex: refused (magnitude or real part is the user's choice).
- RGB/RGBA (NIfTI RGB24/RGBA32, any structured type): refused (one scalar per voxel).
- NaN or +/-Inf: refused, or replaced by 0 with ``nan="zero"`` (they corrupt normalisation
  and metrics).

The table in ``docs/io.md`` gives the reasons.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from medseg.errors import CorruptFileError, InvalidImageError

__all__ = ["NAN_POLICIES", "check_declared_size", "check_voxels", "writable_array"]

NAN_POLICIES = ("error", "zero")
_I32 = np.iinfo(np.int32)


def check_voxels(array: npt.NDArray[np.generic], path: object, *, nan: str = "error"
                 ) -> npt.NDArray[np.generic]:
    """``array`` converted by the table above, or :class:`InvalidImageError` naming ``path``.

    ``nan="zero"`` replaces NaN and +/-Inf voxels by 0 instead of refusing the file.
    """
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan must be one of {NAN_POLICIES}, got {nan!r}")
    dtype = array.dtype
    if dtype.fields is not None or dtype.kind == "V":
        raise InvalidImageError(
            f"{path}: RGB/colour voxels ({_dtype_name(array)}); medseg segments images with "
            "one scalar per voxel. Convert it to greyscale (or pick one channel) first.")
    if dtype.kind == "c":
        raise InvalidImageError(
            f"{path}: complex voxels ({dtype}); medseg needs real values. Save the magnitude "
            "(or the real part) as a float image first.")
    if dtype.kind not in "biuf":
        raise InvalidImageError(f"{path}: voxels of type {dtype} are not numbers medseg reads; "
                                "save the image with an integer or float voxel type.")
    if array.size == 0:
        raise InvalidImageError(f"{path}: the image has no voxels (shape {array.shape}); "
                                "check the header's dimensions or re-export the image.")
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    if dtype.kind == "b":
        return array.astype(np.uint8)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        return _narrow_64bit(array, path, "reads")
    if dtype.kind == "f":
        if dtype.itemsize < 4:
            array = array.astype(np.float32)
        return _finite(cast("npt.NDArray[np.floating]", array), path, nan)
    return array


def _dtype_name(array: npt.NDArray[np.generic]) -> str:
    names = array.dtype.names or ()
    return "".join(names) if names else str(array.dtype)


def _narrow_64bit(array: npt.NDArray[np.generic], path: object, verb: str
                  ) -> npt.NDArray[np.generic]:
    if array.size == 0:
        return array.astype(np.int32)
    lo, hi = int(array.min()), int(array.max())
    if lo < _I32.min or hi > _I32.max:
        raise InvalidImageError(
            f"{path}: 64-bit integer voxels from {lo} to {hi}, beyond the 32-bit range medseg "
            f"{verb} ({_I32.min}..{_I32.max}). Rescale the values or save them as float32.")
    return array.astype(np.int32)


def writable_array(array: npt.NDArray[np.generic], path: object) -> npt.NDArray[np.generic]:
    """``array`` in a voxel type every writer stores and :func:`check_voxels` reads back as is.

    bool -> uint8, float16 -> float32, int64/uint64 -> int32 when the values fit (else
    refused), byte order native; complex, structured (RGB) and non-numeric arrays are refused,
    so medseg never writes a file it would refuse to read.
    """
    dtype = array.dtype
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise InvalidImageError(
            f"{path}: cannot write voxels of type {dtype}; medseg writes one real number per "
            "voxel (convert complex or colour data to a scalar image first).")
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    if dtype.kind == "b":
        return array.astype(np.uint8)
    if dtype.kind == "f" and dtype.itemsize < 4:
        return array.astype(np.float32)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        return _narrow_64bit(array, path, "writes")
    return array


def _finite(array: npt.NDArray[np.floating], path: object, nan: str) -> npt.NDArray[np.floating]:
    bad = ~np.isfinite(array)
    n_bad = int(np.count_nonzero(bad))
    if not n_bad:
        return array
    if nan == "zero":
        out = np.array(array, copy=True)
        out[bad] = 0
        return out
    n_nan = int(np.count_nonzero(np.isnan(array)))
    kinds = " and ".join(w for w, n in (("NaN", n_nan), ("infinite", n_bad - n_nan)) if n)
    counts = f" ({n_nan} NaN, {n_bad - n_nan} infinite)" if n_nan and n_bad > n_nan else ""
    raise InvalidImageError(
        f"{path}: {n_bad} voxel(s) are {kinds}{counts}. medseg refuses them so they cannot corrupt "
        "normalisation or metrics; replace them with 0 (`medseg convert IN OUT --nan-to-zero`, "
        "or nan=\"zero\" in medseg.io.read) or fix the exporting tool.")


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_declared_size(shape: Sequence[int], itemsize: int, path: object,
                        available: int | None = None) -> None:
    """Refuse a header's voxel array before a library allocates it: no voxels, more bytes than
    this machine's physical memory (a 1 KB ``.nii.gz`` may declare terabytes, which nibabel
    would zero-fill), or more than the ``available`` bytes an uncompressed file holds."""
    if any(int(d) == 0 for d in shape):
        raise InvalidImageError(f"{path}: the image has no voxels (shape {tuple(shape)}); check "
                                "the header's dimensions or re-export the image.")
    declared = 1
    for d in shape:
        declared *= int(d)
    declared *= itemsize
    memory = _physical_memory()
    if memory is not None and declared > memory:
        raise InvalidImageError(
            f"{path}: the header declares {declared / 2**30:.1f} GiB of voxels {tuple(shape)}, "
            f"more than this machine's memory ({memory / 2**30:.1f} GiB). Check the header, or "
            "crop/downsample the image first.")
    if available is not None and available < declared:
        raise CorruptFileError(
            f"{path}: the header declares {declared} bytes of voxels but the file holds "
            f"{max(available, 0)}; it is truncated. Re-export or re-copy it.")
