"""Auto-segment asks before running a model on an image of another modality, and marks the
result (AppTest)."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "app" / "main.py")


def test_ct_model_on_the_mr_sample_asks_first_and_marks_the_result(app_workspace: Path
                                                                   ) -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.selectbox(key="sample").select("MR abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    # the warning is on the page before anything runs, and the run waits for a confirmation
    warning = " ".join(w.value for w in at.warning)
    assert "was made for CT abdomen images" in warning and "not CT" in warning
    assert at.button(key="run_autoseg").disabled
    assert not at.session_state["ann"].array.any()
    at.checkbox(key="autoseg_confirm_modality").check().run()
    at.button(key="run_autoseg").click().run()
    assert not at.exception and not at.error
    assert at.session_state["ann"].array.any()
    assert "another modality" in at.success[0].value
    entries = [json.loads(line) for line in
               (app_workspace / "audit.jsonl").read_text().splitlines()]
    auto = [e for e in entries if e["action"] == "auto-segment"]
    assert len(auto) == 1 and "made for CT abdomen" in auto[0]["modality_warning"]
    assert auto[0]["model"]["modality_warning"] == auto[0]["modality_warning"]


def test_ct_model_on_the_ct_sample_runs_without_asking() -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    assert not any("made for" in w.value for w in at.warning)
    assert not at.button(key="run_autoseg").disabled
