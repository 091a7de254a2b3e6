"""Readers and writers, chosen by file extension and content.

``read(path)`` returns a :class:`~medseg.volume.Volume` for NIfTI, NRRD, MHA/MHD, a DICOM file,
a folder of DICOM files or a zip of them. ``write(volume, path, reference=...)`` writes NIfTI,
NRRD or MHA; with a reference the written grid is exactly the reference's.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medseg.errors import InputNotFoundError, InvalidImageError, UnsupportedFormatError
from medseg.io.dicom_source import DicomSource, SeriesInfo
from medseg.volume import Volume, present_values

__all__ = [
    "WRITE_EXTENSIONS",
    "DicomSource",
    "SeriesInfo",
    "as_label_map",
    "detect_format",
    "list_series",
    "read",
    "write",
]

NIFTI_EXT = (".nii", ".nii.gz")
ITK_EXT = (".nrrd", ".nhdr", ".mha", ".mhd")
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def detect_format(path: str | Path) -> str:
    """``"nifti"``, ``"itk"``, ``"dicom"`` (file or folder) or ``"zip"``; raise if unknown."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file or folder. Check the path.")
    if p.is_dir():
        return "dicom"
    if _has_suffix(p, NIFTI_EXT):
        return "nifti"
    if _has_suffix(p, ITK_EXT):
        return "itk"
    if zipfile.is_zipfile(p):
        return "zip"
    with open(p, "rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if p.suffix.lower() in (".dcm", ".ima", ""):
        return "dicom"
    raise UnsupportedFormatError(
        f"{p}: unknown file type. medseg reads NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), "
        "MetaImage (.mha, .mhd), DICOM files/folders and .zip archives of DICOM folders."
    )


def as_label_map(volume: Volume, labels: dict[int, str] | None = None) -> Volume:
    """Turn an image read from disk into a label map (integer voxels, names for each value).

    Float voxels are accepted when every value is a whole number (e.g. float32 BRATS labels).
    Missing names become ``"label_<value>"``.
    """
    arr = volume.array
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise InvalidImageError(
            f"{volume.meta.get('path', 'volume')}: a label map must hold whole numbers, "
            "but this file has fractional or NaN values. Pass the label map, not the image, "
            "or threshold the probabilities first."
        )
    if arr.size and arr.min() < 0:
        raise InvalidImageError(
            f"{volume.meta.get('path', 'volume')}: label values must be >= 0, found {arr.min()}."
        )
    vmax = int(arr.max()) if arr.size else 0
    dtype = np.uint8 if vmax <= 255 else np.uint16 if vmax <= 65535 else None
    if dtype is None:
        raise InvalidImageError(f"{volume.meta.get('path', 'volume')}: label value {vmax} > 65535.")
    names = dict(labels or volume.labels or {})
    out = arr.astype(dtype, copy=False)
    for v in present_values(out):
        if v != 0 and v not in names:
            names[v] = f"label_{v}"
    return volume.with_array(out, labels=names)


def read(path: str | Path, series: str | int | None = None, *,
         label: bool | None = None, nan: str = "error") -> Volume:
    """Read an image or label map.

    Args:
        path: file, DICOM folder or zip.
        series: DICOM only: SeriesInstanceUID or the 1-based number that ``medseg info`` shows.
            Needed when the input holds several series.
        label: ``True`` reads a label map (integer voxels + names), ``False`` an image, ``None``
            decides from the file: label names stored with it (sidecar/header) mean a label map.
        nan: NIfTI only: ``"error"`` refuses NaN voxels, ``"zero"`` replaces them with 0.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "nifti":
        from medseg.io import nifti

        vol = nifti.read_nifti(p, nan=nan)
    elif fmt == "itk":
        from medseg.io import itk

        vol = itk.read_itk(p)
    else:
        from medseg.io import dicom

        vol = dicom.read_dicom(p, series=series)
    if label or (label is None and vol.labels is not None):
        vol = as_label_map(vol)
    elif label is False:
        vol.labels = None
    return vol


def list_series(path: str | Path) -> list[SeriesInfo]:
    """Every DICOM image series in a folder, zip or file (empty for non-DICOM inputs)."""
    p = Path(path)
    if detect_format(p) not in ("dicom", "zip"):
        return []
    from medseg.io import dicom

    return dicom.list_series(p)


def write(volume: Volume, path: str | Path, reference: Volume | None = None) -> Path:
    """Write ``volume`` to ``path`` (format from the extension), atomically.

    With ``reference``, the grids must match (else :class:`GeometryMismatchError`) and the file
    gets the reference's geometry exactly. Label maps are written as uint8/uint16 with their
    names in the file and in a ``.labels.json`` sidecar.
    """
    p = Path(path)
    if reference is not None:
        volume.check_same_grid(reference, what=f"volume to write to {p.name}",
                               reference="reference image")
        volume = Volume(volume.array, reference.spacing, reference.origin, reference.direction,
                        volume.modality, volume.labels, volume.meta)
    if volume.is_label:
        volume = as_label_map(volume)
    if _has_suffix(p, NIFTI_EXT):
        from medseg.io import nifti

        nifti.write_nifti(volume, p)
    elif _has_suffix(p, (".nrrd", ".mha")):
        from medseg.io import itk

        itk.write_itk(volume, p)
    else:
        raise UnsupportedFormatError(
            f"{p}: cannot write this extension. Use one of {', '.join(WRITE_EXTENSIONS)} "
            "(DICOM-SEG, RTSTRUCT and meshes are written by `medseg export`)."
        )
    if volume.labels is not None:
        from medseg.io.labels import write_sidecar

        write_sidecar(p, volume.labels)
    return p
