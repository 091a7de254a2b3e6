"""Send exports (DICOM-SEG, RTSTRUCT) to a PACS, so that sending the same export twice does
not make a second object there.

**Idempotency: deterministic instance UIDs.** Before a SEG or RTSTRUCT is sent, its
SOPInstanceUID and SeriesInstanceUID are replaced by UIDs derived from its *content*
(:func:`content_uids`: a SHA-256 over every element except those UIDs, random UIDs such as
DimensionOrganizationUID, and dates/times), and the file is rewritten in place atomically.
The same mask exported from the same source series again (another ``medseg predict --send``
run, the app's *Send to PACS* twice) therefore has the same SOP Instance UID, and a PACS files
it as the object it already holds (Orthanc answers "already stored") instead of a second one.
An export whose content differs (another mask, labels, algorithm) gets other UIDs. No
existence query is needed, so this works the same for STOW-RS and C-STORE.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Literal

from medseg.errors import PacsError
from medseg.io.atomic import atomic_path
from medseg.pacs.dicomweb import DicomWeb, StoredInstance
from medseg.pacs.servers import PacsServer

__all__ = ["EXPORT_SOP_CLASSES", "content_uids", "send_files"]

#: SOP classes medseg exports and sends (their UIDs are made content-derived).
EXPORT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "DICOM-SEG",
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
}
#: Elements that differ between two writes of the same content.
VOLATILE_VR = frozenset({"DA", "TM", "DT"})
VOLATILE_TAGS = frozenset({0x00080018, 0x0020000E, 0x00209164})  # SOP, series, dim. org. UIDs


def _strip_volatile(ds: object) -> None:
    from pydicom.dataset import Dataset

    assert isinstance(ds, Dataset)
    for elem in list(ds):
        if int(elem.tag) in VOLATILE_TAGS or elem.VR in VOLATILE_VR:
            del ds[elem.tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                _strip_volatile(item)


def fingerprint(ds: object) -> str:
    """SHA-256 (hex) of a dataset's content without its own UIDs, random UIDs and times."""
    from io import BytesIO

    import pydicom
    from pydicom.dataset import Dataset

    assert isinstance(ds, Dataset)
    body = copy.deepcopy(ds)
    body.file_meta = pydicom.dataset.FileMetaDataset()
    _strip_volatile(body)
    buf = BytesIO()
    pydicom.dcmwrite(buf, body, implicit_vr=False, little_endian=True,
                     enforce_file_format=False)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def content_uids(path: str | Path) -> str:
    """Give the SEG/RTSTRUCT at ``path`` content-derived SOP Instance and Series Instance
    UIDs (rewriting it atomically when they change); returns the SOP Instance UID."""
    import pydicom
    from pydicom.uid import generate_uid

    p = Path(path)
    ds = pydicom.dcmread(p)
    digest = fingerprint(ds)
    sop = generate_uid(entropy_srcs=["medseg-pacs-sop", digest])
    series = generate_uid(entropy_srcs=["medseg-pacs-series", digest])
    if str(ds.SOPInstanceUID) == sop and str(ds.SeriesInstanceUID) == series:
        return sop
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SeriesInstanceUID = series
    with atomic_path(p) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return sop


def _check_export(path: Path) -> None:
    import pydicom

    try:
        sop = str(pydicom.dcmread(path, stop_before_pixels=True,
                                  specific_tags=["SOPClassUID"]).get("SOPClassUID", ""))
    except Exception:
        raise PacsError(f"{path}: not a DICOM file; send DICOM-SEG or RTSTRUCT files "
                        "(medseg export --format seg|rtstruct).") from None
    if sop not in EXPORT_SOP_CLASSES:
        raise PacsError(f"{path}: not a DICOM-SEG or RTSTRUCT (SOP class {sop or 'blank'}); "
                        "medseg sends segmentations only.")


def send_files(server: PacsServer, paths: list[Path],
               via: Literal["dicomweb", "dimse"] | None = None) -> list[StoredInstance]:
    """Store SEG/RTSTRUCT files in ``server`` (with content-derived UIDs, see the module) by
    STOW-RS, or C-STORE when ``via="dimse"`` or the server has no DICOMweb URL. Returns what
    the PACS confirmed; a failure raises a :class:`~medseg.errors.PacsError` and claims
    nothing stored that the PACS did not confirm."""
    files = [Path(p) for p in paths]
    for p in files:
        _check_export(p)
    chosen = via or ("dicomweb" if server.dicomweb else "dimse")
    if chosen == "dicomweb" and server.dicomweb is None:
        raise PacsError(f"{server.label()}: no dicomweb URL in the servers file; send with "
                        "DIMSE instead (--via dimse).")
    for p in files:
        content_uids(p)
    if chosen == "dimse":
        from medseg.pacs.dimse import c_store

        return c_store(server, files)
    return DicomWeb(server).store(files)
