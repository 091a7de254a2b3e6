"""The viewer: a large clickable edit plane, the two other planes, W/L, overlays, readout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from app import render, session
from app.annotation import Annotation
from app.case import Case

EDIT_WIDTH = 560
SIDE_WIDTH = 300


@dataclass(frozen=True)
class Click:
    """A click (or drag, for boxes) on the edit plane, in slice pixel indices ``[row, col]``."""

    plane: str
    index: int
    row: int
    col: int
    row2: int | None = None
    col2: int | None = None


def window_controls(case: Case) -> tuple[float, float]:
    """Modality selector and display window. The modality is the case's one decision
    (:func:`app.session.modality`): CT offers the HU presets, and the same decision sets the
    prompt model's window and what auto-segmentation is told."""
    st.selectbox("Modality", session.MODALITY_CHOICES, key=session.MODALITY_KEY,
                 help="Auto: from the file's header, else from the data (a voxel below -500 "
                      "means CT in HU).")
    decision = session.modality(case)
    st.caption(f"Modality: {decision.describe()}")
    presets = [*render.CT_PRESETS, "Auto (percentiles)", "Manual"] if decision.is_ct else [
        "Auto (percentiles)", "Manual"]
    preset = st.selectbox("Window", presets, key="preset")
    auto = render.auto_window(case.image_lps.array)
    width, level = render.CT_PRESETS.get(preset, auto)
    if preset == "Manual":
        c1, c2 = st.columns(2)
        width = c1.number_input("Width", value=float(auto[0]), min_value=1.0, key="ww")
        level = c2.number_input("Level", value=float(auto[1]), key="wl")
    return width, level


Overlay = tuple[np.ndarray | None, dict[int, tuple[int, int, int]], set[int], float]


def overlay_controls(case: Case, ann: Annotation) -> Overlay:
    """Which label map is drawn (annotation or reference), its colours, visible values."""
    sources = ["Annotation"] + (["Reference"] if case.labels_lps is not None else [])
    shown = st.radio("Overlay", sources, horizontal=True, key="overlay")
    opacity = st.slider("Label opacity", 0.0, 1.0, 0.45, key="opacity")
    if shown == "Reference" and case.labels_lps is not None:
        present = sorted(int(k) for k in case.labels_lps.describe().get("labels", {}))
        names = {v: (case.labels_lps.labels or {}).get(v, str(v)) for v in present}
        vis = st.multiselect("Visible labels", [names[v] for v in present],
                             default=[names[v] for v in present], key="visible_ref")
        return (case.labels_lps.array, render.label_colors(present),
                {v for v in present if names[v] in vis}, opacity)
    names = ann.names()
    hidden = st.multiselect("Hidden labels", list(names.values()), default=[], key="hidden")
    return ann.array, ann.colors(), {v for v, n in names.items() if n not in hidden}, opacity


OUTLINE_RGB = (255, 255, 0)


def _draw(case: Case, labels: np.ndarray | None, plane: str, index: int,
          window: tuple[float, float], overlay: tuple[dict[int, tuple[int, int, int]], set[int],
                                                      float], width: int,
          outline: np.ndarray | None = None) -> tuple[Image.Image, render.SliceView]:
    view = render.extract(case.image_lps, plane, index)
    lab = render.view_plane(labels, plane, index) if labels is not None else None
    colors, visible, opacity = overlay
    rgb = render.compose(render.to_gray(view.pixels, *window), lab, colors, opacity, visible)
    if outline is not None:  # a prompt proposal: its boundary in yellow
        from scipy import ndimage

        m = render.view_plane(outline, plane, index)
        edge = m & ~ndimage.binary_erosion(m)
        rgb[edge] = OUTLINE_RGB
    return render.to_image(rgb, render.physical_size(view, width)), view


def click_from_value(value: dict[str, Any], plane: str, index: int, shape: tuple[int, int],
                     drag: bool) -> Click:
    """The component's value (displayed CSS pixels) -> :class:`Click` in slice pixels."""
    rows, cols = shape
    sy, sx = rows / float(value["height"]), cols / float(value["width"])

    def rc(x: float, y: float) -> tuple[int, int]:
        return (int(np.clip(int(y * sy), 0, rows - 1)), int(np.clip(int(x * sx), 0, cols - 1)))

    if drag and "x1" in value:
        r1, c1 = rc(value["x1"], value["y1"])
        r2, c2 = rc(value["x2"], value["y2"])
        return Click(plane, index, min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2))
    r, c = rc(value["x"], value["y"])
    return Click(plane, index, r, c)


