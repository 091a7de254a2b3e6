"""medseg.io.atomic: all-or-nothing writes and the one translation of write failures into
OutputError, under real conditions (read-only and full file systems, files in the way)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import OutputError
from medseg.io.atomic import (
    OutputSet,
    atomic_dir,
    atomic_files,
    atomic_path,
    check_target_folder,
    check_writable,
    output_error,
    show_path,
    write_bytes_atomic,
    write_text_atomic,
)
from tests.fs_fixtures import tmpfs

MESHES = OutputSet("mesh set", "summary.json", ("summary.json", "*.stl"))


def _one_line(exc: pytest.ExceptionInfo[OutputError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith("cannot write ") and "Nothing was written" in text
    return text


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def _mesh_set(target: Path, n: int, size: int = 10) -> None:
    with atomic_dir(target, MESHES) as stage:
        for i in range(n):
            write_bytes_atomic(stage / f"{i}.stl", bytes([i % 256]) * size)
        write_text_atomic(stage / "summary.json", f'{{"n": {n}}}')


def test_read_only_folder(readonly_dir: Path) -> None:
    with pytest.raises(OutputError) as exc:
        write_text_atomic(readonly_dir / "a.txt", "x")
    text = _one_line(exc)
    assert str(readonly_dir / "a.txt") in text and ("read-only" in text or "permission" in text)
    with pytest.raises(OutputError):
        _mesh_set(readonly_dir / "meshes", 2)
    with pytest.raises(OutputError) as exc:
        check_writable(readonly_dir)
    assert str(readonly_dir) in str(exc.value)
    assert _listing(readonly_dir) == []


def test_full_disk_leaves_nothing(full_fs: Path) -> None:
    before = _listing(full_fs)
    with pytest.raises(OutputError) as exc:
        write_bytes_atomic(full_fs / "a.bin", b"x" * 10_000)
    assert "disk is full" in _one_line(exc)
    with pytest.raises(OutputError) as exc:
        _mesh_set(full_fs / "a" / "meshes", 30, 10_000)
    assert str(full_fs / "a" / "meshes") in _one_line(exc)
    with pytest.raises(OutputError):
        write_bytes_atomic(full_fs / "b" / "c" / "x.bin", b"x" * 10_000)
    from medseg.io.atomic import staged_files

    with pytest.raises(OutputError), staged_files(full_fs / "d") as stage:
        (stage / "x.bin").write_bytes(b"x" * 10_000)
    assert _listing(full_fs) == before  # no temporary file, staging or new folder left


def test_a_writer_failing_on_a_full_disk_without_errno_is_translated(tmp_path: Path) -> None:
    """SimpleITK reports a full disk as a RuntimeError; the free space tells."""
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((40, 40, 40), np.float32))
    with tmpfs(tmp_path / "small", "100k") as small:
        for name in ("a.nrrd", "a.mha"):
            with pytest.raises(OutputError) as exc, atomic_path(small / name) as tmp:
                sitk.WriteImage(image, str(tmp))
            assert "disk is full" in _one_line(exc)
        assert _listing(small) == []


def test_parent_is_a_file_and_folder_versus_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(OutputError) as exc:
        write_text_atomic(blocker / "sub" / "a.txt", "x")
    assert f"{blocker} is a file" in _one_line(exc)
    with pytest.raises(OutputError) as exc:
        write_text_atomic(tmp_path, "x")  # an existing folder where a file is wanted
    assert "a file name is needed" in _one_line(exc)
    with pytest.raises(OutputError) as exc:
        _mesh_set(blocker, 1)  # an existing file where a folder is wanted
    assert "a folder is needed" in _one_line(exc)
    assert blocker.read_text() == "a file"


def test_name_too_long_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as exc:
        write_text_atomic(tmp_path / ("n" * 300 + ".txt"), "x")
    text = _one_line(exc)
    assert "304 bytes" in text and "allows 255" in text
    with pytest.raises(OutputError) as exc:
        _mesh_set(tmp_path / ("m" * 300), 1)
    assert "m" * 40 in _one_line(exc)
    assert _listing(tmp_path) == []


def test_temporary_names_stay_short_for_a_long_target(tmp_path: Path) -> None:
    target = tmp_path / ("x" * 250 + ".nii.gz")  # 257 bytes: too long itself
    with pytest.raises(OutputError):
        write_bytes_atomic(target, b"x")
    ok = tmp_path / ("y" * 240 + ".nii.gz")  # the target fits; its temporary file must too
    write_bytes_atomic(ok, b"data")
    assert ok.read_bytes() == b"data" and _listing(tmp_path) == [ok.name]


def test_existing_set_is_replaced_whole_and_a_foreign_folder_refused(tmp_path: Path) -> None:
    target = tmp_path / "meshes"
    _mesh_set(target, 3)
    _mesh_set(target, 1)
    assert _listing(target) == ["0.stl", "summary.json"]  # no 1.stl/2.stl of the old set
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputError) as exc:
        _mesh_set(target, 2)
    assert "notes.txt" in _one_line(exc)
    assert _listing(target) == ["0.stl", "notes.txt", "summary.json"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("x")
    with pytest.raises(OutputError, match="not part of a medseg mesh set"):
        check_target_folder(other, MESHES)
    empty = tmp_path / "empty"
    empty.mkdir()
    _mesh_set(empty, 2)
    assert _listing(empty) == ["0.stl", "1.stl", "summary.json"]


def test_a_failure_inside_the_block_leaves_the_old_set(tmp_path: Path) -> None:
    target = tmp_path / "meshes"
    _mesh_set(target, 2)
    with pytest.raises(ZeroDivisionError), atomic_dir(target, MESHES) as stage:
        write_text_atomic(stage / "summary.json", "new")
        raise ZeroDivisionError
    assert _listing(target) == ["0.stl", "1.stl", "summary.json"]
    assert (target / "summary.json").read_text() == '{"n": 2}'
    assert _listing(tmp_path) == ["meshes"]


def test_a_mount_point_target_is_staged_inside(tmp_path: Path) -> None:
    """A mount point cannot be renamed: the set is staged in it and moved in by renames."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        _mesh_set(disk, 3)
        _mesh_set(disk, 1)
        assert _listing(disk) == ["0.stl", "summary.json"]


