"""Where DICOM bytes come from: one file, a folder (recursive) or a zip archive.

**Folders** are walked without following symlinked sub-folders (they are never read). Symlinked
*files* at any depth are followed; with ``roots`` (the app) each one is resolved first and a link
that leads outside every root refuses the whole read with :class:`PathOutsideRootsError` naming
the link (refusing is clearer than a series that silently loses slices). Files are then opened
by their resolved path, the one that was checked.

**Zips** are extracted with :func:`medseg.io.archive.extract_members` into a private temporary
folder (``TMPDIR``): names checked before anything is decompressed (zip-slip, links, duplicates),
members streamed to disk in 1 MiB chunks with the bytes really decompressed counted against
``max_zip_bytes`` and ``max_zip_ratio``. Peak memory is one chunk, not one member. The folder is
removed when the inputs are closed (also on errors). Directory entries and macOS resource-fork
junk (``__MACOSX/``, ``._*``, ``.DS_Store``) are ignored.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from types import TracebackType

from medseg.errors import InputNotFoundError, PathOutsideRootsError
from medseg.io.archive import DEFAULT_MAX_RATIO, extract_members, is_junk_member
from medseg.io.roots import Roots, is_inside

__all__ = ["DEFAULT_MAX_RATIO", "DEFAULT_MAX_ZIP_BYTES", "DicomInputs", "is_junk_member"]

#: Default limit on the total uncompressed size of a zip archive (4 GiB).
DEFAULT_MAX_ZIP_BYTES = 4 * 1024**3


class DicomInputs:
    """The candidate DICOM files of one input, each openable by index.

    ``names[i]`` is what error messages and :class:`DicomSource.files` show: the file path (the
    link's own path for a symlink), or ``"<archive>::<member>"`` for a zip member. Use as a
    context manager: closing removes a zip's temporary folder.
    """

    def __init__(self, path: Path, max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES, *,
                 roots: Roots = None, max_zip_ratio: float = DEFAULT_MAX_RATIO) -> None:
        self.path = path
        self._files: list[Path] = []
        self._tmp: Path | None = None
        if not path.exists():
            raise InputNotFoundError(f"{path}: no such file or folder. Check the path.")
        if path.is_dir():
            self.names, self._files = _walk(path, roots)
        elif not _has_dicom_preamble(path) and zipfile.is_zipfile(path):
            self._tmp = Path(tempfile.mkdtemp(prefix="medseg-zip-"))
            try:
                members = extract_members(path, self._tmp, max_bytes=max_zip_bytes,
                                          max_ratio=max_zip_ratio)
            except BaseException:
                self.close()
                raise
            self.names = [f"{path}::{name}" for name, _ in members]
            self._files = [p for _, p in members]
        else:
            self._files = [path]
            self.names = [str(path)]

    @property
    def is_zip(self) -> bool:
        return self._tmp is not None

    def open(self, index: int) -> str:
        """The path to read input ``index`` from (a checked file, or an extracted member)."""
        return str(self._files[index])

    def head(self, index: int, n: int = 4) -> bytes:
        """The first ``n`` bytes of an input (used to sniff DICOM files without a preamble)."""
        with open(self._files[index], "rb") as fh:
            return fh.read(n)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> DicomInputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _walk(folder: Path, roots: Roots) -> tuple[list[str], list[Path]]:
    """Names and paths to open of every regular file below ``folder``, sorted.

    Symlinked sub-folders are not followed. A symlinked file is opened by its resolved path;
    with ``roots`` it must resolve inside one of them (else :class:`PathOutsideRootsError`).
    """
    names: list[str] = []
    paths: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__MACOSX")
        for name in sorted(files):
            p = Path(root) / name
            if name == ".DS_Store":
                continue
            target = p
            if p.is_symlink():
                if roots is not None and not is_inside(p, roots):
                    raise PathOutsideRootsError(
                        f"{p}: a link in DICOM folder {folder} that leads outside the data "
                        "folders this app may read; nothing was read. Replace the link by the "
                        "file itself, or remove it.")
                target = p.resolve()
            if target.is_file():
                names.append(str(p))
                paths.append(target)
    return names, paths


def _has_dicom_preamble(path: Path) -> bool:
    """True when ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:] == b"DICM"
