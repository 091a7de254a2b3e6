"""The editor in headless Chromium (issue 21): strokes, zoom, delete/Undo, Propagate, refresh.

One app server, one page, the sample CT (512x512x20 DICOM) and the shipped lite prompt model
(a random-init lite network when it is absent: only the flow is checked then). Screenshots of
the panels go to test-output/app/app_*.png (small palette PNGs; docs/img/ with
MEDSEG_UPDATE_DOC_IMAGES=1, the copies docs/app.md shows).
"""

from __future__ import annotations

import io as _io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.app.browser import (
    CHROMIUM_ARGS,
    IMAGE_FRAME,
    SIDE_FRAME,
    add_label,
    app_server,
    lite_model,
    open_sample,
    wait_idle,
)
from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.external
#: screenshots go to test-output/app/; MEDSEG_UPDATE_DOC_IMAGES=1 writes docs/img/ instead (the
#: copies docs/app.md shows), so a test run leaves the checkout clean
DOC_IMG = ROOT / ("docs/img" if os.environ.get("MEDSEG_UPDATE_DOC_IMAGES") == "1"
                  else "test-output/app")
RADIUS_MM = 5.0


@pytest.fixture(scope="module")
def page_and_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("editor")
    ws = tmp / "ws"
    with sync_playwright() as p, \
            app_server(ws, {"MEDSEG_PROMPT_MODEL": str(lite_model(tmp))}) as url:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        open_sample(page)
        add_label(page, "liver")
        wait_idle(page)
        yield page, ws
        browser.close()


def _labels_lps(ws: Path) -> np.ndarray:
    from medseg import io

    saved = io.read(next(ws.glob("cases/*/labels.nii.gz")), label=True)
    return np.asarray(saved.reorient("LPS").array)


def _voxels(ws: Path) -> int:
    (path,) = ws.glob("cases/*/state.json")
    return int(json.loads(path.read_text())["voxels"].get("1", 0))


def _shot(locator: object, name: str | None, max_width: int = 900) -> np.ndarray:
    """Screenshot ``locator``; save it as a small palette PNG ``DOC_IMG/app_<name>.png``
    (unless ``name`` is None); return the RGB pixels."""
    from PIL import Image

    png = locator.screenshot()  # type: ignore[attr-defined]
    im = Image.open(_io.BytesIO(png)).convert("RGB")
    if name is None:
        return np.asarray(im)
    small = im if im.width <= max_width else im.resize(
        (max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS)
    DOC_IMG.mkdir(parents=True, exist_ok=True)
    small.quantize(128).save(DOC_IMG / f"app_{name}.png", optimize=True)
    return np.asarray(im)


def _yellow_rows(rgb: np.ndarray) -> int:
    """How many image rows hold the proposal's yellow outline (255, 255, 0)."""
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 80)
    return int(yellow.any(axis=1).sum())


def _view(page: object, frame: str = IMAGE_FRAME, nth: int = 0) -> object:
    return page.frame_locator(frame).nth(nth)  # type: ignore[attr-defined]


