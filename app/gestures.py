"""What a gesture on the edit view does with the current tool (runs as a widget callback).

* *Brush* / *Eraser*: the drag's pointer positions become ONE stroke (:meth:`Annotation.stroke`,
  continuous at the radius in mm), autosaved and audited; a plain click paints a disc and
  moves the cursor there, as before.
* *Box*: the drag's corners become a box prompt; *Point +/-*: a click prompt (and moves the
  cursor).

Errors are kept for the run that follows (``st.session_state["click_error"]``): a callback
cannot show anything itself.
"""

from __future__ import annotations

import streamlit as st

from app import labels_panel, session, viewer
from app.editor import Gesture
from app.guard import message_for
from app.settings import AppSettings
from app.viewer import Click

#: the edit view's gesture mode per tool
MODES = {"Brush": "stroke", "Eraser": "erase", "Box": "box", "Point +": "point",
         "Point -": "point"}


def mode_of(tool: str) -> str:
    return MODES.get(tool, "cursor")


def apply_gesture(settings: AppSettings, g: Gesture) -> None:
    """Apply ``g`` on the edit view with the current tool and active label."""
    _, _, ann = session.current()
    tool = st.session_state.get("tool", labels_panel.TOOLS[0])
    if g.kind == "cursor" or (len(g.points) == 1 and g.kind != "box"):
        viewer.move_cursor(g)
    if g.kind == "cursor":
        return
    active = ann.names_inv().get(st.session_state.get("active_label", ""))
    if active is None:
        st.session_state["click_error"] = "Add a label first: tools edit the active label."
        return
    try:
        if tool in labels_panel.TOOLS:
            labels_panel.apply_stroke(settings, ann, g, active, tool,
                                      float(st.session_state.get("radius", 5.0)))
            return
        from app.prompt_panel import handle_click

        if tool == "Box":
            if len(g.points) < 2:
                return
            (r1, c1), (r2, c2) = g.pixel(0), g.pixel(-1)
            click = Click(g.plane, g.index, min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2))
        else:
            click = Click(g.plane, g.index, *g.pixel())
        handle_click(settings, tool, _clipped(click), active)
        st.session_state["panel"] = "Prompt"
    except Exception as exc:  # a callback: shown on the run that follows
        st.session_state["click_error"] = message_for(settings.workspace, "the edit view", exc)


def _clipped(click: Click) -> Click:
    """``click`` with its pixels inside the slice (a drag may end outside the view)."""
    from app import render

    rows, cols = render.extract_shape(st.session_state["case"].image_lps.shape, click.plane)

    def r(v: int | None) -> int | None:
        return None if v is None else min(max(v, 0), rows - 1)

    def c(v: int | None) -> int | None:
        return None if v is None else min(max(v, 0), cols - 1)

    return Click(click.plane, click.index, r(click.row) or 0, c(click.col) or 0,
                 r(click.row2), c(click.col2))
