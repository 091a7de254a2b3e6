"""extract_zip: streamed, capped, all-or-nothing; hostile archives refused with nothing left."""

from __future__ import annotations

import stat
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from medseg.errors import (
    CorruptFileError,
    UnsafeArchiveError,
    UnsupportedFormatError,
    UploadTooLargeError,
)
from medseg.io import archive
from medseg.io.archive import extract_zip

MiB = 2**20


def make_zip(path: Path, members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED
             ) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # ZipInfo() would normalise the name; a hostile zip does not
            info.compress_type = method
            zf.writestr(info, data)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_extracts_regular_files_and_skips_junk(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "case.zip", {
        "case/img.mhd": b"header", "case/img.raw": bytes(range(256)) * 10, "case/": b"",
        "__MACOSX/case/._img.raw": b"junk", "case/.DS_Store": b"junk", "./top.txt": b"top"})
    dest = tmp_path / "out"
    paths = extract_zip(src, dest, max_bytes=MiB)
    assert paths == [dest / "top.txt", dest / "case/img.mhd", dest / "case/img.raw"]  # by name
    assert (dest / "case/img.raw").read_bytes() == bytes(range(256)) * 10
    assert listing(dest) == ["case", "case/img.mhd", "case/img.raw", "top.txt"]


@pytest.mark.parametrize("name", ["../evil.raw", "/abs/evil.raw", "C:/evil.raw",
                                  "ok/..\\..\\evil.raw"])
def test_zip_slip_names_refused_before_any_member_is_written(tmp_path: Path, name: str) -> None:
    src = make_zip(tmp_path / "evil.zip", {"good.raw": b"good", name: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="outside an extraction folder"):
        extract_zip(src, dest, max_bytes=MiB)
    assert not dest.exists() and not (tmp_path / "evil.raw").exists()


def test_symlink_and_special_members_refused(tmp_path: Path) -> None:
    src = tmp_path / "link.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("img.mhd", b"ElementDataFile = img.raw\n")
        link = zipfile.ZipInfo("img.raw")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_zip(src, dest, max_bytes=MiB)
    assert listing(dest) == []
    fifo = tmp_path / "fifo.zip"
    with zipfile.ZipFile(fifo, "w") as zf:
        info = zipfile.ZipInfo("pipe")
        info.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(info, b"")
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        extract_zip(fifo, dest, max_bytes=MiB)


def test_duplicate_and_clashing_names_refused(tmp_path: Path) -> None:
    dup = tmp_path / "dup.zip"
    with zipfile.ZipFile(dup, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("a.raw", b"1")
        zf.writestr("a.raw", b"2")
    with pytest.raises(UnsafeArchiveError, match="same file"):
        extract_zip(dup, tmp_path / "o1", max_bytes=MiB)
    clash = make_zip(tmp_path / "clash.zip", {"a": b"file", "a/b.raw": b"in a folder"})
    with pytest.raises(UnsafeArchiveError, match="as a folder"):
        extract_zip(clash, tmp_path / "o2", max_bytes=MiB)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_existing_files_and_links_in_dest_are_never_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "upload"
    dest.mkdir()
    (dest / "img.raw").write_bytes(b"mine")
    src = make_zip(tmp_path / "a.zip", {"img.mhd": b"h", "img.raw": b"theirs"})
    with pytest.raises(UnsafeArchiveError, match="already exists"):
        extract_zip(src, dest, max_bytes=MiB)
    assert listing(dest) == ["img.raw"] and (dest / "img.raw").read_bytes() == b"mine"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    src = make_zip(tmp_path / "b.zip", {"sub/x.raw": b"through the link"})
    with pytest.raises(UnsafeArchiveError, match="write through"):
        extract_zip(src, dest, max_bytes=MiB)
    assert listing(outside) == []


def test_total_size_limit_from_declared_sizes(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "big.zip", {"a.raw": bytes(300_000), "b.raw": bytes(300_000)})
    with pytest.raises(UploadTooLargeError, match="limit"):
        extract_zip(src, tmp_path / "out", max_bytes=500_000)
    assert not (tmp_path / "out").exists()
    assert len(extract_zip(src, tmp_path / "ok", max_bytes=600_000)) == 2


def test_ratio_limit_stops_a_bomb_after_the_floor(tmp_path: Path) -> None:
    size = archive.RATIO_FLOOR_BYTES + 4 * MiB
    src = make_zip(tmp_path / "bomb.zip", {"zeros.raw": bytes(size)})
    assert src.stat().st_size < size / 500
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UploadTooLargeError, match="times its compressed size"):
        extract_zip(src, dest, max_bytes=10 * size)
    assert listing(dest) == []
    paths = extract_zip(src, dest, max_bytes=10 * size, max_ratio=float("inf"))
    assert paths[0].stat().st_size == size
    small = make_zip(tmp_path / "blank_slice.zip", {"slice.dcm": bytes(512 * 1024)})
    assert len(extract_zip(small, tmp_path / "o2", max_bytes=MiB)) == 1  # under the floor


def test_lying_sizes_and_damaged_members_leave_nothing(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "lie.zip", {"a.raw": b"x" * 1000, "b.raw": bytes(range(256)) * 40})
    data = bytearray(src.read_bytes())
    central = data.rfind(b"PK\x01\x02")  # last central entry: b.raw; file size at +24
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    src.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(CorruptFileError, match="b.raw"):
        extract_zip(src, dest, max_bytes=MiB)
    assert not dest.exists()
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptFileError, match="not a readable zip"):
        extract_zip(tmp_path / "junk.zip", dest, max_bytes=MiB)


def test_encrypted_members_and_member_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    src = make_zip(tmp_path / "enc.zip", {"a.raw": b"secret"})
    data = bytearray(src.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 0x1  # general purpose flag: encrypted
    src.write_bytes(bytes(data))
    with pytest.raises(UnsupportedFormatError, match="encrypted"):
        extract_zip(src, tmp_path / "out", max_bytes=MiB)
    many = make_zip(tmp_path / "many.zip", {f"{i}.raw": b"x" for i in range(5)})
    monkeypatch.setattr(archive, "MAX_MEMBERS", 4)
    with pytest.raises(UploadTooLargeError, match="members"):
        extract_zip(many, tmp_path / "out", max_bytes=MiB)


def test_peak_memory_is_a_chunk_not_a_member(tmp_path: Path) -> None:
    size = 48 * MiB
    src = tmp_path / "one.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("one.raw", "w") as out:
        for _ in range(size // MiB):
            out.write(bytes(MiB))
    tracemalloc.start()
    try:
        (path,) = extract_zip(src, tmp_path / "out", max_bytes=size, max_ratio=float("inf"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path.stat().st_size == size
    assert peak < 4 * archive.CHUNK_BYTES, f"peak {peak / MiB:.1f} MiB, member {size // MiB} MiB"
