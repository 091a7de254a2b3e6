"""Auto-segment asks before running a model on an image of another modality (AppTest;
the confirmed run and how it is marked: test_e2e_models.py)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "app" / "main.py")


def test_ct_model_on_the_mr_sample_asks_first() -> None:
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
    assert not at.button(key="run_autoseg").disabled  # the run and its marks: test_e2e_models


def test_ct_model_on_the_ct_sample_runs_without_asking() -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    assert not any("made for" in w.value for w in at.warning)
    assert not at.button(key="run_autoseg").disabled


def test_replacing_my_edits_asks_first() -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.selectbox(key="new_label_pick").set_value("liver")
    at.button(key="add_label").click().run()
    at.button(key="brush_apply").click().run()
    n = int(at.session_state["ann"].array.astype(bool).sum())
    at.radio(key="panel").set_value("Auto-segment").run()
    assert not at.button(key="run_autoseg").disabled  # filling the background: no question
    at.checkbox(key="autoseg_replace").check().run()
    assert f"Replace your {n:,} voxels of liver with the model's?" in \
        " ".join(w.value for w in at.warning)
    assert at.button(key="run_autoseg").disabled
    at.checkbox(key="autoseg_confirm_replace").check().run()
    assert not at.button(key="run_autoseg").disabled and not at.exception
