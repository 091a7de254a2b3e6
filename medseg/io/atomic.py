"""All-or-nothing outputs, and the one place where a failed write becomes an :class:`OutputError`.

* One file: :func:`atomic_path` (and :func:`write_bytes_atomic` / :func:`write_text_atomic`)
  writes to a temporary file beside the target and renames it over the target when complete.
* Several files in one folder that belong together (an image and its label sidecar):
  :func:`atomic_files` (or :func:`staged_files` for writers that name their files themselves)
  writes them all first and renames them into place at the end.
* A folder of files that form one output (a report set, a mesh set): :func:`atomic_dir` builds
  the folder beside the target and swaps it in when complete (rules in its docstring).

Every ``OSError`` of a write (read-only folder, full disk, a parent that is a file, a name too
long...) and every writer failure on a full disk is re-raised by :func:`output_error` as an
:class:`~medseg.errors.OutputError` whose one-line message names the path and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import MedsegError, OutputError
from medseg.io.renames import commit_beside, commit_inside, rename_all

__all__ = ["OutputSet", "atomic_dir", "atomic_files", "atomic_path", "check_target_folder",
           "check_writable", "make_dirs", "output_error", "show_path", "staged_files",
           "write_bytes_atomic", "write_text_atomic"]

#: errno values that describe the output side (anything else is re-raised unchanged).
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST,
                errno.EBUSY, errno.EXDEV, errno.ENOTEMPTY, errno.EMLINK}
#: A writer that fails while less than this is free on the target's disk failed for space.
LOW_SPACE_BYTES = 1 << 20
_FULL_DISK_TEXT = ("no space left", "os error 28", "quota exceeded", "errno 28")
#: Characters of a path shown in a message before it is elided in the middle.
SHOW_CHARS = 160


def show_path(path: str | os.PathLike[str]) -> str:
    """``path`` for a one-line message: control characters escaped, long paths elided."""
    text = str(path).encode("unicode_escape", "backslashreplace").decode("ascii") \
        if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in str(path)) else str(path)
    if len(text) > SHOW_CHARS:
        text = f"{text[:100]}...{text[-50:]} ({len(str(path))} characters)"
    return text


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return None if p.is_dir() else p
    return None


def _too_long(path: Path) -> str:
    limit = 255
    with contextlib.suppress(OSError, ValueError):
        existing = next(p for p in path.parents if p.is_dir())
        limit = os.pathconf(existing, "PC_NAME_MAX")
    longest = max(path.parts, key=lambda part: len(part.encode("utf-8", "surrogatepass")))
    size = len(longest.encode("utf-8", "surrogatepass"))
    if size > limit:
        return (f"the name {show_path(longest)} has {size} bytes and this file system allows "
                f"{limit}; choose a shorter file name")
    return "the path is too long for this file system; choose a shorter path"


def _reason(exc: BaseException, path: Path, want_dir: bool) -> str:
    code = getattr(exc, "errno", None)
    if code is None:
        return "the disk is full; free some space or choose another output folder"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied; choose a folder you may write to, or change its permissions"
    if code == errno.EROFS:
        return "the file system is read-only; choose an output folder on a writable disk"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (or the quota used up); free some space or choose another disk"
    if code == errno.EFBIG:
        return "the file is too large for this file system; choose another disk"
    if code == errno.ENAMETOOLONG:
        return _too_long(path)
    if code == errno.EISDIR or (code == errno.EEXIST and path.is_dir() and not want_dir):
        return "this is a folder, but a file name is needed here; give a file path"
    blocker = _blocking_file(path)
    if blocker is not None and blocker == path and want_dir:
        return "this is a file, but a folder is needed here; give a folder path"
    if blocker is not None:
        return (f"{show_path(blocker)} is a file, so nothing can be created under it; choose "
                "another output path or move that file")
    if code == errno.EBUSY:
        return "it is in use or a mount point; choose a folder inside it"
    return f"{os.strerror(code)}; check the output path"


def output_error(exc: BaseException, path: str | os.PathLike[str], *,
                 want_dir: bool = False) -> OutputError:
    """An :class:`OutputError` for the failed write of ``path`` (``want_dir``: a folder).

    The message is one line: ``cannot write PATH: WHY; WHAT TO DO. Nothing was written.``
    """
    p = Path(path)
    return OutputError(f"cannot write {show_path(p)}: {_reason(exc, p, want_dir)}. "
                       "Nothing was written there.")


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """True when a writer's failure (any type) looks like a full disk (message or free space)."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(t in str(exc).lower() for t in _FULL_DISK_TEXT):
        return True
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE_BYTES


