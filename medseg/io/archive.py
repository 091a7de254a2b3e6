"""Safe zip extraction: streamed in chunks, every byte counted, all-or-nothing.

:func:`extract_zip` is what the app uses to open an uploaded zip (a detached header with its data
file, or a DICOM folder) and what :class:`medseg.io.dicom_zip.DicomInputs` uses for DICOM zips.

Before any member is decompressed, the central directory is checked: member names that are
absolute, carry a drive letter, a ``..`` component or a NUL, duplicates (or a file that is also a
folder of another member), symbolic links and other non-regular members, encrypted members, more
than :data:`MAX_MEMBERS` members, and a declared total above ``max_bytes`` are refused. Members
are then decompressed in :data:`CHUNK_BYTES` chunks straight to files, counting the bytes really
produced (declared sizes are never trusted): more than ``max_bytes`` in all, or a member whose
output exceeds ``max_ratio`` times its compressed size once past :data:`RATIO_FLOOR_BYTES`, stops
the extraction. Peak memory is one chunk, whatever the member size.

Everything is first written into a hidden staging folder inside ``dest`` and moved into place
only when every member is complete; on any refusal or error nothing is left under ``dest``.
Directory entries and macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) are skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import (
    CorruptFileError,
    InputNotFoundError,
    MedsegError,
    OutputError,
    UnsafeArchiveError,
    UnsupportedFormatError,
    UploadTooLargeError,
)
from medseg.io.quiet import one_line

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_MAX_RATIO",
    "MAX_MEMBERS",
    "RATIO_FLOOR_BYTES",
    "check_member_name",
    "extract_members",
    "extract_zip",
    "is_junk_member",
]

#: Bytes decompressed per step (peak memory of an extraction is about this).
CHUNK_BYTES = 1 << 20
#: Default limit on uncompressed / compressed size of one member. Deflate tops out near 1030:1;
#: noisy CT/MR data compresses 2-5:1, mostly-empty label maps up to a few hundred.
DEFAULT_MAX_RATIO = 200.0
#: A member's ratio is only judged once it has produced this many bytes (small uniform files,
#: e.g. one blank DICOM slice, legitimately compress far beyond any ratio limit).
RATIO_FLOOR_BYTES = 16 * 2**20
#: Most members an archive may hold (every member becomes a file).
MAX_MEMBERS = 100_000

_DRIVE = re.compile(r"^[A-Za-z]:")
_SEP = re.compile(r"[/\\]")


def is_junk_member(name: str) -> bool:
    """True for members that are never data: directories and macOS metadata."""
    parts = [p for p in _SEP.split(name) if p]
    if name.endswith(("/", "\\")) or not parts:
        return True
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def check_member_name(name: str, archive: Path) -> tuple[str, ...]:
    """The member's path components; refuse a name that could leave the extraction folder."""
    parts = _SEP.split(name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts or "\x00" in name:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path, a drive letter or a '..' "
            "component and could write outside an extraction folder. medseg refuses such "
            "archives; re-create the zip from the folder with relative paths only.")
    return tuple(p for p in parts if p not in ("", "."))


def _member_kind(info: zipfile.ZipInfo) -> int:
    """The member's file type bits (0 when the archive stores none, e.g. made on Windows)."""
    return stat.S_IFMT(info.external_attr >> 16)


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]


