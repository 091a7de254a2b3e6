"""The viewer: a large edit view and the two other planes (any can be the edit view), each
with zoom, pan and a crosshair linking them (:mod:`app.editor`); W/L, overlays, readout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

from app import render, session
from app.annotation import Annotation
from app.case import Case
from app.editor import Gesture, slice_view

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


def window_presets(case: Case) -> tuple[str, ...]:
    """The window presets offered for ``case``: the HU presets first for a CT (by the case's
    one modality decision), else automatic percentiles; a manual window always."""
    if session.modality(case).is_ct:
        return (*render.CT_PRESETS, "Auto (percentiles)", "Manual")
    return ("Auto (percentiles)", "Manual")


def window_controls(case: Case) -> tuple[float, float]:
    """Modality selector and display window. The modality is the case's one decision
    (:func:`app.session.modality`): CT offers the HU presets, and the same decision sets the
    prompt model's window and what auto-segmentation is told."""
    st.selectbox("Modality", session.MODALITY_CHOICES, key=session.MODALITY_KEY,
                 help="Auto: from the file's header, else from the data (a voxel below -500 "
                      "means CT in HU).")
    decision = session.modality(case)
    st.caption(f"Modality: {decision.describe()}")
    presets = list(window_presets(case))
    if st.session_state.get("preset") not in presets:  # another modality's preset
        st.session_state.pop("preset", None)
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


def draw_slice(case: Case, labels: np.ndarray | None, plane: str, index: int,
               window: tuple[float, float],
               overlay: tuple[dict[int, tuple[int, int, int]], set[int], float],
               outline: np.ndarray | None = None) -> tuple[np.ndarray, render.SliceView]:
    """RGB uint8 ``[rows, cols, 3]`` of slice ``index`` of ``plane`` (one pixel per voxel):
    windowed grey, labels blended, a proposal's boundary in yellow."""
    view = render.extract(case.image_lps, plane, index)
    lab = render.view_plane(labels, plane, index) if labels is not None else None
    colors, visible, opacity = overlay
    rgb = render.compose(render.to_gray(view.pixels, *window), lab, colors, opacity, visible)
    if outline is not None:  # a prompt proposal: its boundary in yellow
        from scipy import ndimage

        m = render.view_plane(outline, plane, index)
        edge = m & ~ndimage.binary_erosion(m)
        rgb[edge] = OUTLINE_RGB
    return rgb, view


def slice_slider(plane: str, n_slices: int, value: int) -> int:
    """The slice index of ``plane`` (a slider; a caption when the axis has one voxel, e.g.
    a 2D image read as one slice: a slider needs min < max)."""
    if n_slices <= 1:
        st.caption(f"{plane.capitalize()}: the image has a single slice along this axis")
        return 0
    key = f"slider_{plane}"
    if key in st.session_state:  # set by a click or a restored view: no second default
        return int(st.slider(plane.capitalize(), 0, n_slices - 1, key=key))
    return int(st.slider(plane.capitalize(), 0, n_slices - 1, min(max(value, 0), n_slices - 1),
                         key=key))


def _make_edit_plane(plane: str) -> None:
    st.session_state["edit_plane"] = plane


def move_cursor(g: Gesture) -> None:
    """A click on a view moves the 3D cursor there (the other views follow)."""
    r, c = g.pixel()
    rows, cols = render.extract_shape(st.session_state["case"].image_lps.shape, g.plane)
    r, c = int(np.clip(r, 0, rows - 1)), int(np.clip(c, 0, cols - 1))
    vox = render.display_to_voxel_arrays(st.session_state["case"].image_lps.shape, g.plane,
                                         g.index, np.asarray(r), np.asarray(c))
    st.session_state["pending_cursor"] = tuple(int(v) for v in vox)


def viewer(case: Case, ann: Annotation, window: tuple[float, float], overlay: Overlay,
           edit_plane: str, mode: str, on_gesture: Callable[[Gesture], None],
           outline: np.ndarray | None = None, radius_mm: float = 0.0,
           color: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Draw the large edit view and the two others, each with zoom, pan and the crosshair at
    the 3D cursor. Gestures on the edit view go to ``on_gesture`` (a callback); a click on
    another view moves the cursor; *Edit here* makes that view the large edit view."""
    img = case.image_lps
    labels, colors, visible, opacity = overlay
    pending = st.session_state.pop("pending_cursor", None)
    if pending is not None:  # a click moved the cursor: the other planes follow it
        for plane in render.PLANES:
            st.session_state[f"slider_{plane}"] = int(pending[render.plane_axis(plane)])
        st.session_state["cursor"] = pending
    cursor = [int(c) for c in st.session_state.get("cursor", tuple(s // 2 for s in img.shape))]
    for plane in render.PLANES:  # the sliders' values, known before any view is drawn
        axis, key = render.plane_axis(plane), f"slider_{plane}"
        if key in st.session_state and img.shape[axis] > 1:
            cursor[axis] = int(np.clip(st.session_state[key], 0, img.shape[axis] - 1))
    others = [p for p in render.PLANES if p != edit_plane]
    main_col, side_col = st.columns([EDIT_WIDTH, SIDE_WIDTH])
    for plane in [edit_plane, *others]:
        axis = render.plane_axis(plane)
        edit = plane == edit_plane
        with main_col if edit else side_col:
            cursor[axis] = slice_slider(plane, img.shape[axis], int(cursor[axis]))
            rgb, view = draw_slice(case, labels, plane, cursor[axis], window,
                                   (colors, visible, opacity), outline)
            title = f"{plane.capitalize()} {cursor[axis]}/{img.shape[axis] - 1}"
            slice_view(rgb, view, plane=plane, index=cursor[axis],
                       mode=mode if edit else "cursor", key=f"view_{plane}", title=title,
                       cursor=render.voxel_to_display(img.shape, plane, tuple(cursor)),
                       on_gesture=on_gesture if edit else move_cursor, edit=edit,
                       radius_mm=radius_mm, color=color)
            if not edit:
                st.button(f"Edit in {plane}", key=f"make_edit_{plane}",
                          on_click=_make_edit_plane, args=(plane,))
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
