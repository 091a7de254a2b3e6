"""The panels under the viewer and their dispatch."""

from __future__ import annotations

import streamlit as st

from app import session
from app.settings import AppSettings

PANELS = ("Auto-segment", "Prompt", "Compare", "Export", "Dataset", "Audit log")
PROMPT_TOOLS = ("Box", "Point +", "Point -")


def prompting_available() -> str | None:
    """None when the promptable lite model can be used, else why not."""
    try:
        from app import prompt_panel
    except ImportError as exc:
        return f"prompting is not installed ({exc})"
    return prompt_panel.unavailable_reason()


def prompt_tools() -> tuple[str, ...]:
    return PROMPT_TOOLS if prompting_available() is None else ()


def audit_panel(settings: AppSettings) -> None:
    """The case's audit log as a table in plain words (:mod:`app.audit_view`), newest first."""
    from app.audit_view import audit_rows

    _, source, _ = session.current()
    entries = session.workspace(settings).audit_entries(source.key)
    st.caption(f"{len(entries)} entries for this case (newest first; the full record is "
               f"{settings.workspace / 'audit.jsonl'})")
    st.dataframe(audit_rows(entries), hide_index=True, key="audit_table", width="stretch")


def run_panel(panel: str, settings: AppSettings, active: int | None, index: int,
              plane: str) -> None:
    if panel == "Auto-segment":
        from app.autoseg_panel import autoseg_panel

        autoseg_panel(settings)
    elif panel == "Prompt":
        reason = prompting_available()
        if reason is not None:
            st.info(f"Prompting is not available: {reason}.")
            return
        from app.prompt_panel import prompt_panel

        prompt_panel(settings, active, index, plane)
    elif panel == "Compare":
        from app.compare_panel import compare_panel

        compare_panel(settings)
    elif panel == "Export":
        from app.export_panel import export_panel

        export_panel(settings)
    elif panel == "Dataset":
        from app.dataset import dataset_panel

        dataset_panel(settings)
    else:
        audit_panel(settings)
