"""Faults with real servers: a wrong password and a PACS stopped mid-retrieval (Orthanc), and
a stub HTTP server answering garbage, malformed JSON, non-DICOM, 404, time-outs, cut-off
transfers and refused stores. Each ends in one typed message naming the server (never the
credentials), and nothing half is left in the cache."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest

from medseg.errors import (
    PacsAuthError,
    PacsConnectionError,
    PacsNotFoundError,
    PacsResponseError,
    PacsStoreError,
)
from medseg.pacs import DicomWeb, SearchFilters, SeriesCache, load_server, pull
from medseg.pacs.dimse import c_echo, c_store
from medseg.pacs.send import send_files
from tests.app.browser import free_port
from tests.pacs.conftest import use_server
from tests.pacs.orthanc import TS_SERIES, TS_STUDY, orthanc_server
from tests.pacs.stub import MULTIPART, Answer, multipart, stub_pacs

STUDY, SERIES, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def _servers(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, **extra: object
             ) -> None:
    cfg = {"servers": {"stub": {"dicomweb": url, "timeout_s": 10, "retries": 2,
                                "backoff_s": 0.01, **extra}}}
    (tmp_path / "servers.yaml").write_text(json.dumps(cfg))
    monkeypatch.setenv("MEDSEG_PACS_SERVERS", str(tmp_path / "servers.yaml"))
    monkeypatch.setenv("MEDSEG_PACS_CACHE", str(tmp_path / "cache"))


def _cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) \
        if root.is_dir() else []


def _json(*items: dict[str, str]) -> bytes:
    tags = {"study": "0020000D", "series": "0020000E", "sop": "00080018", "mod": "00080060"}
    return json.dumps([{tags[k]: {"vr": "UI", "Value": [v]} for k, v in i.items()}
                       for i in items]).encode()


def _dicom(tmp_path: Path, sop: str = SOP) -> bytes:
    ds = pydicom.Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = STUDY, SERIES, sop
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID, ds.file_meta.MediaStorageSOPClassUID = \
        sop, ds.SOPClassUID
    path = tmp_path / "one.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _wado(instance: Answer) -> object:
    """A stub that lists one instance of SERIES and answers ``instance`` for it."""
    def answer(path: str) -> Answer:
        if "/series?" in path:
            return Answer(body=_json({"study": STUDY, "series": SERIES, "mod": "CT"}))
        if path.split("?")[0].endswith("/instances"):
            return Answer(body=_json({"study": STUDY, "series": SERIES, "sop": SOP}))
        return instance
    return answer


@pytest.mark.parametrize(("answer", "error", "text"), [
    (Answer(body=b"<html>proxy says hi</html>", content_type="text/html"),
     PacsResponseError, "not valid DICOMweb"),
    (Answer(body=b"[{not json"), PacsResponseError, "not valid DICOMweb"),
    (Answer(body=b'[{"0020000D": {"vr": "UI", "Value": ["1.2"]}, "0020000E": 5}]'),
     PacsResponseError, "SeriesInstanceUID is not a DICOM JSON element"),
    (Answer(body=b'[{"0020000D": {"vr": "UI", "Value": ["../etc"]}}]'), PacsResponseError,
     "without a valid StudyInstanceUID"),
    (Answer(body=b'{"0020000E": {"vr": "UI", "Value": ["x"]}}'), PacsResponseError,
     "not a list"),
    (Answer(status=404, body=b"no"), PacsNotFoundError, "HTTP 404"),
    (Answer(status=401, body=b"no"), PacsAuthError, "refused the credentials"),
    (Answer(status=403, body=b"no"), PacsAuthError, "denied access"),
    (Answer(status=500, body=b"boom"), PacsResponseError, "HTTP 500"),
])
def test_bad_search_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: Answer,
                            error: type[Exception], text: str) -> None:
    with stub_pacs(lambda _: answer) as stub:
        _servers(tmp_path, stub.url, monkeypatch)
        with pytest.raises(error, match=text) as err:
            DicomWeb(load_server("stub")).search_series(SearchFilters(modality="CT"))
    assert f"PACS 'stub' ({stub.url})" in str(err.value)
    assert len(stub.requests) == 1  # not retried: the answer will not change


def test_timeouts_are_retried_then_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    with stub_pacs(lambda _: Answer(body=b"[]", delay_s=1.5)) as stub:
        _servers(tmp_path, stub.url, monkeypatch, timeout_s=0.3)
        with pytest.raises(PacsConnectionError, match="no answer within 0.3 s"):
            DicomWeb(load_server("stub")).search_series(SearchFilters())
    assert len(stub.requests) == 3  # 1 + retries


def test_busy_server_is_retried_with_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    calls: list[int] = []

    def answer(_: str) -> Answer:
        calls.append(1)
        if len(calls) < 3:
            return Answer(status=503, body=b"busy")
        return Answer(body=_json({"study": STUDY, "series": SERIES, "mod": "CT"}))

    with stub_pacs(answer) as stub:
        _servers(tmp_path, stub.url, monkeypatch)
        found = DicomWeb(load_server("stub")).search_series(SearchFilters())
    assert [r.series_uid for r in found] == [SERIES] and len(stub.requests) == 3


@pytest.mark.parametrize(("instance", "error", "text"), [
    (Answer(body=multipart(b"this is not DICOM at all"), content_type=MULTIPART),
     PacsResponseError, "not DICOM"),
    (Answer(body=b"plain text", content_type="text/plain"), PacsResponseError,
     "answered text/plain, not DICOM"),
    (Answer(status=404), PacsNotFoundError, "HTTP 404"),
    ("cut", PacsConnectionError, "dropped"),
    ("unclosed", PacsConnectionError, "ended before its last part"),
    ("other", PacsResponseError, "SOP Instance UID is 1.2.3.4.6, not 1.2.3.4.5"),
])
def test_bad_retrievals_leave_no_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        instance: object, error: type[Exception], text: str
                                        ) -> None:
    body = multipart(_dicom(tmp_path))
    if instance == "cut":
        instance = Answer(body=body, content_type=MULTIPART, cut_after=len(body) // 2)
    elif instance == "unclosed":
        instance = Answer(body=multipart(_dicom(tmp_path), closed=False),
                          content_type=MULTIPART)
    elif instance == "other":
        instance = Answer(body=multipart(_dicom(tmp_path, "1.2.3.4.6")),
                          content_type=MULTIPART)
    assert isinstance(instance, Answer)
    with stub_pacs(_wado(instance)) as stub:
        _servers(tmp_path, stub.url, monkeypatch)
        with pytest.raises(error, match=text) as err:
            pull(f"pacs://stub/{SERIES}")
    assert "PACS 'stub'" in str(err.value)
    left = _cache_files(tmp_path)
    assert not [f for f in left if f.endswith(".dcm") or f.endswith(".json")], left
    assert not (tmp_path / "cache/stub" / STUDY / SERIES).exists()


def test_good_stub_retrieval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same stub with a proper answer: the series lands in the cache (control case)."""
    with stub_pacs(_wado(Answer(body=multipart(_dicom(tmp_path)), content_type=MULTIPART))
                   ) as stub:
        _servers(tmp_path, stub.url, monkeypatch)
        got = pull(f"pacs://stub/{SERIES}")
    assert [p.name for p in got.path.iterdir()] == [f"{SOP}.dcm"]


