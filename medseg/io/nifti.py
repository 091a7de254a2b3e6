"""NIfTI-1/2 (``.nii``, ``.nii.gz``) and Analyze/NIfTI pairs (``.hdr`` + ``.img``) with nibabel.

Geometry precedence on reading (the NIfTI standard), decided from the header bytes as stored
(see :mod:`medseg.io.nifti_header`, which also says what is refused):
1. ``sform`` when ``sform_code > 0``;
2. else ``qform`` when ``qform_code > 0``;
3. else the "Analyze" fallback: ``pixdim`` scaling only, no rotation, origin at 0 (recorded as
   ``meta["nifti_xform"] = "fallback"``, or ``"analyze"`` for an Analyze 7.5 pair; such files
   carry no reliable patient position).
ITK/SimpleITK may prefer the qform when both are set and differ; medseg reports which one it
used in ``meta["nifti_xform"]``. On writing, sform and qform are both set (code 1, scanner)
from the same affine, so every reader agrees.

Pairs: ``X.hdr`` holds the header and ``X.img`` the voxels (either may be given). Both are
checked first (:func:`medseg.io.detached.analyze_pair`, with ``roots``), then opened by name, so
nibabel reads exactly those two files. An SPM ``X.mat`` orientation file is never read.

Compression: ``.nii.gz`` goes through ISA-L (``isal.igzip``) when installed (a dependency of
medseg): inflate is 2-3x and level-1 deflate about 10x faster than Python's zlib on this CPU, and
the files are ordinary gzip streams that every tool reads.

Voxel values: the scaling ``scl_slope``/``scl_inter`` is applied (nibabel ``dataobj``); the
dtype is kept when no scaling is stored. Voxel types follow :mod:`medseg.io.voxels` (NaN/Inf
refused by default, ``nan="zero"``; complex and RGB refused; 64-bit integers narrowed to int32).
Label names are stored in a header extension (code 6, JSON ``{"labels": {...}}``) and read back
from it (see :mod:`medseg.io.labels`).
"""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np

from medseg.errors import CorruptFileError, InvalidImageError, MedsegError
from medseg.io.atomic import atomic_path
from medseg.io.detached import analyze_pair, is_pair_name
from medseg.io.labels import labels_from_json, labels_to_json, read_sidecar
from medseg.io.nifti_header import (
    affine_and_source,
    check_data_size,
    is_nifti_magic,
    raw_header,
)
from medseg.io.quiet import one_line
from medseg.io.roots import Roots
from medseg.io.voxels import check_voxels, writable_array
from medseg.volume import Volume

_Image = nib.Nifti1Image | nib.Nifti2Image | nib.AnalyzeImage

_EXT_CODE_COMMENT = 6
#: deflate level of written ``.nii.gz`` (nibabel's default is 1 too)
GZIP_LEVEL = 1


def _gzip_module() -> ModuleType:
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; plain zlib still works
        return gzip
    return igzip


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _corrupt(path: Path, exc: BaseException) -> CorruptFileError:
    return CorruptFileError(
        f"{path}: not a readable NIfTI file ({exc.__class__.__name__}: {one_line(exc, 200)}). "
        "Check that the file is complete (not truncated) and really NIfTI.")


def _head(path: Path, n: int = 540) -> bytes:
    """The first ``n`` bytes of a (possibly gzipped) file."""
    opener = _gzip_module().open if _is_gz(path) else open
    with opener(path, "rb") as fh:
        return bytes(fh.read(n))


@contextlib.contextmanager
def _open(path: Path, roots: Roots = None) -> Iterator[tuple[_Image, np.ndarray]]:
    """The image and its raw header fields, voxel data readable inside the ``with`` block.
    ``.nii.gz`` streams through the fast inflater; ``.nii`` is memory-mapped by nibabel; a pair
    is opened from its two checked files."""
    try:
        if is_pair_name(path):
            header, image = analyze_pair(path, roots)
            raw = raw_header(_head(header), header)
            klass = _pair_class(raw, header)
            check_data_size(raw, header, None if _is_gz(image) else image.stat().st_size
                            - int(float(raw["vox_offset"])))
            fm = {"header": nib.FileHolder(filename=str(header)),
                  "image": nib.FileHolder(filename=str(image))}
            yield klass.from_file_map(fm), raw
            return
        if not _is_gz(path):
            raw = raw_header(_head(path), path)
            check_data_size(raw, path, path.stat().st_size - int(float(raw["vox_offset"])))
            img = nib.Nifti2Image.from_filename(str(path)) if raw.dtype.itemsize == 540 else (
                nib.Nifti1Image.from_filename(str(path)))
            yield img, raw
            return
        with _gzip_module().open(path, "rb") as f:
            raw = raw_header(bytes(f.read(540)), path)
            check_data_size(raw, path, None)
            f.seek(0)
            klass = nib.Nifti2Image if raw.dtype.itemsize == 540 else nib.Nifti1Image
            fh = nib.FileHolder(filename=str(path), fileobj=f)
            yield klass.from_file_map({"header": fh, "image": fh}, mmap=False), raw
    except (MedsegError, MemoryError):
        raise
    except Exception as exc:  # nibabel/gzip raise many types for bad files
        raise _corrupt(path, exc) from exc


