"""Readers and writers, chosen by file extension and content.

``read(path)`` returns a :class:`~medseg.volume.Volume` for NIfTI (and Analyze/NIfTI pairs
``.hdr``/``.img``), FreeSurfer MGH/MGZ, NRRD, MHA/MHD, a DICOM file, a folder of DICOM files or
a zip of them. ``write(volume, path, reference=...)`` writes NIfTI, NRRD or MHA; with a
reference the written grid is exactly the reference's.

``roots`` (keyword, default ``None`` = no restriction, as the CLI): a sequence of folders. When
given, every byte read comes from a file that resolves (every symlink followed) inside one of
them: the path itself, the data files of a detached header (which must lie inside the same
root as the header), each file of a DICOM folder. Anything else raises
:class:`~medseg.errors.PathOutsideRootsError` naming the file, before it is read. Third-party
warnings raised while reading are dropped (:mod:`medseg.io.quiet`); every failure is a one-line
:class:`~medseg.errors.MedsegError` naming the file.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medseg.errors import (
    CorruptFileError,
    InputNotFoundError,
    InvalidImageError,
    MedsegError,
    UnsupportedFormatError,
)
from medseg.io.detached import PAIR_SUFFIXES
from medseg.io.dicom_source import DicomSource, SeriesInfo
from medseg.io.quiet import one_line, quiet_libraries
from medseg.io.roots import Roots, as_roots, resolve_inside
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
MGH_EXT = (".mgh", ".mgz")
ITK_EXT = (".nrrd", ".nhdr", ".mha", ".mhd")
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
RootsArg = Sequence[str | os.PathLike[str]] | None


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def _checked(path: str | os.PathLike[str], roots: Roots) -> Path:
    """The path to read: resolved inside ``roots`` when given, as given otherwise; it exists."""
    p = Path(path)
    if roots is not None:
        p = resolve_inside(p, roots)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file or folder. Check the path.")
    return p


def _format(p: Path) -> str:
    if p.is_dir():
        return "dicom"
    if not stat.S_ISREG(p.stat().st_mode):
        raise UnsupportedFormatError(f"{p}: not a regular file (a device, pipe or socket); "
                                     "medseg reads image files and folders only.")
    if _has_suffix(p, NIFTI_EXT + PAIR_SUFFIXES):
        return "nifti"
    if _has_suffix(p, MGH_EXT):
        return "mgh"
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
        f"{p}: unknown file type. medseg reads NIfTI (.nii, .nii.gz, .hdr/.img pairs), "
        "FreeSurfer (.mgz, .mgh), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), DICOM "
        "files/folders and .zip archives of DICOM folders."
    )


def detect_format(path: str | Path, *, roots: RootsArg = None) -> str:
    """``"nifti"`` (also ``.hdr``/``.img`` pairs), ``"mgh"``, ``"itk"`` (NRRD, MetaImage),
    ``"dicom"`` (file or folder) or ``"zip"``; raise if unknown, missing or outside ``roots``.

    Only the path itself (and at most its first 132 bytes) is read; detached data files are
    checked by :func:`read`.
    """
    return _format(_checked(path, as_roots(roots)))


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


@contextmanager
def _reading(p: Path) -> Iterator[None]:
    """Library warnings dropped; stray library exceptions become one line naming ``p``, and a
    medseg error that names no file gets ``p`` in front."""
    try:
        with quiet_libraries():
            yield
    except MedsegError as exc:
        if str(p) in str(exc) or p.name in str(exc):
            raise
        raise type(exc)(f"{p}: {exc}") from exc  # e.g. Volume's own checks name no file
    except MemoryError as exc:
        raise InvalidImageError(f"{p}: too large to read into this machine's memory. Crop or "
                                "downsample it first, or use a machine with more memory.") from exc
    except OSError as exc:
        raise InputNotFoundError(f"{p}: cannot be read ({exc.strerror or one_line(exc, 160)}). "
                                 "Check that it exists and is readable.") from exc
    except Exception as exc:  # a library failing on a malformed file
        raise CorruptFileError(f"{p}: cannot be read ({type(exc).__name__}: "
                               f"{one_line(exc, 200)}). The file is damaged or not what its "
                               "name says; re-export it.") from exc


def read(path: str | Path, series: str | int | None = None, *,
         label: bool | None = None, nan: str = "error", roots: RootsArg = None) -> Volume:
    """Read an image or label map.

    Args:
        path: file, DICOM folder or zip (a detached header reads its data files too).
        series: DICOM only: SeriesInstanceUID or the 1-based number that ``medseg info`` shows.
            Needed when the input holds several series.
        label: ``True`` reads a label map (integer voxels + names), ``False`` an image, ``None``
            decides from the file: label names stored with it (sidecar/header) mean a label map.
        nan: ``"error"`` refuses NaN/Inf voxels, ``"zero"`` replaces them with 0 (every format).
        roots: folders every byte must come from (see the module docstring); ``None``: any.

    Raises:
        MedsegError subclasses only, each one line naming the file at fault.
    """
    allowed = as_roots(roots)
    p = _checked(path, allowed)
    with _reading(p):
        vol = _read_format(p, _format(p), series, nan, allowed)
        if label or (label is None and vol.labels is not None):
            vol = as_label_map(vol)
        elif label is False:
            vol.labels = None
    return vol


def _read_format(p: Path, fmt: str, series: str | int | None, nan: str,
                 roots: Roots) -> Volume:
    from medseg.io.voxels import check_voxels

    if fmt == "nifti":
        from medseg.io import nifti

        return nifti.read_nifti(p, nan=nan, roots=roots)
    if fmt == "mgh":
        from medseg.io import mgh

        return mgh.read_mgh(p, nan=nan)
    if fmt == "itk":
        from medseg.io import itk

        return itk.read_itk(p, roots=roots, nan=nan)
    from medseg.io import dicom

    vol = dicom.read_dicom(p, series=series, roots=roots)
    vol.array = check_voxels(vol.array, p, nan=nan)
    return vol


def list_series(path: str | Path, *, roots: RootsArg = None) -> list[SeriesInfo]:
    """Every DICOM image series in a folder, zip or file (empty for non-DICOM inputs).

    ``roots`` as in :func:`read`: the path and every file of a DICOM folder (symlinks
    followed) must lie inside them.
    """
    allowed = as_roots(roots)
    p = _checked(path, allowed)
    with _reading(p):
        if _format(p) not in ("dicom", "zip"):
            return []
        from medseg.io import dicom

        return dicom.list_series(p, roots=allowed)


def write(volume: Volume, path: str | Path, reference: Volume | None = None) -> Path:
    """Write ``volume`` to ``path`` (format from the extension), atomically.

    With ``reference``, the grids must match (else :class:`GeometryMismatchError`) and the file
    gets the reference's geometry exactly. Label maps are written as uint8/uint16 with their
    names in the file and in a ``.labels.json`` sidecar; the two are renamed into place
    together (:func:`medseg.io.atomic.staged_files`), so a failure leaves neither.
    """
    p = Path(path)
    if reference is not None:
        volume.check_same_grid(reference, what=f"volume to write to {p.name}",
                               reference="reference image")
        volume = Volume(volume.array, reference.spacing, reference.origin, reference.direction,
                        volume.modality, volume.labels, volume.meta)
    if volume.is_label:
        volume = as_label_map(volume)
    if not _has_suffix(p, (*NIFTI_EXT, ".nrrd", ".mha")):
        raise UnsupportedFormatError(
            f"{p}: cannot write this extension. Use one of {', '.join(WRITE_EXTENSIONS)} "
            "(DICOM-SEG, RTSTRUCT and meshes are written by `medseg export`)."
        )
    if volume.labels is None:
        _write_image(volume, p)
        return p
    from medseg.io.atomic import staged_files
    from medseg.io.labels import write_sidecar

    with staged_files(p.parent) as stage:  # the image and its label sidecar land together
        _write_image(volume, stage / p.name)
        write_sidecar(stage / p.name, volume.labels)
    return p


def _write_image(volume: Volume, p: Path) -> None:
    if _has_suffix(p, NIFTI_EXT):
        from medseg.io import nifti

        nifti.write_nifti(volume, p)
    else:
        from medseg.io import itk

        itk.write_itk(volume, p)
