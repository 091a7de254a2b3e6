"""What a QIDO-RS search asks and answers: filters, study and series records, UID checks.

DICOM JSON (PS3.18 F.2) is read defensively: an answer that is not a list of objects, or a
value of the wrong shape, is a :class:`~medseg.errors.PacsResponseError`, never a
``KeyError`` deep in a caller.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from medseg.errors import PacsError, PacsResponseError

__all__ = ["SearchFilters", "SeriesRecord", "StudyRecord", "check_uid", "instance_uids",
           "series_records", "study_records"]

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE = re.compile(r"\d{8}")
#: DICOM tags (hex) of the attributes medseg asks for and reads.
TAGS = {
    "PatientID": "00100020", "PatientName": "00100010", "StudyDate": "00080020",
    "StudyDescription": "00081030", "AccessionNumber": "00080050", "Modality": "00080060",
    "ModalitiesInStudy": "00080061", "SeriesDescription": "0008103E",
    "SeriesNumber": "00200011", "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
    "NumberOfSeriesRelatedInstances": "00201209", "NumberOfStudyRelatedSeries": "00201206",
}
SERIES_FIELDS = ("PatientID", "PatientName", "StudyDate", "StudyDescription", "AccessionNumber",
                 "Modality", "SeriesDescription", "SeriesNumber", "StudyInstanceUID",
                 "NumberOfSeriesRelatedInstances")


def check_uid(uid: str, what: str = "UID") -> str:
    """``uid`` if it is a DICOM UID (digits and dots, at most 64 characters), else a typed
    error. UIDs are put into URLs, so nothing else may pass."""
    text = str(uid).strip()
    if not _UID.fullmatch(text) or len(text) > 64:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise PacsError(f"{shown!r} is not a DICOM {what} (digits and dots, at most 64 "
                        "characters). Copy the UID from `medseg pacs search`.")
    return text


@dataclass(frozen=True)
class SearchFilters:
    """QIDO-RS search keys; ``None`` means "any". Text keys accept ``*`` and ``?`` wildcards
    (e.g. ``patient_name="DOE*"``). ``study_date``: ``YYYYMMDD`` or a range
    ``YYYYMMDD-YYYYMMDD`` (either end may be left open)."""

    patient_id: str | None = None
    patient_name: str | None = None
    study_date: str | None = None
    modality: str | None = None
    accession_number: str | None = None
    description: str | None = None
    study_uid: str | None = None

    def __post_init__(self) -> None:
        if self.study_date:
            parts = self.study_date.split("-")
            if len(parts) > 2 or not all(_DATE.fullmatch(p) for p in parts if p) or \
                    not any(parts):
                raise PacsError(f"study date {self.study_date!r}: use YYYYMMDD or a range "
                                "YYYYMMDD-YYYYMMDD (e.g. 20240101-20241231).")
        if self.study_uid:
            check_uid(self.study_uid, "Study Instance UID")

    def series_query(self) -> dict[str, str]:
        """QIDO-RS keys for a series search (description = SeriesDescription)."""
        keys = {"PatientID": self.patient_id, "PatientName": self.patient_name,
                "StudyDate": self.study_date, "Modality": self.modality,
                "AccessionNumber": self.accession_number,
                "SeriesDescription": self.description}
        return {k: v for k, v in keys.items() if v}

    def study_query(self) -> dict[str, str]:
        """QIDO-RS keys for a study search (modality = ModalitiesInStudy, description =
        StudyDescription)."""
        keys = {"PatientID": self.patient_id, "PatientName": self.patient_name,
                "StudyDate": self.study_date, "ModalitiesInStudy": self.modality,
                "AccessionNumber": self.accession_number,
                "StudyDescription": self.description}
        return {k: v for k, v in keys.items() if v}


@dataclass(frozen=True)
class StudyRecord:
    """One study found by a search."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    description: str
    accession_number: str
    modalities: str
    n_series: int | None

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SeriesRecord:
    """One series found by a search (``n_instances`` is ``None`` when the PACS omits it)."""

    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_description: str
    accession_number: str
    modality: str
    description: str
    series_number: int | None
    n_instances: int | None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _items(answer: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(answer, list) or not all(isinstance(a, dict) for a in answer):
        raise PacsResponseError(f"{what}: the answer is not a list of DICOM JSON objects.")
    return answer


def _value(item: dict[str, Any], keyword: str, what: str) -> str:
    """The first value of ``keyword`` in a DICOM JSON object, as text ("" when absent)."""
    element = item.get(TAGS[keyword])
    if element is None:
        return ""
    if not isinstance(element, dict):
        raise PacsResponseError(f"{what}: {keyword} is not a DICOM JSON element.")
    values = element.get("Value") or []
    if not isinstance(values, list):
        raise PacsResponseError(f"{what}: the value of {keyword} is not a list.")
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # PN: {"Alphabetic": "DOE^JOHN"}
        first = first.get("Alphabetic", "")
    if isinstance(first, list | dict):
        raise PacsResponseError(f"{what}: the value of {keyword} has an unexpected shape.")
    if keyword == "ModalitiesInStudy":
        return "\\".join(str(v) for v in values)
    return str(first)


def _int(text: str) -> int | None:
    try:
        return int(float(text)) if text != "" else None
    except ValueError:
        return None


def _uid(item: dict[str, Any], keyword: str, what: str) -> str:
    uid = _value(item, keyword, what)
    if not _UID.fullmatch(uid) or len(uid) > 64:
        raise PacsResponseError(f"{what}: an answer without a valid {keyword}.")
    return uid


def series_records(answer: Any, what: str) -> list[SeriesRecord]:
    """Series records from a QIDO-RS series answer, sorted by study date, study, number."""
    out = []
    for item in _items(answer, what):
        def v(key: str, item: dict[str, Any] = item) -> str:
            return _value(item, key, what)

        out.append(SeriesRecord(
            study_uid=_uid(item, "StudyInstanceUID", what),
            series_uid=_uid(item, "SeriesInstanceUID", what),
            patient_id=v("PatientID"), patient_name=v("PatientName"),
            study_date=v("StudyDate"), study_description=v("StudyDescription"),
            accession_number=v("AccessionNumber"), modality=v("Modality"),
            description=v("SeriesDescription"), series_number=_int(v("SeriesNumber")),
            n_instances=_int(v("NumberOfSeriesRelatedInstances"))))
    big = 1 << 31
    return sorted(out, key=lambda r: (r.study_date, r.study_uid,
                                      big if r.series_number is None else r.series_number,
                                      r.series_uid))


def study_records(answer: Any, what: str) -> list[StudyRecord]:
    """Study records from a QIDO-RS study answer, sorted by date then UID."""
    out = []
    for item in _items(answer, what):
        out.append(StudyRecord(
            study_uid=_uid(item, "StudyInstanceUID", what),
            patient_id=_value(item, "PatientID", what),
            patient_name=_value(item, "PatientName", what),
            study_date=_value(item, "StudyDate", what),
            description=_value(item, "StudyDescription", what),
            accession_number=_value(item, "AccessionNumber", what),
            modalities=_value(item, "ModalitiesInStudy", what),
            n_series=_int(_value(item, "NumberOfStudyRelatedSeries", what))))
    return sorted(out, key=lambda r: (r.study_date, r.study_uid))


def instance_uids(answer: Any, what: str) -> list[str]:
    """SOP Instance UIDs from a QIDO-RS instance answer (unique, in answer order)."""
    seen: dict[str, None] = {}
    for item in _items(answer, what):
        seen.setdefault(_uid(item, "SOPInstanceUID", what), None)
    return list(seen)
