"""End to end in headless Chromium against a real Orthanc: PACS search -> open -> box prompt
-> accept -> Send to PACS; the SEG is then found in Orthanc, referencing the source series.

Screenshots go to test-output/app/. Needs the Debian packages ``chromium``, ``orthanc`` and
``orthanc-dicomweb``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.browser import CHROMIUM_ARGS, IMAGE_FRAME, add_label, app_server, wait_idle
from tests.app.test_e2e_browser import SHOTS
from tests.conftest import ROOT, require_tool
from tests.pacs.orthanc import TS_SERIES, TS_STUDY, orthanc_server, seed_series

pytestmark = pytest.mark.external


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_pacs_open_prompt_accept_send(browser: object, tmp_path: Path) -> None:
    import pydicom

    from medseg.pacs import DicomWeb, SearchFilters, load_server, resolve_input

    SHOTS.mkdir(parents=True, exist_ok=True)
    seeds = seed_series(tmp_path / "seeds")
    model = ROOT / "medseg/weights/lite_sam.safetensors"  # the shipped promptable model
    with orthanc_server(tmp_path / "orthanc") as orthanc:
        orthanc.upload(seeds["ts"])
        servers = orthanc.servers_file(tmp_path / "servers.yaml")
        env = {"MEDSEG_PACS_SERVERS": str(servers), "MEDSEG_PROMPT_MODEL": str(model),
               "MEDSEG_TEST_ORTHANC_PW": orthanc.password}
        ws = tmp_path / "ws"
        with app_server(ws, env) as url:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})  # type: ignore
            page.goto(url)
            wait_idle(page)
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text("PACS", exact=True).click()
            wait_idle(page)
            sidebar.get_by_label("Patient ID").fill("TS*")
            sidebar.get_by_role("button", name="Search").click()
            sidebar.get_by_text("Series (1 found)").wait_for(timeout=60_000)
            wait_idle(page)
            sidebar.get_by_role("button", name="Open series").click()
            page.get_by_text("autosaved to workspace case").wait_for(timeout=120_000)
            img = page.frame_locator(IMAGE_FRAME).locator("img")
            img.wait_for(timeout=30_000)
            wait_idle(page)
            page.screenshot(path=str(SHOTS / "7_pacs_opened.png"), full_page=True)
            add_label(page, "aorta")
            page.get_by_text("Box", exact=True).click()
            wait_idle(page)
            b = page.frame_locator(IMAGE_FRAME).locator("img").bounding_box()
            # a box around the aorta (in front of the spine, slice 10 of this CT)
            page.mouse.move(b["x"] + 0.505 * b["width"], b["y"] + 0.525 * b["height"])
            page.mouse.down()
            page.mouse.move(b["x"] + 0.59 * b["width"], b["y"] + 0.62 * b["height"], steps=3)
            page.mouse.up()
            page.get_by_text(re.compile(r"mask in \d+ ms")).wait_for(timeout=90_000)
            wait_idle(page)
            accept = page.get_by_role("button", name="Accept")
            assert accept.is_enabled(), "the box prompt returned an empty mask"
            accept.click()  # add label, box prompt, accept: three edits of the page's one history
            page.get_by_role("button", name="Undo (3)").wait_for(timeout=30_000)
            wait_idle(page)
            page.get_by_text("Export", exact=True).click()
            wait_idle(page)
            page.get_by_test_id("stSelectbox").filter(has_text="Format").locator("input") \
                .fill("DICOM-SEG")
            page.keyboard.press("Enter")
            wait_idle(page)
            page.get_by_role("button", name="Build DICOM-SEG").click()
            send = page.get_by_role("button", name="Send DICOM-SEG to orthanc")
            send.wait_for(timeout=60_000)
            send.click()
            stored = page.get_by_text(re.compile(r"Stored in orthanc \(STOW-RS\)"))
            stored.wait_for(timeout=60_000)
            wait_idle(page)
            page.screenshot(path=str(SHOTS / "8_pacs_sent.png"), full_page=True)
            sop = stored.inner_text().split("SOP Instance UID ")[1].split()[0]
            assert "Traceback" not in page.content()
            page.close()
        # the SEG is in Orthanc, found from the source study, referencing the source series
        os.environ["MEDSEG_TEST_ORTHANC_PW"] = orthanc.password
        try:
            pacs = DicomWeb(load_server("orthanc", servers))
            (seg,) = pacs.search_series(SearchFilters(study_uid=TS_STUDY, modality="SEG"))
            files = resolve_input(f"pacs://orthanc/{TS_STUDY}/{seg.series_uid}",
                                  servers=servers, cache=tmp_path / "cache")[0]
        finally:
            del os.environ["MEDSEG_TEST_ORTHANC_PW"]
    ds = pydicom.dcmread(files)
    assert ds.SOPInstanceUID == sop and ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == TS_SERIES
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["aorta"]
    log = [json.loads(x) for x in (ws / "audit.jsonl").read_text().splitlines()]
    assert [e["sop_instance_uids"] for e in log if e["action"] == "send to PACS"] == [[sop]]
    for f in ws.rglob("*"):
        assert not f.is_file() or orthanc.password.encode() not in f.read_bytes(), f