def _plan(zf: zipfile.ZipFile, archive: Path, max_bytes: int) -> list[_Member]:
    """Check the central directory (nothing decompressed) and list the members to extract."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UploadTooLargeError(
            f"{archive}: {len(infos)} members, more than the {MAX_MEMBERS} medseg extracts. "
            "Split the archive or pass the folder instead.")
    members: list[_Member] = []
    for info in infos:
        parts = check_member_name(info.filename, archive)
        kind = _member_kind(info)
        if kind == stat.S_IFLNK or kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} is {what}; medseg extracts regular files "
                "only. Re-create the zip without links (zip's default stores the file instead).")
        if info.is_dir() or is_junk_member(info.filename) or not parts:
            continue
        if info.flag_bits & 0x1:
            raise UnsupportedFormatError(
                f"{archive}: member {info.filename!r} is encrypted; medseg cannot read "
                "password-protected archives. Re-create the zip without a password.")
        members.append(_Member(info, parts))
    _check_names_unique(members, archive)
    declared = sum(m.info.file_size for m in members)
    if declared > max_bytes:
        raise UploadTooLargeError(
            f"{archive}: the archive declares {_size(declared)} uncompressed, more than the "
            f"{_size(max_bytes)} limit. Extract it yourself and pass the folder, or raise the "
            "limit if you trust the file.")
    return members


def _check_names_unique(members: list[_Member], archive: Path) -> None:
    files: dict[tuple[str, ...], str] = {}
    for m in members:
        if m.parts in files:
            raise UnsafeArchiveError(
                f"{archive}: members {files[m.parts]!r} and {m.info.filename!r} name the same "
                "file; re-create the zip with each file once.")
        files[m.parts] = m.info.filename
    for m in members:
        for k in range(1, len(m.parts)):
            if m.parts[:k] in files:
                raise UnsafeArchiveError(
                    f"{archive}: member {files[m.parts[:k]]!r} is a file but "
                    f"{m.info.filename!r} uses it as a folder; re-create the zip.")


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class _Budget:
    """Bytes really decompressed so far, against the archive's limits."""

    def __init__(self, archive: Path, max_bytes: int, max_ratio: float) -> None:
        self.archive, self.max_bytes, self.max_ratio = archive, max_bytes, max_ratio
        self.total = 0

    def add(self, n: int, member: zipfile.ZipInfo, member_total: int) -> None:
        self.total += n
        if self.total > self.max_bytes:
            raise UploadTooLargeError(
                f"{self.archive}: the archive expands to more than the {_size(self.max_bytes)} "
                f"limit (stopped inside member {member.filename!r}; possible zip bomb). Extract "
                "it yourself and pass the folder, or raise the limit if you trust the file.")
        ratio = member_total / max(member.compress_size, 1)
        if member_total > RATIO_FLOOR_BYTES and ratio > self.max_ratio:
            raise UploadTooLargeError(
                f"{self.archive}: member {member.filename!r} expands more than "
                f"{self.max_ratio:g} times its compressed size ({_size(member.compress_size)} -> "
                f"over {_size(member_total)}; possible zip bomb). Extract it yourself and pass "
                "the folder, or raise the ratio limit if you trust the file.")


