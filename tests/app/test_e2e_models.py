"""In headless Chromium: a CT model on the MR sample shows its warning before anything runs,
waits for a confirmation, and the result is marked. Needs the Debian package ``chromium``.
Screenshot: test-output/app/autoseg_modality_warning.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.browser import CHROMIUM_ARGS, IMAGE_FRAME, app_server, wait_idle
from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.external
SHOTS = ROOT / "test-output" / "app"


def test_ct_model_on_the_mr_sample_warns_first(tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    ws = tmp_path / "ws"
    with app_server(ws, {"MEDSEG_START_SAMPLE": "MR abdomen, NIfTI 3 mm"}) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.frame_locator(IMAGE_FRAME).locator("img").wait_for(timeout=90_000)
        wait_idle(page)
        page.get_by_text("Auto-segment", exact=True).click()
        warning = page.get_by_text("was made for CT abdomen images")
        warning.wait_for(timeout=60_000)
        wait_idle(page)
        assert "not CT" in warning.inner_text()
        run = page.get_by_role("button", name="Run auto-segmentation")
        expect(run).to_be_disabled()
        picker = page.get_by_test_id("stSelectbox").filter(has_text="Model bundle")
        shown = picker.locator("input").input_value()
        assert "ct_organs_2d" in shown and "spleen" in shown and "/" not in shown
        page.get_by_text("modality CT (abdomen)").wait_for(timeout=10_000)
        page.screenshot(path=str(SHOTS / "autoseg_modality_warning.png"), full_page=True)
        assert not (ws / "audit.jsonl").exists() or "auto-segment\"" not in \
            (ws / "audit.jsonl").read_text()
        page.get_by_text("Run it on this image anyway").click()
        wait_idle(page)
        expect(run).to_be_enabled()
        run.click()
        page.get_by_text("ran on an image of another modality").wait_for(timeout=120_000)
        browser.close()
    entries = [json.loads(x) for x in (ws / "audit.jsonl").read_text().splitlines()]
    auto = [e for e in entries if e["action"] == "auto-segment"]
    assert len(auto) == 1 and "made for CT abdomen" in auto[0]["modality_warning"]
