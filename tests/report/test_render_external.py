"""Look at the reports as a person would: report.html in headless Chromium, report.pdf through
pdftoppm. The PNGs are kept in test-output/report/ for a human to inspect."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.report.figures import PRED_COLOUR, REF_COLOUR
from tests.conftest import ROOT, require_tool
from tests.report.conftest import RenderedCase

OUT = ROOT / "test-output" / "report"


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def _colour_pixels(png: Path, hex_colour: str, tol: int = 40) -> int:
    arr = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return int((np.abs(arr - _rgb(hex_colour)).max(axis=-1) <= tol).sum())


def _dark_fraction(png: Path) -> float:
    """Fraction of near-black pixels: the CT backgrounds of the overlays (white pages: ~0)."""
    return float((np.asarray(Image.open(png).convert("L")) < 40).mean())


def _assert_looks_rendered(png: Path, min_colour_pixels: int) -> None:
    assert png.is_file() and png.stat().st_size > 10_000, png
    grey = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert grey.std() > 20, f"{png} looks blank (std {grey.std():.1f})"
    assert _dark_fraction(png) > 0.015, f"{png}: no image panels visible"
    for colour in (REF_COLOUR, PRED_COLOUR):
        n = _colour_pixels(png, colour)
        assert n >= min_colour_pixels, f"{png}: only {n} pixels of overlay colour {colour}"


@pytest.mark.external
def test_html_renders_in_chromium(ts_case: RenderedCase) -> None:
    chromium = require_tool("chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    shot = OUT / "case_html.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
             "--window-size=1400,3000", (ts_case.out / "report.html").resolve().as_uri()],
            check=True, timeout=120, capture_output=True)
    _assert_looks_rendered(shot, min_colour_pixels=500)
    assert Image.open(shot).size == (1400, 3000)


@pytest.mark.external
def test_pdf_pages_render_with_pdftoppm(ts_case: RenderedCase) -> None:
    pdftoppm = require_tool("pdftoppm")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("case_pdf-*.png"):
        old.unlink()
    subprocess.run([pdftoppm, "-r", "50", "-png", str(ts_case.out / "report.pdf"),
                    str(OUT / "case_pdf")], check=True, timeout=120, capture_output=True)
    pages = sorted(OUT.glob("case_pdf-*.png"))
    assert len(pages) >= 5
    for page in pages:
        grey = np.asarray(Image.open(page).convert("L"), dtype=np.float64)
        assert grey.std() > 5, f"{page} is blank"
    overlay_pages = [p for p in pages if _dark_fraction(p) > 0.1
                     and _colour_pixels(p, REF_COLOUR) > 200
                     and _colour_pixels(p, PRED_COLOUR) > 200]
    assert len(overlay_pages) >= 2, "the two overlay figures should show both contour colours"
