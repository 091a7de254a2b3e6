"""medseg app: open a case and view it (``streamlit run app/main.py``)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import render
from app.case import Case, open_case
from app.settings import load_settings
from app.sources import (
    SAMPLES,
    UPLOAD_TYPES,
    list_entries,
    resolve_in_roots,
    save_upload,
)
from medseg import io
from medseg.errors import MedsegError

st.set_page_config(page_title="medseg", layout="wide")
SETTINGS = load_settings()


def _set_case(case: Case) -> None:
    st.session_state["case"] = case
    st.session_state["cursor"] = tuple(s // 2 for s in case.image_lps.shape)


def _sidebar_open() -> None:
    st.sidebar.header("Open")
    source = st.sidebar.radio("Source", ["Sample", "Upload", "Server folder"], key="source")
    try:
        if source == "Sample":
            names = [s.name for s in SAMPLES]
            name = st.sidebar.selectbox("Bundled case", names, key="sample")
            sample = SAMPLES[names.index(name)]
            st.sidebar.caption(sample.description)
            if st.sidebar.button("Open sample", key="open_sample"):
                _set_case(open_case(sample.name, sample.image, sample.labels))
        elif source == "Upload":
            up = st.sidebar.file_uploader("NIfTI, NRRD, MHA, or a zipped DICOM folder",
                                          type=list(UPLOAD_TYPES), key="upload")
            if up is not None:
                folder = Path(tempfile.mkdtemp(prefix="medseg-upload-"))
                path = save_upload(up.name, up.getvalue(), folder, SETTINGS.max_upload_mb)
                _open_path(up.name, path)
        else:
            root = SETTINGS.data_roots[0]
            rel = st.sidebar.text_input("Folder", value=str(root), key="server_folder")
            entries = list_entries(rel, SETTINGS.data_roots)
            choice = st.sidebar.selectbox("Entry", [e.name for e in entries], key="server_entry")
            if choice and st.sidebar.button("Open", key="open_server"):
                path = resolve_in_roots(Path(rel) / choice, SETTINGS.data_roots)
                _open_path(choice, path)
    except MedsegError as exc:
        st.sidebar.error(str(exc))


def _open_path(name: str, path: Path) -> None:
    series = io.list_series(path)
    choice = None
    if len(series) > 1:
        labels = [f"{s.number}: {s.modality} {s.n_images} images '{s.description}'"
                  for s in series]
        picked = st.sidebar.selectbox("Series", labels, key=f"series_{name}")
        choice = series[labels.index(picked)].number
        if not st.sidebar.button("Open series", key=f"open_series_{name}"):
            return
    _set_case(open_case(name, path, series=choice))


def _window_controls(case: Case) -> tuple[float, float]:
    is_ct = (case.image.modality or "").upper() == "CT" or case.image.array.min() < -500
    presets = [*render.CT_PRESETS, "Auto (percentiles)", "Manual"] if is_ct else [
        "Auto (percentiles)", "Manual"]
    preset = st.selectbox("Window", presets, key="preset")
    auto = render.auto_window(case.image_lps.array)
    width, level = render.CT_PRESETS.get(preset, auto)
    if preset == "Manual":
        c1, c2 = st.columns(2)
        width = c1.number_input("Width", value=float(auto[0]), min_value=1.0, key="ww")
        level = c2.number_input("Level", value=float(auto[1]), key="wl")
    return width, level


def _viewer(case: Case) -> None:
    img = case.image_lps
    d = case.image.describe()
    st.subheader(case.name)
    st.caption(f"{d['shape']} voxels, spacing {d['spacing_mm']} mm, orientation "
               f"{d['orientation']} (shown radiologically: patient right on screen left), "
               f"modality {d['modality'] or 'unknown'}")
    controls, views = st.columns([1, 4])
    with controls:
        width, level = _window_controls(case)
        opacity = st.slider("Label opacity", 0.0, 1.0, 0.45, key="opacity")
        visible: set[int] | None = None
        colors: dict[int, tuple[int, int, int]] = {}
        if case.labels_lps is not None and case.labels_lps.labels:
            present = sorted(int(k) for k in case.labels_lps.describe().get("labels", {}))
            names = {v: case.labels_lps.labels.get(v, str(v)) for v in present}
            shown = st.multiselect("Visible labels", [names[v] for v in present],
                                   default=[names[v] for v in present], key="visible")
            visible = {v for v in present if names[v] in shown}
            colors = render.label_colors(present)
    cursor = list(st.session_state.get("cursor", tuple(s // 2 for s in img.shape)))
    cols = views.columns(3)
    for col, plane in zip(cols, render.PLANES, strict=True):
        axis = render.plane_axis(plane)
        with col:
            cursor[axis] = st.slider(plane.capitalize(), 0, img.shape[axis] - 1,
                                     int(cursor[axis]), key=f"slider_{plane}")
            view = render.extract(img, plane, cursor[axis])
            lab = (render.extract(case.labels_lps, plane, cursor[axis]).pixels
                   if case.labels_lps is not None else None)
            rgb = render.compose(render.to_gray(view.pixels, width, level), lab, colors,
                                 opacity, visible)
            st.image(render.to_image(rgb, render.physical_size(view, 360)))
    st.session_state["cursor"] = tuple(cursor)
    r = case.readout(tuple(cursor))
    st.markdown(
        f"**Cursor** voxel (i, j, k) = {tuple(r['voxel'])} · LPS {tuple(r['lps_mm'])} mm · "
        f"RAS {tuple(r['ras_mm'])} mm · value **{r['value']:g}**"
        + (f" · label **{r['label']}**" if "label" in r else ""))


def main() -> None:
    st.title("medseg")
    _sidebar_open()
    case = st.session_state.get("case")
    if case is None:
        st.info("Open a bundled sample, upload a file, or pick one from a server folder.")
        return
    try:
        _viewer(case)
    except MedsegError as exc:
        st.error(str(exc))


main()
