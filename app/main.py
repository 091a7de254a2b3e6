"""medseg app: open, view, annotate, auto-segment, compare, export.

Start with ``streamlit run app/main.py`` (``make app``); see docs/app.md. Every part of the
page runs inside :func:`app.guard.guarded`: a :class:`MedsegError` is shown where it happened,
anything else as a short generic message (traceback in ``<workspace>/app-errors.log``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import labels_panel, session, view_state, viewer
from app.conflict_panel import conflict_banner, conflict_copies
from app.editor import Gesture
from app.gestures import apply_gesture, mode_of
from app.guard import guarded
from app.open_panel import open_panel, show_open_case
from app.panels import PANELS, prompt_tools, run_panel
from app.settings import AppSettings, load_settings
from app.uploads import apply_server_limit
from app.workspace import default_annotator
from medseg.errors import MedsegError

st.set_page_config(page_title="medseg", layout="wide")
SETTINGS: AppSettings
OPEN_SLOT: object | None = None


def _sidebar() -> None:
    st.sidebar.title("medseg")
    if "annotator" not in st.session_state:
        st.session_state["annotator"] = st.query_params.get("who", default_annotator())
    who = st.sidebar.text_input("Annotator", key="annotator")
    if who and st.query_params.get("who") != who:
        st.query_params["who"] = who
    global OPEN_SLOT
    OPEN_SLOT = st.sidebar.empty()  # the case open now: filled at the end of the run
    open_panel(SETTINGS)
    st.sidebar.caption(f"Workspace: {SETTINGS.workspace}")


def _on_gesture(g: Gesture) -> None:
    apply_gesture(SETTINGS, g)


def _messages() -> None:
    """What the last action left to say, and a refused stale save with its conflict copies.
    Drawn in one container that is always there, so a message never shifts the widgets
    below it (which made Streamlit redraw the Display panel collapsed)."""
    with st.container():
        flash = st.session_state.pop("flash", None)
        if flash:
            st.success(flash)
        note = st.session_state.pop("restore_note", None)
        if note:
            st.info(note)
        warn = st.session_state.pop("click_error", None)
        if warn:
            st.warning(warn)
        conflict_banner(SETTINGS)
        conflict_copies(SETTINGS)


def _annotate() -> None:
    case, source, ann = session.current()
    d = case.image.describe()
    st.markdown(f"### {case.name}")
    st.caption(f"{d['shape']} voxels, spacing {d['spacing_mm']} mm, orientation "
               f"{d['orientation']} (shown radiologically: patient right on screen left), "
               f"modality {d['modality'] or 'unknown'} · autosaved to workspace case "
               f"`{source.key}`")
    _messages()
    left, right = st.columns([1, 4])
    with left:
        active = labels_panel.label_table(SETTINGS, ann)
        tool, radius = labels_panel.tools(prompt_tools())
        edit_plane = st.session_state.get("edit_plane") or viewer.render.PLANES[0]
        labels_panel.fill_between_slices(SETTINGS, ann, active, edit_plane)
        labels_panel.undo_redo(SETTINGS, ann)
        with st.expander("Display", expanded=True):
            edit_plane = st.selectbox("Edit plane", list(viewer.render.PLANES),
                                      key="edit_plane")
            window = viewer.window_controls(case)
            overlay = viewer.overlay_controls(case, ann)
    with right:
        outline = None
        if tool not in labels_panel.TOOLS:
            from app.prompt_panel import prefetch

            prefetch(edit_plane, int(st.session_state["cursor"][
                viewer.render.plane_axis(edit_plane)]))
        if "prompt" in st.session_state or ann.proposal is not None:
            from app.prompt_panel import proposal

            outline = proposal(case.image_lps.shape, active)
        color = ann.label(active).color if active is not None else (255, 255, 255)
        viewer.viewer(case, ann, window, overlay, edit_plane, mode_of(tool), _on_gesture,
                      outline=outline, radius_mm=radius, color=color)
        index = int(st.session_state["cursor"][viewer.render.plane_axis(edit_plane)])
        view_shape = viewer.render.extract(case.image_lps, edit_plane, index).pixels.shape
        seam = labels_panel.brush_seam(edit_plane, index, view_shape)
        viewer.readout(case, ann)
    view_state.save(case)
    if seam is not None:
        _on_gesture(Gesture("stroke", seam.plane, seam.index,
                            ((float(seam.row), float(seam.col)),)))
        st.rerun()
    st.divider()
    panel = st.radio("Panel", PANELS, horizontal=True, key="panel")
    guarded(SETTINGS.workspace, f"the {panel} panel",
            lambda: run_panel(panel, SETTINGS, active, index, edit_plane))


def _open_start_sample() -> None:
    """Open ``MEDSEG_START_SAMPLE`` once per browser session when no case is open."""
    name = SETTINGS.start_sample
    if not name or "case" in st.session_state or st.session_state.get("start_sample_done"):
        return
    st.session_state["start_sample_done"] = True
    from app.sources import SAMPLES
    from app.workspace import sample_source

    sample = next((s for s in SAMPLES if s.name == name), None)
    if sample is None:
        st.session_state["flash_error"] = (
            f"MEDSEG_START_SAMPLE={name!r} is not a bundled sample; "
            f"use one of: {', '.join(s.name for s in SAMPLES)}")
        return
    session.open_source(sample_source(sample.name, sample.labels), SETTINGS)


def _page() -> None:
    error = session.restore_from_url(SETTINGS)
    _open_start_sample()
    guarded(SETTINGS.workspace, "the sidebar", _sidebar, target=st.sidebar)
    error = error or st.session_state.pop("flash_error", None)
    if error:
        st.error(error)
    if "case" not in st.session_state:
        st.info("Open a bundled sample, upload a file, or pick one from a server folder, "
                "or work through a folder of cases in dataset mode below.")
        with st.expander("Dataset mode", expanded=False):
            from app.dataset import dataset_panel

            guarded(SETTINGS.workspace, "dataset mode", lambda: dataset_panel(SETTINGS))
        return
    _annotate()


def main() -> None:
    global SETTINGS, OPEN_SLOT
    OPEN_SLOT = None
    try:
        SETTINGS = load_settings()
    except MedsegError as exc:  # the operator's settings: nothing else can run
        st.error(str(exc))
        return
    apply_server_limit(SETTINGS.max_upload_mb)
    st.set_option("client.showErrorDetails", "none")  # as .streamlit/config.toml says
    guarded(SETTINGS.workspace, "the page", _page)
    if OPEN_SLOT is not None:
        show_open_case(OPEN_SLOT)


main()