@pytest.mark.parametrize(("answer", "text"), [
    (Answer(status=409, body=json.dumps({"00081198": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": ["1.2.3.4.5"]},
         "00081197": {"vr": "US", "Value": [272]}}]}}).encode()), "HTTP 409"),
    (Answer(body=b"{}"), "did not confirm it"),
    (Answer(status=200, body=json.dumps({"00081198": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": ["x"]},
         "00081197": {"vr": "US", "Value": [272]}}]}}).encode()), "refused it"),
])
def test_failed_store_claims_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     answer: Answer, text: str) -> None:
    from medseg.export import export
    from tests.io.export_fixtures import ct3, liver3

    seg = tmp_path / "liver_seg.dcm"  # a real SEG of the dcmqi CT
    export(liver3(), ct3(), "seg", seg)
    with stub_pacs(lambda _: answer) as stub:
        _servers(tmp_path, stub.url, monkeypatch)
        with pytest.raises(PacsStoreError, match=text) as err:
            send_files(load_server("stub"), [seg])
    assert "Nothing was stored" in str(err.value) or "nothing else" in str(err.value)
    assert stub.requests == ["/dicom-web/studies"]  # one POST, not retried


def test_wrong_password_and_wrong_url(tmp_path: Path, seeds: dict[str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pynetdicom")
    with orthanc_server(tmp_path / "o") as server:
        use_server(server, tmp_path, monkeypatch)
        wrong = "not-" + server.password
        monkeypatch.setenv("MEDSEG_TEST_ORTHANC_PW", wrong)
        with pytest.raises(PacsAuthError, match="refused the credentials") as err:
            DicomWeb(load_server("orthanc")).search_series(SearchFilters())
        assert server.password not in str(err.value) and wrong not in str(err.value)
        assert f"PACS 'orthanc' ({server.dicomweb})" in str(err.value)
        use_server(server, tmp_path, monkeypatch, extra={"dicomweb": server.url + "/nope"})
        with pytest.raises(PacsNotFoundError, match="DICOMweb root"):
            DicomWeb(load_server("orthanc")).search_series(SearchFilters())


def test_server_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    _servers(tmp_path, f"http://127.0.0.1:{port}/dicom-web", monkeypatch,
             dimse={"ae_title": "X", "host": "127.0.0.1", "port": port, "timeout_s": 2})
    server = load_server("stub")
    with pytest.raises(PacsConnectionError, match="cannot connect"):
        DicomWeb(server).ping()
    with pytest.raises(PacsConnectionError, match=f"X@127.0.0.1:{port}.*no DICOM association"):
        c_echo(server)
    with pytest.raises(PacsStoreError, match="nothing to send"):
        c_store(server, [])


@pytest.mark.external
def test_server_stopped_mid_retrieval_resumes(tmp_path: Path, seeds: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Orthanc is killed when the 6th instance is asked for: a typed error, no series folder,
    the finished instances kept; after a restart only the missing ones are fetched."""
    with orthanc_server(tmp_path / "o") as server:
        server.upload(seeds["ts"])
        use_server(server, tmp_path, monkeypatch, extra={"workers": 2})

        class KilledAfterFive(DicomWeb):
            """Kills the real server once 5 instances were asked for (deterministic, however
            loaded the machine): the requests that follow really fail."""

            calls = 0

            def retrieve_instance(self, *args: Any, **kwargs: Any) -> int:
                with lock:
                    KilledAfterFive.calls += 1
                    if KilledAfterFive.calls == 6:
                        server.kill()
                return super().retrieve_instance(*args, **kwargs)

        lock = threading.Lock()
        pacs = KilledAfterFive(load_server("orthanc"))
        with pytest.raises(PacsConnectionError, match=f"PACS 'orthanc' .*{TS_SERIES}"):
            SeriesCache(tmp_path / "cache").retrieve(pacs, TS_STUDY, TS_SERIES)
        study = tmp_path / "cache/orthanc" / TS_STUDY
        assert not (study / TS_SERIES).exists() and not (study / f"{TS_SERIES}.json").exists()
        kept = sorted((study / f".{TS_SERIES}.incoming").glob("*.dcm"))
        assert len(kept) in (4, 5)  # the 5th may have been in flight on the other worker
        assert not list((study / f".{TS_SERIES}.incoming").glob(".*"))  # no partial file
        server.start()
        got = pull(f"pacs://orthanc/{TS_SERIES}")
    assert got.fetched == 20 - len(kept) and got.n_instances == 20
    for f in got.path.iterdir():
        assert f.read_bytes() == (seeds["ts"] / f.name).read_bytes()


def test_instance_listing_is_paged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PACS that answers QIDO-RS in pages: every instance is listed, once, in order."""
    from urllib.parse import parse_qs, urlsplit

    sops = [f"{SERIES}.{i}" for i in range(1, 6)]

    def answer(path: str) -> Answer:
        query = parse_qs(urlsplit(path).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        return Answer(body=_json(*({"sop": s} for s in sops[offset:offset + limit])))

    with stub_pacs(answer) as stub:
        _servers(tmp_path, stub.url, monkeypatch)
        assert DicomWeb(load_server("stub")).instance_uids(STUDY, SERIES, page=2) == sops
    assert len(stub.requests) == 3
