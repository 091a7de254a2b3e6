"""Sidebar 'Open' panel: bundled samples, uploads (kept in the workspace), server folders,
and series found in a PACS (search form -> series list -> open, with retrieval progress).

Every read names its allowed folders (:mod:`app.reading`): a server entry the data roots, an
upload its own ``uploads/<sha256[:16]>/`` folder, a PACS series its folder in the workspace's
PACS cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from app import reading, session
from app.settings import AppSettings
from app.sources import SAMPLES, UPLOAD_TYPES, list_entries, resolve_in_roots, upload_images
from app.uploads import stored_upload
from app.workspace import CaseSource, sample_source, upload_source
from medseg.errors import MedsegError

if TYPE_CHECKING:
    from medseg.pacs.records import SearchFilters


def open_panel(settings: AppSettings) -> None:
    st.sidebar.header("Open")
    source = st.sidebar.radio("Source", ["Sample", "Upload", "Server folder", "PACS"],
                              key="source")
    try:
        if source == "Sample":
            names = [s.name for s in SAMPLES]
            name = st.sidebar.selectbox("Bundled case", names, key="sample")
            sample = SAMPLES[names.index(name)]
            st.sidebar.caption(f"**{sample.name}**: {sample.description}")  # the full name
            if st.sidebar.button("Open sample", key="open_sample"):
                session.open_source(sample_source(sample.name, sample.labels), settings)
        elif source == "Upload":
            _upload(settings)
        elif source == "PACS":
            _pacs(settings)
        else:
            _server(settings)
    except MedsegError as exc:
        st.sidebar.error(str(exc))


_KINDS = {"sample": "bundled sample", "server": "server file", "upload": "upload",
          "pacs": "PACS series"}


def show_open_case(slot: object) -> None:
    """Write the case open now into ``slot`` (a sidebar placeholder), at the END of the run:
    a case opened further down the page (dataset mode, *Next case*) is named, never the
    previous one."""
    current = st.session_state.get("case_source")
    if current is None:
        slot.empty()  # type: ignore[attr-defined]
        return
    kind = _KINDS.get(current.kind, current.kind)
    slot.caption(f"Open now: **{current.name}** ({kind})")  # type: ignore[attr-defined]


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
    from app.dataset import source_for  # a bundled sample's image keeps the sample's key

    src: CaseSource = (upload_source(path, identity, uid) if identity is not None
                       else source_for(path, uid))
    current = st.session_state.get("case_source")
    if current is not None and current.key == src.key:
        return  # already open (the uploader keeps its file across reruns)
    st.session_state.pop("server_pick", None)
    session.open_source(src, settings)
    if identity is not None:
        st.session_state["upload_handled"] = identity


def _pacs_filters() -> SearchFilters | None:
    """The search form; the filters when it was submitted, else None."""
    from medseg.pacs.records import SearchFilters

    with st.sidebar.form("pacs_search"):
        fields = {key: st.text_input(label, key=f"pacs_{key}") for key, label in (
            ("patient_id", "Patient ID"), ("patient_name", "Patient name (DOE*)"),
            ("study_date", "Study date (YYYYMMDD or FROM-TO)"), ("modality", "Modality"),
            ("accession_number", "Accession number"),
            ("description", "Series description (*wildcards*)"))}
        if not st.form_submit_button("Search", key="pacs_search_go"):
            return None
    return SearchFilters(**{k: v.strip() or None for k, v in fields.items()})


def _pacs(settings: AppSettings) -> None:
    """PACS source: pick a server, search, pick a series, open it (retrieval progress shown;
    the case is keyed by the Series Instance UID, so its annotation is found again)."""
    from app.sources import open_pacs_case, pacs_case_source, pacs_server_names
    from medseg.pacs.dicomweb import DicomWeb
    from medseg.pacs.servers import load_server

    names = pacs_server_names()
    if not names:
        st.sidebar.caption("No PACS is configured: point MEDSEG_PACS_SERVERS at a servers "
                           "file (see docs/pacs.md) and restart the app.")
        return
    server = st.sidebar.selectbox("PACS", names, key="pacs_server")
    filters = _pacs_filters()
    if filters is not None:
        with st.sidebar.status(f"Searching {server}..."):
            found = DicomWeb(load_server(server)).search_series(filters)
        st.session_state["pacs_results"] = (server, found)
    server_found = st.session_state.get("pacs_results")
    if not server_found or server_found[0] != server:
        return
    records = server_found[1]
    if not records:
        st.sidebar.info("No series matches.")
        return
    labels = [f"{r.patient_id or '-'} {r.patient_name} · {r.study_date or '-'} · {r.modality} "
              f"'{r.description}' · {r.n_instances if r.n_instances is not None else '?'} "
              f"images · …{r.series_uid[-8:]}" for r in records]
    picked = st.sidebar.selectbox(f"Series ({len(records)} found)", labels, key="pacs_pick")
    if not st.sidebar.button("Open series", key="open_pacs"):
        return
    src = pacs_case_source(server, records[labels.index(picked)])
    bar = st.sidebar.progress(0.0, text="Retrieving from the PACS")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Retrieved {done} of {total} instances")

    try:
        case = open_pacs_case(src, settings, progress)
    finally:
        bar.empty()
    session.open_source(src, settings, case=case)
