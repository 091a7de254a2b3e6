"""`medseg evaluate` as a user runs it: one case, a cohort, and the errors they meet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import main
from medseg.io import write
from medseg.volume import Volume
from tests.report.conftest import synthetic_pair


@pytest.fixture
def synthetic_files(tmp_path: Path) -> tuple[Path, Path]:
    """A synthetic prediction (NIfTI) and reference (NRRD) on one oblique, anisotropic grid."""
    pred, ref = synthetic_pair()
    return write(pred, tmp_path / "pred.nii.gz"), write(ref, tmp_path / "ref.nrrd")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_single_case_writes_four_files(synthetic_files: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = synthetic_files
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1": "liver", "2": "tumour"}))
    out = tmp_path / "out"
    code = main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--labels", str(names),
                 "--nsd-tolerance", "1.5", "--out", str(out)])
    assert code == 0
    assert "2 labels" in capsys.readouterr().out
    for name in ("report.json", "report.csv", "report.html", "report.pdf"):
        assert (out / name).stat().st_size > 100
    data = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in data["labels"]] == ["liver", "tumour"]
    assert data["nsd_tolerance_mm"] == 1.5 and data["labels"][0]["nsd_tolerance_mm"] == 1.5
    assert data["inputs"]["labels"]["path"] == str(names.resolve())
    assert data["geometry"]["grid"]["orientation"] == "LPS"  # oblique grid, nearest axes


def test_grid_mismatch_is_one_line_exit_2_then_resample(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = synthetic_pair()
    half = Volume(pred.array[::2, ::2, :], (1.8, 2.2, 4.0), pred.origin, pred.direction,
                  labels=pred.labels)
    p = write(half, tmp_path / "pred.nii.gz")
    r = write(ref, tmp_path / "ref.nii.gz")
    args = ["evaluate", "--pred", str(p), "--ref", str(r), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = _one_error_line(capsys)
    assert err.startswith("error:") and "--resample-to ref" in err and "shape" in err
    assert main([*args, "--resample-to", "ref"]) == 0
    assert "nearest-neighbour" in capsys.readouterr().out
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["geometry"]["inputs"]["prediction"]["shape"] == [20, 18, 12]
    assert data["labels"][0]["dice"] > 0.8


def test_bad_inputs_exit_2_with_one_line(synthetic_files: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = synthetic_files
    out = str(tmp_path / "o")
    assert main(["evaluate", "--pred", str(tmp_path), "--ref", str(ref), "--out", out]) == 2
    assert "one is a folder" in _one_error_line(capsys)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(tmp_path / "nope.nii.gz"),
                 "--out", out]) == 2
    assert "no such file" in _one_error_line(capsys)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--nsd-tolerance", "-1",
                 "--out", out]) == 2
    assert "--nsd-tolerance" in _one_error_line(capsys)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--resample-to", "pred",
                 "--out", out]) == 2
    assert not Path(out).exists()


def test_cohort_with_unpaired_files_and_images(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(2):
        pred, ref = synthetic_pair(seed=i, shift=i)
        write(pred, tmp_path / "pred" / f"c{i}.nii.gz")
        write(ref, tmp_path / "ref" / f"c{i}.nii.gz")
        image = Volume(np.where(ref.array > 0, 80.0, -50.0) + i, ref.spacing, ref.origin,
                       ref.direction, modality="CT")
        write(image, tmp_path / "img" / f"c{i}_0000.nii.gz")
    write(pred, tmp_path / "ref" / "orphan.nii.gz")
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--image", str(tmp_path / "img"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 of 2 cases" in text and "orphan.nii.gz" in text
    data = json.loads((out / "cohort.json").read_text())
    assert [c["image"] for c in data["cases"]] == ["c0_0000.nii.gz", "c1_0000.nii.gz"]
    assert data["cases"][0]["mean_dice"] > data["cases"][1]["mean_dice"]
    case = json.loads((out / "cases" / "c0" / "report.json").read_text())
    assert case["inputs"]["image"]["path"].endswith("c0_0000.nii.gz")
    assert (out / "index.html").is_file() and (out / "cohort.pdf").is_file()


def test_cohort_with_a_failing_case_exits_2_after_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = synthetic_pair()
    write(pred, tmp_path / "pred" / "good.nii.gz")
    write(ref, tmp_path / "ref" / "good.nii.gz")
    write(pred, tmp_path / "pred" / "bad.nii.gz")
    write(Volume(ref.array, (2.0, 2.0, 4.0), ref.origin, ref.direction, labels=ref.labels),
          tmp_path / "ref" / "bad.nii.gz")
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert "1 of 2 cases failed" in err and "bad:" in err and "index.html" in err
    status = {c["case_id"]: c["status"] for c in
              json.loads((out / "cohort.json").read_text())["cases"]}
    assert status == {"bad": "failed", "good": "ok"}
    assert (out / "cases" / "good" / "report.html").is_file()
