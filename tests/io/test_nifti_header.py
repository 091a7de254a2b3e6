"""NIfTI geometry from the raw header (pixdim, sform, qform), Analyze/NIfTI pairs, MGH/MGZ."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg import io
from medseg.errors import (
    CorruptFileError,
    GeometryError,
    InputNotFoundError,
    InvalidImageError,
    PathOutsideRootsError,
)
from tests.io.open_watch import watch_opens

ARR = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
SFORM = np.array([[0, 0, 3.0, -10], [2.0, 0, 0, 20], [0, 2.5, 0, 30], [0, 0, 0, 1]])


def nifti(path: Path, *, sform: np.ndarray | None = None, qform: np.ndarray | None = None,
          pixdim: dict[int, float] | None = None, fields: dict[str, float] | None = None,
          arr: np.ndarray = ARR) -> Path:
    """A NIfTI whose header fields are exactly as given (nibabel writes them unrepaired)."""
    img = nib.Nifti1Image(arr, None)
    hdr = img.header
    hdr.set_sform(sform, code=1 if sform is not None else 0)
    hdr.set_qform(qform, code=1 if qform is not None else 0)
    for i, v in (pixdim or {}).items():
        hdr["pixdim"][i] = v
    for key, v in (fields or {}).items():
        hdr[key] = v
    nib.save(img, str(path))
    return path


def one_line(err: pytest.ExceptionInfo[Exception], *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("i,value", [(1, 0.0), (2, -2.0), (3, np.nan)])
@pytest.mark.parametrize("form", ["fallback", "qform"])
def test_bad_pixdim_is_refused_when_the_geometry_uses_it(tmp_path: Path, i: int, value: float,
                                                         form: str) -> None:
    qform = np.diag([1.5, 2.0, 2.5, 1.0]) if form == "qform" else None
    path = nifti(tmp_path / "p.nii.gz", qform=qform, pixdim={i: value})
    with pytest.raises(GeometryError) as err:
        io.read(path)
    one_line(err, "p.nii.gz", f"pixdim[{i}]", "positive")


@pytest.mark.parametrize("value", [0.0, -2.0, np.nan])
def test_valid_sform_makes_pixdim_irrelevant(tmp_path: Path, value: float,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    path = nifti(tmp_path / "s.nii.gz", sform=SFORM, pixdim={1: value, 2: value})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = io.read(path)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""  # nibabel's "pixdim[1,2,3] should be ..." log is dropped
    assert vol.meta["nifti_xform"] == "sform"
    np.testing.assert_allclose(vol.affine_ras, SFORM, atol=1e-6)


def test_nan_sform_with_a_valid_qform_is_refused_with_the_way_out(tmp_path: Path) -> None:
    sform = SFORM.copy()
    sform[0, 0] = np.nan
    path = nifti(tmp_path / "n.nii.gz", sform=sform, qform=np.diag([1.0, 2.0, 3.0, 1.0]))
    with pytest.raises(GeometryError) as err:
        io.read(path)
    one_line(err, "n.nii.gz", "sform", "NaN", "qform", "set sform_code to 0")
    path = nifti(tmp_path / "m.nii.gz", sform=sform, qform=np.diag([1.0, 2.0, 3.0, 1.0]),
                 pixdim={1: 0.0})
    with pytest.raises(GeometryError) as err:
        io.read(path)
    one_line(err, "m.nii.gz", "not valid either")


@pytest.mark.parametrize("matrix,words", [
    (np.diag([2.0, 0.0, 3.0, 1.0]), ("singular", "axis 1")),
    (np.array([[1.0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), ("sheared",)),
])
def test_singular_or_sheared_sform_names_file_and_field(tmp_path: Path, matrix: np.ndarray,
                                                        words: tuple[str, ...]) -> None:
    with pytest.raises(GeometryError) as err:
        io.read(nifti(tmp_path / "x.nii", sform=matrix))
    one_line(err, "x.nii", "sform (srow_x/srow_y/srow_z)", *words)


def test_nan_quaternion_is_refused(tmp_path: Path) -> None:
    path = nifti(tmp_path / "q.nii.gz", qform=np.diag([1.0, 2.0, 3.0, 1.0]),
                 fields={"quatern_b": np.nan})
    with pytest.raises(GeometryError) as err:
        io.read(path)
    one_line(err, "q.nii.gz", "qform", "quatern_b")


def test_2d_image_checks_only_its_own_pixdims(tmp_path: Path) -> None:
    path = nifti(tmp_path / "2d.nii", arr=np.ones((5, 6), np.int16), pixdim={1: 0.5, 2: 0.7,
                                                                            3: 0.0})
    vol = io.read(path)
    assert vol.shape == (5, 6, 1) and vol.spacing[:2] == pytest.approx((0.5, 0.7))


@pytest.mark.parametrize("klass,xform", [(nib.Nifti1Pair, "sform"), (nib.Nifti2Pair, "sform"),
                                         (nib.AnalyzeImage, "analyze")])
@pytest.mark.parametrize("given", [".hdr", ".img"])
def test_pairs_read_from_either_half(tmp_path: Path, klass: type, xform: str,
                                     given: str) -> None:
    affine = SFORM if xform == "sform" else np.diag([2.0, 2.5, 3.0, 1.0])
    nib.save(klass(ARR, affine), str(tmp_path / "pair.hdr"))
    vol = io.read(tmp_path / f"pair{given}", roots=[tmp_path])
    assert io.detect_format(tmp_path / f"pair{given}") == "nifti"
    np.testing.assert_array_equal(vol.array, ARR)
    assert vol.meta["nifti_xform"] == xform
    expected = nib.load(str(tmp_path / "pair.hdr")).affine if xform == "sform" else (
        nib.AnalyzeImage(ARR, affine).header.get_base_affine())
    np.testing.assert_allclose(vol.affine_ras, expected, atol=1e-5)


def test_pair_halves_are_checked_like_detached_data_files(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    nib.save(nib.Nifti1Pair(ARR, SFORM), str(outside / "pair.hdr"))
    (root / "pair.hdr").write_bytes((outside / "pair.hdr").read_bytes())
    os.symlink(outside / "pair.img", root / "pair.img")
    with watch_opens(outside / "pair.img") as events, pytest.raises(PathOutsideRootsError) as err:
        io.read(root / "pair.hdr", roots=[root])
    assert events == []
    one_line(err, "pair.hdr", "pair.img", "link")
    (root / "pair.img").unlink()
    with pytest.raises(InputNotFoundError) as err:
        io.read(root / "pair.hdr", roots=[root])
    one_line(err, "pair.img", "missing", ".zip")
    np.testing.assert_array_equal(io.read(outside / "pair.img").array, ARR)


def test_single_file_magic_in_a_pair_header_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(ARR, SFORM), str(tmp_path / "one.nii"))
    (tmp_path / "one.hdr").write_bytes((tmp_path / "one.nii").read_bytes()[:348])
    (tmp_path / "one.img").write_bytes(ARR.tobytes())
    with pytest.raises(CorruptFileError, match="Rename it to .nii"):
        io.read(tmp_path / "one.hdr")


@pytest.mark.parametrize("ext", [".mgz", ".mgh"])
def test_mgh_volumes_read_with_nibabels_geometry(tmp_path: Path, ext: str) -> None:
    affine = np.array([[-1.0, 0, 0, 90], [0, 0, 1.2, -100], [0, -1.5, 0, 110], [0, 0, 0, 1]])
    arr = np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6)
    nib.save(nib.MGHImage(arr, affine), str(tmp_path / f"aseg{ext}"))
    vol = io.read(tmp_path / f"aseg{ext}", label=True)
    assert io.detect_format(tmp_path / f"aseg{ext}") == "mgh"
    np.testing.assert_array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.affine_ras, affine, atol=1e-5)
    assert vol.array.dtype == np.uint8 and vol.labels is not None  # a label map (aseg.mgz)
    assert vol.meta["mgh_xform"] == "stored"


def test_mgh_without_orientation_gets_freesurfers_default_and_frames_are_refused(
        tmp_path: Path) -> None:
    nib.save(nib.MGHImage(ARR.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
             str(tmp_path / "noras.mgh"))
    data = bytearray((tmp_path / "noras.mgh").read_bytes())
    data[28:30] = (0).to_bytes(2, "big")  # goodRASFlag (nibabel always sets it on save)
    (tmp_path / "noras.mgh").write_bytes(bytes(data))
    vol = io.read(tmp_path / "noras.mgh")
    assert vol.meta["mgh_xform"] == "default" and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.reorient("RAS").orientation == "RAS" and vol.affine_ras[0, 0] == -1  # LIA
    nib.save(nib.MGHImage(np.zeros((2, 3, 4, 2), np.float32), np.eye(4)),
             str(tmp_path / "frames.mgz"))
    with pytest.raises(InvalidImageError, match="2 frames"):
        io.read(tmp_path / "frames.mgz")
    nib.save(nib.MGHImage(ARR.astype(np.float32), np.eye(4)), str(tmp_path / "flat.mgh"))
    data = bytearray((tmp_path / "flat.mgh").read_bytes())
    data[34:38] = bytes(4)  # delta[1] = 0.0 (big-endian float32 after goodRASFlag)
    (tmp_path / "flat.mgh").write_bytes(bytes(data))
    with pytest.raises(GeometryError, match=r"delta\[1\]"):
        io.read(tmp_path / "flat.mgh")
    (tmp_path / "junk.mgz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(CorruptFileError, match="junk.mgz"):
        io.read(tmp_path / "junk.mgz")


def test_declared_sizes_the_file_or_machine_cannot_hold_are_refused_before_reading(
        tmp_path: Path) -> None:
    path = nifti(tmp_path / "cut.nii")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptFileError) as err:
        io.read(path)
    one_line(err, "cut.nii", "truncated")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)),
             str(tmp_path / "bomb.nii"))
    data = bytearray((tmp_path / "bomb.nii").read_bytes())
    data[42:48] = np.array([30000] * 3, "<i2").tobytes()  # dim[1..3]: 98 TiB of float32
    (tmp_path / "bomb.nii.gz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(InvalidImageError) as err:
        io.read(tmp_path / "bomb.nii.gz")
    one_line(err, "bomb.nii.gz", "memory")


def test_mgh_sizes_the_file_or_machine_cannot_hold_are_refused(tmp_path: Path) -> None:
    nib.save(nib.MGHImage(ARR.astype(np.float32), np.eye(4)), str(tmp_path / "m.mgh"))
    data = bytearray((tmp_path / "m.mgh").read_bytes())
    (tmp_path / "cut.mgh").write_bytes(bytes(data[:300]))
    with pytest.raises(CorruptFileError) as err:
        io.read(tmp_path / "cut.mgh")
    one_line(err, "cut.mgh", "truncated")
    data[4:16] = np.array([100000] * 3, ">i4").tobytes()  # dims: 4 PB of float32
    (tmp_path / "bomb.mgz").write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(InvalidImageError) as err:
        io.read(tmp_path / "bomb.mgz")
    one_line(err, "bomb.mgz", "memory")
