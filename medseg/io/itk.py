"""NRRD and MetaImage (MHA/MHD) reading and writing with SimpleITK.

SimpleITK stores geometry in LPS with the direction matrix's columns as axis directions, which
is exactly :class:`~medseg.volume.Volume`'s convention; only the array axis order differs
(SimpleITK arrays are ``[k, j, i]``), handled here. Label names travel in the metadata key
``medseg_labels`` (JSON) and in a ``.labels.json`` sidecar.

Reading: the header text is parsed by medseg first (:mod:`medseg.io.headers`), its data files
are checked (:mod:`medseg.io.detached`, with ``roots`` when given), and only then SimpleITK opens
the file with the ImageIO of the format medseg parsed (never one guessed from the content). ITK
repairs some headers silently (NaN NRRD spacing -> 1 mm, negative spacing -> flipped axis); the
raw header values are checked instead and refused naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import CorruptFileError, GeometryError, InvalidImageError
from medseg.io.atomic import atomic_path
from medseg.io.detached import check_data_files
from medseg.io.grid_checks import check_grid
from medseg.io.headers import ItkHeader, numbers, parse_itk_header
from medseg.io.labels import labels_from_json, labels_to_json, read_sidecar
from medseg.io.quiet import native_stderr, one_line
from medseg.io.roots import Roots
from medseg.io.voxels import check_voxels, writable_array
from medseg.volume import Volume

_LABEL_KEY = "medseg_labels"
_IMAGE_IO = {"metaimage": "MetaImageIO", "nrrd": "NrrdImageIO"}
_COMPLEX = {sitk.sitkComplexFloat32, sitk.sitkComplexFloat64}


def read_itk_header(path: Path, roots: Roots = None) -> tuple[ItkHeader, list[Path]]:
    """The parsed header of an NRRD/MetaImage file and its checked data files (none if local)."""
    try:
        header = parse_itk_header(path)
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot read the header ({exc.strerror or exc}).") from exc
    return header, check_data_files(path, header.data, roots)


def _sitk_read(path: Path, fmt: str) -> sitk.Image:
    captured: list[str] = []
    try:
        with native_stderr() as captured:
            return sitk.ReadImage(str(path), sitk.sitkUnknown, _IMAGE_IO[fmt])
    except RuntimeError as exc:
        raise CorruptFileError(
            f"{path}: SimpleITK cannot read it ({_reason(str(exc), captured)}). Check that the "
            "file (and, for .nhdr/.mhd, its data file) is complete.") from exc


def _reason(text: str, captured: list[str]) -> str:
    """The telling line of an ITK/teem error (multi-line text) and of what MetaIO printed."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln.split("ITK ERROR:", 1)[-1].split("): ", 1)[-1] for ln in lines
              if "ITK ERROR" in ln or ln.startswith("[nrrd]")]
    native = [ln.strip() for ln in "".join(captured).splitlines() if ln.strip()]
    picked = (useful[-1:] if useful else lines[-1:]) + native[-1:]
    return one_line("; ".join(picked) or "unknown error", 240)


def _field_values(header: ItkHeader, key: str) -> list[float] | None:
    text = header.fields.get(key)
    return None if text is None else numbers(text)


def _check_spacing_field(path: Path, name: str, values: list[float] | None,
                         axes: Iterable[int]) -> None:
    if values is None:
        return
    for i in axes:
        v = values[i] if i < len(values) else math.nan
        if not np.isfinite(v) or v <= 0:
            raise GeometryError(
                f"{path}: {name}[{i}] is {v:g}; a voxel spacing must be a positive number of mm "
                "(ITK would silently turn it into 1 mm or a flipped axis). Fix the header.")


#: NRRD axis kinds that are not directions in space (their spacing/direction is not checked)
_NON_SPATIAL_KINDS = {"vector", "covariant-vector", "normal", "list", "point", "stub", "scalar",
                      "complex", "2-vector", "3-color", "rgb-color", "hsv-color", "xyz-color",
                      "4-color", "rgba-color", "3-vector", "3-gradient", "3-normal", "4-vector",
                      "quaternion", "2d-symmetric-matrix", "2d-masked-symmetric-matrix",
                      "2d-matrix", "2d-masked-matrix", "3d-symmetric-matrix",
                      "3d-masked-symmetric-matrix", "3d-matrix", "3d-masked-matrix"}


