"""The app never shows a raw exception: 2D images and 1-voxel axes open, errors stay in the page."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "app" / "main.py")


def _nifti(path: Path, shape: tuple[int, ...]) -> bytes:
    arr = (np.arange(int(np.prod(shape))) % 200).astype(np.int16).reshape(shape)
    nib.save(nib.Nifti1Image(arr, np.diag([0.8, 0.9, 2.0, 1.0])), path)
    return path.read_bytes()


def _brush_and_check(at: AppTest, ws: Path) -> None:
    at.selectbox(key="new_label_pick").set_value("lesion")
    at.button(key="add_label").click().run()
    at.number_input(key="brush_row").set_value(0)
    at.number_input(key="brush_col").set_value(0)
    at.button(key="brush_apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (state,) = ws.glob("cases/*/state.json")
    assert json.loads(state.read_text())["voxels"]["1"] > 0


def test_a_2d_image_opens_and_can_be_annotated(tmp_path: Path, app_workspace: Path) -> None:
    data = _nifti(tmp_path / "xray.nii.gz", (20, 16))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Upload").run()
    at.sidebar.file_uploader(key="upload").set_value(("xray.nii.gz", data, "application/gzip"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["case"].image.shape == (20, 16, 1)
    assert [s.key for s in at.slider if (s.key or "").startswith("slider_")] == [
        "slider_coronal", "slider_sagittal"]
    assert any("Axial: the image has a single slice" in c.value for c in at.caption)
    _brush_and_check(at, app_workspace)


@pytest.mark.parametrize("shape", [(20, 1, 16), (1, 16, 12), (1, 1, 1)])
def test_one_voxel_axes_open_from_a_server_folder(shape: tuple[int, int, int], tmp_path: Path,
                                                  app_workspace: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    root.mkdir()
    _nifti(root / "thin.nii.gz", shape)
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(root))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source").set_value("Server folder").run()
    at.sidebar.selectbox(key="server_entry").select("thin.nii.gz").run()
    at.sidebar.button(key="open_server").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    lps = at.session_state["case"].image_lps.shape
    sliders = [s.key for s in at.slider if (s.key or "").startswith("slider_")]
    assert len(sliders) == sum(n > 1 for n in lps)
    for plane in ("coronal", "sagittal"):  # every plane can be the edit plane
        at.selectbox(key="edit_plane").select(plane).run()
        assert not at.exception
    _brush_and_check(at, app_workspace)


GUARDED = """
import streamlit as st
from pathlib import Path
from app.guard import guarded
from medseg.errors import InvalidImageError

ws = Path(st.session_state["ws"])
def bug():
    return {}["missing"]
def user_error():
    raise InvalidImageError("scan.nii: NaN voxels; fix the file.")
def rerun_once():
    if not st.session_state.get("reran"):
        st.session_state["reran"] = True
        st.rerun()
    st.write("after rerun")
guarded(ws, "the test panel", bug)
guarded(ws, "the upload", user_error, target=st.sidebar)
guarded(ws, "rerun", rerun_once)
"""


def test_guard_logs_unexpected_errors_and_shows_no_traceback(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    at = AppTest.from_string(GUARDED, default_timeout=60)
    at.session_state["ws"] = str(tmp_path)
    at.run()
    assert not at.exception
    (msg,) = [e.value for e in at.main.error]
    assert msg.startswith("Something went wrong in the test panel (reference ")
    assert "KeyError" not in msg and "missing" not in msg and "Traceback" not in msg
    assert at.sidebar.error[0].value == "scan.nii: NaN voxels; fix the file."
    assert at.session_state["reran"] and at.markdown[0].value == "after rerun"
    lines = (tmp_path / "app-errors.log").read_text().splitlines()
    assert len(lines) == 2  # the script ran twice (st.rerun), failing each time
    entry = json.loads(lines[-1])
    assert entry["ref"] in msg and entry["type"] == "KeyError"
    assert entry["where"] == "the test panel" and "return {}[\"missing\"]" in entry["traceback"]


def test_a_malformed_workspace_state_is_one_message(app_workspace: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.button(key="open_sample").click().run()
    at.selectbox(key="new_label_pick").set_value("liver")
    at.button(key="add_label").click().run()
    key = at.session_state["case_source"].key
    state_path = app_workspace / "cases" / key / "state.json"
    state = json.loads(state_path.read_text())
    state["labels"] = [{"value": 1}]  # no name, no colour
    state_path.write_text(json.dumps(state))
    fresh = AppTest.from_file(APP, default_timeout=120)
    fresh.query_params["case"] = key
    fresh.run()
    assert not fresh.exception and "case" not in fresh.session_state
    (msg,) = [e.value for e in fresh.error]
    assert msg.startswith(f"Could not restore case {key}: {state_path}: malformed label table")


def test_bad_upload_limit_setting_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_MAX_UPLOAD_MB", "lots")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.error[0].value.startswith("MEDSEG_MAX_UPLOAD_MB='lots': must be a whole number")
