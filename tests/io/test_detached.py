"""Detached headers (MetaImage ElementDataFile, NRRD data file): data files checked before reading.

Every case writes real header text and real data files; "nothing was read" is asserted with
inotify on the target outside the root (see :mod:`tests.io.open_watch`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg import io
from medseg.errors import CorruptFileError, InputNotFoundError, MedsegError, PathOutsideRootsError
from tests.io.open_watch import watch_opens

SECRET = b"MEDSEG-SECRET-BYTES-0123"  # 24 bytes: exactly one 4x3x2 uint8 volume
VOXELS = bytes(range(24))


def mha(datafile: str, *, dims: str = "4 3 2", extra: str = "") -> str:
    return (f"ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementSpacing = 1 1 1\n{extra}"
            f"ElementType = MET_UCHAR\nElementDataFile = {datafile}\n")


def nrrd(datafile: str, *, key: str = "data file", extra: str = "") -> str:
    return (f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n{extra}"
            f"{key}: {datafile}\n")


HEADERS = {  # name -> header text naming a given data file
    "evil.mha": mha, "evil.mhd": mha, "evil.nhdr": nrrd,
    "evil.nrrd": lambda d: nrrd(d) + "\n",
    "datafile.nhdr": lambda d: nrrd(d, key="datafile"),
    "nrrd_named.mha": nrrd,  # NRRD content under a MetaImage name: parsed as what it is
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.raw"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def one_line(exc: pytest.ExceptionInfo[MedsegError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("name", sorted(HEADERS))
@pytest.mark.parametrize("with_roots", [True, False])
def test_absolute_data_file_is_refused_before_anything_is_opened(
        root: Path, secret: Path, name: str, with_roots: bool) -> None:
    header = root / name
    header.write_text(HEADERS[name](str(secret)))
    with watch_opens(secret) as events, pytest.raises(PathOutsideRootsError) as err:
        io.read(header, roots=[root] if with_roots else None)
    assert events == []
    msg = one_line(err)
    assert name in msg and "nothing was read" in msg


@pytest.mark.parametrize("name", ["evil.mha", "evil.nrrd"])
def test_etc_passwd_escape_is_refused(root: Path, name: str) -> None:
    (root / name).write_text(HEADERS[name]("/etc/passwd"))
    with pytest.raises(PathOutsideRootsError, match="/etc/passwd") as err:
        io.read(root / name, roots=[root])
    assert str(root / name) in one_line(err)
    assert io.detect_format(root / name, roots=[root]) == "itk"  # reads the header only
    assert io.list_series(root / name, roots=[root]) == []


@pytest.mark.parametrize("datafile", ["../outside/secret.raw", "sub/../../outside/secret.raw",
                                      "~/secret.raw", "C:/secret.raw", "sub\\..\\..\\x.raw",
                                      "img\x01.raw"])
def test_names_leaving_the_header_folder_are_refused(root: Path, secret: Path,
                                                     datafile: str) -> None:
    (root / "sub").mkdir()
    for header, text in (("a.mhd", mha(datafile)), ("a.nhdr", nrrd(datafile))):
        (root / header).write_text(text)
        with watch_opens(secret) as events, pytest.raises(PathOutsideRootsError):
            io.read(root / header)
        assert events == []


def test_symlinked_data_file_must_stay_in_the_headers_root(root: Path, secret: Path,
                                                           tmp_path: Path) -> None:
    (root / "img.raw").symlink_to(secret)
    (root / "a.mhd").write_text(mha("img.raw"))
    with watch_opens(secret) as events, pytest.raises(PathOutsideRootsError) as err:
        io.read(root / "a.mhd", roots=[root])
    assert events == [] and "img.raw" in one_line(err) and "link" in str(err.value)
    # the CLI (no roots) follows a link its user placed, like every other path it is given
    vol = io.read(root / "a.mhd")
    assert vol.array.transpose(2, 1, 0).tobytes() == SECRET
    # a link to a file inside the same root is fine
    (root / "real.raw").write_bytes(VOXELS)
    (root / "img2.raw").symlink_to(root / "real.raw")
    (root / "b.mhd").write_text(mha("img2.raw"))
    assert io.read(root / "b.mhd", roots=[root]).array.transpose(2, 1, 0).tobytes() == VOXELS
    # ... but not to another allowed root: data files live in the header's own folder tree
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.raw").write_bytes(VOXELS)
    (root / "img3.raw").symlink_to(other / "x.raw")
    (root / "c.mhd").write_text(mha("img3.raw"))
    with pytest.raises(PathOutsideRootsError):
        io.read(root / "c.mhd", roots=[root, other])


def test_dangling_link_outside_the_root_is_refused_not_missing(root: Path, tmp_path: Path) -> None:
    (root / "img.raw").symlink_to(tmp_path / "nowhere" / "x.raw")
    (root / "a.nhdr").write_text(nrrd("img.raw"))
    with pytest.raises(PathOutsideRootsError):
        io.read(root / "a.nhdr", roots=[root])


@pytest.mark.parametrize("header,text", [("lone.mhd", mha("lone.raw")),
                                         ("lone.nhdr", nrrd("lone.raw"))])
def test_lone_header_says_the_data_file_is_missing(root: Path, header: str, text: str) -> None:
    (root / header).write_text(text)
    with pytest.raises(InputNotFoundError) as err:
        io.read(root / header, roots=[root])
    msg = one_line(err)
    assert "lone.raw" in msg and "missing" in msg and ".zip" in msg


def test_data_file_in_a_subfolder_and_crlf_headers_read(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "img.raw").write_bytes(VOXELS)
    (root / "a.mhd").write_text(mha("data/img.raw"))
    (root / "b.mhd").write_bytes(mha("data/img.raw").replace("\n", "\r\n").encode())
    for name in ("a.mhd", "b.mhd"):
        vol = io.read(root / name, roots=[root])
        assert vol.array.transpose(2, 1, 0).tobytes() == VOXELS
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(root / name)))
        np.testing.assert_array_equal(vol.array, ref.T)


def test_list_and_pattern_forms_read_and_are_checked(root: Path, secret: Path) -> None:
    for k in range(2):
        (root / f"s{k}.raw").write_bytes(VOXELS[12 * k:12 * (k + 1)])
    headers = {"list.mhd": mha("LIST 2D") + "s0.raw\ns1.raw\n",
               "pattern.mhd": mha("s%d.raw 0 1 1"),
               "list.nhdr": nrrd("LIST 2") + "s0.raw\ns1.raw\n",
               "pattern.nhdr": nrrd("s%d.raw 0 1 1 2")}
    for name, text in headers.items():
        (root / name).write_text(text)
        vol = io.read(root / name, roots=[root])
        assert vol.array.transpose(2, 1, 0).tobytes() == VOXELS, name
    (root / "s1.raw").unlink()
    (root / "s1.raw").symlink_to(secret)
    for name in headers:
        with watch_opens(secret) as events, pytest.raises(PathOutsideRootsError):
            io.read(root / name, roots=[root])
        assert events == [], name
    (root / "bad.mhd").write_text(mha("LIST 2D") + f"s0.raw\n{secret}\n")
    with pytest.raises(PathOutsideRootsError):
        io.read(root / "bad.mhd")


@pytest.mark.parametrize("datafile,match", [
    ("s%s.raw 0 1 1", "one integer conversion"),  # %s would make C's sprintf read memory
    ("s%d_%d.raw 0 1 1", "one integer conversion"),
    ("s%d.raw 0 1 0", "step"),
    ("s%d.raw 0 999999999 1", "more than"),
])
def test_bad_patterns_are_refused(root: Path, datafile: str, match: str) -> None:
    (root / "p.mhd").write_text(mha(datafile))
    with pytest.raises(CorruptFileError, match=match):
        io.read(root / "p.mhd")


def test_parser_never_stops_before_the_library_would(root: Path, secret: Path) -> None:
    """Key case, odd white space and a data-file line after lines teem does not end on."""
    variants = {
        "lower.mha": mha(str(secret)).replace("ElementDataFile", "elementdatafile"),
        "tabs.mha": mha(str(secret)).replace("ElementDataFile = ", "\t ElementDataFile\t=\t"),
        "colon.mha": mha(str(secret)).replace("ElementDataFile = ", "ElementDataFile: "),
        "spaces.nrrd": nrrd(str(secret), extra="   \n"),
        "cr.nrrd": nrrd(str(secret), extra="space: left-posterior-superior\r\r\n"),
        "upper.nrrd": nrrd(str(secret), key="Data File"),
        "cr_name.mha": mha("img.raw\r/../../outside/secret.raw"),
    }
    for name, text in variants.items():
        (root / name).write_bytes(text.encode("latin-1"))
        with watch_opens(secret) as events, pytest.raises(PathOutsideRootsError):
            io.read(root / name, roots=[root])
        assert events == [], name


def test_header_without_a_data_file_line_in_its_first_mib_is_refused(root: Path,
                                                                       secret: Path) -> None:
    padding = "Comment = " + "x" * 1000 + "\n"
    (root / "long.mha").write_text(mha(str(secret), extra=padding * 1100))
    with watch_opens(secret) as events, pytest.raises(CorruptFileError, match="1 MiB"):
        io.read(root / "long.mha", roots=[root])
    assert events == []
    (root / "none.mha").write_text("ObjectType = Image\nNDims = 3\n")
    with pytest.raises(CorruptFileError, match="ElementDataFile"):
        io.read(root / "none.mha")


def test_header_reached_through_a_link_keeps_its_data_files_in_its_own_root(
        root: Path, secret: Path, tmp_path: Path) -> None:
    """The header is resolved first (the roots contract): its folder is where the link leads,
    so data files are looked up there, inside the root, whichever path named the header."""
    (root / "cases").mkdir()
    (root / "cases" / "img.raw").write_bytes(VOXELS)
    (root / "cases" / "a.mhd").write_text(mha("img.raw"))
    os.symlink(root / "cases" / "a.mhd", root / "alias.mhd")
    vol = io.read(root / "alias.mhd", roots=[root])
    assert vol.array.transpose(2, 1, 0).tobytes() == VOXELS
    (tmp_path / "outside" / "img.raw").write_bytes(SECRET)  # next to the link, not the header
    os.symlink(root / "cases" / "a.mhd", tmp_path / "outside" / "alias.mhd")
    with watch_opens(tmp_path / "outside" / "img.raw") as events:
        vol = io.read(tmp_path / "outside" / "alias.mhd", roots=[root])
    assert events == [] and vol.array.transpose(2, 1, 0).tobytes() == VOXELS
