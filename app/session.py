"""Session state of the app: the open case, its annotation, versioned autosave and audit.

Streamlit keeps ``st.session_state`` per browser tab and loses it on a refresh; the case key
is therefore also put in the URL (``?case=<key>``) and the annotator's name in ``?who=``, and
:func:`restore_from_url` reopens the case from the workspace when a new session starts. The
undo/redo history is kept by the server process per case (it survives a refresh, not a
restart).

Each session remembers the case revision it loaded (``st.session_state["revision"]``) and
saves with it as a compare-and-swap (:meth:`app.workspace.Workspace.save`). When someone else
saved the case in between, the save is refused, the session's edits go to a conflict copy
(:mod:`app.conflicts`) and ``st.session_state["conflict"]`` makes the page say so and offer
:func:`reload_case`; until then further changes update that copy, never the case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from app import conflicts
from app.annotation import Annotation
from app.case import Case, open_case
from app.settings import SAMPLES_DIR, AppSettings
from app.sources import SAMPLES, resolve_in_roots
from app.workspace import (
    CaseSource,
    SaveConflictError,
    Workspace,
    WorkspaceError,
    default_annotator,
)
from medseg.errors import MedsegError
from medseg.modality import ModalityDecision, decide_modality

#: the modality selector's widget key and its choices ("Auto": the library's decision)
MODALITY_KEY = "modality_choice"
MODALITY_CHOICES = ("Auto", "CT", "MR", "PT", "US", "OT")


@dataclass(frozen=True)
class Conflict:
    """This session's refused save: who saved the case instead, and where its edits went."""

    error: SaveConflictError
    folder: Path


def workspace(settings: AppSettings) -> Workspace:
    return Workspace(settings.workspace)


def annotator() -> str:
    return str(st.session_state.get("annotator") or default_annotator())


def modality_override() -> str | None:
    """The modality the user chose in the selector (None: decided from the case)."""
    choice = st.session_state.get(MODALITY_KEY, "Auto")
    return None if choice in (None, "Auto") else str(choice)


def modality(case: Case) -> ModalityDecision:
    """The one modality decision of the open case (:func:`medseg.modality.decide_modality`
    with the selector's override): it drives the viewer's window presets, the prompt model's
    intensity window and what the auto-segmentation model is told."""
    return decide_modality(case.image, modality_override())


@dataclass(frozen=True)
class _History:
    """What the server process keeps of a case between browser sessions: the undo/redo
    stacks, the edit count, the unaccepted proposal and meta (provenance, prompts), and the
    saved revision they belong to (the label map of that revision is on disk)."""

    undo: list[Any]
    redo: list[Any]
    edits: int
    proposal: Any
    meta: Any
    revision: int


@st.cache_resource(show_spinner=False)
def _histories() -> dict[str, _History]:
    """Histories per case key, kept by the server process across browser sessions (a
    refresh keeps the history and a pending proposal; an app restart keeps the labels and
    their provenance, not the history)."""
    return {}


def _remember(ws: Workspace, key: str, ann: Annotation, revision: int) -> None:
    pending = ann.proposal is not None and bool(ann.proposal.any())
    proposal = ann.proposal.copy() if pending and ann.proposal is not None else None
    _histories()[f"{ws.root}|{key}"] = _History(list(ann.undo_stack), list(ann.redo_stack),
                                                ann.edits, proposal, ann.meta, revision)


def remember(settings: AppSettings) -> None:
    """Keep the open case's history and unaccepted proposal for a refresh, after an edit
    that is not saved to disk (a prompt, a propagation, a rejected proposal)."""
    _, source, ann = current()
    _remember(workspace(settings), source.key, ann, int(st.session_state.get("revision", 0)))


