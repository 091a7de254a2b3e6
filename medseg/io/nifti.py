"""NIfTI-1/2 reading and writing with nibabel.

Geometry precedence on reading (the NIfTI standard, as nibabel applies it):
1. ``sform`` when ``sform_code > 0``;
2. else ``qform`` when ``qform_code > 0``;
3. else the "Analyze" fallback: ``pixdim`` scaling only, no rotation, origin at 0 (recorded as
   ``meta["nifti_xform"] = "fallback"``; such files carry no reliable patient position).
ITK/SimpleITK may prefer the qform when both are set and differ; medseg reports which one it
used in ``meta["nifti_xform"]``. On writing, sform and qform are both set (code 1, scanner)
from the same affine, so every reader agrees.

Compression: ``.nii.gz`` goes through ISA-L (``isal.igzip``) when installed (a dependency of
medseg): inflate is 2-3x and level-1 deflate about 10x faster than Python's zlib on this CPU, and
the files are ordinary gzip streams that every tool reads.

Voxel values: the scaling ``scl_slope``/``scl_inter`` is applied (nibabel ``dataobj``); the
dtype is kept when no scaling is stored. NaN voxels are refused by default (``nan="error"``).
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
from medseg.io.labels import labels_from_json, labels_to_json, read_sidecar
from medseg.volume import Volume

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
        f"{path}: not a readable NIfTI file ({exc.__class__.__name__}: {exc}). "
        "Check that the file is complete (not truncated) and really NIfTI.")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[nib.Nifti1Image | nib.Nifti2Image]:
    """The image, its voxel data readable inside the ``with`` block. ``.nii.gz`` streams through
    the fast inflater; ``.nii`` is memory-mapped by nibabel."""
    try:
        if not _is_gz(path):
            img = nib.load(str(path))
            if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
                raise CorruptFileError(
                    f"{path}: nibabel read it as {type(img).__name__}, not NIfTI.")
            yield img
            return
        with _gzip_module().open(path, "rb") as f:
            size = f.read(4)
            f.seek(0)
            n = int.from_bytes(size, "little") if len(size) == 4 else 0
            klass = nib.Nifti2Image if 540 in (n, int.from_bytes(size, "big")) else (
                nib.Nifti1Image)
            fh = nib.FileHolder(filename=str(path), fileobj=f)
            yield klass.from_file_map({"header": fh, "image": fh}, mmap=False)
    except (MedsegError, MemoryError):
        raise
    except Exception as exc:  # nibabel/gzip raise many types for bad files
        raise _corrupt(path, exc) from exc


def _affine_and_source(img: nib.Nifti1Image | nib.Nifti2Image) -> tuple[np.ndarray, str]:
    hdr = img.header
    sform, scode = hdr.get_sform(coded=True)
    if sform is not None and int(scode) > 0:
        return np.asarray(sform, dtype=np.float64), "sform"
    qform, qcode = hdr.get_qform(coded=True)
    if qform is not None and int(qcode) > 0:
        return np.asarray(qform, dtype=np.float64), "qform"
    return np.asarray(hdr.get_base_affine(), dtype=np.float64), "fallback"


def _label_names(img: nib.Nifti1Image | nib.Nifti2Image, path: Path) -> dict[int, str] | None:
    for ext in img.header.extensions:
        if ext.get_code() == _EXT_CODE_COMMENT:
            raw = ext.get_content()
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            text = text.rstrip("\x00 \n")
            if text.lstrip().startswith("{") and '"labels"' in text:
                return labels_from_json(text, f"{path} (header extension)")
    return read_sidecar(path)


def read_nifti(path: str | Path, *, nan: str = "error") -> Volume:
    """Read a 3D NIfTI (a 2D one gets a singleton k axis; 4D with one volume is squeezed).

    Args:
        nan: ``"error"`` (default) refuses NaN voxels; ``"zero"`` replaces them with 0.
    """
    p = Path(path)
    with _open(p) as img:
        return _to_volume(img, p, nan)


def _to_volume(img: nib.Nifti1Image | nib.Nifti2Image, p: Path, nan: str) -> Volume:
    shape = img.shape
    if len(shape) > 3 and not all(s == 1 for s in shape[3:]):
        raise InvalidImageError(
            f"{p}: a {len(shape)}D NIfTI of shape {shape}; medseg segments 3D volumes. Extract "
            "one volume first, e.g. `python -c \"import nibabel as nib; im=nib.load('IN'); "
            "nib.save(im.slicer[..., 0], 'OUT.nii.gz')\"`."
        )
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise CorruptFileError(f"{p}: voxel data cannot be read ({exc}); the file may be "
                               "truncated. Re-export or re-copy it.") from exc
    data = data.reshape(shape[:3] if len(shape) >= 3 else (*shape, 1)[:3])
    if data.ndim == 2:
        data = data[:, :, None]
    if data.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(data)))
        if n_nan:
            if nan != "zero":
                raise InvalidImageError(
                    f"{p}: {n_nan} voxel(s) are NaN. medseg refuses them so they cannot corrupt "
                    "normalisation or metrics; replace them (e.g. `medseg convert IN OUT "
                    "--nan-to-zero`) or fix the exporting tool."
                )
            data = np.nan_to_num(data, nan=0.0)
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if not data.dtype.isnative:  # big-endian file: native order for numpy/torch consumers
        data = data.astype(data.dtype.newbyteorder("="))
    affine, source = _affine_and_source(img)
    labels = _label_names(img, p)
    vol = Volume.from_affine(data, affine, frame="RAS", labels=labels,
                             meta={"path": str(p), "nifti_xform": source})
    return vol


def write_nifti(volume: Volume, path: str | Path) -> None:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``) with sform = qform = its affine."""
    p = Path(path)
    arr = volume.array
    if arr.dtype == np.int64:
        arr = arr.astype(np.int32) if arr.size == 0 or (
            arr.min() >= np.iinfo(np.int32).min and arr.max() <= np.iinfo(np.int32).max) else arr
    elif arr.dtype == np.float64 and volume.labels is None:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
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
