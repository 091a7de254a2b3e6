"""DIMSE with ``pynetdicom``: C-ECHO to test a PACS, C-STORE to push SEG / RTSTRUCT to it.

The peer is the servers file's ``dimse`` block (the PACS's AE title, host, port and the AE title
medseg calls from). A refused association, a lost connection or a failure status is a typed
:class:`~medseg.errors.PacsError` naming the peer; a C-STORE counts an instance as stored only
on a success or warning status (0x0000, 0xB000, 0xB006, 0xB007).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medseg.errors import PacsAuthError, PacsConnectionError, PacsError, PacsStoreError
from medseg.pacs.dicomweb import StoredInstance
from medseg.pacs.servers import DimseConfig, PacsServer

__all__ = ["c_echo", "c_store"]

#: C-STORE statuses that mean "stored" (success, or stored with coercion/warnings).
STORED_STATUS = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
VERIFICATION = "1.2.840.10008.1.1"


def _peer(server: PacsServer) -> DimseConfig:
    if server.dimse is None:
        raise PacsError(f"{server.label()}: no dimse peer (ae_title, host, port) in the servers "
                        "file; add one to use C-ECHO / C-STORE.")
    return server.dimse


def _label(server: PacsServer) -> str:
    peer = _peer(server)
    return (f"PACS {server.name!r} (DIMSE {peer.ae_title}@{peer.host}:{peer.port}, calling "
            f"AE {peer.calling_ae})")


def _associate(server: PacsServer, contexts: list[tuple[str, list[str]]]) -> Any:
    from pynetdicom import AE

    peer = _peer(server)
    ae = AE(ae_title=peer.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout_s
    ae.connection_timeout = peer.timeout_s
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        raise PacsAuthError(
            f"{_label(server)}: the PACS rejected the association. Check its AE title, and "
            "that the PACS accepts this calling AE title (register it on the PACS).")
    raise PacsConnectionError(
        f"{_label(server)}: no DICOM association (connection refused, aborted or timed out). "
        "Check that the PACS is running and the host, port and AE title are right.")


def c_echo(server: PacsServer) -> float:
    """C-ECHO the PACS; returns the round trip in milliseconds."""
    start = time.perf_counter()
    assoc = _associate(server, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or int(status.get("Status", -1)) != 0:
        raise PacsConnectionError(f"{_label(server)}: C-ECHO failed (connection lost or a "
                                  "failure status).")
    return (time.perf_counter() - start) * 1000.0


def c_store(server: PacsServer, paths: list[Path]) -> list[StoredInstance]:
    """Send DICOM files with C-STORE in one association; returns what the PACS confirmed.

    A failure raises :class:`PacsStoreError` naming the file and the instances this call
    stored before it (nothing else is claimed stored)."""
    import pydicom

    if not paths:
        raise PacsStoreError(f"{_label(server)}: nothing to send (no file given).")
    datasets = [(Path(p), pydicom.dcmread(p)) for p in paths]
    contexts: dict[str, set[str]] = {}
    for _, ds in datasets:
        contexts.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
    assoc = _associate(server, [(k, sorted(v)) for k, v in contexts.items()])
    stored: list[StoredInstance] = []
    try:
        for path, ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.get("Status", -1)) if status else -1
            if code not in STORED_STATUS:
                what = f"status 0x{code:04X}" if code >= 0 else "the connection was lost"
                done = ", ".join(s.sop_instance_uid for s in stored) or "nothing"
                raise PacsStoreError(
                    f"{_label(server)}: C-STORE of {path.name} (SOP Instance UID "
                    f"{ds.SOPInstanceUID}) failed ({what}); it is not stored. Stored before "
                    f"the failure: {done}. Check the PACS's log.")
            stored.append(StoredInstance(server.name, str(ds.SOPClassUID),
                                         str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID),
                                         str(ds.StudyInstanceUID), str(path), "C-STORE"))
    finally:
        if assoc.is_established:
            assoc.release()
    return stored
