"""NRRD and MetaImage (MHA/MHD) reading and writing with SimpleITK.

SimpleITK stores geometry in LPS with the direction matrix's columns as axis directions, which
is exactly :class:`~medseg.volume.Volume`'s convention; only the array axis order differs
(SimpleITK arrays are ``[k, j, i]``), handled here. Label names travel in the metadata key
``medseg_labels`` (JSON) and in a ``.labels.json`` sidecar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import CorruptFileError, InvalidImageError
from medseg.io.atomic import atomic_path
from medseg.io.labels import labels_from_json, labels_to_json, read_sidecar
from medseg.volume import Volume

_LABEL_KEY = "medseg_labels"


def read_itk(path: str | Path) -> Volume:
    """Read a 2D/3D scalar NRRD, NHDR, MHA or MHD file."""
    p = Path(path)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise CorruptFileError(
            f"{p}: SimpleITK cannot read it ({str(exc).strip().splitlines()[-1]}). "
            "Check that the file (and, for .nhdr/.mhd, its data file) is complete."
        ) from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError(
            f"{p}: {img.GetNumberOfComponentsPerPixel()} components per voxel (vector/RGB "
            "image); medseg needs one scalar per voxel. Extract one channel first."
        )
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise InvalidImageError(f"{p}: a {dim}D image; medseg reads 2D or 3D images.")
    arr = sitk.GetArrayFromImage(img).T  # [k, j, i] -> [i, j, k]
    spacing = list(img.GetSpacing())
    origin = list(img.GetOrigin())
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if dim == 2:
        arr = arr[:, :, None]
        spacing.append(1.0)
        origin.append(0.0)
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InvalidImageError(f"{p}: {int(np.isnan(arr).sum())} voxel(s) are NaN; replace "
                                "them before segmentation.")
    labels = None
    if img.HasMetaDataKey(_LABEL_KEY):
        labels = labels_from_json(img.GetMetaData(_LABEL_KEY), f"{p} ({_LABEL_KEY})")
    else:
        labels = read_sidecar(p)
    return Volume(arr, tuple(spacing), tuple(origin), direction, labels=labels,
                  meta={"path": str(p)})


def to_sitk(volume: Volume) -> sitk.Image:
    """SimpleITK image with the volume's voxels and geometry (a copy)."""
    arr = volume.array
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(volume.spacing)
    img.SetOrigin(volume.origin)
    img.SetDirection(tuple(float(x) for x in volume.direction.flatten()))
    return img


def write_itk(volume: Volume, path: str | Path) -> None:
    """Write ``.nrrd`` or ``.mha`` (compressed), label names in the metadata."""
    img = to_sitk(volume)
    if volume.labels is not None:
        img.SetMetaData(_LABEL_KEY, labels_to_json(volume.labels).replace("\n", ""))
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
