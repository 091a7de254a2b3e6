"""File locks and append-only lines shared by every app process and browser session.

Streamlit serves each browser tab from a thread of one server process, and an operator may run
several app processes on one workspace; :func:`fcntl.flock` locks the open file description,
so it serialises threads and processes alike (POSIX only: the app targets Linux servers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["append_line", "file_lock"]


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or, with ``shared``, a shared) lock on ``path`` for the block.

    ``path`` is a lock file (created empty when missing, with its folder); it is never
    deleted, so two holders always lock the same inode. Blocks until the lock is granted.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def append_line(path: Path, line: str) -> None:
    """Append one ``\\n``-terminated line to ``path`` so that concurrent writers never
    interleave or lose lines: one ``write()`` on an ``O_APPEND`` descriptor held under an
    exclusive ``flock``, then ``fsync``. A newline inside ``line`` is refused (one record
    per line is what readers rely on)."""
    if not line.endswith("\n") or "\n" in line[:-1]:
        raise ValueError("append_line takes exactly one newline-terminated line")
    data = line.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, data)
        while written < len(data):  # a short write (rare on regular files) stays under the lock
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
