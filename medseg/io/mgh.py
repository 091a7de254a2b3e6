"""FreeSurfer MGH/MGZ volumes (``.mgh``, ``.mgz``) with nibabel.

Geometry: voxel sizes ``delta``, direction cosines ``Mdc`` and the RAS centre ``Pxyz_c``
give nibabel's RAS affine (checked: finite, non-singular, orthogonal). A header whose
``goodRASFlag`` is not set stores no orientation (FreeSurfer would assume a default coronal
one); medseg refuses it rather than guess. Frames beyond the first (4D) are refused like 4D
NIfTI. Voxel types follow :mod:`medseg.io.voxels`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import CorruptFileError, GeometryError, InvalidImageError, MedsegError
from medseg.io.grid_checks import check_affine
from medseg.io.labels import read_sidecar
from medseg.io.quiet import one_line
from medseg.io.voxels import check_voxels
from medseg.volume import Volume

__all__ = ["MGH_EXT", "read_mgh"]

MGH_EXT = (".mgh", ".mgz")


def _load(p: Path) -> nib.MGHImage:
    try:
        img = nib.MGHImage.from_filename(str(p))
        hdr = img.header
        good = int(hdr["goodRASFlag"])
        delta = np.asarray(hdr["delta"], dtype=np.float64)
    except MedsegError:
        raise
    except Exception as exc:  # nibabel/gzip raise many types for bad files
        raise CorruptFileError(f"{p}: not a readable MGH/MGZ file ({type(exc).__name__}: "
                               f"{one_line(exc, 200)}). Check that the file is complete.") from exc
    if good <= 0:
        raise GeometryError(
            f"{p}: goodRASFlag is {good}, so the file stores no orientation (FreeSurfer would "
            "assume a default coronal one). Re-save it with its geometry (e.g. mri_convert "
            "from the original scan) or convert it to NIfTI with the right orientation.")
    for i, d in enumerate(delta):
        if not np.isfinite(d) or d <= 0:
            raise GeometryError(f"{p}: delta[{i}] (voxel size) is {d:g}; it must be a positive "
                                "number of mm. Fix the header or re-export the image.")
    return img


def read_mgh(path: str | Path, *, nan: str = "error") -> Volume:
    """Read a 3D ``.mgh``/``.mgz`` volume (a 4D one with a single frame is squeezed)."""
    p = Path(path)
    img = _load(p)
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
                              meta={"path": str(p)})
