"""Every app test gets its own workspace folder (MEDSEG_WORKSPACE) so nothing lands in the repo."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def app_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = tmp_path / "workspace"
    monkeypatch.setenv("MEDSEG_WORKSPACE", str(ws))
    return ws
