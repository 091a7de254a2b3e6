"""App cases of the corpus get their own workspace folder (MEDSEG_WORKSPACE)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def app_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = tmp_path / "workspace"
    monkeypatch.setenv("MEDSEG_WORKSPACE", str(ws))
    return ws