def _stream_member(zf: zipfile.ZipFile, m: _Member, target: Path, budget: _Budget) -> None:
    """Decompress one member into ``target`` chunk by chunk, counting every byte."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(m.info) as src, open(target, "xb") as out:
        while chunk := src.read(CHUNK_BYTES):
            written += len(chunk)
            budget.add(len(chunk), m.info, written)
            out.write(chunk)


def _wrap_member_error(exc: BaseException, archive: Path, m: _Member, dest: Path) -> MedsegError:
    name = m.info.filename
    if isinstance(exc, NotImplementedError):
        return UnsupportedFormatError(
            f"{archive}: member {name!r} uses a compression method medseg cannot decompress "
            f"({one_line(exc, 120)}). Re-create the zip with the standard deflate method.")
    if isinstance(exc, OSError) and exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
        return UnsafeArchiveError(
            f"{archive}: member {name!r} cannot be a file name here ({exc.strerror}); "
            "re-create the zip with shorter, plain file names.")
    if isinstance(exc, OSError) and not isinstance(exc, (zipfile.BadZipFile, EOFError)):
        return OutputError(
            f"{dest}: cannot write member {name!r} of {archive} ({exc.strerror or exc}). Free "
            "disk space or use a writable folder (for temporary files: set TMPDIR).")
    return CorruptFileError(
        f"{archive}: member {name!r} cannot be decompressed ({type(exc).__name__}: "
        f"{one_line(exc, 200)}). The archive is damaged; re-create it.")


def _check_targets(members: list[_Member], dest: Path, archive: Path) -> None:
    """Refuse when a member would replace an existing file or write through a link in ``dest``."""
    for m in members:
        here = dest
        for k, part in enumerate(m.parts):
            here = here / part
            last = k == len(m.parts) - 1
            if here.is_symlink() or (here.exists() and (last or not here.is_dir())):
                raise UnsafeArchiveError(
                    f"{archive}: member {m.info.filename!r} would replace or write through "
                    f"{here}, which already exists. Extract into an empty folder.")


def _place(src: Path, target: Path) -> None:
    """Move ``src`` to ``target`` unless ``target`` exists (a hard link never replaces one)."""
    try:
        os.link(src, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from exc
        os.rename(src, target)


def _move_into(staging: Path, dest: Path, members: list[_Member]) -> list[Path]:
    """Move staged files into ``dest`` without replacing anything; undo all on failure."""
    moved: list[Path] = []
    made: list[Path] = []
    try:
        for m in members:
            target = dest.joinpath(*m.parts)
            for parent in reversed(target.relative_to(dest).parents[:-1]):
                folder = dest / parent
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
            _place(staging.joinpath(*m.parts), target)
            moved.append(target)
    except BaseException:
        for path in moved:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return moved


def extract_members(zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                    max_bytes: int, max_ratio: float = DEFAULT_MAX_RATIO
                    ) -> list[tuple[str, Path]]:
    """Like :func:`extract_zip`, returning ``(member name, extracted path)`` pairs in name order."""
    archive, dest = Path(zip_path), Path(dest)
    if not archive.is_file():
        raise InputNotFoundError(f"{archive}: no such file. Check the path.")
    with _open_zip(archive) as zf:
        members = sorted(_plan(zf, archive, max_bytes), key=lambda m: m.info.filename)
        created = not dest.exists()
        try:
            dest.mkdir(parents=True, exist_ok=True)
            _check_targets(members, dest, archive)
            staging = Path(tempfile.mkdtemp(prefix=".medseg-unzip-", dir=dest))
        except OSError as exc:
            raise OutputError(f"{dest}: cannot extract {archive} here ({exc.strerror or exc}). "
                              "Use a writable folder.") from exc
        try:
            budget = _Budget(archive, max_bytes, max_ratio)
            for m in members:
                try:
                    _stream_member(zf, m, staging.joinpath(*m.parts), budget)
                except (MedsegError, MemoryError, KeyboardInterrupt):
                    raise
                except (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
                        NotImplementedError, ValueError) as exc:
                    raise _wrap_member_error(exc, archive, m, dest) from exc
            paths = _move_into(staging, dest, members)
        except BaseException:
            if created:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return [(m.info.filename, p) for m, p in zip(members, paths, strict=True)]


def extract_zip(zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                max_bytes: int, max_ratio: float = DEFAULT_MAX_RATIO) -> list[Path]:
    """Extract the regular files of a zip under ``dest``; return their paths (in name order).

    Args:
        zip_path: the archive.
        dest: folder to extract into (created if missing). Existing files are never replaced:
            a member that would replace one, or write through a symlink, refuses the archive.
        max_bytes: most bytes the archive may expand to, counted as decompressed.
        max_ratio: most uncompressed/compressed size of one member (judged once a member has
            produced :data:`RATIO_FLOOR_BYTES`).

    Raises:
        UnsafeArchiveError: zip-slip names, links, duplicate names, existing targets.
        UploadTooLargeError: more than ``max_bytes`` in all, a member beyond ``max_ratio``, or
            more than :data:`MAX_MEMBERS` members.
        UnsupportedFormatError: encrypted members or an unknown compression method.
        CorruptFileError: not a zip, or a damaged member. OutputError: ``dest`` not writable.

    On any error nothing is left under ``dest`` (a ``dest`` created here is removed again).
    """
    return [p for _, p in extract_members(zip_path, dest, max_bytes=max_bytes,
                                          max_ratio=max_ratio)]


@contextlib.contextmanager
def _open_zip(archive: Path) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CorruptFileError(f"{archive}: not a readable zip archive ({one_line(exc, 160)}). "
                               "Re-create or re-download it.") from exc
    with zf:
        yield zf
