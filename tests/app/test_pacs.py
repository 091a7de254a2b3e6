"""The app's PACS source and *Send to PACS*, through AppTest against a real Orthanc: search
-> series list -> open (case keyed by the Series Instance UID, found again after reopening),
refusals shown in the page with no case opened and nothing half in the cache, the SEG sent
and found in Orthanc, and no credential in any file the app wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.pacs.conftest import use_server
from tests.pacs.orthanc import (
    DCMQI_SERIES,
    DCMQI_STUDY,
    Orthanc,
    orthanc_server,
    seed_series,
)

pytestmark = pytest.mark.external
APP = str(ROOT / "app" / "main.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    seeds = seed_series(tmp_path_factory.mktemp("seeds"))
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as orthanc:
        orthanc.upload(seeds["dcmqi"])
        yield orthanc


def _search(at: AppTest, **fields: str) -> AppTest:
    at.sidebar.radio(key="source").set_value("PACS").run()
    for k, v in fields.items():
        at.sidebar.text_input(key=f"pacs_{k}").set_value(v)
    at.sidebar.button(key="pacs_search_go").click().run()
    return at


def _open_series(at: AppTest) -> AppTest:
    at.sidebar.button(key="open_pacs").click().run()
    return at


def test_search_open_annotate_send_and_reopen(server: Orthanc, tmp_path: Path,
                                             app_workspace: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg import io
    from medseg.export import read_mask
    from medseg.pacs import resolve_input

    use_server(server, tmp_path, monkeypatch)
    at = AppTest.from_file(APP, default_timeout=180).run()
    _search(at, patient_id="99000", modality="CT")
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    assert at.sidebar.selectbox(key="pacs_server").options == ["orthanc", "orthanc-dimse"]
    (option,) = at.sidebar.selectbox(key="pacs_pick").options
    assert "99000 JANCT000 · 20030417 · CT" in option and "3 images" in option
    _open_series(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    source = at.session_state["case_source"]
    assert (source.kind, source.series) == ("pacs", DCMQI_SERIES)
    cached = app_workspace / "pacs-cache" / "orthanc" / DCMQI_STUDY / DCMQI_SERIES
    assert len(list(cached.glob("*.dcm"))) == 3
    case = at.session_state["case"]
    assert case.image.meta["dicom"].series_uid == DCMQI_SERIES
    at.selectbox(key="new_label_pick").set_value("liver")
    at.button(key="add_label").click().run()
    at.slider(key="radius").set_value(10.0)
    at.number_input(key="brush_row").set_value(250)
    at.number_input(key="brush_col").set_value(260)
    at.button(key="brush_apply").click().run()  # a brush stroke: the case is saved
    assert not at.exception and not at.error, [e.value for e in at.error]
    ann = at.session_state["ann"]
    assert ann.voxel_counts()[1] > 100
    at.radio(key="panel").set_value("Export").run()
    at.selectbox(key="export_fmt").select("DICOM-SEG").run()
    at.button(key="build_export").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="send_pacs_server").options == ["orthanc", "orthanc-dimse"]
    at.button(key="send_pacs").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (sent,) = [s.value for s in at.success if "Stored in orthanc" in s.value]
    sop = sent.split("SOP Instance UID ")[1].split()[0]
    # the SEG is in Orthanc, in the source's study, referencing the source series
    entry = next(e for e in _audit(app_workspace) if e["action"] == "send to PACS")
    assert entry["sop_instance_uids"] == [sop] and entry["via"] == "STOW-RS"
    seg_file, _ = resolve_input(f"pacs://orthanc/{DCMQI_STUDY}/{entry['series_uid']}")
    import pydicom

    ds = pydicom.dcmread(seg_file)
    assert ds.SOPInstanceUID == sop and ds.StudyInstanceUID == DCMQI_STUDY
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == DCMQI_SERIES
    image = io.read(cached)
    seg = read_mask(seg_file, image)
    expected = ann.to_volume(case.image_lps, case.image)
    np.testing.assert_array_equal(seg.array > 0, expected.array == 1)
    key, _, name, data = at.session_state["export"]
    assert data == (app_workspace / "cases" / key / "export" / name).read_bytes()
    assert pydicom.dcmread(app_workspace / "cases" / key / "export" / name).SOPInstanceUID == sop

    # the same series opened again (a new session, offline: cache hit) finds its case
    server.stop()
    try:
        at2 = AppTest.from_file(APP, default_timeout=180).run()
        at2.query_params["case"] = key
        at2.run()
        assert not at2.exception and not at2.error, [e.value for e in at2.error]
        assert at2.session_state["case_source"].key == key
        assert at2.session_state["ann"].voxel_counts() == ann.voxel_counts()
    finally:
        server.start()
    _no_password(app_workspace, server.password)


def _audit(ws: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (ws / "audit.jsonl").read_text().splitlines()]


def _no_password(ws: Path, password: str) -> None:
    files = [f for f in ws.rglob("*") if f.is_file()]
    assert files
    for f in files:
        assert password.encode() not in f.read_bytes(), f


def test_refusals_are_shown_and_open_nothing(server: Orthanc, tmp_path: Path,
                                            app_workspace: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(server, tmp_path, monkeypatch)
    monkeypatch.setenv("MEDSEG_TEST_ORTHANC_PW", "wrong-password")
    at = _search(AppTest.from_file(APP, default_timeout=120).run(), patient_id="99000")
    (err,) = [e.value for e in at.sidebar.error]
    assert "refused the credentials" in err and "wrong-password" not in err
    assert "case" not in at.session_state
    monkeypatch.setenv("MEDSEG_TEST_ORTHANC_PW", server.password)
    at = _search(AppTest.from_file(APP, default_timeout=120).run(), study_date="2003")
    assert "study date '2003'" in at.sidebar.error[0].value
    # the PACS goes away between the search and the open: nothing opens, nothing half stays
    at = _search(AppTest.from_file(APP, default_timeout=120).run(), patient_id="99000")
    server.kill()
    try:
        _open_series(at)
        (err,) = [e.value for e in at.sidebar.error]
        assert "cannot connect" in err and "case" not in at.session_state
    finally:
        server.start()
    assert not list((app_workspace / "pacs-cache").rglob("*.dcm"))
    assert not (app_workspace / "cases").exists()


def test_no_servers_file_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_PACS_SERVERS", str(tmp_path / "none.yaml"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.radio(key="source").set_value("PACS").run()
    assert any("No PACS is configured" in c.value for c in at.sidebar.caption)


def test_second_server_name_same_series_same_case(tmp_path: Path, app_workspace: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases are keyed by the Series Instance UID, not by the server's name."""
    from app.sources import pacs_case_source
    from medseg.pacs.records import SeriesRecord

    rec = SeriesRecord(DCMQI_STUDY, DCMQI_SERIES, "p", "n", "d", "", "", "CT", "x", 1, 3)
    assert pacs_case_source("a", rec).key == pacs_case_source("b", rec).key
    assert pacs_case_source("a", rec).ref == f"pacs://a/{DCMQI_STUDY}/{DCMQI_SERIES}"
