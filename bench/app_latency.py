"""Browser round-trip latency of the medseg app in headless Chromium on this CPU.

Measures, on the bundled 512x512x20 CT (DICOM), from the user's action to the moment the
edit plane's new image is on screen (the view's ``data-frames`` counter, bumped when a new
picture has loaded):

* ``slice_change``: ArrowRight on the axial slider (next slice drawn, overlay included);
* ``brush``: a click on the edit plane (brush applied, autosaved, audited, redrawn);
* ``stroke_20``: a brush drag through 20 pointer positions, from the button's release (the
  stroke is sent then) until the stroke is applied, autosaved, audited and the three views
  redrawn (the stroke is also drawn in the browser as the pointer moves);
* ``zoom``: one wheel step on the edit plane until the magnified picture is on screen (zoom
  and pan stay in the browser: no server round trip);
* ``prompt_box``: a box dragged on the plane -> the proposal outline drawn (the displayed
  slice is embedded when the Box tool is picked; the shipped lite weights, else a random-init
  lite network of the same architecture, whose timing is the same);

and the same-run baseline ``baseline_slider``: a minimal Streamlit page (one slider, one
512x512 ``st.image``) served by the same Streamlit, ArrowRight on its slider. Median of
``--runs`` repeats (default 9).

    .venv/bin/python bench/app_latency.py      # -> bench/results/app_latency.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.browser import (  # noqa: E402
    CHROMIUM_ARGS,
    IMAGE_FRAME,
    add_label,
    app_server,
    wait_idle,
)

BASELINE = '''
import numpy as np
import streamlit as st
k = st.slider("Slice", 0, 19, 10, key="s")
rng = np.random.default_rng(k)
st.image(rng.integers(0, 255, (512, 512), dtype=np.uint8), width=560)
'''


def _wait_change(get: object, old: str | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get() != old:  # type: ignore[operator]
            return
        time.sleep(0.005)
    raise TimeoutError("the page did not change")


def _src(locator: object) -> object:
    return lambda: locator.get_attribute("src")  # type: ignore[attr-defined]


def _attr(locator: object, name: str) -> object:
    return lambda: locator.get_attribute(name)  # type: ignore[attr-defined]


def _slider_steps(page: object, img: object, slider: object, runs: int,
                  changed: object = None) -> list[float]:
    """Seconds from an arrow key on ``slider`` until a new picture is shown, per step
    (``changed``: what to watch, default ``img``'s src)."""
    watch = changed or _src(img)
    times = []
    for i in range(runs):
        slider.focus()  # type: ignore[attr-defined]
        old = watch()  # type: ignore[operator]
        t0 = time.perf_counter()
        page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")  # type: ignore
        _wait_change(watch, old)
        times.append(time.perf_counter() - t0)
        wait_idle(page)
    return times


def prompt_model(tmp: Path) -> tuple[Path, str]:
    """The shipped lite weights, else a random-init lite network (same architecture, same
    cost per slice; its masks are meaningless, which does not change the timing)."""
    from medseg.models.promptable import LITE_STEM

    shipped = LITE_STEM.with_suffix(".safetensors")
    if shipped.is_file():
        return shipped, "shipped lite weights"
    import torch

    from medseg.models.lite_sam import build_lite_sam
    from medseg.models.prompt_recipe import lite_recipe
    from medseg.models.promptable import PromptModel, save_promptable

    torch.manual_seed(0)
    random = PromptModel(build_lite_sam(), lite_recipe(), name="medseg-lite-sam", version="0")
    return (save_promptable(random, tmp / "lite_random")[0],
            "random-init lite network (no shipped weights yet; same architecture and cost)")


def _drag(page: object, b: dict[str, float], start: tuple[float, float],
          end: tuple[float, float], n: int) -> float:
    """A mouse drag through ``n`` pointer positions from ``start`` to ``end`` (fractions);
    returns the ``perf_counter`` time of the button release (the stroke is sent then: the
    drag itself takes as long as the hand does)."""
    for i in range(n):
        t = i / (n - 1)
        x = b["x"] + b["width"] * (start[0] + (end[0] - start[0]) * t)
        y = b["y"] + b["height"] * (start[1] + (end[1] - start[1]) * t)
        page.mouse.move(x, y)  # type: ignore[attr-defined]
        if i == 0:
            page.mouse.down()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    page.mouse.up()  # type: ignore[attr-defined]
    return t0


def measure_app(browser: object, runs: int, model: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"slice_change": [], "brush": [], "stroke_20": [],
                                   "zoom": [], "prompt_box": []}
    with tempfile.TemporaryDirectory() as ws, \
            app_server(Path(ws), {"MEDSEG_PROMPT_MODEL": str(model)}) as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})  # type: ignore
        page.goto(url)
        page.get_by_role("button", name="Open sample").click(timeout=60_000)
        view = page.frame_locator(IMAGE_FRAME)
        img, wrap = view.locator("img"), view.locator("#wrap")
        img.wait_for(timeout=90_000)
        wait_idle(page)
        add_label(page, "liver")  # undo step 1
        wait_idle(page)
        frames = _attr(wrap, "data-frames")
        slider = page.get_by_test_id("stSlider").filter(has_text="Axial").get_by_role("slider")
        out["slice_change"] = _slider_steps(page, img, slider, runs, frames)
        box = img.bounding_box()
        edits = 1
        for i in range(runs):
            old = frames()
            t0 = time.perf_counter()
            img.click(position={"x": box["width"] * (0.25 + 0.02 * i), "y": box["height"] * 0.45})
            edits += 1
            page.get_by_role("button", name=f"Undo ({edits})").wait_for(timeout=60_000)
            _wait_change(frames, old)
            out["brush"].append(time.perf_counter() - t0)
            wait_idle(page)
        for i in range(runs):
            old = frames()
            y = 0.35 + 0.02 * i
            t0 = _drag(page, box, (0.22, y), (0.42, y + 0.05), 20)
            edits += 1
            page.get_by_role("button", name=f"Undo ({edits})").wait_for(timeout=60_000)
            _wait_change(frames, old)
            out["stroke_20"].append(time.perf_counter() - t0)
            wait_idle(page)
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        for i in range(runs):
            old = wrap.get_attribute("data-zoom")
            t0 = time.perf_counter()
            page.mouse.wheel(0, -200 if i % 2 == 0 else 200)
            _wait_change(_attr(wrap, "data-zoom"), old)
            out["zoom"].append(time.perf_counter() - t0)
        page.get_by_text("Box", exact=True).click()
        wait_idle(page, 180_000)
        for i in range(runs):
            old = frames()
            b = img.bounding_box()
            x0, y0 = b["x"] + b["width"] * 0.2, b["y"] + b["height"] * (0.3 + 0.01 * i)
            t0 = time.perf_counter()
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + b["width"] * 0.25, y0 + b["height"] * 0.3, steps=2)
            page.mouse.up()
            _wait_change(frames, old)
            out["prompt_box"].append(time.perf_counter() - t0)
            wait_idle(page)
        page.close()
    return out


