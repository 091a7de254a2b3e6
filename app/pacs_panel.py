"""*Send to PACS* (under *Export*): store the DICOM-SEG or RTSTRUCT just built in a configured
PACS with :func:`medseg.pacs.send.send_files` (STOW-RS, or C-STORE for a DIMSE-only server).

The file sent is the one the export wrote in the case's ``export/`` folder; sending gives it
content-derived UIDs (so sending the same export again does not make a second object) and the
download offers the file as sent. The audit log records the server's name and address, the
SOP Instance UIDs the PACS confirmed, or the failure message; never a credential.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import session
from app.settings import AppSettings
from medseg.errors import MedsegError

SENDABLE = {"seg": "DICOM-SEG", "rtstruct": "RTSTRUCT"}
SENT_KEY = "pacs_sent"


def built_file(settings: AppSettings, case_key: str, name: str) -> Path:
    """Where the export panel wrote ``name`` for the case."""
    return settings.workspace / "cases" / case_key / "export" / name


def send_section(settings: AppSettings, case_key: str, fmt: str, name: str) -> None:
    """Offer to send the built export ``name`` (DICOM-SEG / RTSTRUCT only) to a PACS."""
    if fmt not in SENDABLE:
        return
    from app.sources import pacs_server_names

    names = pacs_server_names()
    if not names:
        st.caption("Send to PACS: no PACS is configured (MEDSEG_PACS_SERVERS, docs/pacs.md).")
        return
    sent = st.session_state.get(SENT_KEY)
    if sent and sent[0] == (case_key, name):
        st.success(sent[1])
    c1, c2 = st.columns([1, 2])
    server = c1.selectbox("Send to PACS", names, key="send_pacs_server")
    c2.write("")
    if c2.button(f"Send {SENDABLE[fmt]} to {server}", key="send_pacs"):
        _send(settings, case_key, name, server)


def _send(settings: AppSettings, case_key: str, name: str, server_name: str) -> None:
    from medseg.pacs.send import send_files
    from medseg.pacs.servers import load_server

    path = built_file(settings, case_key, name)
    ws, who = session.workspace(settings), session.annotator()
    try:
        server = load_server(server_name)
        with st.status(f"Sending {name} to {server_name}...") as status:
            stored = send_files(server, [path])
            status.update(label=f"Stored in {server_name}", state="complete")
    except MedsegError as exc:
        ws.audit(who, "send to PACS failed", case_key, server=server_name, file=name,
                 error=str(exc))
        st.error(str(exc))
        return
    uids = [s.sop_instance_uid for s in stored]
    ws.audit(who, "send to PACS", case_key, server=server_name, address=server.address,
             via=stored[0].via, file=name, sop_instance_uids=uids,
             series_uid=stored[0].series_uid, study_uid=stored[0].study_uid)
    ready = st.session_state.get("export")
    if ready and ready[0] == case_key and ready[2] == name:  # offer the file as sent
        st.session_state["export"] = (*ready[:3], path.read_bytes())
    st.session_state[SENT_KEY] = ((case_key, name), (
        f"Stored in {server_name} ({stored[0].via}): {name}, SOP Instance UID "
        f"{', '.join(uids)} (series {stored[0].series_uid})"))
    st.rerun()
