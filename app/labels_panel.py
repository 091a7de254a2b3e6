"""Labels panel: the label table (add/rename/delete, colours, provenance), tools, brush, and
the page's one undo/redo (brush strokes, prompts, propagations, accepted proposals and
auto-segmentation are all edits of the one annotation, :mod:`app.annotation`).

Every change goes through :func:`app.session.commit`, which autosaves and audits it. The brush
has a plain-number seam (plane row/column inputs and an "Apply brush" button) besides clicks
on the edit plane, so tests (and keyboard users) can drive it without the click component.
"""

from __future__ import annotations

import streamlit as st

from app import render, session
from app.annotation import COMMON_LABELS, Annotation
from app.editor import Gesture
from app.settings import AppSettings
from app.viewer import Click
from medseg.errors import MedsegError

TOOLS = ("Brush", "Eraser")


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def label_table(settings: AppSettings, ann: Annotation) -> int | None:
    """Add/rename/recolour/delete labels; returns the active label value (None if no label)."""
    st.markdown("**Labels**")
    with st.form("add_label_form", clear_on_submit=True, border=False):
        name = st.selectbox("New label (pick or type a name)", ["", *COMMON_LABELS],
                            key="new_label_pick", accept_new_options=True)
        if st.form_submit_button("Add label", key="add_label") and name:
            try:
                lab = ann.add_label(name, action=f"add label {name.strip()}")
                session.commit(settings, "add label", label=lab.as_dict())
                st.session_state["active_label"] = lab.name
            except MedsegError as exc:
                st.error(str(exc))
    if not ann.labels:
        st.caption("No labels yet: add one (e.g. liver) to start annotating.")
        return None
    counts = ann.voxel_counts()
    names = [lab.name for lab in ann.labels]
    if st.session_state.get("active_label") not in names:
        st.session_state["active_label"] = names[0]
    active = st.radio("Active label", names, key="active_label")
    lab = ann.label(ann.names_inv()[active])
    st.caption(" · ".join(f"{n}: {counts[ann.names_inv()[n]]} voxels, "
                          f"{ann.provenance(ann.names_inv()[n]).describe()}" for n in names))
    with st.expander(f"Edit '{lab.name}'", expanded=_confirming(lab.value)):
        _edit_label(settings, ann, lab.value, counts[lab.value])
    return lab.value


def _confirming(value: int) -> bool:
    return st.session_state.get("confirm_delete") == value


def _edit_label(settings: AppSettings, ann: Annotation, value: int, voxels: int) -> None:
    """Rename/recolour (one undoable edit) and delete after a confirmation."""
    lab = ann.label(value)
    new_name = st.text_input("Name", value=lab.name, key=f"rename_{value}_{lab.name}")
    color = st.color_picker("Colour", value=_hex(lab.color), key=f"color_{value}_{_hex(lab.color)}")
    c1, c2 = st.columns(2)
    if c1.button("Save", key=f"save_label_{value}"):
        old = lab.as_dict()
        try:
            changed = ann.edit_label(value, new_name, _rgb(color), action=f"edit label {lab.name}")
        except MedsegError as exc:
            st.error(str(exc))
            return
        if changed:
            session.commit(settings, "edit label", before=old, after=ann.label(value).as_dict())
        st.session_state["active_label"] = ann.label(value).name
        st.rerun()
    if not _confirming(value):
        if c2.button("Delete", key=f"delete_label_{value}"):
            st.session_state["confirm_delete"] = value
            st.rerun()
        return
    st.warning(f"Delete '{lab.name}' and its {voxels} voxels? Undo brings both back.")
    if st.button("Yes, delete", key=f"confirm_delete_{value}", type="primary"):
        st.session_state.pop("confirm_delete", None)
        old = lab.as_dict()
        ann.delete_label(value)
        session.commit(settings, "delete label", label=old, voxels_changed=voxels)
        st.rerun()
    if st.button("Cancel", key=f"cancel_delete_{value}"):
        st.session_state.pop("confirm_delete", None)
        st.rerun()


