"""Real file-system faults for tests: a read-only folder and a full disk.

As root (where ``chmod`` does not stop writes) both are real tmpfs mounts: ``mount -t tmpfs -o
size=...,ro`` for a read-only file system, and a small tmpfs filled to its last byte for a full
disk. Elsewhere the read-only folder falls back to ``chmod 0555`` and the full disk is skipped
with the reason. Every mount is unmounted in a ``finally``. Registered for all tests by
``tests/conftest.py``; :func:`tmpfs` is also usable directly (e.g. a disk with a little room).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "full_fs", "readonly_dir", "tmpfs"]


def _mount_reason() -> str | None:
    """Why a tmpfs cannot be mounted here (``None`` when it can)."""
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    return None


def fill(folder: Path) -> None:
    """Write ``folder/.filler`` until its file system has no byte left (unbuffered writes,
    so nothing is left to flush when the file is closed)."""
    with open(folder / ".filler", "wb", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * chunk)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "1m", *, read_only: bool = False,
          full: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted on ``folder`` (created), optionally read-only or
    filled to the last byte; unmounted on exit. Skips the test when it cannot be mounted."""
    reason = _mount_reason()
    if reason:
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        if full:
            fill(folder)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder where nothing can be written: a read-only tmpfs as root, else a
    ``chmod 0555`` folder (skipped when even that does not stop a write)."""
    folder = tmp_path / "readonly"
    if _mount_reason() is None:
        with tmpfs(folder, "1m", read_only=True) as mounted:
            yield mounted
        return
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / ".probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            yield folder
            return
        probe.unlink()
        pytest.skip("chmod 0555 does not stop writes here and no tmpfs can be mounted")
    finally:
        folder.chmod(0o755)


@pytest.fixture
def full_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on a real file system with no free byte (a filled 256 KiB tmpfs; root only,
    skipped elsewhere)."""
    with tmpfs(tmp_path / "full", "256k", full=True) as mounted:
        yield mounted