def _dimension(header: ItkHeader) -> int:
    key = "ndims" if header.format == "metaimage" else "dimension"
    try:
        return int(header.fields.get(key, "0").split()[0])
    except (ValueError, IndexError):
        return 0  # SimpleITK refuses the header then


def _check_header_geometry(path: Path, header: ItkHeader) -> None:
    """Raw spacing/direction/origin fields: finite, spacing > 0, no spatial axis without a
    direction. Checked before SimpleITK reads, because ITK repairs some of them silently."""
    f, dim = header.fields, _dimension(header)
    if header.format == "metaimage":
        key = "elementspacing" if "elementspacing" in f else "elementsize"
        _check_spacing_field(path, "ElementSpacing" if key == "elementspacing" else "ElementSize",
                             _field_values(header, key), range(dim))
        for name in ("TransformMatrix", "Rotation", "Orientation", "Offset", "Position",
                     "Origin", "CenterOfRotation"):
            values = _field_values(header, name.lower())
            if values is not None and not np.all(np.isfinite(values)):
                raise GeometryError(f"{path}: {name} holds NaN or non-numeric values; fix the "
                                    "header.")
        return
    kinds = f.get("kinds", "").lower().split()
    spatial = [i for i in range(dim) if i >= len(kinds) or kinds[i] not in _NON_SPATIAL_KINDS]
    _check_spacing_field(path, "spacings", _field_values(header, "spacings"), spatial)
    directions = f.get("space directions")
    if directions is None:
        return
    tokens = re.findall(r"none|\([^)]*\)", directions)
    for i in spatial:
        token = tokens[i] if i < len(tokens) else "missing"
        vec = numbers(token) if token.startswith("(") else []
        if not vec or not np.all(np.isfinite(vec)) or not any(vec):
            raise GeometryError(
                f"{path}: space directions[{i}] is {token!r}: axis {i} has no valid direction "
                "in space (ITK would invent one or fail). Fix the header.")


def read_itk(path: str | Path, *, roots: Roots = None, nan: str = "error") -> Volume:
    """Read a 2D/3D scalar NRRD, NHDR, MHA or MHD file (data files checked first).

    Args:
        roots: when given (already normalised, see :func:`medseg.io.roots.as_roots`), the data
            files must lie inside the root that holds ``path``.
        nan: ``"error"`` refuses NaN/Inf voxels, ``"zero"`` replaces them with 0.
    """
    p = Path(path)
    header, _ = read_itk_header(p, roots)
    _check_header_geometry(p, header)
    img = _sitk_read(p, header.format)
    if img.GetPixelID() in _COMPLEX:
        raise InvalidImageError(f"{p}: complex voxels; medseg needs real values. Save the "
                                "magnitude (or the real part) as a float image first.")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError(
            f"{p}: {img.GetNumberOfComponentsPerPixel()} components per voxel (vector/RGB "
            "image); medseg needs one scalar per voxel. Extract one channel first.")
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise InvalidImageError(f"{p}: a {dim}D image; medseg reads 2D or 3D images.")
    arr = check_voxels(sitk.GetArrayFromImage(img).T, p, nan=nan)  # [k, j, i] -> [i, j, k]
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
    check_grid(p, spacing, origin, direction, source="the header's spacing/direction/origin")
    labels: dict[int, str] | None
    if img.HasMetaDataKey(_LABEL_KEY):
        labels = labels_from_json(img.GetMetaData(_LABEL_KEY), f"{p} ({_LABEL_KEY})")
    else:
        labels = read_sidecar(p)
    return Volume(arr, tuple(spacing), tuple(origin), direction, labels=labels,
                  meta={"path": str(p)})


def to_sitk(volume: Volume, path: object = "volume") -> sitk.Image:
    """SimpleITK image with the volume's voxels and geometry (a copy); voxel types as
    :func:`medseg.io.voxels.writable_array` (``path`` names the target in its errors)."""
    arr = writable_array(volume.array, path)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(volume.spacing)
    img.SetOrigin(volume.origin)
    img.SetDirection(tuple(float(x) for x in volume.direction.flatten()))
    return img


def write_itk(volume: Volume, path: str | Path) -> None:
    """Write ``.nrrd`` or ``.mha`` (compressed), label names in the metadata."""
    img = to_sitk(volume, path)
    if volume.labels is not None:
        img.SetMetaData(_LABEL_KEY, labels_to_json(volume.labels).replace("\n", ""))
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
