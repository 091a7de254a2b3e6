"""``medseg import-model``, ``medseg models`` and foreign models through ``medseg predict``.

Real fixtures (nnU-Net folders made by nnunetv2, a MONAI bundle), real CLI entry point, real
files; the payload checkpoint would create a file if it were ever unpickled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io
from medseg.cli import main
from medseg.engine.infer import Segmenter
from medseg.models.bundle import read_bundle_meta
from tests.conftest import require_tool
from tests.fixtures.nnunet.inputs import CT_2D, CT_FULLRES, make
from tests.models.test_nnunet import MODELS, hostile_folder

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "tests/fixtures/monai_bundle/ct_organs_unet"
DICOM_CT = ROOT / "data_samples/totalsegmentator/example_ct_dicom"
FIX_REF = ROOT / "tests/fixtures/nnunet/reference"


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make("ct_sm", tmp_path_factory.mktemp("in"))


def test_import_nnunet_writes_a_bundle_with_provenance(tmp_path: Path, ct: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "organs.safetensors"
    assert main(["import-model", str(MODELS / CT_FULLRES), "--out", str(out), "--fold", "0"]) == 0
    said = capsys.readouterr().out
    assert "nnU-Net Dataset501_CTOrgans" in said and "spleen" in said
    meta = read_bundle_meta(out)
    assert meta.format_version == 2 and meta.recipe and meta.recipe["kind"] == "nnunet"
    prov = meta.provenance
    assert prov["source_format"] == "nnU-Net v2 model folder"
    assert (prov["dataset"], prov["trainer"], prov["configuration"], prov["folds"]) == (
        "Dataset501_CTOrgans", "nnUNetTrainer", "3d_fullres", ["0"])
    assert len(prov["files"]["fold_0/checkpoint_final.pth"]) == 64 and prov["licence"]
    image = io.read(ct)
    direct = Segmenter(MODELS / CT_FULLRES, device="cpu", folds=["0"]).predict(image, tta=False)
    imported = Segmenter(out, device="cpu").predict(image, tta=False)
    np.testing.assert_array_equal(imported.array, direct.array)
    assert imported.labels == direct.labels


def test_import_monai_bundle_and_list_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    assert main(["import-model", str(BUNDLE), "--out", str(models / "organs.safetensors")]) == 0
    monkeypatch.setenv("MEDSEG_MODELS_DIR", str(models))
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    mine = next(e for e in listed if e["origin"] == "imported")
    assert mine["name"] == "CT organs UNet (medseg test fixture)" and mine["kind"] == "monai_bundle"
    assert mine["labels"] == {"1": "spleen", "2": "kidney_right", "3": "kidney_left",
                              "4": "liver"}
    assert mine["modality"] == "CT" and mine["spacing"] == [2.0, 2.0, 2.0]
    assert mine["provenance"]["licence"] == "Apache-2.0"
    assert any(e["origin"] == "shipped" for e in listed)
    assert main(["models"]) == 0
    assert "licence Apache-2.0" in capsys.readouterr().out


def test_payload_refused_by_predict_and_import_model(tmp_path: Path, ct: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    folder = hostile_folder(tmp_path / "src", marker)
    for argv in (["predict", str(folder), str(ct), "--out", str(tmp_path / "out")],
                 ["import-model", str(folder), "--out", str(tmp_path / "x.safetensors")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "refused" in err
    assert not marker.exists()
    assert not (tmp_path / "x.safetensors").exists() and not list(tmp_path.glob("out/*"))


def test_predict_folder_no_tta_switch(tmp_path: Path, ct: Path) -> None:
    """``medseg predict FOLDER`` mirrors by default (nnU-Net's default, tested on Segmenter);
    ``--no-tta`` is nnU-Net's ``--disable_tta``: nnUNetPredictor's labels without mirroring."""
    out = tmp_path / "out"
    assert main(["predict", str(MODELS / CT_2D), str(ct), "--out", str(out), "--device", "cpu",
                 "--no-tta"]) == 0
    ours = np.asarray(io.read(out / "ct_sm_0000.nii.gz", label=True).array)
    theirs = np.asarray(io.read(FIX_REF / "ct_sm_2d_notta.nii.gz", label=True).array)
    assert float((ours == theirs).mean()) >= 0.999 and set(np.unique(theirs)) == {0, 1, 2, 4}


def test_dicom_seg_names_the_model(tmp_path: Path) -> None:
    """Auto-segmentation of a DICOM series with an imported model: the SEG names the model and
    its version as the algorithm and validates (dciodvfy: no errors)."""
    import pydicom

    out = tmp_path / "out"
    assert main(["predict", str(BUNDLE), str(DICOM_CT), "--out", str(out), "--dicom-seg",
                 "--device", "cpu"]) == 0
    seg = pydicom.dcmread(out / "example_ct_dicom.seg.dcm")
    name = "CT organs UNet (medseg test fixture)"
    assert {s.SegmentAlgorithmName for s in seg.SegmentSequence} == {name}
    ident = [s.SegmentationAlgorithmIdentificationSequence[0] for s in seg.SegmentSequence]
    assert {(i.AlgorithmName, i.AlgorithmVersion) for i in ident} == {(name, "0.1.0")}
    dciodvfy = require_tool("dciodvfy")
    res = subprocess.run([dciodvfy, str(out / "example_ct_dicom.seg.dcm")], capture_output=True,
                         text=True)
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []


def test_runtime_never_imports_the_reference_tools(ct: Path) -> None:
    code = ("import sys; from medseg import io; from medseg.engine.infer import Segmenter; "
            f"Segmenter({str(MODELS / CT_FULLRES)!r}, device='cpu', folds=['0'])"
            f".predict(io.read({str(ct)!r}), tta=False); "
            f"Segmenter({str(BUNDLE)!r}, device='cpu').predict(io.read({str(ct)!r})); "
            "bad = [m for m in ('nnunetv2', 'dynamic_network_architectures', 'timm', "
            "'torchvision', 'batchgenerators', 'acvl_utils') if m in sys.modules]; print(bad)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-500:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
