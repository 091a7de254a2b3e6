"""Sidebar 'Open' panel: bundled samples, uploads (kept in the workspace), server folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from app import session
from app.settings import AppSettings
from app.sources import (
    SAMPLES,
    UPLOAD_TYPES,
    list_entries,
    resolve_in_roots,
    safe_name,
    save_upload,
)
from app.workspace import CaseSource, sample_source, server_source, upload_source
from medseg import io
from medseg.errors import MedsegError


def open_panel(settings: AppSettings) -> None:
    st.sidebar.header("Open")
    source = st.sidebar.radio("Source", ["Sample", "Upload", "Server folder"], key="source")
    try:
        if source == "Sample":
            names = [s.name for s in SAMPLES]
            name = st.sidebar.selectbox("Bundled case", names, key="sample")
            sample = SAMPLES[names.index(name)]
            st.sidebar.caption(sample.description)
            if st.sidebar.button("Open sample", key="open_sample"):
                session.open_source(sample_source(sample.name, sample.labels), settings)
        elif source == "Upload":
            up = st.sidebar.file_uploader("NIfTI, NRRD, MHA, or a zipped DICOM folder",
                                          type=list(UPLOAD_TYPES), key="upload")
            if up is not None:
                data = up.getvalue()
                digest = hashlib.sha256(data).hexdigest()
                folder = session.workspace(settings).upload_dir(digest)
                path = folder / safe_name(up.name)
                if not path.is_file():
                    path = save_upload(up.name, data, folder, settings.max_upload_mb)
                if st.session_state.get("upload_handled") != digest:
                    _open_path(up.name, path, settings, digest)
        else:
            root = settings.data_roots[0]
            rel = st.sidebar.text_input("Folder", value=str(root), key="server_folder")
            entries = list_entries(rel, settings.data_roots)
            choice = st.sidebar.selectbox("Entry", [e.name for e in entries], key="server_entry")
            if choice and st.sidebar.button("Open", key="open_server"):
                st.session_state["server_pick"] = str(
                    resolve_in_roots(Path(rel) / choice, settings.data_roots))
            pick = st.session_state.get("server_pick")
            if pick:
                _open_path(Path(pick).name, Path(pick), settings, None)
    except MedsegError as exc:
        st.sidebar.error(str(exc))


def _open_path(name: str, path: Path, settings: AppSettings, digest: str | None) -> None:
    """Open a file/folder, asking for the series when a DICOM input holds several."""
    series = io.list_series(path)
    uid = None
    if len(series) > 1:
        labels = [f"{s.number}: {s.modality} {s.n_images} images '{s.description}'"
                  for s in series]
        picked = st.sidebar.selectbox("Series", labels, key=f"series_{name}")
        uid = series[labels.index(picked)].uid
        if not st.sidebar.button("Open series", key=f"open_series_{name}"):
            return
    src: CaseSource = (upload_source(path, digest, uid) if digest is not None
                       else server_source(path, uid))
    current = st.session_state.get("case_source")
    if current is not None and current.key == src.key:
        return  # already open (the uploader keeps its file across reruns)
    st.session_state.pop("server_pick", None)
    session.open_source(src, settings)
    if digest is not None:
        st.session_state["upload_handled"] = digest
