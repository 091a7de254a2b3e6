"""Sidebar 'Open' panel: bundled samples, uploads (kept in the workspace), server folders.

Every read names its allowed folders (:mod:`app.reading`): a server entry the data roots, an
upload its own ``uploads/<sha256[:16]>/`` folder.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import reading, session
from app.settings import AppSettings
from app.sources import SAMPLES, UPLOAD_TYPES, list_entries, resolve_in_roots, upload_images
from app.uploads import stored_upload
from app.workspace import CaseSource, sample_source, server_source, upload_source
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
            _upload(settings)
        else:
            _server(settings)
    except MedsegError as exc:
        st.sidebar.error(str(exc))


def _upload(settings: AppSettings) -> None:
    up = st.sidebar.file_uploader(
        "NIfTI, NRRD, MHA, or a zip (a DICOM folder, or a header with its data file)",
        type=list(UPLOAD_TYPES), key="upload", max_upload_size=settings.max_upload_mb)
    if up is None:
        return
    stored = stored_upload(up, settings.workspace / "uploads", settings.max_upload_mb,
                           slot="image")
    images = upload_images(stored)
    path = images[0]
    if len(images) > 1:
        rel = [str(p.relative_to(stored.path.parent)) for p in images]
        path = images[rel.index(st.sidebar.selectbox("Image in the zip", rel,
                                                     key="upload_member"))]
    identity = stored.digest if path == stored.path else \
        f"{stored.digest}/{path.relative_to(stored.path.parent)}"
    if st.session_state.get("upload_handled") != identity:
        _open_path(path.name, path, settings, identity)


def _server(settings: AppSettings) -> None:
    root = settings.data_roots[0]
    rel = st.sidebar.text_input("Folder", value=str(root), key="server_folder")
    entries = list_entries(rel, settings.data_roots)
    choice = st.sidebar.selectbox("Entry", [e.name for e in entries], key="server_entry")
    if choice and st.sidebar.button("Open", key="open_server"):
        st.session_state["server_pick"] = str(
            resolve_in_roots(Path(rel) / choice, settings.data_roots))
    pick = st.session_state.get("server_pick")
    if pick:
        try:
            _open_path(Path(pick).name, Path(pick), settings, None)
        except MedsegError:
            st.session_state.pop("server_pick", None)  # do not retry a refused file each run
            raise


def _open_path(name: str, path: Path, settings: AppSettings, identity: str | None) -> None:
    """Open a file/folder (an upload when ``identity`` is its content identity), asking for
    the series when a DICOM input holds several."""
    roots = (session.upload_root(path, settings),) if identity is not None \
        else settings.data_roots
    series = reading.list_series(path, roots)
    uid = None
    if len(series) > 1:
        labels = [f"{s.number}: {s.modality} {s.n_images} images '{s.description}'"
                  for s in series]
        picked = st.sidebar.selectbox("Series", labels, key=f"series_{name}")
        uid = series[labels.index(picked)].uid
        if not st.sidebar.button("Open series", key=f"open_series_{name}"):
            return
    src: CaseSource = (upload_source(path, identity, uid) if identity is not None
                       else server_source(path, uid))
    current = st.session_state.get("case_source")
    if current is not None and current.key == src.key:
        return  # already open (the uploader keeps its file across reruns)
    st.session_state.pop("server_pick", None)
    session.open_source(src, settings)
    if identity is not None:
        st.session_state["upload_handled"] = identity
