"""DICOM inputs under data roots: symlinked files checked one by one, zips extracted to a private
temporary folder that is always removed, missing pixel attributes named, one-line messages."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import pydicom
import pytest

from medseg import io
from medseg.errors import (
    CorruptFileError,
    GeometryError,
    MissingDicomAttributeError,
    NoDicomSeriesError,
    PathOutsideRootsError,
    SeriesSelectionError,
)
from tests.dicom_factory import make_volume, rotation, write_series
from tests.io.open_watch import watch_opens


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


def test_symlinked_file_leaving_the_roots_refuses_the_read(root: Path, tmp_path: Path) -> None:
    files = write_series(make_volume(), root / "study" / "series")
    other = write_series(make_volume(seed=3), tmp_path / "elsewhere")  # another patient's slice
    deep = root / "study" / "series" / "a" / "b"
    deep.mkdir(parents=True)
    link = deep / "extra.dcm"
    link.symlink_to(other[0])
    for call in (io.read, io.list_series):
        with watch_opens(other[0]) as events, pytest.raises(PathOutsideRootsError) as err:
            call(root / "study", roots=[root])
        assert events == [], call
        assert str(link) in str(err.value) and "\n" not in str(err.value)
    assert len(files) == 8


def test_symlinked_file_inside_the_roots_is_read_and_named_by_its_link(root: Path) -> None:
    files = write_series(make_volume(), root / "store")
    series = root / "series"
    series.mkdir()
    for f in files:
        (series / f.name).symlink_to(f)
    vol = io.read(series, roots=[root])
    assert vol.shape[2] == 8
    assert all(Path(f).parent == series for f in vol.meta["dicom"].files)


def test_without_roots_the_cli_follows_links_its_user_placed(root: Path, tmp_path: Path) -> None:
    files = write_series(make_volume(), tmp_path / "elsewhere")
    for f in files:
        (root / f.name).symlink_to(f)
    assert io.read(root).shape[2] == 8


def test_symlinked_folders_are_not_followed(root: Path, tmp_path: Path) -> None:
    write_series(make_volume(), root / "a", series_number=1)
    write_series(make_volume(seed=2, direction=rotation("x", 30)), tmp_path / "b",
                 series_number=2)
    os.symlink(tmp_path / "b", root / "linked")
    for roots in ([root], None):
        assert [s.series_number for s in io.list_series(root, roots=roots)] == [1]


def test_paths_outside_the_roots_are_refused(root: Path, tmp_path: Path) -> None:
    write_series(make_volume(), tmp_path / "elsewhere")
    for path in (tmp_path / "elsewhere", root / ".." / "elsewhere"):
        with pytest.raises(PathOutsideRootsError, match="nothing was read"):
            io.read(path, roots=[root])
    write_series(make_volume(), root / "x")
    assert io.read(root / "x" / ".." / "x", roots=[str(root)]).shape[2] == 8


def test_zip_members_go_to_a_private_temporary_folder_that_is_always_removed(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    files = write_series(make_volume(), tmp_path / "s")
    archive = root / "ct.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"series/{f.name}")
    vol = io.read(archive, roots=[root])
    assert vol.shape[2] == 8 and vol.meta["dicom"].files[0].startswith(f"{archive}::series/")
    assert list(scratch.iterdir()) == []
    with zipfile.ZipFile(root / "notes.zip", "w") as zf:
        zf.writestr("notes.txt", "not DICOM")
    with pytest.raises(NoDicomSeriesError, match="extract it"):
        io.read(root / "notes.zip", roots=[root])
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("attribute", ["Rows", "PixelRepresentation", "BitsAllocated"])
def test_missing_pixel_attribute_is_named_not_blamed_on_spacing(tmp_path: Path,
                                                                attribute: str) -> None:
    files = write_series(make_volume(), tmp_path)
    ds = pydicom.dcmread(files[3])
    delattr(ds, attribute)
    ds.save_as(files[3])
    with pytest.raises(MissingDicomAttributeError) as err:
        io.read(tmp_path)
    msg = str(err.value)
    assert files[3].name in msg and attribute in msg and "spacing" not in msg and "\n" not in msg


def test_several_series_are_listed_on_one_line(tmp_path: Path) -> None:
    write_series(make_volume(), tmp_path / "a", series_number=1, description="first")
    write_series(make_volume(seed=2, direction=rotation("x", 30)), tmp_path / "b",
                 series_number=2, description="second")
    with pytest.raises(SeriesSelectionError) as err:
        io.read(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "'first'" in msg and "'second'" in msg and "--series" in msg


def _poke_is(path: Path, group: int, element: int, value: bytes) -> None:
    """Replace a 2-byte IS value in an explicit-VR file by bytes pydicom cannot convert."""
    tag = group.to_bytes(2, "little") + element.to_bytes(2, "little") + b"IS\x02\x00"
    data = path.read_bytes()
    assert data.count(tag) == 1
    at = data.index(tag) + len(tag)
    path.write_bytes(data[:at] + value + data[at + 2:])


def test_unconvertible_header_values_do_not_break_listing(tmp_path: Path) -> None:
    files = write_series(make_volume(), tmp_path)
    _poke_is(files[0], 0x0020, 0x0011, b"x ")  # SeriesNumber
    (info,) = io.list_series(tmp_path)  # same series (same UID); its number just unknown
    assert info.n_images == 8
    ds = pydicom.dcmread(files[1])
    ds.NumberOfFrames = 1
    ds.save_as(files[1])
    _poke_is(files[1], 0x0028, 0x0008, b"x ")  # NumberOfFrames
    with pytest.raises(CorruptFileError, match="NumberOfFrames") as err:
        io.read(tmp_path)
    assert files[1].name in str(err.value) and "\n" not in str(err.value)


def test_zero_pixel_spacing_names_the_file(tmp_path: Path) -> None:
    files = write_series(make_volume(), tmp_path)
    ds = pydicom.dcmread(files[2])
    ds.PixelSpacing = [0, 0.8]
    ds.save_as(files[2])
    with pytest.raises(GeometryError) as err:
        io.read(tmp_path)
    assert files[2].name in str(err.value) and "PixelSpacing" in str(err.value)
