"""The app's error boundary: no exception text or traceback ever reaches the browser.

* A :class:`~medseg.errors.MedsegError` is a message for the user (one line naming the input
  and what to do): it is shown as is, where it happened (the panel, the sidebar).
* Anything else is a bug or an environment fault: the browser gets a short generic message
  with a reference, and the full traceback is appended to ``<workspace>/app-errors.log``
  (one JSON object per line: time, reference, where, exception type, traceback) for the
  operator. Streamlit's own control-flow exceptions (``st.rerun``, ``st.stop``) derive from
  ``BaseException`` and pass through untouched.
"""

from __future__ import annotations

import json
import secrets
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from app.locks import append_line
from medseg.errors import MedsegError

ERROR_LOG = "app-errors.log"


def log_unexpected(workspace: Path, where: str, exc: BaseException) -> str:
    """Append ``exc``'s traceback to the workspace's error log; returns the page message."""
    from app.workspace import utc_now

    ref = secrets.token_hex(4)
    entry = {"time_utc": utc_now(), "ref": ref, "where": where, "type": type(exc).__name__,
             "traceback": "".join(traceback.format_exception(exc))}
    try:
        append_line(workspace / ERROR_LOG, json.dumps(entry) + "\n")
        logged = f"details for the operator are in {ERROR_LOG} in the workspace"
    except OSError:
        logged = "the error log could not be written either: tell the operator"
    return (f"Something went wrong in {where} (reference {ref}); {logged}. Your annotation "
            "is saved after every change: reload the page to continue.")


def guarded(workspace: Path, where: str, fn: Callable[[], Any], *,
            target: Any = None) -> Any:
    """Run ``fn``; show a :class:`MedsegError` as its message and anything else as the
    generic message in ``target`` (a Streamlit container, default the page). Returns what
    ``fn`` returned, or None after an error."""
    out = target if target is not None else st
    try:
        return fn()
    except MedsegError as exc:
        out.error(str(exc))
    except Exception as exc:  # the last resort: log it, show no traceback
        out.error(log_unexpected(workspace, where, exc))
    return None


def message_for(workspace: Path, where: str, exc: Exception) -> str:
    """What to show for ``exc`` caught in a widget callback (shown on the next run)."""
    if isinstance(exc, MedsegError):
        return str(exc)
    return log_unexpected(workspace, where, exc)