def _translate(exc: BaseException, path: Path, folder: Path, *,
               want_dir: bool = False) -> BaseException:
    """``exc`` as an :class:`OutputError` when it is a write failure, else ``exc`` itself."""
    if isinstance(exc, OutputError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return output_error(exc, path, want_dir=want_dir)
    if not isinstance(exc, MedsegError) and _disk_full(exc, folder):
        return output_error(OSError(errno.ENOSPC, "disk full"), path)
    return exc


def _fail_staged(exc: BaseException, dest: Path, stage: Path,
                 made: list[Path]) -> BaseException:
    """Translate a failure while building ``stage`` for ``dest`` (messages name ``dest``),
    delete the staging folder and the folders made for it."""
    translated = _translate(exc, dest, stage, want_dir=True)
    if isinstance(translated, OutputError) and str(stage) in str(translated):
        translated = OutputError(str(translated).replace(str(stage), str(dest)))
    shutil.rmtree(stage, ignore_errors=True)
    _remove_empty(made)
    return translated


def _missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    return [q for q in (folder, *folder.parents) if not os.path.lexists(q)]


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first; only while empty)."""
    for q in dirs:
        with contextlib.suppress(OSError):
            q.rmdir()


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """Create folder ``path`` with its parents (like ``mkdir -p``); :class:`OutputError` when
    it cannot be (a parent is a file, read-only disk, ``path`` is a file...)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _translate(exc, p, p, want_dir=True) from exc
    return p


def check_writable(folder: str | os.PathLike[str], *,
                   file: str | os.PathLike[str] | None = None) -> Path:
    """Check that ``folder`` can be created (if missing) and can take a new file, and leave
    nothing behind: folders made for the check and the probe file are removed again.
    :class:`OutputError` otherwise, naming ``file`` (the output that will go there) when given.
    Commands call it before long work whose result goes there."""
    p = Path(folder)
    named = Path(file) if file is not None else p
    made = _missing_dirs(p)
    try:
        p.mkdir(parents=True, exist_ok=True)
        if file is not None and named.is_dir():
            raise OSError(errno.EISDIR, "is a folder", str(named))
        fd, tmp = tempfile.mkstemp(prefix=".medseg-probe-", dir=p)
        os.close(fd)
        os.unlink(tmp)
        if file is not None:
            _check_name(named)
    except OSError as exc:
        raise output_error(exc, named, want_dir=file is None) from exc
    finally:
        _remove_empty(made)
    return p


def _suffixes(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".tar.gz"):
        if name.lower().endswith(ext):
            return ext
    return path.suffix[:16]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_name(target: Path) -> None:
    """Refuse a file name longer than the file system allows before anything is written."""
    limit = 255
    with contextlib.suppress(OSError, ValueError):
        limit = os.pathconf(target.parent, "PC_NAME_MAX")
    if len(target.name.encode("utf-8", "surrogatepass")) > limit:
        raise output_error(OSError(errno.ENAMETOOLONG, "name too long"), target)


