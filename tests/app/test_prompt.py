"""Prompt panel in the page (AppTest): one store of masks and one Undo, the case's one modality
decision, provenance into the workspace, the audit log and a DICOM-SEG.

The flow test uses a deterministic backend (mask = bright voxels in the box); the modality and
DICOM-SEG tests run the shipped lite model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from app import prompt_panel, render
from app.prompt_state import PromptState
from medseg.models.promptable import LITE_STEM
from tests.conftest import ROOT, require_tool
from tests.io.export_fixtures import dciodvfy
from tests.prompt_factory import ThresholdModel

APP = str(ROOT / "app" / "main.py")
NIFTI_CT = "CT abdomen, NIfTI 3 mm"
DICOM_CT = "CT 3 slices + liver (dcmqi)"
needs_lite = pytest.mark.skipif(not LITE_STEM.with_suffix(".safetensors").is_file(),
                                reason="the shipped lite weights are not in this checkout")


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_panel, "model_source", lambda: "fake")
    monkeypatch.setattr(prompt_panel, "load_model", lambda source: ThresholdModel(level=200.0))


def _open_with_label(sample: str, label: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.selectbox(key="sample").select(sample).run()
    at.sidebar.button(key="open_sample").click().run()
    at.selectbox(key="new_label_pick").set_value(label)
    at.button(key="add_label").click().run()
    at.radio(key="panel").set_value("Prompt").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def _box(at: AppTest, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    for key, v in (("box_r0", rows[0]), ("box_c0", cols[0]), ("box_r1", rows[1]),
                   ("box_c1", cols[1])):
        at.number_input(key=key).set_value(v)
    at.button(key="box_apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def _audit(workspace: Path) -> list[dict]:
    return [json.loads(x) for x in (workspace / "audit.jsonl").read_text().splitlines()]


def test_pixel_to_session_xy_round_trip() -> None:
    shape = (7, 5, 4)
    for plane in render.PLANES:
        axis = render.plane_axis(plane)
        rows, cols = render.extract_shape(shape, plane)
        for r, c in [(0, 0), (rows - 1, cols - 1), (1, 2)]:
            vox = render.display_to_voxel_arrays(shape, plane, 2, np.asarray(r), np.asarray(c))
            x, y = prompt_panel.to_xy(shape, plane, 2, r, c)
            assert (x, y) == tuple(int(v) for a, v in enumerate(vox) if a != axis)


def test_proposal_lives_in_the_annotation_with_the_pages_one_undo(
        fake_model: None, app_workspace: Path) -> None:
    """Box, propagate, accept, then Undo: every step is an edit of the one annotation (no
    second undo button); accepting writes the label as semi-automatic with the model."""
    at = _open_with_label(NIFTI_CT, "lesion")
    k = int(at.session_state["cursor"][2])
    _box(at, (10, 90), (10, 110))
    ann = at.session_state["ann"]
    assert isinstance(at.session_state["prompt"], PromptState)
    assert ann.proposal_mask(1) is not None and not ann.array.any()  # proposed, not written
    assert [p.action for p in ann.undo_stack][-1] == f"prompt lesion slice {k}"
    assert any("mask in" in m.value for m in at.markdown)
    at.button(key="propagate").click().run()
    res = at.session_state["prompt"].results[1]
    assert np.isfinite(res.confidence).sum() > 1 and res.keys == [k]
    assert np.array_equal(ann.proposal_mask(1), res.mask.array > 0) and not ann.array.any()
    keys = [b.key for b in at.button]
    assert "undo" in keys and "undo_prompt" not in keys  # one undo on the page
    # slices to check: medseg.review's ranking of the proposal, never the prompted slice
    (check,) = [m.value for m in at.markdown if m.value.startswith("**Slices to check**")]
    listed = [int(x) for x in check.split(":")[1].split(",")]
    assert 0 < len(listed) <= 5 and k not in listed
    assert {f"goto_{x}" for x in listed} <= set(keys)
    at.button(key="accept_prompt").click().run()
    ann = at.session_state["ann"]
    assert (ann.array == 1).sum() == (res.mask.array > 0).sum()
    assert ann.proposal_mask(1) is None
    assert ann.provenance(1).as_dict() == {"kind": "semiautomatic", "model": "threshold",
                                           "version": "fake"}
    log = _audit(app_workspace)
    prompt = next(e for e in log if e["action"] == "prompt")
    assert prompt["model"] == {"name": "threshold", "version": "fake"} and prompt["box"]
    assert [e["action"] for e in log][-2:] == ["propagate", "accept prompt"]
    assert log[-1]["provenance"]["kind"] == "semiautomatic"
    state = json.loads((app_workspace / "cases" / at.session_state["case_source"].key
                        / "state.json").read_text())
    assert state["provenance"]["1"] == {"label": "lesion", "kind": "semiautomatic",
                                        "model": "threshold", "version": "fake"}
    at.button(key="undo").click().run()  # reverts the accept: proposal back, labels empty
    ann = at.session_state["ann"]
    assert not ann.array.any() and ann.proposal_mask(1) is not None
    assert ann.provenance(1).kind == "manual"
    at.button(key="undo").click().run()  # reverts the propagation
    assert at.session_state["ann"].proposal_mask(1).any(axis=(0, 1)).sum() == 1


@needs_lite
def test_a_nifti_ct_without_modality_is_prompted_with_the_ct_window(app_workspace: Path) -> None:
    """The NIfTI CT names no modality: the one decision (HU air in the data) makes it CT, so
    the prompt model sees it through the recipe's CT window, as the accuracy benches did; the
    selector overrides it for the viewer and the prompt alike."""
    at = _open_with_label(NIFTI_CT, "liver")
    case = at.session_state["case"]
    assert case.image.modality is None
    _box(at, (40, 80), (30, 70))
    st_ = at.session_state["prompt"]
    assert st_.runtime.modality.describe().startswith("CT (from the data")
    assert st_.runtime.window == (-160.0, 240.0) == st_.runtime.model.recipe.ct_window
    k = int(at.session_state["cursor"][2])
    want, _ = st_.runtime.model.recipe.model_input(case.image_lps.array[:, :, k].T,
                                                   (-160.0, 240.0))
    assert np.array_equal(st_.runtime.model_input(k).numpy(), want.numpy())
    assert "CT soft tissue" in at.selectbox(key="preset").options
    at.selectbox(key="modality_choice").select("MR").run()
    assert "CT soft tissue" not in at.selectbox(key="preset").options
    _box(at, (40, 80), (30, 70))
    st_ = at.session_state["prompt"]
    assert st_.runtime.modality.describe() == "MR (chosen)"
    assert st_.runtime.window == pytest.approx(tuple(np.percentile(case.image.array,
                                                                   [0.5, 99.5])))


@needs_lite
def test_a_prompted_dicom_seg_says_semiautomatic_with_the_lite_model(
        app_workspace: Path) -> None:
    """Prompt the liver of a DICOM CT with the shipped lite model, accept, export a DICOM-SEG:
    its segment is SEMIAUTOMATIC and identifies the lite model's name and version, and
    dciodvfy finds no error."""
    tool = require_tool("dciodvfy")
    at = _open_with_label(DICOM_CT, "liver")
    case = at.session_state["case"]
    k = int(at.session_state["cursor"][2])
    names = {n: v for v, n in case.labels_lps.labels.items()}
    liver = case.labels_lps.array == names["liver"]
    view = render.view_plane(liver, "axial", k)
    rows, cols = np.nonzero(view)
    _box(at, (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max())))
    at.button(key="accept_prompt").click().run()
    ann = at.session_state["ann"]
    mask = ann.array == 1
    dice = 2 * (mask & liver).sum() / (mask.sum() + liver.sum())
    assert mask.any() and dice > 0.2  # one slice of three: a real segmentation, not noise
    model = at.session_state["prompt"].runtime.model
    at.radio(key="panel").set_value("Export").run()
    at.selectbox(key="export_fmt").select("DICOM-SEG").run()
    at.button(key="build_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    key, _, name, _ = at.session_state["export"]
    out = app_workspace / "cases" / key / "export" / name
    seg = pydicom.dcmread(out)
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "liver" and segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    ident = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (ident.AlgorithmName, ident.AlgorithmVersion) == (model.name, model.version) == \
        ("medseg-lite-sam", "1")
    errors, _ = dciodvfy(out, tool)
    assert errors == []
    export = [e for e in _audit(app_workspace) if e["action"] == "export"][-1]
    assert export["provenance"]["liver"]["kind"] == "semiautomatic"


def test_accepting_over_another_labels_voxels_asks_first(
        fake_model: None, app_workspace: Path) -> None:
    at = _open_with_label(NIFTI_CT, "spleen")
    at.slider(key="radius").set_value(30.0)
    for row, col in ((40, 40), (60, 60), (80, 80)):  # spleen over much of the box below
        at.number_input(key="brush_row").set_value(row)
        at.number_input(key="brush_col").set_value(col)
        at.button(key="brush_apply").click().run()
    at.selectbox(key="new_label_pick").set_value("lesion")
    at.button(key="add_label").click().run()
    at.radio(key="active_label").set_value("lesion").run()
    _box(at, (10, 90), (10, 110))
    ann = at.session_state["ann"]
    over = prompt_panel.overwritten(ann, 2)
    assert over.get("spleen", 0) > 0
    spleen = int((ann.array == 1).sum())
    at.button(key="accept_prompt").click().run()
    assert any(f"{over['spleen']} voxels of spleen" in w.value for w in at.warning)
    assert (at.session_state["ann"].array == 2).sum() == 0  # nothing written yet
    at.button(key="accept_cancel").click().run()
    assert not at.warning and (at.session_state["ann"].array == 1).sum() == spleen
    at.button(key="accept_prompt").click().run()
    at.button(key="accept_anyway").click().run()
    ann = at.session_state["ann"]
    assert (ann.array == 1).sum() == spleen - over["spleen"] and (ann.array == 2).any()
    assert _audit(app_workspace)[-1]["overwritten"] == over