def measure_baseline(browser: object, runs: int) -> list[float]:
    import subprocess
    import urllib.request

    from tests.app.browser import free_port

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "baseline.py"
        script.write_text(BASELINE)
        port = free_port()
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/streamlit"), "run", str(script), f"--server.port={port}",
             "--server.headless=true", "--server.address=127.0.0.1",
             "--browser.gatherUsageStats=false"], cwd=tmp,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})  # type: ignore
            page.goto(url)
            img = page.get_by_test_id("stImage").locator("img")
            img.wait_for(timeout=60_000)
            wait_idle(page)
            slider = page.get_by_role("slider").first
            times = _slider_steps(page, img, slider, runs)
            page.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from medseg.io.atomic import write_text_atomic

    load_before = os.getloadavg()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        base = measure_baseline(browser, args.runs)
        with tempfile.TemporaryDirectory() as tmp:
            model, model_note = prompt_model(Path(tmp))
            app = measure_app(browser, args.runs, model)
        browser.close()
    rows = {"baseline_slider": base, **{k: v for k, v in app.items() if v}}
    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{__import__('os').cpu_count()} CPUs (shared)",
        "input": "data_samples/totalsegmentator/example_ct_dicom (512x512x20 CT), edit view "
                 "~530 px wide, three views redrawn per edit",
        "runs": args.runs,
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in os.getloadavg()]},
        "prompt_model": model_note,
        "median_s": med,
        "ratio_to_baseline": {k: med[k] / med["baseline_slider"] for k in med},
        "all_s": rows,
    }
    out = ROOT / "bench" / "results"
    write_text_atomic(out / "app_latency.json", json.dumps(result, indent=1) + "\n")
    lines = ["# App latency in headless Chromium (round trip, seconds)", "",
             f"{result['input']}; {result['machine']}; median of {args.runs}; load average "
             f"(1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after.", "",
             "| action | median s | min s | max s | x baseline |", "|---|---|---|---|---|"]
    for k, v in rows.items():
        lines.append(f"| {k} | {med[k]:.3f} | {min(v):.3f} | {max(v):.3f} | "
                     f"{result['ratio_to_baseline'][k]:.2f} |")
    lines += ["", "baseline_slider: a one-slider Streamlit page redrawing a 512x512 image, "
              "same Streamlit and browser, timed until its img src changes (the app's rows "
              "wait until the new picture has loaded: a little stricter). stroke_20: release "
              "of a 20-position brush drag -> the stroke painted, saved and the views "
              "redrawn (aim <= 0.5 s; it is drawn in the browser while dragging). zoom: one "
              "wheel step, "
              "done in the browser (no server round trip). prompt_box: box drag -> proposal "
              f"outline drawn, the displayed slice already embedded; model: {model_note}.", ""]
    write_text_atomic(out / "app_latency.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
