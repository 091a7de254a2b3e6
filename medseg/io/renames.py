"""The rename steps of medseg's all-or-nothing writes (:mod:`medseg.io.atomic`).

Only renames within one folder or file system happen here: they need no free space, so once
every file of an output is written, putting it in place cannot fail half way for lack of room;
if a rename still fails, the steps already done are undone. Errors are raised as they come;
:mod:`medseg.io.atomic` turns them into :class:`~medseg.errors.OutputError`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["commit_beside", "commit_inside", "rename_all"]


def _aside(path: Path) -> Path:
    """A fresh hidden name beside ``path`` to move its old version to."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.old.", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def rename_all(temps: list[Path], paths: list[Path]) -> None:
    """Rename ``temps[n]`` over ``paths[n]``; on failure restore what was already replaced."""
    if len(paths) == 1:
        os.replace(temps[0], paths[0])
        return
    backups: list[tuple[Path, Path | None]] = []
    try:
        for tmp, p in zip(temps, paths, strict=True):
            old = None
            if p.exists() and not p.is_dir():
                old = _aside(p)
                os.replace(p, old)
            backups.append((p, old))
            os.replace(tmp, p)
    except BaseException:
        for p, old in reversed(backups):
            with contextlib.suppress(OSError):
                if old is not None:
                    os.replace(old, p)
                else:
                    p.unlink()
        raise
    for _, old in backups:
        if old is not None:
            with contextlib.suppress(OSError):
                old.unlink()


def commit_beside(stage: Path, dest: Path) -> None:
    """Make folder ``stage`` the folder ``dest`` (its sibling): a missing or empty ``dest`` is
    replaced at once, a full one is renamed aside first, then deleted."""
    if not os.path.lexists(dest) or not os.listdir(dest):
        os.replace(stage, dest)  # rename() may replace an empty folder
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{dest.name[:32]}.medseg-old-", dir=dest.parent))
    try:
        os.replace(dest, aside)
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.replace(stage, dest)
    except BaseException:
        os.replace(aside, dest)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def commit_inside(stage: Path, dest: Path) -> None:
    """Move the entries of ``stage`` (a hidden folder inside ``dest``) into ``dest`` after
    moving ``dest``'s own entries out of the way; undone if a rename fails."""
    old = Path(tempfile.mkdtemp(prefix=".medseg-old-", dir=dest))
    moved: list[str] = []
    try:
        for name in os.listdir(dest):
            if not name.startswith(".medseg-"):
                os.replace(dest / name, old / name)
                moved.append(name)
        for name in os.listdir(stage):
            os.replace(stage / name, dest / name)
    except BaseException:
        for name in os.listdir(dest):
            if not name.startswith(".medseg-"):
                shutil.move(dest / name, stage / name)
        for name in moved:
            os.replace(old / name, dest / name)
        raise
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)