def _clickable(image: object, plane: str, index: int, shape: tuple[int, int], drag: bool,
               on_click: Callable[[Click], None]) -> None:
    """Show ``image`` as a clickable component. A click/drag calls ``on_click`` in a callback,
    i.e. before the next script run, so the run that follows already draws its effect."""
    from streamlit_image_coordinates import streamlit_image_coordinates

    key = f"click_{plane}"

    def callback() -> None:
        value = st.session_state.get(key)
        if not value:
            return
        click = click_from_value(value, plane, index, shape, drag)
        if click.row2 is None:  # the other planes follow a point click
            vox = render.display_to_voxel_arrays(st.session_state["case"].image_lps.shape,
                                                 plane, index, np.asarray(click.row),
                                                 np.asarray(click.col))
            st.session_state["pending_cursor"] = tuple(int(v) for v in vox)
        on_click(click)

    streamlit_image_coordinates(image, key=key, click_and_drag=drag, cursor="crosshair",
                                png_compression_level=1, width="stretch",
                                on_click=callback)


def slice_slider(plane: str, n_slices: int, value: int) -> int:
    """The slice index of ``plane`` (a slider; a caption when the axis has one voxel, e.g.
    a 2D image read as one slice: a slider needs min < max)."""
    if n_slices <= 1:
        st.caption(f"{plane.capitalize()}: the image has a single slice along this axis")
        return 0
    return int(st.slider(plane.capitalize(), 0, n_slices - 1, min(max(value, 0), n_slices - 1),
                         key=f"slider_{plane}"))


def viewer(case: Case, ann: Annotation, window: tuple[float, float],
           overlay: Overlay, edit_plane: str, drag: bool, on_click: Callable[[Click], None],
           outline: np.ndarray | None = None) -> None:
    """Draw the planes; clicks/drags on the edit plane go to ``on_click`` (a callback)."""
    img = case.image_lps
    labels, colors, visible, opacity = overlay
    pending = st.session_state.pop("pending_cursor", None)
    if pending is not None:  # a click moved the cursor: the other planes follow it
        for plane in render.PLANES:
            st.session_state[f"slider_{plane}"] = int(pending[render.plane_axis(plane)])
        st.session_state["cursor"] = pending
    cursor = list(st.session_state.get("cursor", tuple(s // 2 for s in img.shape)))
    others = [p for p in render.PLANES if p != edit_plane]
    main_col, side_col = st.columns([EDIT_WIDTH, SIDE_WIDTH])
    for plane in [edit_plane, *others]:
        axis = render.plane_axis(plane)
        with main_col if plane == edit_plane else side_col:
            cursor[axis] = slice_slider(plane, img.shape[axis], int(cursor[axis]))
            width = EDIT_WIDTH if plane == edit_plane else SIDE_WIDTH
            pil, view = _draw(case, labels, plane, cursor[axis], window,
                              (colors, visible, opacity), width, outline)
            if plane == edit_plane:
                _clickable(pil, plane, cursor[axis], view.pixels.shape, drag, on_click)
            else:
                st.image(pil)
    st.session_state["cursor"] = tuple(cursor)


def _t(values: object) -> tuple[object, ...]:
    return tuple(values) if isinstance(values, list | tuple) else (values,)


def readout(case: Case, ann: Annotation) -> None:
    cursor = tuple(int(c) for c in st.session_state["cursor"])
    r = case.readout(cursor)  # type: ignore[arg-type]
    value = int(ann.array[cursor])
    name = ann.names().get(value, "background") if value else "background"
    st.markdown(
        f"**Cursor** voxel (i, j, k) = {_t(r['voxel'])} · LPS {_t(r['lps_mm'])} mm · "
        f"RAS {_t(r['ras_mm'])} mm · value **{r['value']:g}** · annotation **{name}**"
        + (f" · reference **{r['label']}**" if "label" in r else ""))
