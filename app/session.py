"""Session state of the app: the open case, its annotation, autosave and audit.

Streamlit keeps ``st.session_state`` per browser tab and loses it on a refresh; the case key
is therefore also put in the URL (``?case=<key>``) and the annotator's name in ``?who=``, and
:func:`restore_from_url` reopens the case from the workspace when a new session starts. The
undo/redo history is kept by the server process per case (it survives a refresh, not a
restart).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import streamlit as st

from app.annotation import Annotation
from app.case import Case, open_case
from app.settings import AppSettings
from app.sources import SAMPLES, resolve_in_roots
from app.workspace import CaseSource, Workspace, WorkspaceError, default_annotator


def workspace(settings: AppSettings) -> Workspace:
    return Workspace(settings.workspace)


def annotator() -> str:
    return str(st.session_state.get("annotator") or default_annotator())


@st.cache_resource(show_spinner=False)
def _histories() -> dict[str, tuple[list[Any], list[Any], int]]:
    """Undo/redo stacks per case key, kept by the server process across browser sessions
    (a refresh keeps the history; an app restart keeps the labels but not the history)."""
    return {}


def case_from_source(source: CaseSource, settings: AppSettings) -> Case:
    """Read the case a :class:`CaseSource` names (re-checking it is still allowed)."""
    if source.kind == "sample":
        for s in SAMPLES:
            if s.name == source.ref:
                return open_case(s.name, s.image, s.labels)
        raise WorkspaceError(f"Bundled sample {source.ref!r} is not shipped with this version.")
    if source.kind == "server":
        path = resolve_in_roots(source.ref, settings.data_roots)
    elif source.kind == "upload":
        path = Path(source.ref).resolve()
        uploads = (settings.workspace / "uploads").resolve()
        if uploads not in path.parents:
            raise WorkspaceError(f"{path}: uploads are reopened only from {uploads}.")
    else:
        raise WorkspaceError(f"Unknown case source kind {source.kind!r}.")
    if not path.exists():
        raise WorkspaceError(f"{path}: the case's file is gone; upload or open it again.")
    ref = Path(source.reference) if source.reference else None
    return open_case(source.name, path, ref, series=source.series)


def open_source(source: CaseSource, settings: AppSettings, case: Case | None = None) -> None:
    """Open ``source`` (reading it unless ``case`` is given) and restore its annotation."""
    case = case or case_from_source(source, settings)
    ws = workspace(settings)
    ann = ws.restore(source.key, case)
    restored = ann is not None
    history = _histories().get(f"{ws.root}|{source.key}")
    if ann is not None and history is not None and history[2] == ann.edits:
        ann.undo_stack, ann.redo_stack = list(history[0]), list(history[1])
    st.session_state["case"] = case
    st.session_state["case_source"] = source
    st.session_state["ann"] = ann or Annotation.empty(case.image_lps.shape)
    st.session_state["cursor"] = tuple(s // 2 for s in case.image_lps.shape)
    for key in ("slider_axial", "slider_coronal", "slider_sagittal", "prompt", "propagation"):
        st.session_state.pop(key, None)
    st.query_params["case"] = source.key
    ws.audit(annotator(), "open case", source.key, source=asdict(source), restored=restored,
             labels=[lab.as_dict() for lab in st.session_state["ann"].labels])


def restore_from_url(settings: AppSettings) -> str | None:
    """Reopen ``?case=`` after a refresh/restart; returns an error message or None."""
    if "who" in st.query_params and "annotator" not in st.session_state:
        st.session_state["annotator"] = st.query_params["who"]
    key = st.query_params.get("case")
    if not key or "case" in st.session_state:
        return None
    try:
        state = workspace(settings).read_state(key)
        if state is None:
            return None
        open_source(CaseSource(**state["source"]), settings)
    except (WorkspaceError, TypeError, KeyError) as exc:
        return f"Could not restore case {key}: {exc}"
    except Exception as exc:  # a MedsegError from reading the source
        return f"Could not restore case {key}: {exc}"
    return None


def current() -> tuple[Case, CaseSource, Annotation]:
    return st.session_state["case"], st.session_state["case_source"], st.session_state["ann"]


def commit(settings: AppSettings, action: str, status: str | None = None,
           extra: dict[str, Any] | None = None, **details: Any) -> None:
    """Autosave the annotation (atomically) and append ``action`` to the audit log."""
    case, source, ann = current()
    ws = workspace(settings)
    ws.save(source, case, ann, annotator=annotator(), status=status, extra=extra)
    _histories()[f"{ws.root}|{source.key}"] = (list(ann.undo_stack), list(ann.redo_stack),
                                                ann.edits)
    ws.audit(annotator(), action, source.key, undo_depth=len(ann.undo_stack), **details)