def upload_root(path: Path, settings: AppSettings) -> Path:
    """The upload folder (``uploads/<sha256[:16]>``) holding ``path``: the only folder an
    uploaded case may read from. Refuses a path outside the workspace's uploads."""
    uploads = (settings.workspace / "uploads").resolve()
    resolved = path.resolve()
    if uploads not in resolved.parents:
        raise WorkspaceError(f"{path}: uploads are reopened only from {uploads}.")
    return uploads / resolved.relative_to(uploads).parts[0]


def case_from_source(source: CaseSource, settings: AppSettings) -> Case:
    """Read the case a :class:`CaseSource` names, re-checking where it may read from: a
    sample inside ``data_samples`` (its reference from the shipped list, never from the
    state), a server path inside the data roots, an upload inside its own upload folder."""
    if source.kind == "sample":
        for s in SAMPLES:
            if s.name == source.ref:
                return open_case(s.name, s.image, s.labels, roots=(SAMPLES_DIR.resolve(),))
        raise WorkspaceError(f"Bundled sample {source.ref!r} is not shipped with this version.")
    if source.kind == "pacs":  # its complete series in the workspace's PACS cache
        from app.sources import open_pacs_case

        return open_pacs_case(source, settings)
    reference = None
    if source.kind == "server":
        roots = settings.data_roots
        path = resolve_in_roots(source.ref, roots)
        reference = resolve_in_roots(source.reference, roots) if source.reference else None
    elif source.kind == "upload":
        path = Path(source.ref)
        roots = (upload_root(path, settings),)
    else:
        raise WorkspaceError(f"Unknown case source kind {source.kind!r}.")
    if not path.exists():
        raise WorkspaceError(f"{path}: the case's file is gone; upload or open it again.")
    return open_case(source.name, path, reference, series=source.series, roots=roots)


#: per-case widget state dropped when a case is opened (the next case starts afresh: the
#: window preset of an MR must not wash out the CT opened after it)
CASE_KEYS = ("slider_axial", "slider_coronal", "slider_sagittal", "prompt", "conflict",
             MODALITY_KEY, "preset", "ww", "wl", "hidden", "visible_ref", "overlay",
             "confirm_delete", "pending_cursor", "view_axial", "view_coronal", "view_sagittal")


