"""``medseg prompt``: written masks keep the input's exact grid; the coordinate convention."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

import medseg.engine.prompt as prompt_module
from medseg import io
from medseg.cli import main
from medseg.cli.prompt import parse_box, parse_points
from medseg.errors import PromptError
from medseg.models.promptable import LITE_STEM
from medseg.models.sam_modules import build_sam_vit
from tests.prompt_factory import TINY_VIT, ThresholdModel

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
CT = ROOT / "data_samples/totalsegmentator/example_ct_sm.nii.gz"   # RAS NIfTI
BRAIN = ROOT / "data_samples/pyradiomics/brain1_image.nrrd"      # LPS-space NRRD


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--model fake`` -> the deterministic threshold backend."""
    real = prompt_module.load_promptable

    def load(source: str = "lite") -> object:
        return ThresholdModel(image_size=128, level=100) if source == "fake" else real(source)

    monkeypatch.setattr(prompt_module, "load_promptable", load)


def _near_box(shape: tuple[int, int], box: tuple[int, int, int, int], pad: int = 2
              ) -> np.ndarray:
    near = np.zeros(shape, bool)
    near[max(0, box[0] - pad):box[2] + pad + 1, max(0, box[1] - pad):box[3] + pad + 1] = True
    return near


def test_nifti_ras_mask_has_the_input_grid_and_lands_in_the_box(
        tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mask.nii.gz"
    z, box = 15, (30, 40, 70, 60)
    rc = main(["prompt", str(CT), "--box", f"{z},{box[0]},{box[1]},{box[2]},{box[3]}",
               "--model", "fake", "--label-name", "body", "--modality", "ct",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    src, got = nib.load(CT), nib.load(out)
    assert got.shape == src.shape and np.allclose(got.affine, src.affine, atol=1e-5)
    arr = np.asarray(got.dataobj)  # file order = medseg voxel order for NIfTI
    assert np.nonzero(arr.any(axis=(0, 1)))[0].tolist() == [z]
    sl = arr[:, :, z] > 0
    assert sl.sum() > 200 and not (sl & ~_near_box(sl.shape, box)).any()
    assert io.read(out).labels == {1: "body"}


def test_nrrd_lps_mask_with_points_and_propagation(
        tmp_path: Path, fake_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mask.nrrd"
    box = (185, 90, 212, 115)
    rc = main(["prompt", str(BRAIN), "--box", f"14,{box[0]},{box[1]},{box[2]},{box[3]}",
               "--points", "14,200,100,+;14,20,20,-", "--out", str(out), "--model", "fake"])
    assert rc == 0, capsys.readouterr().err
    src, got = sitk.ReadImage(str(BRAIN)), sitk.ReadImage(str(out))
    assert got.GetSize() == src.GetSize()
    assert np.allclose(got.GetOrigin(), src.GetOrigin(), atol=1e-4)
    assert np.allclose(got.GetSpacing(), src.GetSpacing(), atol=1e-6)
    assert np.allclose(got.GetDirection(), src.GetDirection(), atol=1e-6)
    arr = sitk.GetArrayFromImage(got)  # [k, j, i]
    assert np.nonzero(arr.any(axis=(1, 2)))[0].tolist() == [14]
    sl = arr[14].T > 0  # -> [i, j] = [x, y]
    assert sl.any() and not (sl & ~_near_box(sl.shape, box)).any()
    out3d = tmp_path / "mask3d.nrrd"
    rc = main(["prompt", str(BRAIN), "--box", f"14,{box[0]},{box[1]},{box[2]},{box[3]}",
               "--propagate", "--model", "fake", "--out", str(out3d)])
    text = capsys.readouterr().out
    assert rc == 0 and "propagated: slices" in text and "stopped at" in text
    arr3d = sitk.GetArrayFromImage(sitk.ReadImage(str(out3d)))
    assert len(np.nonzero(arr3d.any(axis=(1, 2)))[0]) > 1 and arr3d[14].any()


def test_sam_checkpoint_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "sam_tiny.pth"
    torch.manual_seed(0)
    torch.save(build_sam_vit(TINY_VIT).state_dict(), ckpt)
    out = tmp_path / "m.nii.gz"
    rc = main(["prompt", str(CT), "--box", "10,30,40,70,60", "--model", str(ckpt),
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    got = io.read(out)
    assert got.grid_differences(io.read(CT)) == []
    assert not got.array[:, :, :10].any() and not got.array[:, :, 11:].any()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_model: None) -> None:
    out = str(tmp_path / "m.nii.gz")
    cases = [
        (["--box", "15,30,40,70"], "expected 5 comma-separated"),
        (["--box", "15,30,40,200,60"], "outside the slice"),
        (["--box", "15,70,40,30,60"], "empty"),
        (["--points", "15,30,400,+"], "outside the slice"),
        (["--points", "15,30,40,x"], "Z,X,Y,+"),
        ([], "at least one --box"),
    ]
    for args, message in cases:
        rc = main(["prompt", str(CT), *args, "--model", "fake", "--out", out])
        assert rc == 2 and message in capsys.readouterr().err, args
    if not LITE_STEM.with_suffix(".safetensors").exists():
        rc = main(["prompt", str(CT), "--box", "15,30,40,70,60", "--out", out])
        assert rc == 2 and "Lite promptable model not found" in capsys.readouterr().err
    assert not Path(out).exists()


def test_parsers_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompt", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "X is the index along the first remaining array axis" in text.replace("│ ", "")
    assert parse_box("3, 1,2,10,20") == (3, (1, 2, 10, 20))
    assert parse_points("3,1,2,+; 4,5,6,-") == [(3, (1, 2, True)), (4, (5, 6, False))]
    with pytest.raises(PromptError):
        parse_box("3,1.5,2,10,20")
