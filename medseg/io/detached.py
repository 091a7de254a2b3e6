"""Detached data files: what a header may make medseg read, checked before anything is read.

A MetaImage/NRRD header names its data file(s) (see :mod:`medseg.io.headers`); an Analyze or
NIfTI pair ``X.hdr`` has its voxels in ``X.img``. The rules, for the CLI and the app alike:

1. A data-file name is relative to the header's folder: an absolute path, a drive letter, a
   leading ``~``, a ``..`` component or a control character is refused with
   :class:`PathOutsideRootsError` (the file would lie outside the header's folder), with or
   without roots. The data files therefore lie in the header's folder or below it.
2. With ``roots`` (the app), every data file is resolved, symlinks followed, and must lie inside
   the same allowed folder (root) as the header; a link leading elsewhere, even a dangling one,
   is refused naming the header, the field and the link. Without roots (the CLI) symlinks the
   user placed are followed, as for every other path the CLI is given.
3. A data file that does not exist is refused with one line saying which file is missing and to
   keep (or upload, as one ``.zip``) the header and its data file together.

Nothing is opened before these checks pass; SimpleITK/nibabel then read exactly these files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medseg.errors import InputNotFoundError, PathOutsideRootsError
from medseg.io.headers import DataFiles
from medseg.io.roots import Roots, root_of

__all__ = ["PAIR_SUFFIXES", "analyze_pair", "check_data_files", "check_name", "is_pair_name"]

#: Extensions of the two halves of an Analyze / NIfTI pair (optionally gzipped).
PAIR_SUFFIXES = (".hdr", ".img", ".hdr.gz", ".img.gz")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _fix(header: Path) -> str:
    return (f"Keep the data file next to {header.name} (same folder) and name it there without "
            "folders outside it (fix the header line), or re-save the image as one file (.nii.gz, "
            ".nrrd or .mha).")


def check_name(name: str, header: Path, field: str) -> None:
    """Refuse a data-file name that is absolute, has a drive letter, ``..`` or control chars."""
    parts = re.split(r"[/\\]", name)
    if (not name or name.startswith(("/", "\\", "~")) or _DRIVE.match(name) or ".." in parts
            or _CONTROL.search(name)):
        raise PathOutsideRootsError(
            f"{header}: its {field} {name!r} points outside the header's folder (absolute path, "
            f"'..' or control characters); medseg reads data files only next to their header, "
            f"and nothing was read. {_fix(header)}")


def _check_link(path: Path, header: Path, field: str, roots: tuple[Path, ...]) -> None:
    """With roots: ``path`` (a data file) must resolve inside the header's own root."""
    home = root_of(header, roots)
    resolved = path.resolve()
    if home is None or not (resolved == home or home in resolved.parents):
        raise PathOutsideRootsError(
            f"{header}: its {field} {path.name!r} is a link that leads outside the data "
            f"folder holding the header ({home}); nothing was read. Put the real data file "
            "next to the header instead of a link.")


def check_data_files(header: Path, data: DataFiles, roots: Roots) -> list[Path]:
    """The data files of ``header`` as paths, after the rules in the module docstring."""
    if data.local:
        return []
    for name in (*data.names, *data.variants):
        check_name(name.strip(), header, data.field_name)
    folder = header.parent
    paths = [folder / name for name in data.names]
    if roots is not None:
        for path in paths + [folder / v for v in data.variants]:
            if os.path.lexists(path):
                _check_link(path, header, data.field_name, roots)
            elif path in paths:
                _missing(header, data.field_name, path)
    for path in paths:
        if not path.is_file():
            _missing(header, data.field_name, path)
    return paths


def _missing(header: Path, field: str, path: Path) -> None:
    raise InputNotFoundError(
        f"{header}: its data file {path.name!r} ({field}) is missing (looked for {path}). "
        "A detached header needs its data file: keep both in one folder, or upload them "
        "together as one .zip.")


def is_pair_name(path: Path) -> bool:
    """True for a ``.hdr``/``.img`` name (optionally ``.gz``), either half of a pair."""
    return path.name.lower().endswith(PAIR_SUFFIXES)


def analyze_pair(path: Path, roots: Roots) -> tuple[Path, Path]:
    """``(header, image)`` of an Analyze/NIfTI pair given either half, both checked.

    The other half's name is nibabel's own (``X.hdr`` <-> ``X.img``, ``.gz`` kept), so nibabel
    opens exactly the two files checked here.
    """
    from nibabel.filename_parser import types_filenames

    names = types_filenames(str(path), (("image", ".img"), ("header", ".hdr")),
                            trailing_suffixes=(".gz", ".bz2", ".zst"))
    header, image = Path(names["header"]), Path(names["image"])
    given = header if path.name == header.name else image
    other, field = (image, "image file (.img)") if given is header else (
        header, "header file (.hdr)")
    if roots is not None and os.path.lexists(other):
        _check_link(other, given, field, roots)
    if not other.is_file():
        raise InputNotFoundError(
            f"{given}: its {field} {other.name!r} is missing (looked for {other}). An "
            "Analyze/NIfTI pair needs both files: keep them in one folder, or upload them "
            "together as one .zip.")
    return header, image