def tools(prompt_tools: tuple[str, ...]) -> tuple[str, float]:
    """Tool picker and brush radius (mm)."""
    tool = st.radio("Tool", [*TOOLS, *prompt_tools], key="tool", horizontal=True)
    radius = st.slider("Brush radius (mm)", 0.5, 30.0, 5.0, 0.5, key="radius")
    return tool, radius


def fill_between_slices(settings: AppSettings, ann: Annotation, value: int | None,
                        plane: str) -> None:
    """*Fill between slices* (3D Slicer's name): interpolate the active label between the
    slices of the edit plane it is painted on (:func:`medseg.edit.fill_between`, only
    background voxels written), as one undoable edit."""
    if value is None:
        return
    from medseg.edit import annotated_slices, fill_between

    case, _, _ = session.current()
    axis = render.plane_axis(plane)
    painted = annotated_slices(ann.array, value, axis)
    name = ann.label(value).name
    shown = ", ".join(str(k) for k in painted[:12]) + (" ..." if len(painted) > 12 else "")
    help_text = (f"'{name}' is painted on {plane} slices {shown}" if painted
                 else f"'{name}' is not painted on any {plane} slice yet")
    if not st.button(f"Fill between {plane} slices", key="fill_between",
                     disabled=len(painted) < 2, help=help_text + "; the gaps between painted "
                     "slices are interpolated (shape-based), other labels are kept."):
        return
    try:
        new = fill_between(ann.array, value, axis, spacing=case.image_lps.spacing)
    except MedsegError as exc:
        st.session_state["click_error"] = str(exc)
        st.rerun()
    if ann.replace(new, f"fill {name} between {plane} slices"):
        session.commit(settings, "fill between slices", label=name, plane=plane,
                       slices=painted, voxels_changed=ann.voxels_changed())
    st.rerun()


def undo_redo(settings: AppSettings, ann: Annotation) -> None:
    """The page's one Undo/Redo; each button names the edit it reverts or reapplies."""
    c1, c2 = st.columns(2)
    last = ann.undo_stack[-1].action if ann.undo_stack else None
    nxt = ann.redo_stack[-1].action if ann.redo_stack else None
    if c1.button(f"Undo ({len(ann.undo_stack)})", key="undo", disabled=last is None,
                 help=f"Undo: {last}" if last else "Nothing to undo"):
        what = ann.undo()
        session.commit(settings, "undo", reverted=what)
        st.rerun()
    if c2.button(f"Redo ({len(ann.redo_stack)})", key="redo", disabled=nxt is None,
                 help=f"Redo: {nxt}" if nxt else "Nothing to redo"):
        what = ann.redo()
        session.commit(settings, "redo", reapplied=what)
        st.rerun()


def brush_seam(plane: str, index: int, shape: tuple[int, int]) -> Click | None:
    """Number inputs + button: a brush/eraser stroke without the click component."""
    with st.expander("Brush at a pixel (row, column)"):
        c1, c2 = st.columns(2)
        row = c1.number_input("Row", 0, shape[0] - 1, shape[0] // 2, key="brush_row")
        col = c2.number_input("Column", 0, shape[1] - 1, shape[1] // 2, key="brush_col")
        if st.button("Apply brush", key="brush_apply"):
            return Click(plane, index, int(row), int(col))
    return None


def apply_stroke(settings: AppSettings, ann: Annotation, g: Gesture, value: int, tool: str,
                 radius_mm: float) -> None:
    """Apply a brush/eraser drag (all its pointer positions, one edit), autosave + audit."""
    case, _, _ = session.current()
    erase = tool == "Eraser"
    changed = ann.stroke(g.plane, g.index, list(g.points), radius_mm, value, erase,
                         case.image_lps.spacing)
    if changed:
        r, c = g.pixel()
        session.commit(settings, "erase" if erase else "brush", label=ann.label(value).name,
                       plane=g.plane, slice=g.index, row=r, col=c, points=len(g.points),
                       radius_mm=radius_mm, voxels_changed=ann.voxels_changed(),
                       provenance=ann.provenance(value).as_dict())
