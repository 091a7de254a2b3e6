"""Start the app in a subprocess and drive it with Playwright's Chromium (tests and bench)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
IMAGE_FRAME = 'iframe[title="app.editor.edit_view"]'
SIDE_FRAME = 'iframe[title="app.editor.side_view"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def app_server(workspace: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``streamlit run app/main.py`` on a free port; yields its URL."""
    port = free_port()
    full_env = {**os.environ, "MEDSEG_WORKSPACE": str(workspace), **(env or {})}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/streamlit"), "run", str(ROOT / "app/main.py"),
         f"--server.port={port}", "--server.headless=true", "--server.address=127.0.0.1",
         "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise RuntimeError(f"streamlit did not start:\n{out}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_idle(page: object, timeout_ms: int = 60_000) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(200)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('[data-testid=\"stApp\"]')"
        "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=timeout_ms)
    page.wait_for_timeout(100)  # type: ignore[attr-defined]


def add_label(page: object, name: str) -> None:
    """Type a new label name in the Labels panel, add it and wait until it is listed."""
    p = page  # playwright Page
    p.get_by_test_id("stSelectbox").filter(has_text="New label").click()  # type: ignore
    p.keyboard.type(name)  # type: ignore[attr-defined]
    p.keyboard.press("Enter")  # type: ignore[attr-defined]
    p.get_by_role("button", name="Add label").click()  # type: ignore[attr-defined]
    p.get_by_text(f"{name}: 0 voxels").wait_for(timeout=30_000)  # type: ignore[attr-defined]


def open_sample(page: object) -> object:
    """Click *Open sample* (the first bundled sample) and wait for the edit view's image."""
    page.get_by_role("button", name="Open sample").click(timeout=60_000)  # type: ignore
    page.get_by_text("autosaved to workspace case").wait_for(timeout=90_000)  # type: ignore
    img = page.frame_locator(IMAGE_FRAME).locator("img")  # type: ignore[attr-defined]
    img.wait_for(timeout=30_000)
    wait_idle(page)
    return img


def lite_model(tmp: Path) -> Path:
    """The shipped lite prompt weights, else a random-init lite network saved under ``tmp``
    (same architecture and cost; its masks are arbitrary, so only the flow is checked)."""
    from medseg.models.promptable import LITE_STEM

    shipped = LITE_STEM.with_suffix(".safetensors")
    if shipped.is_file():
        return shipped
    import torch

    from medseg.models.lite_sam import build_lite_sam
    from medseg.models.prompt_recipe import lite_recipe
    from medseg.models.promptable import PromptModel, save_promptable

    torch.manual_seed(0)
    random = PromptModel(build_lite_sam(), lite_recipe(), name="medseg-lite-sam", version="0")
    return save_promptable(random, tmp / "lite_random")[0]