def _temp_file(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:32]}.", dir=target.parent,
                               suffix=".tmp" + _suffixes(target))
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path with the same extension as ``target``; rename it on success.

    Writers that choose their format by extension (nibabel, SimpleITK) write to the yielded
    path. On any exception the temporary file is removed and ``target`` is left untouched, so
    a crash never leaves a half-written file under the final name. Write failures (and writer
    failures on a full disk) are raised as :class:`OutputError`.
    """
    with atomic_files([target]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_files(targets: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path per target; rename them all into place when the block ends.

    Nothing is renamed until every file is written, so a failure while writing leaves every
    target untouched. The renames at the end cannot run out of space; if one still fails, the
    targets renamed before it are restored from their previous versions.
    """
    paths = [Path(t) for t in targets]
    temps: list[Path] = []
    made: list[Path] = []
    at = paths[0]  # the path named if something fails
    try:
        for p in paths:
            at = p
            made += _missing_dirs(p.parent)
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_dir():
                raise OSError(errno.EISDIR, "is a folder", str(p))
            _check_name(p)
            temps.append(_temp_file(p))
        at = paths[0] if len(paths) == 1 else paths[0].parent
        yield temps
        mode = 0o666 & ~_current_umask()
        for tmp in temps:  # mkstemp makes 0600 files; give the usual umask-based mode
            if tmp.exists():
                os.chmod(tmp, mode)
        rename_all(temps, paths)
    except BaseException as exc:
        translated = _translate(exc, at, paths[0].parent)  # before freeing the space
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        _remove_empty(made)
        if translated is exc:
            raise
        raise translated from exc


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``folder``'s files; whatever the block writes there
    (under the final names) is renamed into ``folder`` together when the block ends, as
    :func:`atomic_files` does. For writers that make several files themselves (an image and
    its ``.labels.json`` sidecar)."""
    made = _missing_dirs(Path(folder))
    dest = make_dirs(folder)
    try:
        stage = Path(tempfile.mkdtemp(prefix=".medseg-stage-", dir=dest))
    except OSError as exc:
        _remove_empty(made)
        raise output_error(exc, dest, want_dir=True) from exc
    try:
        yield stage
        names = sorted(os.listdir(stage))
        rename_all([stage / n for n in names], [dest / n for n in names])
    except BaseException as exc:
        translated = _fail_staged(exc, dest, stage, made)
        if translated is exc:
            raise
        raise translated from exc
    shutil.rmtree(stage, ignore_errors=True)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    write_bytes_atomic(target, text.encode("utf-8"))


@dataclass(frozen=True)
class OutputSet:
    """A kind of multi-file output: ``marker`` is a file every such folder holds and
    ``patterns`` (fnmatch) match every entry it may hold; :func:`atomic_dir` replaces an
    existing folder only when it is such an output (or empty)."""

    kind: str
    marker: str
    patterns: tuple[str, ...]

    def owns(self, folder: Path) -> str | None:
        """``None`` when ``folder`` may be replaced, else the name of an entry it must keep."""
        names = [n for n in os.listdir(folder) if not n.startswith(".medseg-")]
        if names and self.marker not in names:
            return names[0]
        return next((n for n in names if not any(fnmatch.fnmatchcase(n, pat)
                                                 for pat in self.patterns)), None)


def check_target_folder(target: str | os.PathLike[str], owned: OutputSet | None = None) -> None:
    """Refuse (before anything is written) a target folder that :func:`atomic_dir` would not
    replace: a file, a parent that is a file, or a folder holding anything but ``owned``."""
    target = Path(target)
    blocker = _blocking_file(target.parent)
    if blocker is not None:
        raise output_error(OSError(errno.ENOTDIR, "not a folder"), target, want_dir=True)
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise output_error(OSError(errno.EEXIST, "exists"), target, want_dir=True)
    try:
        other = owned.owns(target) if owned is not None else next(
            (n for n in os.listdir(target) if not n.startswith(".medseg-")), None)
    except OSError as exc:
        raise output_error(exc, target, want_dir=True) from exc
    if other is not None:
        what = f"part of a medseg {owned.kind}" if owned is not None else "written by medseg"
        raise OutputError(
            f"cannot write {show_path(target)}: the folder exists and holds "
            f"{show_path(other)}, which is not {what}, so medseg will not replace the folder. "
            "Choose a new or empty folder. Nothing was written there.")


def _swappable(target: Path) -> bool:
    """True when ``target`` can be replaced by renaming a folder built beside it."""
    if os.path.islink(target) or (os.path.lexists(target) and os.path.ismount(target)):
        return False  # a link is kept (its folder gets the new set); a mount cannot move
    return os.access(target.parent, os.W_OK | os.X_OK)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], owned: OutputSet | None = None
               ) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends, it becomes ``target``.

    Rules for ``target``:

    * missing: the staging folder (built beside it, same disk) is renamed to ``target``;
    * an empty folder, or a complete earlier output of the same kind (``owned``): replaced as
      a whole. The old folder is renamed aside, the new one renamed in, then the old one is
      deleted, so ``target`` never holds a mix of old and new files. When ``target`` cannot be
      renamed (a mount point, a symbolic link to a folder, or a parent folder that is not
      writable) the set is staged in a hidden ``.medseg-*`` folder inside ``target`` and moved
      in by renames after the old entries are moved out;
    * a file, or a folder holding anything else: :class:`OutputError` before the block runs.

    On any exception the staging folder is deleted and ``target`` is left as it was.
    """
    dest = Path(target)
    made = _missing_dirs(dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        check_target_folder(dest, owned)
        inside = os.path.lexists(dest) and not _swappable(dest)
        stage = Path(tempfile.mkdtemp(prefix=".medseg-new-", dir=dest) if inside else
                     tempfile.mkdtemp(prefix=f".{dest.name[:32]}.medseg-", dir=dest.parent))
    except (OSError, OutputError) as exc:
        _remove_empty(made)
        if isinstance(exc, OutputError):
            raise
        raise output_error(exc, dest, want_dir=True) from exc
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_current_umask())
        commit_inside(stage, dest) if inside else commit_beside(stage, dest)
    except BaseException as exc:
        translated = _fail_staged(exc, dest, stage, made)
        if translated is exc:
            raise
        raise translated from exc
