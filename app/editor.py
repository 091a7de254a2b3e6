"""The slice view component: one displayed slice with zoom, pan, crosshair and edit gestures.

A Streamlit component with no build step (``app/components/editor/``: a plain ``index.html``
and ``editor.js`` speaking Streamlit's component ``postMessage`` protocol). It shows the slice
PNG at one image pixel per slice pixel, scaled to the column width with the **physical
aspect** (pixel sizes in mm); a slice much wider than tall (coronal/sagittal of a thin
volume) is stretched to at least ``MIN_ASPECT`` of its width and says so in the view.
Zoom (wheel, +/-/Fit) and pan (right or middle drag, Shift + drag) happen in the browser and
survive reruns. A gesture comes back, in a callback before the next script run, as a
:class:`Gesture` in slice pixel units: a brush/eraser drag as every pointer position of the
drag, a box as its two corners, a click as one point.

Two component names share the frontend: ``edit_view`` (the large edit view) and
``side_view`` (the two others, where a click moves the crosshair), so a page or a test can
tell them apart (their iframe titles are ``app.editor.edit_view`` / ``app.editor.side_view``).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import streamlit.components.v1 as components
from PIL import Image

from app.render import SliceView

FRONTEND = Path(__file__).resolve().parent / "components" / "editor"
_EDIT = components.declare_component("edit_view", path=str(FRONTEND))
_SIDE = components.declare_component("side_view", path=str(FRONTEND))
#: smallest displayed height / width of a slice (thin volumes are stretched up to it)
MIN_ASPECT = 0.4
#: tallest displayed slice, CSS pixels (a tall slice is narrowed to fit)
MAX_HEIGHT = 720
MODES = ("stroke", "erase", "box", "point", "cursor")


@dataclass(frozen=True)
class Gesture:
    """What the user did on a view: ``kind`` (one of :data:`MODES`) on slice ``index`` of
    ``plane``; ``points`` as ``(row, col)`` in :func:`app.render.extract`'s pixel units
    (pixel centres at integers, fractions kept)."""

    kind: str
    plane: str
    index: int
    points: tuple[tuple[float, float], ...]

    def pixel(self, i: int = 0) -> tuple[int, int]:
        """Point ``i`` rounded to the nearest pixel ``(row, col)``."""
        r, c = self.points[i]
        return round(r), round(c)


def png_data_url(rgb: np.ndarray) -> str:
    """A PNG data URL of an RGB uint8 image (fast compression: the picture changes often)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def gesture_from_value(value: object) -> Gesture | None:
    """The component's value -> :class:`Gesture` (None for anything malformed)."""
    if not isinstance(value, dict) or value.get("kind") not in MODES:
        return None
    try:
        points = tuple((float(r), float(c)) for r, c in value["points"])
        return Gesture(str(value["kind"]), str(value["plane"]), int(value["index"]), points)
    except (KeyError, TypeError, ValueError):
        return None


def slice_view(rgb: np.ndarray, view: SliceView, *, plane: str, index: int, mode: str,
               key: str, title: str, cursor: tuple[int, int] | None,
               on_gesture: Callable[[Gesture], None], edit: bool = True,
               radius_mm: float = 0.0, color: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Show ``rgb`` (``[rows, cols, 3]`` uint8, the displayed slice ``view`` of ``plane`` at
    ``index``) with the crosshair at ``cursor`` (row, col). A gesture calls ``on_gesture``
    as a widget callback (before the next run, so that run already draws its effect)."""
    rows, cols = view.pixels.shape

    def callback() -> None:
        g = gesture_from_value(st.session_state.get(key))
        if g is not None and g.points:
            on_gesture(g)

    func = _EDIT if edit else _SIDE
    func(src=png_data_url(rgb), rows=int(rows), cols=int(cols), row_mm=float(view.row_mm),
         col_mm=float(view.col_mm), mode=mode, radius_mm=float(radius_mm),
         cursor=list(cursor) if cursor is not None else None, plane=plane, index=int(index),
         title=title, min_aspect=MIN_ASPECT, max_height=MAX_HEIGHT, color=list(color),
         key=key, default=None, on_change=callback)
