"""The view of the open case kept in the URL, so a refresh (or a bookmark) comes back to it.

Kept: the 3D cursor (hence the slice of every plane, ``?cur=i,j,k``), the edit plane
(``?plane=``), the tool (``?tool=``), the active label (``?label=``), the window preset
(``?win=``, with ``?ww=``/``?wl=`` for a manual window) and the panel (``?panel=``).
:func:`restore` puts them back into the session's widgets when a new browser session
reopens the case from the URL; a value that does not fit the case (another case's slice, a
tool not installed here) is dropped and the note returned says so. Zoom and pan are kept by
the browser view itself while the page lives, not across a refresh.
"""

from __future__ import annotations

import math

import streamlit as st

from app import render
from app.case import Case

#: URL parameter -> session-state key of the widget it restores
KEYS = {"plane": "edit_plane", "tool": "tool", "win": "preset", "panel": "panel",
        "label": "active_label"}


def _wanted(case: Case) -> dict[str, str]:
    out = {param: str(st.session_state[key]) for param, key in KEYS.items()
           if st.session_state.get(key) is not None}
    cursor = st.session_state.get("cursor")
    if cursor is not None:
        out["cur"] = ",".join(str(int(c)) for c in cursor)
    if st.session_state.get("preset") == "Manual":
        for key in ("ww", "wl"):
            if st.session_state.get(key) is not None:
                out[key] = f"{float(st.session_state[key]):g}"
    return out


def save(case: Case) -> None:
    """Write the current view into the URL (only the parameters that changed)."""
    for param, value in _wanted(case).items():
        if st.query_params.get(param) != value:
            st.query_params[param] = value
    if st.session_state.get("preset") != "Manual":
        for key in ("ww", "wl"):
            if key in st.query_params:
                del st.query_params[key]


def _cursor(text: str, shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    try:
        ijk = tuple(int(v) for v in text.split(","))
    except ValueError:
        return None
    if len(ijk) != 3 or not all(0 <= v < s for v, s in zip(ijk, shape, strict=False)):
        return None
    return ijk  # type: ignore[return-value]


def restore(case: Case, tools: tuple[str, ...], panels: tuple[str, ...],
            presets: tuple[str, ...], labels: tuple[str, ...]) -> list[str]:
    """Put the URL's view back into the session's widgets; returns what could not be kept."""
    params, dropped = st.query_params, []
    if "cur" in params:
        cur = _cursor(params["cur"], case.image_lps.shape)
        if cur is None:
            dropped.append(f"slice position {params['cur']} (not in this image)")
        else:
            st.session_state["pending_cursor"] = cur
    allowed = {"plane": render.PLANES, "tool": tools, "win": presets, "panel": panels,
               "label": labels}
    for param, key in KEYS.items():
        if param not in params:
            continue
        if params[param] in allowed[param]:
            st.session_state[key] = params[param]
        else:
            dropped.append(f"{param} {params[param]!r} (not available here)")
    if params.get("win") == "Manual":
        try:
            ww, wl = float(params["ww"]), float(params["wl"])
        except (KeyError, ValueError):
            ww = wl = math.nan
        if math.isfinite(ww) and math.isfinite(wl) and ww > 0:  # a URL can say nan or -1
            st.session_state["ww"], st.session_state["wl"] = ww, wl
        else:
            dropped.append("the manual window width/level")
    return dropped
