"""DICOM series reader: every refusal is a typed error that names the input and the problem."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

import medseg.io.dicom_pixels as dicom_pixels
from medseg.errors import (
    CorruptFileError,
    GantryTiltError,
    GeometryError,
    InconsistentSeriesError,
    NoDicomSeriesError,
    SeriesSelectionError,
    SliceSpacingError,
    UnsafeArchiveError,
    UnsupportedFormatError,
    UploadTooLargeError,
)
from medseg.io.dicom import list_series, read_dicom
from tests.conftest import SAMPLES
from tests.dicom_factory import expected_read, make_volume, rotation, write_series

TOTALSEG = SAMPLES / "totalsegmentator" / "example_ct_dicom"


def edit(path: Path, change: Callable[[Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


@pytest.fixture
def series(tmp_path: Path) -> list[Path]:
    """An oblique 8-slice series (step 2.5 mm), files in slice order."""
    src = make_volume(direction=rotation("x", 20) @ rotation("y", 20), spacing=(0.8, 0.9, 2.5))
    return write_series(src, tmp_path / "s")


def test_missing_slice_names_position(tmp_path: Path) -> None:
    src = make_volume()
    write_series(src, tmp_path, drop=(4,))
    with pytest.raises(SliceSpacingError, match="1 slice\\(s\\) missing") as err:
        read_dicom(tmp_path)
    missing = src.index_to_world([0, 0, 4])
    assert "(" + ", ".join(f"{v:.6g}" for v in missing) + ")" in str(err.value)


def test_uneven_spacing(series: list[Path]) -> None:
    def shift(ds: Dataset) -> None:
        normal = np.cross(np.asarray(ds.ImageOrientationPatient[:3], dtype=float),
                          np.asarray(ds.ImageOrientationPatient[3:], dtype=float))
        ds.ImagePositionPatient = [round(float(v), 6) for v in
                                   np.asarray(ds.ImagePositionPatient, dtype=float) + 0.8 * normal]
    edit(series[3], shift)
    with pytest.raises(SliceSpacingError, match="uneven"):
        read_dicom(series[0].parent)


def test_positions_rounded_to_hundredths_are_accepted(series: list[Path]) -> None:
    """Real headers often round positions to 0.01 mm: no false tilt / uneven-spacing alarm."""
    for path in series:
        edit(path, lambda ds: setattr(ds, "ImagePositionPatient",
                                      [round(float(v), 2) for v in ds.ImagePositionPatient]))
    vol = read_dicom(series[0].parent)
    assert vol.shape[2] == len(series)
    np.testing.assert_allclose(vol.spacing[2], 2.5, atol=0.01)


def test_gantry_tilt_reports_angle(tmp_path: Path) -> None:
    write_series(make_volume(), tmp_path, tilt_deg=15.0)
    with pytest.raises(GantryTiltError, match="15.00 deg"):
        read_dicom(tmp_path)


def test_duplicate_position(tmp_path: Path) -> None:
    write_series(make_volume(), tmp_path, duplicate=3)
    with pytest.raises(SliceSpacingError, match="same position"):
        read_dicom(tmp_path)


@pytest.mark.parametrize("what", ["size", "orientation", "pixel spacing"])
def test_mixed_slices_refused(series: list[Path], what: str) -> None:
    def change(ds: Dataset) -> None:
        if what == "size":
            arr = ds.pixel_array[:-2]
            ds.Rows, ds.PixelData = arr.shape[0], arr.tobytes()
        elif what == "orientation":
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        else:
            ds.PixelSpacing = [1.5, 1.5]
    edit(series[5], change)
    with pytest.raises(InconsistentSeriesError, match=what) as err:
        read_dicom(series[0].parent)
    assert series[5].name in str(err.value)


def test_non_orthonormal_orientation(series: list[Path]) -> None:
    for path in series:
        edit(path, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0.1, 1, 0]))
    with pytest.raises(GeometryError, match="not two orthogonal unit vectors"):
        read_dicom(series[0].parent)


def test_missing_position(series: list[Path]) -> None:
    edit(series[2], lambda ds: delattr(ds, "ImagePositionPatient"))
    with pytest.raises(GeometryError, match="ImagePositionPatient") as err:
        read_dicom(series[0].parent)
    assert series[2].name in str(err.value)


@pytest.mark.filterwarnings("ignore:End of file reached")
@pytest.mark.parametrize("compression", [None, "rle"])
def test_truncated_file_is_named(tmp_path: Path, compression: str | None) -> None:
    files = write_series(make_volume(), tmp_path, compression=compression)
    data = files[6].read_bytes()
    files[6].write_bytes(data[:-200])
    with pytest.raises(CorruptFileError, match="truncated") as err:
        read_dicom(tmp_path)
    assert files[6].name in str(err.value)


def test_unknown_transfer_syntax(series: list[Path]) -> None:
    ds = pydicom.dcmread(series[1])
    ds.compress(pydicom.uid.RLELossless, generate_instance_uid=False)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    ds.save_as(series[1])
    with pytest.raises(UnsupportedFormatError, match="MPEG2") as err:
        read_dicom(series[0].parent)
    assert series[1].name in str(err.value)


def test_missing_decoder_names_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(make_volume(), tmp_path, compression="j2k")

    class NoPlugin:
        is_available = False

    monkeypatch.setattr(dicom_pixels, "get_decoder", lambda ts: NoPlugin())
    with pytest.raises(UnsupportedFormatError, match="pip install pylibjpeg-openjpeg"):
        read_dicom(tmp_path)


def test_multiframe_without_frame_geometry(tmp_path: Path) -> None:
    (path,) = write_series(make_volume(), tmp_path, multiframe=True)

    def classic(ds: Dataset) -> None:
        del ds.PerFrameFunctionalGroupsSequence
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    edit(path, classic)
    with pytest.raises(InconsistentSeriesError, match="without per-frame positions"):
        read_dicom(path)


def test_junk_file_skipped_and_recorded(tmp_path: Path) -> None:
    src = make_volume(direction=rotation("z", 30))
    write_series(src, tmp_path, junk=True)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    vol = read_dicom(tmp_path)
    np.testing.assert_array_equal(vol.array, expected_read(src).array)
    skipped = sorted(Path(p).name for p in vol.meta["dicom"].skipped_files)
    assert skipped == ["image.png", "notes.txt"]


def test_empty_or_imageless_input(tmp_path: Path) -> None:
    with pytest.raises(NoDicomSeriesError, match="no DICOM image series"):
        read_dicom(tmp_path)
    (tmp_path / "rt.dcm").write_bytes((SAMPLES / "rt-utils" / "mock_data" / "rt.dcm").read_bytes())
    assert list_series(tmp_path) == []
    with pytest.raises(NoDicomSeriesError):
        read_dicom(tmp_path)


def test_unknown_series_selection(tmp_path: Path) -> None:
    write_series(make_volume(), tmp_path)
    for bad in (2, "7", "1.2.3.4"):
        with pytest.raises(SeriesSelectionError, match="no series"):
            read_dicom(tmp_path, series=bad)


@pytest.mark.parametrize("member", ["../evil.dcm", "/abs/evil.dcm", "C:/evil.dcm",
                                    "ok/..\\..\\evil.dcm"])
def test_unsafe_zip_refused_before_reading(tmp_path: Path, member: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "evil.zip"
    good = next(TOTALSEG.iterdir()).read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good.dcm", good)
        info = zipfile.ZipInfo("placeholder")
        info.filename = member  # ZipInfo() would normalise the name; a hostile zip does not
        zf.writestr(info, good)

    def no_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a member was read before the archive was checked")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_read)
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        read_dicom(archive)


def test_zip_size_limit(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", bytes(200_000))
    with pytest.raises(UploadTooLargeError, match="limit"):
        read_dicom(archive, max_zip_bytes=100_000)
    with pytest.raises(NoDicomSeriesError):
        read_dicom(archive)
