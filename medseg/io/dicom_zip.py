"""Where DICOM bytes come from: one file, a folder (recursive) or a zip archive read in memory.

A zip is checked *before* any member is read: member names that are absolute, carry a drive
letter or contain a ``..`` component, and archives whose declared uncompressed size exceeds a
limit, are refused with :class:`~medseg.errors.UnsafeArchiveError`. Members are decompressed
into memory (``io.BytesIO``); nothing is ever extracted to disk. Directory entries and macOS
resource-fork junk (``__MACOSX/``, ``._*``, ``.DS_Store``) are ignored.
"""

from __future__ import annotations

import io
import os
import re
import threading
import zipfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from medseg.errors import CorruptFileError, InputNotFoundError, UnsafeArchiveError

#: Default limit on the total uncompressed size of a zip archive (4 GiB).
DEFAULT_MAX_ZIP_BYTES = 4 * 1024**3

_DRIVE = re.compile(r"^[A-Za-z]:")


def is_junk_member(name: str) -> bool:
    """True for zip members that are never DICOM: directories and macOS metadata."""
    parts = [p for p in re.split(r"[/\\]", name) if p]
    if name.endswith(("/", "\\")) or not parts:
        return True
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def check_zip_member_name(name: str, archive: Path) -> None:
    """Refuse a member name that could escape an extraction folder (zip-slip)."""
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path, a drive letter or a '..' "
            "component and could write outside an extraction folder. medseg refuses such "
            "archives; re-create the zip from the DICOM folder with relative paths only."
        )


def check_zip(zf: zipfile.ZipFile, archive: Path, max_bytes: int) -> list[zipfile.ZipInfo]:
    """Validate every member name and the total size; return the members worth reading.

    Nothing is decompressed here: the check uses the central directory only. ``zipfile`` never
    returns more than a member's declared size, so the limit also bounds memory use.
    """
    infos = zf.infolist()
    for info in infos:
        check_zip_member_name(info.filename, archive)
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise UnsafeArchiveError(
            f"{archive}: the archive expands to {total / 1024**3:.2f} GiB, more than the "
            f"{max_bytes / 1024**3:.2f} GiB limit (possible zip bomb). Extract it yourself "
            "and pass the folder, or raise the limit (max_zip_bytes) if you trust the file."
        )
    return [i for i in infos if not i.is_dir() and not is_junk_member(i.filename)]


class DicomInputs:
    """The candidate DICOM files of one input, each openable by index.

    ``names[i]`` is what error messages and :class:`DicomSource.files` show: the file path, or
    ``"<archive>::<member>"`` for a zip member. Use as a context manager (closes the zip).
    """

    def __init__(self, path: Path, max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._members: list[str] = []
        self._files: list[Path] = []
        self._lock = threading.Lock()
        if not path.exists():
            raise InputNotFoundError(f"{path}: no such file or folder. Check the path.")
        if path.is_dir():
            self._files = _walk(path)
            self.names = [str(p) for p in self._files]
        elif not _has_dicom_preamble(path) and zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise CorruptFileError(f"{path}: unreadable zip archive ({exc}).") from exc
            infos = check_zip(self._zip, path, max_zip_bytes)
            self._members = sorted(i.filename for i in infos)
            self.names = [f"{path}::{m}" for m in self._members]
        else:
            self._files = [path]
            self.names = [str(path)]

    @property
    def is_zip(self) -> bool:
        return self._zip is not None

    def open(self, index: int) -> str | BinaryIO:
        """A path (plain files) or an in-memory stream (zip members) for ``dcmread``."""
        if self._zip is None:
            return str(self._files[index])
        try:
            with self._lock:
                data = self._zip.read(self._members[index])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CorruptFileError(
                f"{self.names[index]}: cannot decompress this zip member ({exc}). "
                "The archive is damaged; re-create it."
            ) from exc
        return io.BytesIO(data)

    def head(self, index: int, n: int = 4) -> bytes:
        """The first ``n`` bytes of an input (used to sniff DICOM files without a preamble)."""
        src = self.open(index)
        if isinstance(src, str):
            with open(src, "rb") as fh:
                return fh.read(n)
        return src.read(n)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> DicomInputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _walk(folder: Path) -> list[Path]:
    """Every regular file below ``folder``, in a stable (sorted) order; links are not followed."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__MACOSX")
        for name in sorted(files):
            p = Path(root) / name
            if name != ".DS_Store" and p.is_file():
                out.append(p)
    return out


def _has_dicom_preamble(path: Path) -> bool:
    """True when ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:] == b"DICM"
