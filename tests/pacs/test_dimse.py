"""DIMSE against a real Orthanc: C-ECHO, C-STORE of a SEG and an RTSTRUCT (found again via
DICOMweb, stored once when sent twice), and an association the PACS rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import PacsAuthError
from medseg.pacs import DicomWeb, load_server
from medseg.pacs.dimse import c_echo
from medseg.pacs.send import send_files
from tests.pacs.conftest import use_server
from tests.pacs.orthanc import DCMQI_STUDY, Orthanc, orthanc_server

pytestmark = pytest.mark.external


def _exports(tmp_path: Path) -> tuple[Path, Path]:
    from medseg.export import export
    from tests.io.export_fixtures import ct3, liver3

    tmp_path.mkdir(exist_ok=True)
    seg, rt = tmp_path / "liver_seg.dcm", tmp_path / "liver_rt.dcm"
    export(liver3(), ct3(), "seg", seg)
    export(liver3(), ct3(), "rtstruct", rt)
    return seg, rt


def test_echo_and_store(orthanc: Orthanc, pacs_env: Path, tmp_path: Path) -> None:
    server = load_server("orthanc-dimse")
    assert c_echo(server) > 0
    seg, rt = _exports(tmp_path)
    stored = send_files(server, [seg, rt])
    assert [s.via for s in stored] == ["C-STORE", "C-STORE"]
    seg2, _ = _exports(tmp_path / "again")  # the same export made again: the same object
    again = send_files(server, [seg2])
    assert again[0].sop_instance_uid == stored[0].sop_instance_uid
    web = DicomWeb(load_server("orthanc"))
    for s in stored:
        assert s.study_uid == DCMQI_STUDY
        assert web.instance_uids(s.study_uid, s.series_uid) == [s.sop_instance_uid]


def test_rejected_association(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orthanc checking the called AE title rejects a peer configured with another one."""
    class Strict(Orthanc):
        def config(self) -> dict[str, object]:
            return {**super().config(), "DicomCheckCalledAet": True}

    import tests.pacs.orthanc as helper

    monkeypatch.setattr(helper, "Orthanc", Strict)
    with orthanc_server(tmp_path / "o") as server:
        dimse = {"ae_title": "NOTORTHANC", "host": "127.0.0.1", "port": server.dicom_port,
                 "timeout_s": 5}
        use_server(server, tmp_path, monkeypatch, extra={"dimse": dimse})
        with pytest.raises(PacsAuthError, match="NOTORTHANC@127.0.0.1.*rejected the "
                                                "association"):
            c_echo(load_server("orthanc"))