def _pair_class(raw: np.ndarray, header: Path) -> type[_Image]:
    """NIfTI-1/2 pair or Analyze 7.5 (never SPM's variants, which would read a ``.mat`` file)."""
    magic = bytes(raw["magic"])[:3]
    if magic in (b"n+1", b"n+2"):
        raise CorruptFileError(
            f"{header}: the header says its voxels are inside it (single-file NIfTI magic "
            f"{magic.decode()}), not in a .img file. Rename it to .nii.")
    if raw.dtype.itemsize == 540:
        return nib.Nifti2Pair
    return nib.Nifti1Pair if is_nifti_magic(raw) else nib.AnalyzeImage


def _label_names(img: _Image, path: Path) -> dict[int, str] | None:
    for ext in getattr(img.header, "extensions", ()):
        if ext.get_code() == _EXT_CODE_COMMENT:
            raw = ext.get_content()
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            text = text.rstrip("\x00 \n")
            if text.lstrip().startswith("{") and '"labels"' in text:
                return labels_from_json(text, f"{path} (header extension)")
    return read_sidecar(path)


def read_nifti(path: str | Path, *, nan: str = "error", roots: Roots = None) -> Volume:
    """Read a 3D NIfTI or Analyze/NIfTI pair (2D gets a singleton k axis; 4D with one volume is
    squeezed).

    Args:
        nan: ``"error"`` (default) refuses NaN/Inf voxels; ``"zero"`` replaces them with 0.
        roots: for a pair, the other half must lie inside the root that holds ``path``.
    """
    p = Path(path)
    with _open(p, roots) as (img, raw):
        return _to_volume(img, raw, p, nan)


def _to_volume(img: _Image, raw: np.ndarray, p: Path, nan: str) -> Volume:
    shape = img.shape
    if len(shape) > 3 and not all(s == 1 for s in shape[3:]):
        raise InvalidImageError(
            f"{p}: a {len(shape)}D NIfTI of shape {shape}; medseg segments 3D volumes. Extract "
            "one volume first, e.g. `python -c \"import nibabel as nib; im=nib.load('IN'); "
            "nib.save(im.slicer[..., 0], 'OUT.nii.gz')\"`."
        )
    affine, source = affine_and_source(img, raw, p)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise CorruptFileError(f"{p}: voxel data cannot be read ({one_line(exc, 160)}); the file "
                               "may be truncated. Re-export or re-copy it.") from exc
    data = data.reshape(shape[:3] if len(shape) >= 3 else (*shape, 1)[:3])
    if data.ndim == 2:
        data = data[:, :, None]
    data = check_voxels(data, p, nan=nan)
    labels = _label_names(img, p)
    return Volume.from_affine(data, affine, frame="RAS", labels=labels,
                              meta={"path": str(p), "nifti_xform": source})


def write_nifti(volume: Volume, path: str | Path) -> None:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``) with sform = qform = its affine."""
    p = Path(path)
    arr = writable_array(volume.array, p)
    if arr.dtype == np.float64 and volume.labels is None:
        arr = arr.astype(np.float32)
    affine = volume.affine_ras
    img = nib.Nifti1Image(arr, affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if volume.labels is not None:
        content = (labels_to_json(volume.labels)).encode("utf-8")
        img.header.extensions.append(nib.nifti1.Nifti1Extension(_EXT_CODE_COMMENT, content))
        img.header.set_intent("label", name="labels")
    with atomic_path(p) as tmp:
        if not _is_gz(p):
            nib.save(img, str(tmp))
            return
        with _gzip_module().open(tmp, "wb", compresslevel=GZIP_LEVEL) as f:
            fh = nib.FileHolder(filename=str(tmp), fileobj=f)
            img.to_file_map({"header": fh, "image": fh})