def test_atomic_files_commit_together(tmp_path: Path) -> None:
    a, b = tmp_path / "img.nii.gz", tmp_path / "img.labels.json"
    with atomic_files([a, b]) as (ta, tb):
        ta.write_bytes(b"image")
        tb.write_text("{}")
    assert a.read_bytes() == b"image" and b.read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_files([a, b]) as (ta, tb):
        ta.write_bytes(b"new image")
        raise RuntimeError("the sidecar could not be made")
    assert a.read_bytes() == b"image" and _listing(tmp_path) == [b.name, a.name]
    assert oct(a.stat().st_mode & 0o777) != oct(0o600)  # umask mode, not mkstemp's 0600


def test_output_error_messages_name_the_path_on_one_line(tmp_path: Path) -> None:
    weird = tmp_path / "a\nb"
    text = str(output_error(OSError(errno.EACCES, "denied"), weird))
    assert "\n" not in text and "a\\nb" in text and "permission denied" in text
    assert show_path("x" * 500).endswith("(500 characters)")
    assert "disk is full" in str(output_error(OSError(errno.EDQUOT, "quota"), tmp_path / "q"))


def test_staged_files_land_together(tmp_path: Path) -> None:
    from medseg import io
    from medseg.io.atomic import staged_files
    from medseg.volume import Volume
    from tests.conftest import make_volume

    vol = make_volume("oblique").with_array(np.ones((20, 16, 8), np.uint8), labels={1: "a"})
    with staged_files(tmp_path) as stage:
        io.write(vol, stage / "m.nii.gz")
        assert _listing(tmp_path) == [stage.name]  # nothing in place yet
    assert _listing(tmp_path) == ["m.labels.json", "m.nii.gz"]
    with pytest.raises(OSError), staged_files(tmp_path) as stage:
        io.write(vol.with_array(vol.array, labels={1: "b"}), stage / "m.nii.gz")
        raise OSError(errno.EIO, "the SEG after the mask failed")
    assert _listing(tmp_path) == ["m.labels.json", "m.nii.gz"]
    assert io.read(tmp_path / "m.nii.gz", label=True).labels == {1: "a"}
    big = Volume(np.random.default_rng(0).integers(0, 2, (200, 200, 20), dtype=np.uint8),
                 (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3), labels={1: "a"})
    with tmpfs(tmp_path / "small", "64k") as small:
        with pytest.raises(OutputError, match="full"), staged_files(small) as stage:
            io.write(big, stage / "big.nii")
        assert _listing(small) == []


def test_a_symlinked_target_folder_keeps_its_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _mesh_set(real, 3)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    _mesh_set(link, 1)
    assert link.is_symlink() and _listing(real) == ["0.stl", "summary.json"]
    assert _listing(tmp_path) == ["link", "real"]
