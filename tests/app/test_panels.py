"""Auto-segment, compare, export and dataset panels driven through AppTest and their logic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.annotation import Annotation
from app.case import open_case
from app.dataset import export_decathlon, list_cases, next_case
from app.workspace import Workspace
from medseg import io
from medseg.config import DataConfig
from medseg.data.manifest import load_dataset
from medseg.export import read_mask
from tests.conftest import ROOT, SAMPLES, make_volume

APP = str(ROOT / "app" / "main.py")
DCMQI = "CT 3 slices + liver (dcmqi)"


def _open(sample: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.sidebar.selectbox(key="sample").select(sample).run()
    at.sidebar.button(key="open_sample").click().run()
    assert not at.exception
    return at


def _set_annotation(at: AppTest, names: dict[int, str], array_lps: np.ndarray) -> None:
    ann: Annotation = at.session_state["ann"]
    for v, n in names.items():
        ann.add_label(n, value=v)
    ann.replace(array_lps.astype(np.uint16), "test")


def test_autoseg_with_user_bundle_becomes_editable_labels(tmp_path: Path, app_workspace: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from tests.engine.fixtures import random_bundle

    bundle = random_bundle(tmp_path / "models" / "tiny.safetensors")
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", f"{tmp_path}:{SAMPLES}")
    at = _open("CT abdomen, NIfTI 3 mm")
    _set_annotation(at, {1: "liver"}, np.zeros(at.session_state["ann"].array.shape))
    at.radio(key="panel").set_value("Auto-segment").run()
    assert at.selectbox(key="bundle_pick").options[0].startswith("medseg ct_organs_2d (")
    at.selectbox(key="bundle_pick").select("Server path").run()
    at.text_input(key="bundle_path").input(str(bundle)).run()
    at.button(key="run_autoseg").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ann: Annotation = at.session_state["ann"]
    # the bundle's liver merged into the existing 'liver' (value 1); others were added
    assert ann.names()[1] == "liver" and {"spleen", "kidney_left"} <= set(ann.names().values())
    assert ann.array.any() and "Auto-segmentation with tiny.safetensors" in at.success[0].value
    key = at.session_state["case_source"].key
    state = json.loads((app_workspace / "cases" / key / "state.json").read_text())
    assert state["model"]["name"] == "tiny" and len(state["model"]["sha256_16"]) == 16
    log = (app_workspace / "audit.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["action"] == "auto-segment"
    # what the model predicted is what was saved, on the image grid
    from medseg.engine.infer import Segmenter

    image = io.read(SAMPLES / "totalsegmentator/example_ct_sm.nii.gz")
    pred = Segmenter(bundle, device="cpu").predict(image)
    saved = io.read(app_workspace / "cases" / key / "labels.nii.gz", label=True)
    for v, name in pred.labels.items():  # type: ignore[union-attr]
        target = ann.names_inv()[name]
        assert np.array_equal(np.asarray(pred.array) == v, saved.array == target)
    at.button(key="undo").click().run()
    assert not at.session_state["ann"].array.any()


def test_autoseg_with_the_shipped_default_model(app_workspace: Path) -> None:
    at = _open("CT abdomen, NIfTI 3 mm")
    at.radio(key="panel").set_value("Auto-segment").run()
    at.button(key="run_autoseg").click().run()  # the default model is preselected
    assert not at.exception and not at.error, [e.value for e in at.error]
    ann: Annotation = at.session_state["ann"]
    counts = {ann.label(v).name: n for v, n in ann.voxel_counts().items()}
    assert counts.get("liver", 0) > 1000 and counts.get("spleen", 0) > 100, counts


def test_autoseg_without_any_shipped_model_says_what_to_do(
        app_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg.models import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "SHIPPED_DIR", tmp_path / "no_weights")
    at = _open("CT abdomen, NIfTI 3 mm")
    at.radio(key="panel").set_value("Auto-segment").run()
    assert "No default model is installed" in at.info[0].value


def test_compare_with_shipped_reference_matches_by_name(app_workspace: Path) -> None:
    at = _open(DCMQI)
    case = at.session_state["case"]
    ref_lps = np.asarray(case.labels_lps.array)
    assert case.labels.labels == {1: "liver"}
    eroded = np.roll(ref_lps, 5, axis=0)  # 5 voxels (3.4 mm) to the patient's left
    eroded[:, :, 1] = 0  # and drop one of the three slices
    _set_annotation(at, {3: "liver"}, np.where(eroded > 0, 3, 0))
    at.radio(key="panel").set_value("Compare").run()
    assert any("1 of the reference's 1 labels matched (liver)" in c.value for c in at.caption)
    at.button(key="run_compare").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    rows = at.session_state["report"][1]["rows"]
    (row,) = rows
    a, b = eroded > 0, ref_lps > 0
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert row["name"] == "liver" and row["dice"] == pytest.approx(dice, rel=1e-6)
    # thin slab: most surface voxels are the (shared) top/bottom faces, so HD95 is small
    assert row["hd"] == pytest.approx(5 * case.image_lps.spacing[0], rel=1e-3)
    assert 0 <= row["hd95"] <= row["hd"]
    assert np.isfinite(row["assd"]) and 0 < row["nsd"] < 1
    labels = {b.label for b in at.get("download_button")}
    assert labels == {"Report JSON", "Report CSV", "Report HTML", "Report PDF"}
    report_dir = app_workspace / "cases" / at.session_state["case_source"].key / "report"
    data = json.loads((report_dir / "report.json").read_text())
    assert data["labels"][0]["dice"] == pytest.approx(row["dice"])
    assert (report_dir / "report.pdf").read_bytes()[:4] == b"%PDF"


def test_export_dicom_seg_and_nifti_from_dicom_source(app_workspace: Path) -> None:
    at = _open(DCMQI)
    case = at.session_state["case"]
    lab = np.zeros(case.image_lps.shape, np.uint16)
    lab[200:300, 220:320, 0:2] = 1
    lab[100:150, 100:140, 2] = 2
    _set_annotation(at, {1: "liver", 2: "tumour"}, lab)
    at.radio(key="panel").set_value("Export").run()
    assert at.selectbox(key="export_fmt").options == ["NIfTI", "DICOM-SEG", "RTSTRUCT",
                                                       "STL meshes", "OBJ meshes"]
    image = io.read(SAMPLES / "dcmqi/ct-3slice")
    expected = at.session_state["ann"].to_volume(case.image_lps, case.image)
    at.selectbox(key="export_fmt").select("DICOM-SEG").run()
    at.button(key="build_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    key, fmt, name, data = at.session_state["export"]
    assert data == (app_workspace / "cases" / key / "export" / name).read_bytes()
    assert fmt == "seg" and name == "CT_3_slices_liver_dcmqi_2labels_seg.dcm"
    out = app_workspace / "cases" / key / "export" / name
    seg = read_mask(out, image)
    assert seg.grid_differences(image) == []
    names = {n: v for v, n in (seg.labels or {}).items()}
    for v, n in {1: "liver", 2: "tumour"}.items():
        np.testing.assert_array_equal(seg.array == names[n], expected.array == v)
    at.selectbox(key="export_fmt").select("NIfTI").run()
    at.multiselect(key="export_labels").set_value(["tumour"]).run()
    at.button(key="build_export").click().run()
    _, fmt, name, _ = at.session_state["export"]
    assert name == "CT_3_slices_liver_dcmqi_tumour.nii.gz"
    nii = io.read(app_workspace / "cases" / key / "export" / name, label=True)
    assert nii.grid_differences(image) == []
    np.testing.assert_array_equal(nii.array > 0, expected.array == 2)


def test_non_dicom_source_explains_missing_dicom_exports() -> None:
    at = _open("MR brain tumour (T1 post-Gd)")
    lab = np.zeros(at.session_state["case"].image_lps.shape, np.uint16)
    lab[100:120, 100:120, 10] = 1
    _set_annotation(at, {1: "tumour"}, lab)
    at.radio(key="panel").set_value("Export").run()
    assert "DICOM-SEG" not in at.selectbox(key="export_fmt").options
    assert any("need a DICOM image series" in c.value for c in at.caption)


def test_dataset_status_next_and_decathlon_export(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    root.mkdir()
    kinds = ("oblique", "flipped", "anisotropic")
    for n, kind in enumerate(kinds):
        io.write(make_volume(kind, seed=n), root / f"case{n}.nii.gz")
    ws = Workspace(tmp_path / "ws")
    cases = list_cases(root, (tmp_path,), ws)
    assert [c.status for c in cases] == ["to do"] * 3
    # case0: liver then tumour; case1: tumour only (value 1) -> renumbered by name
    for c, names in zip(cases[:2], (["liver", "tumour"], ["tumour"]), strict=True):
        case = open_case(c.path.name, c.path, roots=(tmp_path,))
        ann = Annotation.empty(case.image_lps.shape)
        for i, name in enumerate(names):
            v = ann.add_label(name).value
            m = np.zeros(ann.array.shape, bool)
            m[2 + i:6 + i, 3:7, 1:3] = True
            ann.set_voxels(m, v, "paint")
        ws.save(c.source, case, ann, annotator="t", status="done" if c is cases[0] else None)
    cases = list_cases(root, (tmp_path,), ws)
    assert [c.status for c in cases] == ["done", "in progress", "to do"]
    assert next_case(cases, cases[0].source.key) is cases[1]
    assert next_case(cases, cases[1].source.key) is cases[2]
    ds_json = export_decathlon(cases, ws, tmp_path / "ds", "t", include_in_progress=True,
                               roots=(tmp_path,))
    data = json.loads(ds_json.read_text())
    assert data["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    ds = load_dataset(DataConfig(format="decathlon", root=ds_json))  # what `medseg train` reads
    assert len(ds.cases) == 2
    lab1 = io.read(tmp_path / "ds" / data["training"][1]["label"], label=True)
    img1 = io.read(cases[1].path)
    assert lab1.grid_differences(img1) == [] and set(np.unique(lab1.array)) == {0, 2}


def test_dataset_mode_in_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cases"
    root.mkdir()
    for n, kind in enumerate(("oblique", "flipped")):
        io.write(make_volume(kind, seed=n), root / f"case{n}.nii.gz")
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", str(root))
    at = AppTest.from_file(APP, default_timeout=120).run()
    table = at.dataframe[0].value
    assert list(table["status"]) == ["to do", "to do"]
    at.button(key="next_case").click().run()
    assert at.session_state["case"].name == "case0.nii.gz"
    at.selectbox(key="new_label_pick").set_value("lesion")
    at.button(key="add_label").click().run()
    at.button(key="brush_apply").click().run()
    at.radio(key="panel").set_value("Dataset").run()
    assert list(at.dataframe[0].value["status"]) == ["in progress", "to do"]
    at.button(key="mark_done").click().run()
    assert list(at.dataframe[0].value["status"]) == ["done", "to do"]
    at.button(key="next_case").click().run()
    assert at.session_state["case"].name == "case1.nii.gz" and not at.exception
