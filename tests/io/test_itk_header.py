"""NRRD/MetaImage geometry fields that ITK would repair silently are refused naming the field;
ITK/teem/MetaIO failures become one line naming the file, with nothing printed to stderr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg import io
from medseg.errors import CorruptFileError, GeometryError, InvalidImageError

VOXELS = bytes(range(24))


def nrrd(path: Path, fields: str, data: bytes = VOXELS) -> Path:
    head = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n" + fields + "\n"
    path.write_bytes(head.encode() + data)
    return path


def mha(path: Path, fields: str, data: bytes = VOXELS) -> Path:
    head = ("ObjectType = Image\nNDims = 3\nDimSize = 4 3 2\n" + fields
            + "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n")
    path.write_bytes(head.encode() + data)
    return path


def check_one_line(err: pytest.ExceptionInfo[Exception], capfd: pytest.CaptureFixture[str],
                   *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, (w, msg)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("value,axis", [("nan 1 1", 0), ("1 0 1", 1), ("1 1 -2", 2)])
def test_nrrd_spacings_itk_would_repair_are_refused(tmp_path: Path, value: str, axis: int,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    path = nrrd(tmp_path / "s.nrrd", f"spacings: {value}\n")
    with pytest.raises(GeometryError) as err:
        io.read(path)
    check_one_line(err, capfd, "s.nrrd", f"spacings[{axis}]")


@pytest.mark.parametrize("dirs,axis", [("none (0,1,0) (0,0,1)", 0),
                                       ("(1,0,0) (0,0,0) (0,0,1)", 1),
                                       ("(1,0,0) (0,1,0) (nan,nan,nan)", 2),
                                       ("(1,0,0) (0,1,0)", 2)])
def test_nrrd_axes_without_a_direction_are_refused(tmp_path: Path, dirs: str, axis: int,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    path = nrrd(tmp_path / "d.nrrd", f"space: left-posterior-superior\nspace directions: {dirs}\n")
    with pytest.raises(GeometryError) as err:
        io.read(path)
    check_one_line(err, capfd, "d.nrrd", f"space directions[{axis}]")


def test_sheared_nrrd_and_nan_origin_name_the_file(tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    path = nrrd(tmp_path / "shear.nrrd", "space: left-posterior-superior\n"
                "space directions: (1,0,0) (1,1,0) (0,0,1)\n")
    with pytest.raises(GeometryError) as err:
        io.read(path)
    check_one_line(err, capfd, "shear.nrrd", "not orthogonal")
    path = nrrd(tmp_path / "origin.nrrd", "space: left-posterior-superior\n"
                "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (nan,0,0)\n")
    with pytest.raises(CorruptFileError) as err:  # teem refuses it itself, in several lines
        io.read(path)
    check_one_line(err, capfd, "origin.nrrd", "SimpleITK cannot read it")


def test_rgb_nrrd_axis_kinds_skip_the_checks_and_reach_the_voxel_refusal(tmp_path: Path) -> None:
    path = nrrd(tmp_path / "rgb.nrrd", "kinds: RGB-color domain domain\nspacings: nan 1 1\n")
    path.write_bytes(path.read_bytes().replace(b"dimension: 3\nsizes: 4 3 2",
                                               b"dimension: 3\nsizes: 3 4 2"))
    with pytest.raises(InvalidImageError, match="components"):
        io.read(path)


@pytest.mark.parametrize("field,name", [("ElementSpacing = 0 1 1\n", "ElementSpacing[0]"),
                                        ("ElementSpacing = 1 -2 1\n", "ElementSpacing[1]"),
                                        ("ElementSpacing = 1 1 nan\n", "ElementSpacing[2]"),
                                        ("ElementSize = 1 0 1\n", "ElementSize[1]"),
                                        ("TransformMatrix = nan 0 0 0 1 0 0 0 1\n",
                                         "TransformMatrix"),
                                        ("Offset = 0 nan 0\n", "Offset")])
def test_metaimage_geometry_fields_are_checked(tmp_path: Path, field: str, name: str,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    path = mha(tmp_path / "g.mha", field)
    with pytest.raises(GeometryError) as err:
        io.read(path)
    check_one_line(err, capfd, "g.mha", name)


def test_truncated_metaimage_is_one_line_and_metaio_prints_nothing(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = mha(tmp_path / "cut.mha", "ElementSpacing = 1 1 1\n", data=VOXELS[:10])
    with pytest.raises(CorruptFileError) as err:
        io.read(path)
    check_one_line(err, capfd, "cut.mha", "SimpleITK cannot read it")


def test_valid_headers_agree_with_simpleitk(tmp_path: Path) -> None:
    path = mha(tmp_path / "ok.mha", "ElementSpacing = 0.5 0.7 2\nOffset = 1 2 3\n"
               "TransformMatrix = 0 1 0 -1 0 0 0 0 1\n")
    vol = io.read(path)
    ref = sitk.ReadImage(str(path))
    assert vol.spacing == pytest.approx(ref.GetSpacing())
    assert vol.origin == pytest.approx(ref.GetOrigin())
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-12)
    path = nrrd(tmp_path / "ok.nrrd", "space: left-posterior-superior\n"
                "space directions: (0,0.5,0) (-0.7,0,0) (0,0,2)\nspace origin: (1,2,3)\n")
    vol = io.read(path)
    ref = sitk.ReadImage(str(path))
    assert vol.spacing == pytest.approx(ref.GetSpacing())
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref).T)
