"""Small hostile files, written at test time with the real libraries (nibabel, SimpleITK,
pydicom) or as raw bytes where a library would refuse to write the fault."""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.volume import Volume
from tests.dicom_factory import write_series

SHAPE = (12, 10, 6)


def arr(dtype: Any = np.int16, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) % 97
    return a.astype(dtype)


#: NIfTI-1 header fields patched in the file's bytes (offset, struct format); nibabel would
#: rewrite pixdim and the xforms from the affine when saving, undoing the fault.
HEADER_FIELDS = {"pixdim": (76, "<8f"), "qform_code": (252, "<h"), "sform_code": (254, "<h"),
                 "quatern_b": (256, "<f"), "quatern_c": (260, "<f"), "quatern_d": (264, "<f"),
                 "srow_x": (280, "<4f"), "srow_y": (296, "<4f"), "srow_z": (312, "<4f")}


def nifti(path: Path, data: np.ndarray | None = None, *, affine: np.ndarray | None = None,
          edit: dict[str, Any] | None = None, sform_code: int = 1, qform_code: int = 1,
          labels: dict[str, str] | None = None) -> Path:
    """A NIfTI-1 file; ``edit`` patches header fields in the written bytes (``"pixdim[2]"``
    sets one element, ``"srow_x"`` a whole row) so the fault survives nibabel's save."""
    data = arr() if data is None else data
    aff = np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, aff, dtype=data.dtype if data.dtype.names is None else None)
    img.header.set_sform(aff, code=sform_code)
    img.header.set_qform(aff, code=qform_code)
    nib.save(img, str(path))
    _patch_header(path, {"sform_code": sform_code, "qform_code": qform_code, **(edit or {})})
    if labels is not None:
        write_sidecar(path, labels)
    return path


def _patch_header(path: Path, edit: dict[str, Any]) -> None:
    is_gz = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if is_gz else path.read_bytes())
    for key, value in edit.items():
        name, _, idx = key.partition("[")
        offset, fmt = HEADER_FIELDS[name]
        values = list(struct.unpack_from(fmt, raw, offset))
        if idx:
            values[int(idx.rstrip("]"))] = value
        else:
            values = list(np.atleast_1d(value))
        struct.pack_into(fmt, raw, offset, *values)
    path.write_bytes(gzip.compress(bytes(raw)) if is_gz else bytes(raw))


def write_sidecar(path: Path, labels: dict[str, str] | str) -> Path:
    name = path.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    side = path.with_name(name + ".labels.json")
    text = labels if isinstance(labels, str) else json.dumps({"labels": labels})
    side.write_text(text, encoding="utf-8")
    return side


def label_map(path: Path, names: dict[int, str], shape: tuple[int, int, int] = SHAPE) -> Path:
    """A label map with one box per label (values 1..n) and names in a sidecar."""
    a = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(sorted(names)):
        a[1 + 2 * i: 3 + 2 * i, 2:8, 1:5] = v
    return nifti(path, a, labels={str(k): v for k, v in names.items()})


def nifti_raw(path: Path, mutate: Any) -> Path:
    """A valid ``.nii`` whose raw bytes are then changed by ``mutate(bytearray)``."""
    tmp = path.with_name("src_" + path.name.replace(".gz", ""))
    nifti(tmp)
    raw = bytearray(tmp.read_bytes())
    tmp.unlink()
    mutate(raw)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        path.write_bytes(bytes(raw))
    return path


def itk(path: Path, data: np.ndarray | None = None, *, spacing: tuple[float, ...] = (1, 1, 2),
        vector: bool = False) -> Path:
    data = arr() if data is None else data
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.T), isVector=vector)
    if not vector:
        img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def mhd_text(path: Path, data_file: str, dims: tuple[int, ...] = SHAPE,
             etype: str = "MET_SHORT", extra: str = "") -> Path:
    path.write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                    "BinaryDataByteOrderMSB = False\nElementSpacing = 1 1 1\n"
                    f"DimSize = {' '.join(map(str, dims))}\nElementType = {etype}\n{extra}"
                    f"ElementDataFile = {data_file}\n")
    return path


def nhdr_text(path: Path, data_file: str, dims: tuple[int, ...] = SHAPE,
              extra: str = "") -> Path:
    path.write_text("NRRD0004\ntype: short\ndimension: 3\n"
                    "space: left-posterior-superior\n"
                    f"sizes: {' '.join(map(str, dims))}\n"
                    "space directions: (1,0,0) (0,1,0) (0,0,1)\nendian: little\n"
                    f"encoding: raw\n{extra}data file: {data_file}\n")
    return path


def raw(path: Path, dtype: Any = np.int16, shape: tuple[int, ...] = SHAPE) -> Path:
    path.write_bytes(arr(dtype, shape).tobytes(order="F"))
    return path


def dicom_series(folder: Path, *, shape: tuple[int, int, int] = (16, 12, 5),
                 **kwargs: Any) -> Path:
    vol = Volume(arr(np.int16, shape), (0.8, 0.8, 2.5), (-10.0, -20.0, 30.0), np.eye(3),
                 modality="CT")
    write_series(vol, folder, **kwargs)
    return folder


def dicom_edit(folder: Path, edit: Any, which: int | None = None) -> Path:
    """Apply ``edit(ds)`` to every file of a series (or file number ``which``) and re-save."""
    import pydicom

    files = sorted(p for p in folder.iterdir() if p.is_file())
    for i, f in enumerate(files):
        if which is not None and i != which:
            continue
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(f, enforce_file_format=False)
    return folder


def zip_of(path: Path, members: dict[str, bytes], *, compress: bool = True) -> Path:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def zip_with_symlink(path: Path, link_name: str, target: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(link_name)
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, target)
    return path


def bytes_of_folder(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as fh:
        fh.write(data)
    return buf.getvalue()
