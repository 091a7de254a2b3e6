"""Uploads: bounded by ``MEDSEG_MAX_UPLOAD_MB`` and streamed to the workspace in chunks.

Every uploader of the app (images, reference masks, model bundles) stores its file with
:func:`store_upload`:

1. the upload's declared size is checked against the limit *before* a byte is read
   (:class:`~medseg.errors.UploadTooLargeError`), and the bytes really read are counted too;
2. the file is copied in 1 MiB reads into a temporary file in ``<area>/.incoming/``, its
   SHA-256 computed on the way (no second copy of the upload in memory);
3. the complete file is renamed to ``<area>/<sha256[:16]>/<safe name>``: the folder is named
   by content, so the same file uploaded twice is stored once, and a partial upload never
   appears under a final name (the temporary file is removed on any failure).

Streamlit itself keeps an upload in memory until the script reads it; its own per-request
cap (``server.maxUploadSize``) is set to the same limit by :func:`apply_server_limit`, and
every ``file_uploader`` is given ``max_upload_size`` so the browser refuses a larger file
before sending it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from medseg.errors import OutputError, UploadTooLargeError

CHUNK = 1 << 20  # bytes per read while storing an upload
MB = 1 << 20


@dataclass(frozen=True)
class StoredUpload:
    """An upload kept in the workspace: its file, the full SHA-256 of its bytes, its size."""

    path: Path
    digest: str
    size: int


def safe_name(name: str) -> str:
    """A file name without folders or odd characters (keeps the extension)."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return cleaned or "upload"


def too_large(name: str, size: int, max_mb: int) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"{name}: {size / MB:.1f} MB is over the upload limit of {max_mb} MB. Put the file in "
        "a server data folder and open it from there, or ask the administrator to raise "
        "MEDSEG_MAX_UPLOAD_MB.")


def check_size(name: str, size: int, max_mb: int) -> None:
    """Refuse an upload whose (declared) ``size`` in bytes is over ``max_mb`` MiB."""
    if size > max_mb * MB:
        raise too_large(name, size, max_mb)


def _copy(stream: BinaryIO, fd: int, name: str, max_mb: int) -> tuple[str, int]:
    """Copy ``stream`` to ``fd`` in :data:`CHUNK` reads; returns (sha256 hex, bytes)."""
    digest, total = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
            if total > max_mb * MB:  # the declared size lied: stop at the limit
                raise too_large(name, total, max_mb)
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), total


def store_upload(stream: BinaryIO, name: str, size: int, area: Path, max_mb: int
                 ) -> StoredUpload:
    """Store an upload of declared ``size`` bytes under ``area`` (see the module doc).

    ``stream`` is read from its start. Raises :class:`UploadTooLargeError` (nothing read or
    nothing kept) or :class:`OutputError` when the workspace cannot take the file.
    """
    check_size(name, size, max_mb)
    incoming = area / ".incoming"
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=incoming)
    except OSError as exc:
        raise _output_error(name, area, exc) from exc
    tmp = Path(tmp_name)
    try:
        stream.seek(0)
        digest, total = _copy(stream, fd, name, max_mb)
        target = area / digest[:16] / safe_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file():
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    except OSError as exc:
        raise _output_error(name, area, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return StoredUpload(target, digest, total)


def _output_error(name: str, area: Path, exc: OSError) -> OutputError:
    return OutputError(f"{name}: the upload could not be stored in {area} "
                       f"({exc.strerror or exc}); free disk space or fix the workspace "
                       "folder's permissions, then upload again.")


def stored_upload(up: Any, area: Path, max_mb: int, *, slot: str) -> StoredUpload:
    """Store a Streamlit ``UploadedFile`` under ``area`` once per upload: reruns of the page
    reuse the stored file (kept per uploader ``slot`` in the session; only the current upload
    of each slot is remembered)."""
    import streamlit as st

    cache: dict[str, tuple[str, StoredUpload]] = st.session_state.setdefault(
        "stored_uploads", {})
    file_id = str(getattr(up, "file_id", id(up)))
    hit = cache.get(slot)
    if hit is None or hit[0] != file_id:
        hit = (file_id, store_upload(up, str(up.name), int(up.size), area, max_mb))
        cache[slot] = hit
    return hit[1]


def apply_server_limit(max_mb: int) -> None:
    """Make Streamlit's own per-request upload cap (``server.maxUploadSize``, read on every
    upload request) equal to the app's limit, so a client that bypasses the browser's check
    cannot make the server hold more than ``max_mb`` MiB of one upload in memory."""
    from streamlit import config

    if config.get_option("server.maxUploadSize") != max_mb:
        config.set_option("server.maxUploadSize", max_mb, "MEDSEG_MAX_UPLOAD_MB")
