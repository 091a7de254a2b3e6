"""The app's Auto-segment with an imported nnU-Net model (issue 19), through AppTest.

The nnU-Net fixture (made by nnunetv2, tests/fixtures/nnunet) is imported with ``import-model``,
picked by its server path inside the data roots, run on the sample CT (DICOM series); the
DICOM-SEG the Export panel builds names that model and validates with dciodvfy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from medseg.models.importer import import_model
from tests.conftest import ROOT, SAMPLES, require_tool
from tests.fixtures.nnunet.inputs import CT_FULLRES

APP = str(ROOT / "app" / "main.py")
MODELS = ROOT / "tests/fixtures/nnunet/models"
SAMPLE = "CT abdomen, DICOM (JPEG 2000)"


def test_autoseg_with_imported_nnunet_model_and_seg_export(tmp_path: Path, app_workspace: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    bundle = import_model(MODELS / CT_FULLRES, tmp_path / "models" / "organs.safetensors",
                          folds=["0"])
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", f"{tmp_path}:{SAMPLES}")
    at = AppTest.from_file(APP, default_timeout=600).run()
    at.sidebar.selectbox(key="sample").select(SAMPLE).run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    at.selectbox(key="bundle_pick").select("Server path").run()
    at.text_input(key="bundle_path").input(str(bundle)).run()
    at.button(key="run_autoseg").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ann = at.session_state["ann"]
    found = {ann.label(v).name for v, n in ann.voxel_counts().items() if n}
    assert found and found <= {"spleen", "kidney_right", "kidney_left", "liver"}
    at.radio(key="panel").set_value("Export").run()
    at.selectbox(key="export_fmt").select("DICOM-SEG").run()
    at.button(key="build_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    key, _fmt, name, _ = at.session_state["export"]
    out = app_workspace / "cases" / key / "export" / name
    seg = pydicom.dcmread(out)
    assert {s.SegmentAlgorithmName for s in seg.SegmentSequence} == {
        "nnU-Net Dataset501_CTOrgans"}
    version = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert version.AlgorithmVersion == "nnUNetTrainer__nnUNetPlans__3d_fullres folds 0"
    res = subprocess.run([require_tool("dciodvfy"), str(out)], capture_output=True, text=True)
    assert [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")] == []


def test_imported_models_are_offered_by_name_with_labels_and_provenance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundles in MEDSEG_MODELS_DIR (the operator's import-model outputs) appear in the
    Auto-segment picker with their name and version; picking one shows its labels, modality and
    provenance. Nothing runs until the button is pressed."""
    models = tmp_path / "models"
    bundle = import_model(ROOT / "tests/fixtures/monai_bundle/ct_organs_unet",
                          models / "ct_organs_unet.safetensors")
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(models))
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    picker = at.selectbox(key="bundle_pick")
    label = ("CT organs UNet (medseg test fixture) (0.1.0): spleen, kidney_right, kidney_left, "
             "liver")
    assert label in picker.options
    assert not any(str(tmp_path) in o for o in picker.options)  # never a server path
    picker.select(str(bundle)).run()
    caption = " ".join(c.value for c in at.caption)
    assert "4 labels: spleen, kidney_right, kidney_left, liver" in caption
    assert "modality CT" in caption and "from MONAI bundle" in caption
    assert "licence: Apache-2.0" in caption
    assert not at.exception and not at.error


def test_payload_checkpoint_refused_by_the_app(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The app loads only medseg bundles; a pickled checkpoint carrying a payload, given as a
    server path (or renamed .safetensors), is refused in the page and never unpickled."""
    from tests.models.test_nnunet import hostile_folder

    marker = tmp_path / "pwned"
    folder = hostile_folder(tmp_path / "src", marker)
    ckpt = folder / "fold_0/checkpoint_final.pth"
    disguised = tmp_path / "src" / "model.safetensors"
    disguised.write_bytes(ckpt.read_bytes())
    monkeypatch.setenv("MEDSEG_DATA_ROOTS", f"{tmp_path}:{SAMPLES}")
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.sidebar.selectbox(key="sample").select("CT abdomen, NIfTI 3 mm").run()
    at.sidebar.button(key="open_sample").click().run()
    at.radio(key="panel").set_value("Auto-segment").run()
    for path in (ckpt, folder, disguised):
        at.selectbox(key="bundle_pick").select("Server path").run()
        at.text_input(key="bundle_path").input(str(path)).run()
        at.button(key="run_autoseg").click().run()
        assert not at.exception and at.error, path
    assert not marker.exists()
