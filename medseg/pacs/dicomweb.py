"""A DICOMweb PACS: QIDO-RS search, WADO-RS retrieval of single instances, STOW-RS store.

Stores go through ``dicomweb-client`` (STOW-RS) on a session made by
:func:`medseg.pacs.http.make_session`; searches (QIDO-RS, see :meth:`DicomWeb._qido` for why
not through dicomweb-client) and instances use the same session, instances fetched as raw
bytes (``transfer-syntax=*``: the PACS sends what it holds, nothing is transcoded) and written
to disk verbatim, so a cached file is the PACS's own object. Every failure is a typed
:class:`~medseg.errors.PacsError` naming the server (never its credentials); reads are retried
with backoff (:func:`medseg.pacs.http.with_retries`), stores are not.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from medseg.errors import PacsConnectionError, PacsNotFoundError, PacsResponseError, PacsStoreError
from medseg.pacs.http import make_session, translate, with_retries
from medseg.pacs.records import (
    SERIES_FIELDS,
    SearchFilters,
    SeriesRecord,
    StudyRecord,
    check_uid,
    instance_uids,
    series_records,
    study_records,
)
from medseg.pacs.servers import PacsServer

__all__ = ["ACCEPT_DICOM", "DicomWeb", "StoredInstance"]

#: WADO-RS Accept header: DICOM Part 10 parts in the transfer syntax the PACS holds.
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredInstance:
    """One object a PACS confirmed it holds after a store."""

    server: str
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    path: str
    via: str  # "STOW-RS" or "C-STORE"


class DicomWeb:
    """DICOMweb requests to one server (thread-safe: one HTTP session per thread)."""

    def __init__(self, server: PacsServer) -> None:
        if server.dicomweb is None:
            raise PacsConnectionError(f"{server.label()}: no dicomweb URL in the servers file; "
                                      "add one (or use its DIMSE peer to send).")
        self.server = server
        self.base = server.dicomweb.rstrip("/")
        self._local = threading.local()

    # ------------------------------------------------------------------ plumbing
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = make_session(self.server)
        return session

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from dicomweb_client.api import DICOMwebClient

            client = DICOMwebClient(self.base, session=self._session(),
                                    timeout=self.server.timeout_s)
            client.set_http_retry_params(retry=False)  # with_retries does it, typed
            self._local.client = client
        return client

    def _read(self, doing: str, call: Any) -> Any:
        return with_retries(call, self.server, doing)

    # ------------------------------------------------------------------ search
    def _qido(self, resource: str, params: dict[str, Any], doing: str) -> Any:
        """GET ``resource`` (e.g. ``series``) with QIDO-RS keys; the decoded JSON answer.

        The query string keeps ``*`` and ``?`` literal: dicomweb-client percent-encodes them,
        and Orthanc's DICOMweb plugin then matches ``%2A`` as a literal character, so a
        wildcard search would find nothing."""
        query = "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='*?')}"
                         for k, v in params.items())
        url = f"{self.base}/{resource}" + (f"?{query}" if query else "")

        def get() -> Any:
            response = self._session().get(
                url, headers={"Accept": "application/dicom+json, application/json"},
                timeout=self.server.timeout_s)
            response.raise_for_status()
            return response.json() if response.content.strip() else []

        return self._read(doing, get)

    def ping(self) -> None:
        """One cheap QIDO-RS request (``/studies?limit=1``); raises if it fails."""
        study_records(self._qido("studies", {"limit": 1}, "checking the connection"),
                      f"{self.server.label()}, checking the connection")

    def search_studies(self, filters: SearchFilters, limit: int = 200) -> list[StudyRecord]:
        """Studies matching ``filters`` (at most ``limit``)."""
        fields = ["PatientID", "PatientName", "StudyDate", "StudyDescription",
                  "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries"]
        params = {**filters.study_query(), "includefield": ",".join(fields), "limit": limit}
        answer = self._qido("studies", params, "searching studies")
        return study_records(answer, f"{self.server.label()}, searching studies")

    def search_series(self, filters: SearchFilters, limit: int = 500) -> list[SeriesRecord]:
        """Series matching ``filters`` (at most ``limit``); within one study when
        ``filters.study_uid`` is given."""
        params = {**filters.series_query(), "includefield": ",".join(SERIES_FIELDS),
                  "limit": limit}
        resource = f"studies/{filters.study_uid}/series" if filters.study_uid else "series"
        answer = self._qido(resource, params, "searching series")
        return series_records(answer, f"{self.server.label()}, searching series")

    def find_series(self, series_uid: str) -> SeriesRecord | None:
        """The series with this Series Instance UID, or ``None`` when the PACS has none."""
        uid = check_uid(series_uid, "Series Instance UID")
        params = {"SeriesInstanceUID": uid, "includefield": ",".join(SERIES_FIELDS)}
        answer = self._qido("series", params, "looking up a series")
        found = [r for r in series_records(answer, f"{self.server.label()}, looking up series")
                 if r.series_uid == uid]
        return found[0] if found else None

    def instance_uids(self, study_uid: str, series_uid: str, page: int = 1000) -> list[str]:
        """SOP Instance UIDs of one series (every instance: asked for page by page)."""
        study = check_uid(study_uid, "Study Instance UID")
        series = check_uid(series_uid, "Series Instance UID")
        doing = f"listing the instances of series {series}"
        uids: dict[str, None] = {}  # ordered, unique
        offset = 0
        while True:
            answer = self._qido(f"studies/{study}/series/{series}/instances",
                                {"includefield": "SOPInstanceUID", "limit": page,
                                 "offset": offset}, doing)
            batch = instance_uids(answer, f"{self.server.label()}, {doing}")
            uids.update(dict.fromkeys(batch))
            offset += len(batch)
            if len(batch) < page:
                break
        if not uids:
            raise PacsNotFoundError(f"{self.server.label()}: series {series} of study {study} "
                                    "has no instances. Check the UIDs with `medseg pacs search`.")
        return list(uids)

    # ------------------------------------------------------------------ retrieve
    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str,
                          dest: Path) -> int:
        """Fetch one instance (WADO-RS) into ``dest`` (verbatim, written only when whole and
        checked to be that instance); returns its size in bytes."""
        study, series = check_uid(study_uid), check_uid(series_uid)
        sop = check_uid(sop_uid, "SOP Instance UID")
        url = f"{self.base}/studies/{study}/series/{series}/instances/{sop}"
        doing = f"retrieving instance {sop} of series {series}"
        size = self._read(doing, lambda: self._fetch(url, dest, doing))
        _check_instance(dest, study, series, sop, f"{self.server.label()}, {doing}")
        return int(size)

    def _fetch(self, url: str, dest: Path, doing: str) -> int:
        raw = dest.with_name(f".{dest.name}.raw")
        try:
            with self._session().get(url, headers={"Accept": ACCEPT_DICOM}, stream=True,
                                     timeout=self.server.timeout_s) as response:
                response.raise_for_status()
                with open(raw, "wb") as fh:
                    for chunk in response.iter_content(CHUNK):
                        fh.write(chunk)
                kind = response.headers.get("Content-Type", "")
            return _unwrap(raw, kind, dest, f"{self.server.label()}, {doing}")
        finally:
            raw.unlink(missing_ok=True)

    # ------------------------------------------------------------------ store
    def store(self, paths: list[Path]) -> list[StoredInstance]:
        """Store DICOM files with STOW-RS, one request per file; every instance must come
        back in the answer's ReferencedSOPSequence, else :class:`PacsStoreError` (naming
        what this call stored before the failure, nothing more)."""
        import pydicom

        stored: list[StoredInstance] = []
        for path in paths:
            ds = pydicom.dcmread(path)
            sop = str(ds.SOPInstanceUID)
            doing = f"storing {Path(path).name} (SOP Instance UID {sop})"
            try:
                answer = self._client().store_instances([ds])
            except Exception as exc:
                err = translate(exc, self.server, doing)
                raise PacsStoreError(_with_done(str(err), stored)) from exc
            _check_stored(answer, sop, f"{self.server.label()}, {doing}", stored)
            stored.append(StoredInstance(self.server.name, str(ds.SOPClassUID), sop,
                                         str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID),
                                         str(path), "STOW-RS"))
        return stored


def _with_done(message: str, stored: list[StoredInstance]) -> str:
    if not stored:
        return f"{message} Nothing was stored."
    uids = ", ".join(s.sop_instance_uid for s in stored)
    return f"{message} Stored before the failure: {uids}; nothing else."


def _check_stored(answer: Any, sop: str, where: str, stored: list[StoredInstance]) -> None:
    failed = [str(i.get("ReferencedSOPInstanceUID", "?"))
              for i in getattr(answer, "FailedSOPSequence", None) or []]
    ok = [str(i.get("ReferencedSOPInstanceUID", ""))
          for i in getattr(answer, "ReferencedSOPSequence", None) or []]
    if failed or sop not in ok:
        reasons = [str(i.get("FailureReason", "?"))
                   for i in getattr(answer, "FailedSOPSequence", None) or []]
        why = f"refused it (failure reason {', '.join(reasons)})" if failed else \
            "did not confirm it in its answer"
        raise PacsStoreError(_with_done(f"{where}: the server {why}; it is not stored. Check "
                                        "the PACS's log.", stored))


def _boundary(content_type: str) -> bytes | None:
    for item in content_type.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip().strip('"').encode()
    return None


def _unwrap(raw: Path, content_type: str, dest: Path, where: str) -> int:
    """Write the single DICOM part of a WADO-RS answer (in ``raw``) to ``dest``; returns its
    size. A part without its closing boundary is a dropped transfer (retried)."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/dicom":  # some servers send the part bare
        raw.replace(dest)
        return dest.stat().st_size
    boundary = _boundary(content_type)
    if media != "multipart/related" or boundary is None:
        raise PacsResponseError(f"{where}: the server answered {media or 'no content type'}, "
                                "not DICOM. Check that the URL is the DICOMweb root.")
    size = raw.stat().st_size
    if size == 0:
        raise PacsConnectionError(f"{where}: the answer was empty (connection dropped?).")
    with open(raw, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        start = mm.find(b"--" + boundary)
        head_end = mm.find(b"\r\n\r\n", start) if start >= 0 else -1
        if head_end < 0:
            raise PacsResponseError(f"{where}: a multipart answer without a part.")
        body = head_end + 4
        end = mm.find(b"\r\n--" + boundary, body)
        if end < 0:
            raise PacsConnectionError(f"{where}: the answer ended before its last part was "
                                      "complete (connection dropped).")
        if mm.find(b"\r\n--" + boundary + b"\r\n", end) >= 0:
            raise PacsResponseError(f"{where}: several parts for one instance.")
        with open(dest, "wb") as out:
            for offset in range(body, end, CHUNK):
                out.write(mm[offset:min(offset + CHUNK, end)])
    return end - body


def _check_instance(path: Path, study: str, series: str, sop: str, where: str) -> None:
    """``path`` must be a DICOM file holding exactly the instance asked for."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        with contextlib.suppress(OSError):
            path.unlink()
        raise PacsResponseError(f"{where}: the server sent something that is not DICOM. Check "
                                "that the URL is the PACS's DICOMweb root.") from None
    meta = getattr(ds, "file_meta", None)
    got = str(ds.get("SOPInstanceUID", "") or (meta or {}).get("MediaStorageSOPInstanceUID", ""))
    found = {"SOP Instance UID": (got, sop),
             "Series Instance UID": (str(ds.get("SeriesInstanceUID", "")), series),
             "Study Instance UID": (str(ds.get("StudyInstanceUID", "")), study)}
    for name, (value, wanted) in found.items():
        if value != wanted:
            with contextlib.suppress(OSError):
                path.unlink()
            raise PacsResponseError(f"{where}: the server sent an instance whose {name} is "
                                    f"{value or 'blank'}, not {wanted}; nothing was kept. Ask "
                                    "the PACS administrator to check this series.")
