"""Prove that a file was never opened: Linux inotify watches (IN_OPEN, IN_ACCESS) via ctypes.

Used by the data-root tests: "nothing was read" is asserted on the kernel's own record of opens,
not inferred from the result. Skips where inotify is unavailable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_ACCESS, IN_OPEN = 0x1, 0x20


@contextlib.contextmanager
def watch_opens(*paths: Path) -> Iterator[list[str]]:
    """Yield a list that, after the block, holds ``"<name> opened/read"`` for each event."""
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux-only")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0:
        pytest.skip("inotify is unavailable here")
    names = {}
    for p in paths:
        wd = libc.inotify_add_watch(fd, os.fsencode(p), IN_ACCESS | IN_OPEN)
        if wd < 0:
            os.close(fd)
            pytest.skip(f"cannot watch {p}")
        names[wd] = Path(p).name
    events: list[str] = []
    try:
        yield events
    finally:
        try:
            buf = os.read(fd, 65536)
        except BlockingIOError:
            buf = b""
        os.close(fd)
        i = 0
        while i < len(buf):
            wd, mask, _, length = struct.unpack_from("iIII", buf, i)
            what = "opened" if mask & IN_OPEN else "read"
            events.append(f"{names.get(wd, wd)} {what}")
            i += 16 + length
