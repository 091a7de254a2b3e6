"""Keep third-party chatter out of medseg's output while files are read.

nibabel, pydicom and SimpleITK report oddities of a file as Python warnings, log records
(nibabel's ``nibabel.global`` logger prints to stderr) or C++ text written straight to file
descriptor 2 (ITK's MetaIO). None of that may reach a user of the CLI or the app before (or
instead of) medseg's own one-line message. Readers therefore run inside :func:`quiet_libraries`
(warnings and those loggers are dropped) and call SimpleITK inside :func:`native_stderr` (fd 2
captured into a temporary file, available to build the error message). Whatever signals a
silent accept is checked explicitly by the readers, so nothing of value is lost by dropping.

Both context managers change process-wide state (the warnings filters, logger switches, fd 2),
so they are reference-counted / locked: concurrent readers in several threads (the app) share one
quiet period and the previous state is restored when the last one leaves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

__all__ = ["native_stderr", "one_line", "quiet_libraries"]

#: Loggers of the reading libraries whose records are dropped while reading. They are created
#: here if the library is not imported yet (readers import lazily, inside the quiet block), so
#: the library's own handler is attached to an already disabled logger.
LIBRARY_LOGGERS = ("nibabel", "nibabel.global", "pydicom")

_state_lock = threading.Lock()
_depth = 0
_saved_warnings: contextlib.AbstractContextManager[object] | None = None
_saved_loggers: list[tuple[logging.Logger, bool]] = []
_stderr_lock = threading.Lock()


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _library_loggers() -> list[logging.Logger]:
    roots = {n.split(".")[0] for n in LIBRARY_LOGGERS}
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in roots]
    return [logging.getLogger(n) for n in sorted(set(names) | set(LIBRARY_LOGGERS))]


def _enter() -> None:
    global _depth, _saved_warnings
    with _state_lock:
        _depth += 1
        if _depth > 1:
            return
        cm = warnings.catch_warnings()
        cm.__enter__()
        warnings.simplefilter("ignore")
        _saved_warnings = cm
        _saved_loggers.clear()
        for lg in _library_loggers():
            _saved_loggers.append((lg, lg.disabled))
            lg.disabled = True


def _exit() -> None:
    global _depth, _saved_warnings
    with _state_lock:
        _depth -= 1
        if _depth > 0:
            return
        for lg, disabled in _saved_loggers:
            lg.disabled = disabled
        _saved_loggers.clear()
        if _saved_warnings is not None:
            _saved_warnings.__exit__(None, None, None)
            _saved_warnings = None


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Inside the block, Python warnings and nibabel/pydicom log records are dropped."""
    _enter()
    try:
        yield
    finally:
        _exit()


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 inside the block.

    Yields a list that holds the captured text (one string) once the block has exited, also
    when it raised. Calls are serialised by a lock (fd 2 is shared by the whole process), and
    SimpleITK's own warning display is switched off for the duration.
    """
    captured: list[str] = []
    with _stderr_lock, tempfile.TemporaryFile() as tmp:
        sitk_display = _sitk_warning_display(False)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if sitk_display is not None:
                _sitk_warning_display(sitk_display)
            tmp.seek(0)
            captured.append(tmp.read(64 * 1024).decode("utf-8", "replace"))


def _sitk_warning_display(on: bool) -> bool | None:
    """Set SimpleITK's global warning display (if SimpleITK is loaded); return the old value."""
    sitk = sys.modules.get("SimpleITK")
    if sitk is None:
        return None
    old = bool(sitk.ProcessObject.GetGlobalWarningDisplay())
    sitk.ProcessObject.SetGlobalWarningDisplay(on)
    return old
