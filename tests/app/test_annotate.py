"""Annotation state: labels, brush/eraser, undo/redo, autosave, audit and restore after refresh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.annotation import Annotation, AnnotationError
from app.case import Case
from app.workspace import Workspace, sample_source
from medseg import io
from tests.conftest import ROOT, SAMPLES, make_volume

APP = str(ROOT / "app" / "main.py")
DCMQI = "CT 3 slices + liver (dcmqi)"


def _open(sample: str = DCMQI) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.selectbox(key="sample").select(sample).run()
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception
    return at


def _add_label(at: AppTest, name: str) -> None:
    at.selectbox(key="new_label_pick").set_value(name)
    at.button(key="add_label").click().run()
    assert not at.exception and not at.error


def test_brush_is_round_in_mm_and_eraser_keeps_other_labels() -> None:
    vol = make_volume("anisotropic").reorient("LPS")  # 0.5 x 0.7 x 5 mm
    ann = Annotation.empty(vol.shape)
    liver, spleen = ann.add_label("liver").value, ann.add_label("spleen").value
    assert ann.brush("coronal", 3, 4, 10, 2.5, liver, False, vol.spacing)
    painted = np.argwhere(ann.array == liver)
    assert set(painted[:, 1]) == {3}  # coronal slice j = 3 only
    # 2.5 mm radius: 5 voxels along i (0.5 mm), 0 along k (5 mm): one row of 11 voxels
    assert len(painted) == 11 and len(set(painted[:, 2])) == 1
    assert ann.brush("coronal", 3, 4, 12, 1.0, spleen, False, vol.spacing)
    n_spleen = int((ann.array == spleen).sum())
    assert ann.brush("coronal", 3, 4, 10, 30.0, liver, True, vol.spacing)  # erase liver only
    assert (ann.array == liver).sum() == 0 and (ann.array == spleen).sum() == n_spleen
    assert ann.undo() and (ann.array == liver).sum() == 11 - n_spleen
    assert ann.redo() and (ann.array == liver).sum() == 0
    with pytest.raises(AnnotationError, match="outside"):
        ann.brush("axial", 0, 99, 0, 1.0, liver, False, vol.spacing)


def test_label_table_edits_and_delete_is_undoable() -> None:
    ann = Annotation.empty((8, 8, 4))
    a = ann.add_label("liver")
    with pytest.raises(AnnotationError, match="exists"):
        ann.add_label("liver")
    b = ann.add_label("tumour")
    ann.rename(b.value, "lesion")
    with pytest.raises(AnnotationError, match="exists"):
        ann.rename(b.value, "liver")
    mask = np.zeros((8, 8, 4), bool)
    mask[2:5, 2:5, 1] = True
    ann.set_voxels(mask, a.value, "paint")
    ann.delete_label(a.value)
    assert ann.names() == {b.value: "lesion"} and not ann.array.any()
    ann.undo()
    assert (ann.array == a.value).sum() == 9


def test_saved_labels_keep_the_exact_image_grid(tmp_path: Path) -> None:
    image = make_volume("oblique")
    case = Case("oblique", image)
    ann = Annotation.empty(case.image_lps.shape)
    v = ann.add_label("liver").value
    ann.brush("axial", 2, 3, 4, 1.5, v, False, case.image_lps.spacing)
    ws = Workspace(tmp_path)
    src = sample_source("oblique", None)
    ws.save(src, case, ann, annotator="dr x")
    saved = io.read(ws.labels_path(src.key), label=True)
    assert saved.grid_differences(image) == []
    # the same voxels, in world space: the LPS display copy maps back exactly
    np.testing.assert_array_equal(saved.array, ann.to_volume(case.image_lps, image).array)
    lps = np.argwhere(ann.array == v)
    world = case.image_lps.index_to_world(lps)
    ijk = np.rint(image.world_to_index(world)).astype(int)
    assert (saved.array[tuple(ijk.T)] == v).all() and (saved.array == v).sum() == len(lps)
    restored, revision = ws.restore(src.key, case)
    assert restored is not None and restored.names() == {v: "liver"} and revision == 1
    np.testing.assert_array_equal(restored.array, ann.array)


def test_autosave_audit_and_refresh_restore(app_workspace: Path) -> None:
    at = _open()
    at.sidebar.text_input(key="annotator").input("Dr Ada").run()
    _add_label(at, "liver")
    at.number_input(key="brush_row").set_value(200)
    at.number_input(key="brush_col").set_value(260)
    at.button(key="brush_apply").click().run()
    at.slider(key="radius").set_value(10.0)
    at.number_input(key="brush_row").set_value(300)
    at.button(key="brush_apply").click().run()
    assert not at.exception and not at.error
    key = at.query_params["case"]
    key = key[0] if isinstance(key, list) else key
    state = json.loads((app_workspace / "cases" / key / "state.json").read_text())
    assert state["labels"][0]["name"] == "liver" and state["undo_depth"] == 3  # add + 2 strokes
    assert state["annotator"] == "Dr Ada" and state["source"]["kind"] == "sample"
    n = state["voxels"]["1"]
    assert n > 0
    saved = io.read(app_workspace / "cases" / key / "labels.nii.gz", label=True)
    image = io.read(SAMPLES / "dcmqi/ct-3slice")
    assert saved.grid_differences(image) == [] and int((saved.array == 1).sum()) == n
    log = [json.loads(x) for x in (app_workspace / "audit.jsonl").read_text().splitlines()]
    actions = [e["action"] for e in log]
    assert actions[-3:] == ["add label", "brush", "brush"]
    assert log[-1]["annotator"] == "Dr Ada" and log[-1]["radius_mm"] == 10.0
    # undo is saved too
    at.button(key="undo").click().run()
    state = json.loads((app_workspace / "cases" / key / "state.json").read_text())
    assert state["undo_depth"] == 2 and state["redo_depth"] == 1
    n_after_undo = state["voxels"]["1"]
    assert 0 < n_after_undo < n
    # the view the annotator was on: slice 2, the sagittal edit plane, the eraser, CT bone
    at.slider(key="slider_axial").set_value(2).run()
    at.selectbox(key="edit_plane").select("sagittal").run()
    at.radio(key="tool").set_value("Eraser").run()
    at.selectbox(key="preset").select("CT bone").run()
    assert not at.exception
    # a browser refresh = a new session with the same URL
    fresh = AppTest.from_file(APP, default_timeout=120)
    for k, v in at.query_params.items():
        fresh.query_params[k] = v[0] if isinstance(v, list) else v
    fresh.run()
    assert not fresh.exception and not fresh.error
    ann = fresh.session_state["ann"]
    assert ann.names() == {1: "liver"} and int((ann.array == 1).sum()) == n_after_undo
    assert fresh.session_state["cursor"][2] == 2
    assert fresh.selectbox(key="edit_plane").value == "sagittal"
    assert fresh.radio(key="tool").value == "Eraser"
    assert fresh.selectbox(key="preset").value == "CT bone"
    fresh.radio(key="tool").set_value("Brush").run()
    fresh.selectbox(key="edit_plane").select("axial").run()
    # the undo history survives the refresh too: redo brings the second stroke back
    assert len(ann.undo_stack) == 2 and len(ann.redo_stack) == 1
    fresh.button(key="redo").click().run()
    assert int((fresh.session_state["ann"].array == 1).sum()) == n
    assert fresh.sidebar.text_input(key="annotator").value == "Dr Ada"
    # an app restart loses the in-memory history: the page says so, the labels are back
    from app import session

    session._histories.clear()
    restarted = AppTest.from_file(APP, default_timeout=120)
    restarted.query_params["case"] = key
    restarted.run()
    assert not restarted.exception
    assert any("Not kept: the undo history (3 steps) and any unaccepted proposal" in i.value
               for i in restarted.info)
    assert int((restarted.session_state["ann"].array == 1).sum()) == n


def test_undo_of_a_label_deletion_brings_back_name_colour_provenance_and_voxels() -> None:
    from medseg.provenance import Provenance

    ann = Annotation.empty((10, 10, 4))
    liver = ann.add_label("liver", action="add label liver")
    spleen = ann.add_label("spleen", color=(1, 2, 3), action="add label spleen")
    mask = np.zeros(ann.array.shape, bool)
    mask[2:6, 2:6, 1:3] = True
    ann.set_voxels(mask, spleen.value, "paint", provenance=Provenance("automatic", "m", "1"))
    ann.edit_label(liver.value, name="hepar", color=(9, 9, 9), action="edit label liver")
    before = (ann.array.copy(), ann.names(), ann.colors(), dict(ann.meta.provenance))
    assert ann.delete_label(spleen.value)
    assert ann.names() == {liver.value: "hepar"} and not ann.array.any()
    assert len(ann.undo_stack) == 5  # add, add, paint, edit, delete: one step each
    assert ann.undo() == "delete label spleen"
    np.testing.assert_array_equal(ann.array, before[0])
    assert (ann.names(), ann.colors(), dict(ann.meta.provenance)) == before[1:]
    assert ann.voxel_counts()[spleen.value] == 32
    assert ann.redo() and spleen.value not in ann.names() and not ann.array.any()
    ann.undo()
    assert ann.undo() == "edit label liver"
    assert ann.names()[liver.value] == "liver" and ann.colors()[liver.value] != (9, 9, 9)
    ann.undo()
    ann.undo()
    assert ann.names() == {liver.value: "liver"}  # Undo of "add label spleen"
    ann.undo()
    assert ann.names() == {} and ann.undo() is None


def test_labels_added_with_an_auto_segmentation_leave_with_its_undo() -> None:
    from app.autoseg_panel import merge_prediction

    ann = Annotation.empty((10, 10, 4))
    ann.add_label("liver", action="add label liver")
    pred = np.zeros(ann.array.shape, np.uint8)
    pred[1:4, 1:4, 1] = 1
    pred[6:9, 6:9, 2] = 2
    new = merge_prediction(ann, pred, {1: "liver", 2: "spleen"}, replace=False)
    assert ann.replace(new, "auto-segment")
    assert ann.voxel_counts() == {1: 9, 2: 9}
    assert ann.undo() == "auto-segment"
    assert ann.names() == {1: "liver"} and not ann.array.any()  # no 0-voxel "spleen" left
    assert ann.redo() and ann.names() == {1: "liver", 2: "spleen"}


def test_a_stroke_paints_a_continuous_band_between_far_pointer_events() -> None:
    vol = make_volume("anisotropic").reorient("LPS")  # 0.5 x 0.7 x 5 mm
    ann = Annotation.empty((60, 60, 4))
    value = ann.add_label("liver").value
    spacing = (1.0, 1.0, 2.0)
    # two pointer events 40 pixels apart: the band joins them with no gap
    assert ann.stroke("axial", 2, [(10.0, 5.0), (10.0, 45.0)], 2.0, value, False, spacing)
    band = value == ann.array[:, :, 2].T  # axial: rows = j, cols = i
    assert band[10, 5:46].all() and band[8:13, 25].all() and not band[7, 25] | band[13, 25]
    assert len(ann.undo_stack) == 1  # the whole drag is one edit
    # erasing along a diagonal cuts the band where it crosses, nowhere else
    assert ann.stroke("axial", 2, [(0.0, 20.0), (20.0, 30.0)], 1.0, value, True, spacing)
    band = value == ann.array[:, :, 2].T
    assert not band[10, 25] and band[10, 5] and band[10, 45]
    # anisotropic coronal slice: the band is round in mm (5 mm rows, 0.5 mm columns)
    ann2 = Annotation.empty(vol.shape)
    v2 = ann2.add_label("x").value
    ann2.stroke("coronal", 3, [(2.0, 4.0), (2.0, 10.0)], 2.5, v2, False, vol.spacing)
    painted = np.argwhere(ann2.array == v2)
    assert len(set(painted[:, 2])) == 1 and len(painted) == 16  # cols -1..15, clipped at 0


def test_fill_between_slices_in_the_page_is_one_undoable_edit(app_workspace: Path) -> None:
    at = _open("CT abdomen, NIfTI 3 mm")
    _add_label(at, "liver")
    for k in (10, 16):  # paint the same disc on two axial slices, six apart
        at.slider(key="slider_axial").set_value(k).run()
        at.number_input(key="brush_row").set_value(50)
        at.number_input(key="brush_col").set_value(40)
        at.button(key="brush_apply").click().run()
    ann = at.session_state["ann"]
    painted = int((ann.array == 1).sum())
    assert [k for k in range(ann.array.shape[2]) if (ann.array[:, :, k] == 1).any()] == [10, 16]
    at.button(key="fill_between").click().run()
    assert not at.exception and not at.warning
    ann = at.session_state["ann"]
    filled = [k for k in range(ann.array.shape[2]) if (ann.array[:, :, k] == 1).any()]
    assert filled == list(range(10, 17)) and int((ann.array == 1).sum()) > 3 * painted
    assert ann.undo_stack[-1].action == "fill liver between axial slices"
    at.button(key="undo").click().run()
    assert int((at.session_state["ann"].array == 1).sum()) == painted
    log = [json.loads(x) for x in (app_workspace / "audit.jsonl").read_text().splitlines()]
    fill = next(e for e in log if e["action"] == "fill between slices")
    assert fill["slices"] == [10, 16] and fill["voxels_changed"] > 2 * painted


def test_a_url_with_an_impossible_manual_window_opens_and_says_it_was_not_kept() -> None:
    at = _open()
    _add_label(at, "liver")
    at.button(key="brush_apply").click().run()  # a saved case, so a refresh reopens it
    for ww in ("nan", "-5", "abc"):
        fresh = AppTest.from_file(APP, default_timeout=120)
        for k, v in at.query_params.items():
            fresh.query_params[k] = v[0] if isinstance(v, list) else v
        fresh.query_params.update({"win": "Manual", "ww": ww, "wl": "40"})
        fresh.run()
        assert not fresh.exception, ww
        assert any("manual window width/level" in i.value for i in fresh.info), ww
