"""End to end in headless Chromium: open the sample CT, annotate, refresh, export, check files;
a hostile upload refused. (Prompts, strokes, zoom: test_editor_browser.py.)

Screenshots go to test-output/app/. Needs the Debian package ``chromium``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.app.browser import (
    CHROMIUM_ARGS,
    IMAGE_FRAME,
    add_label,
    app_server,
    open_sample,
    wait_idle,
)
from tests.conftest import ROOT, SAMPLES, require_tool

pytestmark = pytest.mark.external
SHOTS = ROOT / "test-output" / "app"
CT = SAMPLES / "totalsegmentator/example_ct_dicom"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _state(ws: Path) -> dict[str, object]:
    (path,) = ws.glob("cases/*/state.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_annotate_refresh_export(browser: object, tmp_path: Path) -> None:
    from medseg import io
    from medseg.export import read_mask

    SHOTS.mkdir(parents=True, exist_ok=True)
    ws = tmp_path / "ws"
    with app_server(ws) as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1100},  # type: ignore
                                accept_downloads=True)
        page.goto(url)
        img = open_sample(page)
        add_label(page, "liver")
        wait_idle(page)
        box = img.bounding_box()
        x, y = 0.30 * box["width"], 0.45 * box["height"]  # the liver, patient's right
        img.click(position={"x": x, "y": y})
        page.get_by_role("button", name="Undo (2)").wait_for(timeout=30_000)  # add, brush
        wait_idle(page)
        page.screenshot(path=str(SHOTS / "1_brush.png"), full_page=True)
        state = _state(ws)
        n = state["voxels"]["1"]  # type: ignore[index]
        assert n > 50
        # the painted disc is centred where we clicked (display -> LPS voxel -> file grid)
        image = io.read(CT)
        lps = image.reorient("LPS")
        col, row = int(x * lps.shape[0] / box["width"]), int(y * lps.shape[1] / box["height"])
        saved = io.read(next(ws.glob("cases/*/labels.nii.gz")), label=True)
        assert saved.grid_differences(image) == []
        centre = image.index_to_world(np.argwhere(saved.array == 1).mean(axis=0))
        clicked = lps.index_to_world([col, row, lps.shape[2] // 2])
        assert np.abs(centre - clicked).max() < 2 * max(lps.spacing[:2])

        # a refresh in the middle of annotating loses nothing
        page.reload()
        page.get_by_text(f"liver: {n} voxels").wait_for(timeout=90_000)
        page.get_by_role("button", name="Undo (2)").wait_for(timeout=30_000)  # history kept
        img = page.frame_locator(IMAGE_FRAME).locator("img")
        img.wait_for(timeout=30_000)
        wait_idle(page)
        page.screenshot(path=str(SHOTS / "2_after_refresh.png"), full_page=True)
        img.click(position={"x": x + 25, "y": y})  # keep annotating after the refresh
        page.get_by_role("button", name="Undo (3)").wait_for(timeout=30_000)
        wait_idle(page)
        n2 = _state(ws)["voxels"]["1"]  # type: ignore[index]
        assert n2 > n

        # export NIfTI and DICOM-SEG through the download buttons
        page.get_by_text("Export", exact=True).click()
        wait_idle(page)
        files = {}
        for fmt in ("NIfTI", "DICOM-SEG"):
            page.get_by_test_id("stSelectbox").filter(has_text="Format").locator("input").fill(fmt)
            page.keyboard.press("Enter")
            wait_idle(page)
            page.get_by_role("button", name=f"Build {fmt}").click()
            dl_button = page.get_by_role("button", name="Download CT_abdomen")
            dl_button.wait_for(timeout=60_000)
            with page.expect_download() as info:
                dl_button.click()
            target = tmp_path / info.value.suggested_filename
            info.value.save_as(target)
            files[fmt] = target
            wait_idle(page)
        page.screenshot(path=str(SHOTS / "3_export.png"), full_page=True)
        page.close()
    assert files["NIfTI"].name == "CT_abdomen_DICOM_JPEG_2000_liver.nii.gz"
    assert files["DICOM-SEG"].name == "CT_abdomen_DICOM_JPEG_2000_liver_seg.dcm"
    saved = io.read(next(ws.glob("cases/*/labels.nii.gz")), label=True)
    nii = io.read(files["NIfTI"], label=True)
    assert nii.grid_differences(image) == [] and nii.labels == {1: "liver"}
    np.testing.assert_array_equal(nii.array, saved.array)
    seg = read_mask(files["DICOM-SEG"], image)
    assert seg.grid_differences(image) == [] and set((seg.labels or {}).values()) == {"liver"}
    np.testing.assert_array_equal(seg.array > 0, saved.array > 0)
    actions = [json.loads(x)["action"] for x in (ws / "audit.jsonl").read_text().splitlines()]
    assert actions.count("brush") == 2 and actions.count("export") == 2


def test_hostile_upload_is_refused_in_browser(browser: object, tmp_path: Path) -> None:
    """An uploaded .mha whose header names /etc/passwd as its data file, through the real file
    input: the page says why it is refused, no case opens, nothing reaches the workspace; a
    file over MEDSEG_MAX_UPLOAD_MB is refused by the browser before it is sent."""
    from tests.app.test_roots import mha

    hostile = tmp_path / "passwd.mha"
    hostile.write_bytes(mha("/etc/passwd"))
    big = tmp_path / "big.nii.gz"
    big.write_bytes(b"\0" * (2 * 2**20))
    ws = tmp_path / "ws"
    with app_server(ws, {"MEDSEG_MAX_UPLOAD_MB": "1"}) as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})  # type: ignore
        page.goto(url)
        wait_idle(page)
        page.get_by_test_id("stSidebar").get_by_text("Upload", exact=True).click()
        wait_idle(page)
        page.locator("input[type=file]").set_input_files(str(hostile))
        refusal = page.get_by_text("points outside the header's folder")
        refusal.wait_for(timeout=60_000)
        wait_idle(page)
        page.screenshot(path=str(SHOTS / "6_hostile_upload.png"), full_page=True)
        assert "passwd.mha" in refusal.inner_text() and "nothing was read" in refusal.inner_text()
        assert page.get_by_text("autosaved to workspace case").count() == 0
        assert "Traceback" not in page.content()
        page.locator("input[type=file]").set_input_files(str(big))
        page.get_by_text("1.0MB or smaller", exact=False).wait_for(timeout=30_000)
        page.close()
    assert not (ws / "cases").exists()
    assert [p.name for p in (ws / "uploads").rglob("*") if p.is_file()] == ["passwd.mha"]
