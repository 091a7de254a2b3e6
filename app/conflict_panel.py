"""The page's side of a refused stale save: the banner with *Reload*, and the list of this
case's conflict copies with *Merge* (see :mod:`app.conflicts` and :mod:`app.session`)."""

from __future__ import annotations

import streamlit as st

from app import conflicts, session
from app.settings import AppSettings


def conflict_banner(settings: AppSettings) -> bool:
    """Say that someone else saved this case and offer to reload; True while in conflict."""
    conflict: session.Conflict | None = st.session_state.get("conflict")
    if conflict is None:
        return False
    e = conflict.error
    st.warning(f"**{e.saved_by} saved this case** at {e.saved_utc} (version {e.current}) "
               f"after you opened version {e.base}. Your changes were not saved over theirs: "
               f"they are kept as a copy in `{conflict.folder}` (updated with every change "
               "until you reload). Reload to continue from the saved version; your copy is "
               "then listed under *Conflict copies* to merge.")
    if st.button("Reload the saved case", key="reload_case", type="primary"):
        session.reload_case(settings)
        st.session_state["flash"] = (f"Reloaded version {st.session_state['revision']} of "
                                     f"this case. Your edits are kept in {conflict.folder}.")
        st.rerun()
    return True


def conflict_copies(settings: AppSettings) -> None:
    """List the case's conflict copies; *Merge* adds a copy's labelled voxels (by label name)
    where the current annotation has none, as one undoable edit."""
    case, source, ann = session.current()
    ws = session.workspace(settings)
    copies = conflicts.list_copies(ws, source.key)
    if not copies:
        return
    with st.expander(f"Conflict copies of this case ({len(copies)})"):
        st.caption("Edits that could not be saved because someone else saved the case first. "
                   "*Merge* fills voxels that are unlabelled in your annotation with the "
                   "copy's labels (matched by name); your labels win where both have one.")
        for copy in copies:
            counts = ", ".join(f"{copy.labels.get(int(v), v)} {n}"
                               for v, n in copy.voxels.items() if n) or "no voxels"
            st.markdown(f"`{copy.folder.name}` by **{copy.annotator}** (from version "
                        f"{copy.base_revision}): {counts}")
            if st.button("Merge into my annotation", key=f"merge_copy_{copy.folder.name}",
                         disabled=st.session_state.get("conflict") is not None):
                from app.autoseg_panel import merge_prediction

                arr, names = conflicts.read_copy(ws, source.key, copy, case)
                changed = ann.replace(merge_prediction(ann, arr, names, replace=False),
                                      f"merge conflict copy {copy.folder.name}")
                session.commit(settings, "merge conflict copy", copy=str(copy.folder),
                               changed=changed)
                st.session_state["flash"] = f"Merged {copy.folder.name} into your annotation."
                st.rerun()