def test_a_drag_paints_a_continuous_stroke_and_zoom_pan_keep_clicks_on_target(
        page_and_ws: tuple[object, Path]) -> None:
    page, ws = page_and_ws
    img = _view(page).locator("img")
    b = img.bounding_box()  # type: ignore[attr-defined]
    # 20 pointer positions along a line across the liver, 7-8 slice pixels apart
    start, end = np.array([0.22, 0.40]), np.array([0.40, 0.58])
    xy = [start + (end - start) * t for t in np.linspace(0, 1, 20)]
    page.mouse.move(b["x"] + xy[0][0] * b["width"], b["y"] + xy[0][1] * b["height"])
    page.mouse.down()
    for fx, fy in xy[1:]:
        page.mouse.move(b["x"] + fx * b["width"], b["y"] + fy * b["height"])
    page.mouse.up()
    page.get_by_role("button", name="Undo (2)").wait_for(timeout=30_000)  # one edit
    wait_idle(page)
    lab = _labels_lps(ws)[:, :, 10].T == 1  # axial slice 10 as displayed: [row, col]
    (r0, c0), (r1, c1) = ((f[1] * 512 - 0.5, f[0] * 512 - 0.5) for f in (start, end))
    # every pixel within the radius of the path (less one pixel) is painted: no gaps
    rr, cc = np.mgrid[0:512, 0:512]
    t = np.clip(((rr - r0) * (r1 - r0) + (cc - c0) * (c1 - c0))
                / ((r1 - r0) ** 2 + (c1 - c0) ** 2), 0, 1)
    dist_mm = np.hypot(rr - (r0 + t * (r1 - r0)), cc - (c0 + t * (c1 - c0))) * 0.9766
    assert lab[dist_mm <= RADIUS_MM - 1.0].all()
    assert not lab[dist_mm > RADIUS_MM + 1.5].any()  # and nothing away from it
    _shot(page.locator(IMAGE_FRAME), "stroke")

    # zoom in with the wheel around the aorta, click: the brush lands under the pointer
    wrap = _view(page).locator("#wrap")
    ax, ay = b["x"] + 0.513 * b["width"], b["y"] + 0.59 * b["height"]
    page.mouse.move(ax, ay)
    for _ in range(3):
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(50)
    assert float(wrap.get_attribute("data-zoom")) == pytest.approx(1.953, abs=0.01)
    assert img.bounding_box()["width"] > 1.9 * b["width"]  # the picture is magnified
    n = _voxels(ws)
    page.mouse.click(ax, ay)
    page.get_by_role("button", name="Undo (3)").wait_for(timeout=30_000)
    wait_idle(page)
    _shot(page.locator(IMAGE_FRAME), "zoom")
    disc = (_labels_lps(ws)[:, :, 10].T == 1) & (dist_mm > RADIUS_MM + 1.5)
    centre = np.argwhere(disc).mean(axis=0)
    assert np.abs(centre - [0.59 * 512, 0.513 * 512]).max() < 2 and _voxels(ws) > n
    # Shift + drag pans the zoomed picture and edits nothing
    x_before = img.bounding_box()["x"]
    page.keyboard.down("Shift")
    page.mouse.move(ax, ay)
    page.mouse.down()
    page.mouse.move(ax + 60, ay, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert img.bounding_box()["x"] == pytest.approx(x_before + 60, abs=2)
    page.wait_for_timeout(300)
    assert page.get_by_role("button", name="Undo (3)").count() == 1
    page.mouse.move(ax, ay)
    for _ in range(3):  # and back out
        page.mouse.wheel(0, 200)
        page.wait_for_timeout(50)
    assert float(wrap.get_attribute("data-zoom")) == pytest.approx(1.0)
    # the click moved the crosshair: the side views now pass through the aorta
    assert _view(page).locator("#title").inner_text() == "Axial 10/19"


def test_delete_label_asks_then_undo_restores_name_and_voxels(
        page_and_ws: tuple[object, Path]) -> None:
    page, ws = page_and_ws
    wait_idle(page)
    n = _voxels(ws)
    assert n > 500
    page.get_by_text("Edit 'liver'").click()
    wait_idle(page)  # the expander opens (animated) before its buttons take clicks
    page.get_by_role("button", name="Delete", exact=True).click()
    confirm = page.get_by_text(f"Delete 'liver' and its {n} voxels?")
    confirm.wait_for(timeout=30_000)
    assert _voxels(ws) == n  # nothing deleted before the confirmation
    left = page.get_by_test_id("stColumn").filter(has_text="Labels").first
    _shot(left, "labels_delete")
    page.get_by_role("button", name="Yes, delete").click()
    page.get_by_text("No labels yet").wait_for(timeout=30_000)
    wait_idle(page)
    # a click with no label is refused with a warning above the views, and the Display
    # panel stays open under it (it used to collapse when a message shifted the page)
    b = _view(page).locator("img").bounding_box()
    page.mouse.click(b["x"] + 0.513 * b["width"], b["y"] + 0.59 * b["height"])
    page.get_by_text("Add a label first").wait_for(timeout=30_000)
    wait_idle(page)
    assert page.get_by_test_id("stSelectbox").filter(has_text="Edit plane").is_visible()
    page.get_by_role("button", name="Undo (4)").click()
    page.get_by_text(f"liver: {n} voxels").wait_for(timeout=30_000)
    wait_idle(page)
    assert _voxels(ws) == n
    state = json.loads(next(ws.glob("cases/*/state.json")).read_text())
    assert state["labels"][0]["name"] == "liver"


def test_propagate_redraws_all_views_and_a_refresh_keeps_the_proposal(
        page_and_ws: tuple[object, Path]) -> None:
    page, _ = page_and_ws
    page.get_by_text("Box", exact=True).click()
    wait_idle(page, 180_000)
    b = _view(page).locator("img").bounding_box()
    page.mouse.move(b["x"] + 0.48 * b["width"], b["y"] + 0.54 * b["height"])
    page.mouse.down()
    page.mouse.move(b["x"] + 0.56 * b["width"], b["y"] + 0.64 * b["height"], steps=3)
    page.mouse.up()
    page.get_by_text(re.compile(r"mask in \d+ ms")).wait_for(timeout=90_000)
    wait_idle(page)
    accept = page.get_by_role("button", name="Accept")
    assert accept.is_enabled(), "the box prompt returned an empty mask"
    before = [_yellow_rows(_shot(page.locator(SIDE_FRAME).nth(i), None))
              for i in range(2)]
    page.get_by_role("button", name="Propagate").click()
    page.get_by_text(re.compile("Propagated liver to")).wait_for(timeout=180_000)
    wait_idle(page)
    views = [_shot(page.locator(IMAGE_FRAME), "propagated_axial"),
             _shot(page.locator(SIDE_FRAME).nth(0), "propagated_coronal"),
             _shot(page.locator(SIDE_FRAME).nth(1), "propagated_sagittal")]
    rows = [_yellow_rows(v) for v in views]
    assert rows[0] > 10  # the axial outline
    # coronal and sagittal: the proposal now spans many slices, not the prompted one only
    assert rows[1] > 3 * max(before[0], 1) and rows[2] > 3 * max(before[1], 1), (before, rows)
    _shot(page.get_by_test_id("stMain"), "page", max_width=1000)

    page.reload()  # the proposal is not accepted yet
    page.get_by_text("autosaved to workspace case").wait_for(timeout=90_000)
    _view(page).locator("img").wait_for(timeout=30_000)
    wait_idle(page, 180_000)
    assert page.get_by_role("radio", name="Box").is_checked()  # tool kept
    assert _view(page).locator("#title").inner_text() == "Axial 10/19"  # slice kept
    assert _yellow_rows(_shot(page.locator(IMAGE_FRAME), None)) > 10
    accept = page.get_by_role("button", name="Accept")
    assert accept.is_enabled()
    accept.click()
    page.get_by_role("button", name="Undo (6)").wait_for(timeout=30_000)


def test_a_thin_coronal_view_becomes_the_edit_view_stretched_and_says_so(
        page_and_ws: tuple[object, Path]) -> None:
    page, _ = page_and_ws
    page.get_by_role("button", name="Edit in coronal").click()
    wait_idle(page)
    view = _view(page)
    assert view.locator("#title").inner_text().startswith("Coronal")
    badge = view.locator("#aspect").inner_text()
    assert re.fullmatch(r"stretched \d+\.\dx vertically", badge)
    box = view.locator("#wrap").bounding_box()
    assert box["height"] >= 0.39 * box["width"] > 200  # usable, not a 38 px strip
    _shot(page.locator(IMAGE_FRAME), "coronal_edit")


def test_each_panel_under_the_views_opens_cleanly(page_and_ws: tuple[object, Path]) -> None:
    """Screenshots of the panels for docs/app.md; each opens without an error on the page."""
    page, _ = page_and_ws
    group = page.get_by_test_id("stRadio").filter(has_text="Audit log")
    for panel in ("Auto-segment", "Prompt", "Compare", "Export", "Dataset", "Audit log"):
        group.get_by_text(panel, exact=True).click()
        wait_idle(page, 120_000)
        group.scroll_into_view_if_needed()
        top = group.bounding_box()
        from PIL import Image

        png = page.screenshot(clip={"x": top["x"] - 10, "y": top["y"] - 10,
                                    "width": min(1000.0, 1490 - top["x"]), "height": 520})
        im = Image.open(_io.BytesIO(png)).convert("RGB")
        DOC_IMG.mkdir(parents=True, exist_ok=True)
        name = panel.lower().replace(" ", "_").replace("-", "")
        im.quantize(128).save(DOC_IMG / f"app_panel_{name}.png", optimize=True)
        assert page.get_by_test_id("stException").count() == 0
        assert "Something went wrong" not in page.content()
