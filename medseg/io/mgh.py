"""FreeSurfer MGH/MGZ volumes (``.mgh``, ``.mgz``) with nibabel.

Geometry: voxel sizes ``delta``, direction cosines ``Mdc`` and the RAS centre ``Pxyz_c``
give nibabel's RAS affine (checked: finite, ``delta > 0``, non-singular, orthogonal;
``meta["mgh_xform"] = "stored"``). A header whose ``goodRASFlag`` is 0 stores no orientation;
FreeSurfer (and nibabel) then define it as 1 mm coronal (LIA) centred on the volume, and medseg
reads it that way, recorded as ``meta["mgh_xform"] = "default"`` (like NIfTI's pixdim-only
fallback, such a file carries no reliable patient position). Frames beyond the first (4D) are
refused like 4D NIfTI. Voxel types follow :mod:`medseg.io.voxels`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import CorruptFileError, GeometryError, InvalidImageError, MedsegError
from medseg.io.grid_checks import check_affine
from medseg.io.labels import read_sidecar
from medseg.io.quiet import one_line
from medseg.io.voxels import check_declared_size, check_voxels
from medseg.volume import Volume

__all__ = ["MGH_EXT", "read_mgh"]

MGH_EXT = (".mgh", ".mgz")


def _raw_good_ras(p: Path) -> int:
    """``goodRASFlag`` as stored (nibabel replaces a 0 by FreeSurfer's default geometry)."""
    opener = gzip.open if p.name.lower().endswith(".mgz") else open
    with opener(p, "rb") as fh:
        head = fh.read(30)
    return int.from_bytes(head[28:30], "big", signed=True) if len(head) == 30 else 0


def _load(p: Path) -> tuple[nib.MGHImage, str]:
    try:
        img = nib.MGHImage.from_filename(str(p))
        delta = np.asarray(img.header["delta"], dtype=np.float64)
        source = "stored" if _raw_good_ras(p) > 0 else "default"
    except MedsegError:
        raise
    except Exception as exc:  # nibabel/gzip raise many types for bad files
        raise CorruptFileError(f"{p}: not a readable MGH/MGZ file ({type(exc).__name__}: "
                               f"{one_line(exc, 200)}). Check that the file is complete.") from exc
    available = None if p.name.lower().endswith(".mgz") else p.stat().st_size - 284
    check_declared_size(img.header.get_data_shape(), img.header.get_data_dtype().itemsize, p,
                        available)
    for i, d in enumerate(delta):
        if not np.isfinite(d) or d <= 0:
            raise GeometryError(f"{p}: delta[{i}] (voxel size) is {d:g}; it must be a positive "
                                "number of mm. Fix the header or re-export the image.")
    return img, source


def read_mgh(path: str | Path, *, nan: str = "error") -> Volume:
    """Read a 3D ``.mgh``/``.mgz`` volume (a 4D one with a single frame is squeezed)."""
    p = Path(path)
    img, source = _load(p)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and not all(s == 1 for s in shape[3:]):
        raise InvalidImageError(
            f"{p}: {shape[3]} frames of shape {shape[:3]}; medseg segments one 3D volume. "
            "Extract one frame first (e.g. mri_convert --frame 0 IN OUT).")
    affine = np.asarray(img.affine, dtype=np.float64)
    check_affine(p, affine, source="MGH geometry (delta, Mdc, Pxyz_c)")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise CorruptFileError(f"{p}: voxel data cannot be read ({one_line(exc, 160)}); the file "
                               "may be truncated. Re-export or re-copy it.") from exc
    data = check_voxels(data.reshape(shape[:3]), p, nan=nan)
    return Volume.from_affine(data, affine, frame="RAS", labels=read_sidecar(p),
                              meta={"path": str(p), "mgh_xform": source})
