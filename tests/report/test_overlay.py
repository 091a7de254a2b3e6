"""Overlay framing: crop to the segmented region, magnify thin slabs (medseg.report.overlay)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medseg.report.overlay import focus_box, overlay_panels, view_limits
from medseg.report.slices import DisplayFrame, display_frame
from medseg.volume import Volume


def _frame(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> DisplayFrame:
    return display_frame(Volume(np.zeros(shape, np.uint8), spacing))


def test_focus_box_adds_margin_and_keeps_the_cross() -> None:
    frame = _frame((100, 80, 20), (1.0, 1.0, 5.0))
    fg = np.zeros(frame.shape, bool)
    fg[40:50, 30:40, 8:10] = True
    lo, hi = focus_box(fg, frame, keep=(45, 79, 9))
    assert lo[0] == 20 and hi[0] == 70  # 20 mm margin at 1 mm
    assert lo[1] == 10 and hi[1] == 80  # grown to hold the cross at y = 79
    assert lo[2] == 4 and hi[2] == 14  # 20 mm = 4 slices of 5 mm
    assert focus_box(np.zeros(frame.shape, bool), frame, (0, 0, 0)) == ([0, 0, 0],
                                                                       [100, 80, 20])


def test_thin_slab_bottom_row_is_magnified_around_the_cross() -> None:
    frame = _frame((512, 512, 20), (0.8, 0.8, 2.0))  # 410 mm field of view, 40 mm slab
    lim = view_limits(frame, [0, 0, 0], [512, 512, 20], cross=(400, 100, 10))
    assert lim.zoom == pytest.approx(0.3 * 409.6 / 40.0)
    width = lim.xlim["coronal"][1] - lim.xlim["coronal"][0]
    assert width == pytest.approx(409.6 / lim.zoom)
    assert lim.xlim["coronal"][0] <= 400.5 * 0.8 <= lim.xlim["coronal"][1]
    assert lim.xlim["sagittal"][0] <= 100.5 * 0.8 <= lim.xlim["sagittal"][1]
    assert lim.xlim["axial"] == (0.0, 409.6) and lim.ylim["axial"] == (409.6, 0.0)
    cube = view_limits(_frame((60, 60, 40), (1.0, 1.0, 1.5)), [0, 0, 0], [60, 60, 40],
                       cross=(5, 5, 5))
    assert cube.zoom == 1.0 and cube.xlim["coronal"] == cube.xlim["axial"]


def test_overlay_png_has_physical_proportions() -> None:
    """Top row height / total width follows the mm extents of the shown box."""
    frame = _frame((64, 48, 10), (1.0, 1.0, 6.0))
    ref = np.zeros(frame.shape, np.uint8)
    ref[10:54, 8:40, 1:9] = 1
    pred = np.roll(ref, 3, axis=0)
    png = overlay_panels(ref, pred, ref, frame, {"axial": 5, "coronal": 20, "sagittal": 30},
                         [1], "t", window=None)
    img = Image.open(io.BytesIO(png))
    lo, hi = focus_box((ref | pred) > 0, frame, (30, 20, 5))
    sx, sy, sz = (np.subtract(hi, lo) * frame.spacing).tolist()
    panel_w = img.width - 0.3 * 80
    panel_h = img.height - 0.75 * 80
    assert panel_h / panel_w == pytest.approx((sy + sz) / (sx + sy), rel=0.05)