def open_source(source: CaseSource, settings: AppSettings, case: Case | None = None) -> None:
    """Open ``source`` (reading it unless ``case`` is given) and restore its saved annotation,
    its revision and, when it still belongs to that revision, the process's undo history and
    unaccepted proposal of the case; when they are gone (an app restart) the page says so."""
    case = case or case_from_source(source, settings)
    ws = workspace(settings)
    ann, revision = ws.restore(source.key, case)
    restored = ann is not None
    history = _histories().get(f"{ws.root}|{source.key}")
    kept = ann is not None and history is not None and history.revision == revision
    if ann is not None and history is not None and kept:
        ann.undo_stack, ann.redo_stack = list(history.undo), list(history.redo)
        ann.proposal = None if history.proposal is None else history.proposal.copy()
        ann.meta, ann.edits = history.meta, history.edits
    elif restored:
        depth = int((ws.read_state(source.key) or {}).get("undo_depth", 0))
        if depth:
            st.session_state["restore_note"] = (
                f"Restored the saved labels (version {revision}). Not kept: the undo history "
                f"({depth} steps) and any unaccepted proposal: the app was restarted since.")
    st.session_state["case"] = case
    st.session_state["case_source"] = source
    st.session_state["ann"] = ann or Annotation.empty(case.image_lps.shape)
    st.session_state["revision"] = revision
    st.session_state["cursor"] = tuple(s // 2 for s in case.image_lps.shape)
    for key in CASE_KEYS:
        st.session_state.pop(key, None)
    for param in ("cur", "win", "ww", "wl"):
        if param in st.query_params:
            del st.query_params[param]
    st.query_params["case"] = source.key
    ws.audit(annotator(), "open case", source.key, source=asdict(source), restored=restored,
             revision=revision, labels=[lab.as_dict() for lab in st.session_state["ann"].labels])


def reload_case(settings: AppSettings) -> Conflict | None:
    """Drop this session's annotation for the case as saved now (after a conflict).

    The local undo/redo history is dropped with it (its steps were made on the stale label
    map); the case's saved history is taken when it matches the saved state. The stale
    edits stay in the conflict copy, which the page offers to merge. Returns the conflict
    that was cleared (None when there was none)."""
    case, source, _ = current()
    conflict = st.session_state.get("conflict")
    open_source(source, settings, case=case)
    workspace(settings).audit(annotator(), "reload case", source.key,
                              revision=st.session_state["revision"],
                              conflict_copy=str(conflict.folder) if conflict else None)
    return conflict


def restore_from_url(settings: AppSettings) -> str | None:
    """Reopen ``?case=`` after a refresh/restart; returns an error message or None."""
    if "who" in st.query_params and "annotator" not in st.session_state:
        st.session_state["annotator"] = st.query_params["who"]
    key = st.query_params.get("case")
    if not key or "case" in st.session_state:
        return None
    view = dict(st.query_params)  # open_source resets the view: put this one back after
    try:
        state = workspace(settings).read_state(key)
        if state is None:
            return None
        open_source(CaseSource(**state["source"]), settings)
        _restore_view(view)
    except (TypeError, KeyError) as exc:
        return f"Could not restore case {key}: its state.json names no valid source ({exc!r})."
    except MedsegError as exc:
        return f"Could not restore case {key}: {exc}"
    return None


def _restore_view(params: dict[str, str]) -> None:
    """Put a refreshed page's view (``params``: the URL's) back; say what was not kept."""
    from app import view_state
    from app.panels import PANELS, prompt_tools
    from app.viewer import window_presets

    for k, v in params.items():
        st.query_params[k] = v
    case = st.session_state["case"]
    labels = tuple(lab.name for lab in st.session_state["ann"].labels)
    dropped = view_state.restore(case, ("Brush", "Eraser", *prompt_tools()), PANELS,
                                 window_presets(case), labels)
    if dropped:
        note = st.session_state.get("restore_note", "")
        st.session_state["restore_note"] = (note + " " if note else "") + \
            "Not restored: " + "; ".join(dropped) + "."


def current() -> tuple[Case, CaseSource, Annotation]:
    return st.session_state["case"], st.session_state["case_source"], st.session_state["ann"]


def commit(settings: AppSettings, action: str, status: str | None = None,
           extra: dict[str, Any] | None = None, **details: Any) -> None:
    """Autosave the annotation (compare-and-swap on the session's revision) and append
    ``action`` to the audit log. A stale save does not raise: the edits go to the session's
    conflict copy, ``st.session_state["conflict"]`` is set and the page shows it."""
    case, source, ann = current()
    ws = workspace(settings)
    who = annotator()
    conflict: Conflict | None = st.session_state.get("conflict")
    if conflict is None:
        try:
            revision = ws.save(source, case, ann, annotator=who, status=status, extra=extra,
                               expected_revision=int(st.session_state.get("revision", 0)))
        except SaveConflictError as exc:
            folder = conflicts.write_copy(ws, source, case, ann, annotator=who, conflict=exc)
            conflict = Conflict(exc, folder)
            st.session_state["conflict"] = conflict
        else:
            st.session_state["revision"] = revision
            _remember(ws, source.key, ann, revision)
            ws.audit(who, action, source.key, undo_depth=len(ann.undo_stack),
                     revision=revision, **details)
            return
    else:
        conflicts.write_copy(ws, source, case, ann, annotator=who, conflict=conflict.error,
                             folder=conflict.folder)
    ws.audit(who, action, source.key, undo_depth=len(ann.undo_stack),
             refused_stale_save={"base_revision": conflict.error.base,
                                 "saved_revision": conflict.error.current,
                                 "saved_by": conflict.error.saved_by},
             kept_in=str(conflict.folder), **details)
