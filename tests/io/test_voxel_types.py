"""Voxel types: read exactly or refused (never half-converted), and every accepted type
round-trips through every writer (NIfTI, NRRD, MHA) and back through medseg's own reader."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg import io
from medseg.errors import InvalidImageError
from medseg.volume import Volume

SHAPE = (5, 4, 3)
AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])
WRITERS = [".nii.gz", ".nii", ".nrrd", ".mha"]


def values(dtype: np.dtype) -> np.ndarray:
    """Distinct values spanning the type (both signs, extremes for integers)."""
    n = int(np.prod(SHAPE))
    if dtype.kind == "b":
        return (np.arange(n) % 2).astype(bool).reshape(SHAPE)
    if dtype.kind == "f":
        return np.linspace(-1000.5, 3000.25, n).astype(dtype).reshape(SHAPE)
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2**31)), min(int(info.max), 2**31 - 1)
    arr = np.linspace(lo, hi, n, dtype=np.float64).astype(np.int64)
    arr[0], arr[-1] = lo, hi
    return arr.astype(dtype).reshape(SHAPE)


def save_nifti(arr: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(arr, AFFINE, dtype=arr.dtype)
    nib.save(img, str(path))
    return path


#: dtype stored in the file -> dtype medseg reads it as
READ_AS = {"uint8": "uint8", "int8": "int8", "uint16": "uint16", "int16": "int16",
           "uint32": "uint32", "int32": "int32", "float32": "float32", "float64": "float64",
           "int64": "int32", "uint64": "int32"}


@pytest.mark.parametrize("stored", sorted(READ_AS))
def test_nifti_voxel_types_read_exactly(tmp_path: Path, stored: str) -> None:
    arr = values(np.dtype(stored))
    vol = io.read(save_nifti(arr, tmp_path / f"{stored}.nii.gz"))
    assert vol.array.dtype == np.dtype(READ_AS[stored])
    np.testing.assert_array_equal(vol.array.astype(np.float64), arr.astype(np.float64))


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "uint16", "int16", "uint32",
                                   "int32", "float16", "float32", "float64", "int64", "uint64"])
@pytest.mark.parametrize("ext", WRITERS)
def test_every_accepted_type_round_trips_through_every_writer(tmp_path: Path, dtype: str,
                                                              ext: str) -> None:
    arr = values(np.dtype(dtype))
    vol = Volume(arr, (0.8, 0.9, 2.5), (1.0, -2.0, 3.0))
    path = tmp_path / f"v{ext}"
    io.write(vol, path)
    back = io.read(path)  # medseg reads back whatever medseg wrote
    expected = {"bool": "uint8", "float16": "float32", "int64": "int32", "uint64": "int32"}.get(
        dtype, dtype)
    if ext.startswith(".nii") and dtype == "float64":
        expected = "float32"  # NIfTI images are written as float32 (docs/io.md)
    assert back.array.dtype == np.dtype(expected)
    np.testing.assert_array_equal(back.array, arr.astype(expected))


def test_64bit_values_beyond_int32_are_refused_on_read_and_write(tmp_path: Path) -> None:
    arr = values(np.dtype("uint64"))
    arr[0, 0, 0] = 2**40
    with pytest.raises(InvalidImageError, match="1099511627776") as err:
        io.read(save_nifti(arr, tmp_path / "big.nii.gz"))
    assert "big.nii.gz" in str(err.value) and "\n" not in str(err.value)
    for ext in WRITERS:
        with pytest.raises(InvalidImageError, match="32-bit"):
            io.write(Volume(arr, (1, 1, 1)), tmp_path / f"out{ext}")
        assert not (tmp_path / f"out{ext}").exists()


def test_complex_voxels_are_refused_in_every_format(tmp_path: Path) -> None:
    arr = (values(np.dtype("float32")) + 1j).astype(np.complex64)
    with pytest.raises(InvalidImageError, match="complex"):
        io.read(save_nifti(arr, tmp_path / "c.nii.gz"))
    img = sitk.GetImageFromArray(arr.transpose(2, 1, 0))
    for ext in (".mha", ".nrrd"):
        sitk.WriteImage(img, str(tmp_path / f"c{ext}"))
        with pytest.raises(InvalidImageError, match="complex|components"):
            io.read(tmp_path / f"c{ext}")
    for ext in WRITERS:  # and never written: medseg would refuse the file it made
        with pytest.raises(InvalidImageError, match="cannot write"):
            io.write(Volume(arr, (1, 1, 1)), tmp_path / f"out{ext}")
        assert not (tmp_path / f"out{ext}").exists()


@pytest.mark.parametrize("fields", ["RGB", "RGBA"])
def test_rgb_nifti_is_refused_with_one_line(tmp_path: Path, fields: str) -> None:
    dtype = np.dtype([(c, "u1") for c in fields])
    arr = np.zeros(SHAPE, dtype=dtype)
    with pytest.raises(InvalidImageError, match="RGB/colour") as err:
        io.read(save_nifti(arr, tmp_path / "rgb.nii.gz"))
    assert "rgb.nii.gz" in str(err.value) and "\n" not in str(err.value)
    img = sitk.Image([5, 4, 3], sitk.sitkVectorUInt8, len(fields))
    sitk.WriteImage(img, str(tmp_path / "rgb.nrrd"))
    with pytest.raises(InvalidImageError, match="components"):
        io.read(tmp_path / "rgb.nrrd")


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".mgz"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_voxels_refused_or_zeroed_in_every_format(tmp_path: Path, ext: str,
                                                            bad: float) -> None:
    arr = np.ones(SHAPE, np.float32)
    arr[1, 2, 0] = bad
    path = tmp_path / f"f{ext}"
    if ext == ".mgz":
        nib.save(nib.MGHImage(arr, AFFINE), str(path))
    else:
        sitk_or_nib = Volume(arr, (1, 1, 1))
        io.write(sitk_or_nib, path)
    with pytest.raises(InvalidImageError, match="NaN" if np.isnan(bad) else "infinite") as err:
        io.read(path)
    assert path.name in str(err.value) and "--nan-to-zero" in str(err.value)
    vol = io.read(path, nan="zero")
    assert vol.array[1, 2, 0] == 0 and vol.array.sum() == arr.size - 1


def test_empty_image_is_refused(tmp_path: Path) -> None:
    path = save_nifti(np.zeros((0, 4, 3), np.int16), tmp_path / "empty.nii.gz")
    with pytest.raises(InvalidImageError, match="no voxels") as err:
        io.read(path)
    assert "empty.nii.gz" in str(err.value) and "\n" not in str(err.value)
