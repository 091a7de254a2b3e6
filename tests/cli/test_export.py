"""`medseg export` as a user runs it: every format, label selection, typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg import io
from medseg.cli import main
from medseg.io.anonymize import identifying_elements
from medseg.io.dicom_seg import read_dicom_seg
from tests.conftest import SAMPLES

DCMQI = SAMPLES / "dcmqi"
TS = SAMPLES / "totalsegmentator"
CLASS_MAP = f"{TS / 'totalsegmentator_class_map_DERIVED.json'}:total"


def test_seg_anonymized_from_the_dcmqi_series(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "liver_seg.dcm"
    rc = main(["export", str(DCMQI / "liver_seg.nrrd"), "--reference", str(DCMQI / "ct-3slice"),
               "--format", "seg", "--out", str(out), "--anonymize",
               "--algorithm-type", "semiautomatic", "--model-name", "SlicerEditor"])
    assert rc == 0, capsys.readouterr().err
    assert "liver" in capsys.readouterr().out
    ds = pydicom.dcmread(out)
    assert identifying_elements(ds) == [] and str(ds.PatientName) == ""
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    back = read_dicom_seg(out, reference=io.read(DCMQI / "ct-3slice"))[0]
    np.testing.assert_array_equal(back.array, io.read(DCMQI / "liver_seg.nrrd").array)


def test_rtstruct_with_label_table_and_selection(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rt.dcm"
    rc = main(["export", str(TS / "example_seg_dicom.nii.gz"), "-r", str(TS / "example_ct_dicom"),
               "-f", "rtstruct", "-o", str(out), "--labels", CLASS_MAP,
               "--label", "aorta", "--label", "64", "--json"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in summary["rois"]] == ["aorta", "portal_vein_and_splenic_vein"]
    names = [r.ROIName for r in pydicom.dcmread(out).StructureSetROISequence]
    assert names == ["aorta", "portal_vein_and_splenic_vein"]


def test_meshes_and_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg = TS / "example_seg.nii.gz"
    assert main(["export", str(seg), "-f", "obj", "-o", str(tmp_path / "m"), "-l", "spleen",
                 "--smooth", "5", "--frame", "RAS"]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["frame"] == "RAS" and summary["labels"][0]["watertight"]
    out = tmp_path / "two.nii.gz"
    assert main(["export", str(seg), "-f", "nifti", "-o", str(out), "-l", "5", "-l", "1",
                 "--reference", str(TS / "example_ct_sm.nii.gz")]) == 0
    vol = io.read(out, label=True)
    assert set(np.unique(vol.array)) == {0, 1, 5} and vol.labels == {1: "spleen", 5: "liver"}
    capsys.readouterr()


def test_nifti_reference_for_dicom_formats_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("seg", "rtstruct"):
        rc = main(["export", str(TS / "example_seg.nii.gz"), "-r",
                   str(TS / "example_ct_sm.nii.gz"), "-f", fmt, "-o", str(tmp_path / "x.dcm")])
        err = capsys.readouterr().err
        assert rc == 2 and "DICOM" in err and "--reference" in err and f"--format {fmt}" in err
    rc = main(["export", str(TS / "example_seg.nii.gz"), "-f", "seg", "-o", str(tmp_path / "x")])
    assert rc == 2 and "needs the DICOM image series" in capsys.readouterr().err
    assert not (tmp_path / "x.dcm").exists()


def test_label_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", str(DCMQI / "liver_seg.nrrd"), "-r", str(DCMQI / "ct-3slice"), "-f", "seg",
            "-o", str(tmp_path / "x.dcm")]
    assert main([*args, "--label", "spleen"]) == 2
    assert "not in the mask's label table (1=liver)" in capsys.readouterr().err
    assert main([*args, "--label", "liver", "--all-labels"]) == 2
    assert "either --all-labels or --label" in capsys.readouterr().err
    assert main([*args, "--labels", str(TS / "totalsegmentator_class_map_DERIVED.json")]) == 2
    assert "pick one" in capsys.readouterr().err
    assert main([*args, "--algorithm-type", "magic"]) == 2
    assert "manual" in capsys.readouterr().err


def test_fractional_seg_from_a_probability_map(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    liver = io.read(DCMQI / "liver_seg.nrrd")
    prob = liver.with_array(liver.array.astype(np.float32) * 0.8, labels=None)
    prob_path = tmp_path / "prob.nrrd"
    io.write(prob, prob_path)
    out = tmp_path / "frac.dcm"
    assert main(["export", str(prob_path), "-r", str(DCMQI / "ct-3slice"), "-f", "seg",
                 "--fractional", "--label", "liver", "-o", str(out)]) == 0
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert ds.SegmentationType == "FRACTIONAL" and ds.SegmentSequence[0].SegmentLabel == "liver"
    back = read_dicom_seg(out, reference=io.read(DCMQI / "ct-3slice"))[0]
    assert abs(back.array.max() - 0.8) < 1 / 255
    assert main(["export", str(prob_path), "-f", "stl", "--fractional", "-o", str(out)]) == 2
    assert "--fractional applies to --format seg only" in capsys.readouterr().err


def test_import_seg_and_rtstruct_back_to_label_maps(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "liver.nii.gz"
    assert main(["export", str(DCMQI / "liver.dcm"), "-f", "nifti", "-o", str(out)]) == 0
    got, expected = io.read(out, label=True), io.read(DCMQI / "liver_seg.nrrd")
    assert got.grid_differences(expected) == [] and got.labels == {1: "Liver"}
    np.testing.assert_array_equal(got.array, expected.array)
    rt = tmp_path / "rt.dcm"
    assert main(["export", str(DCMQI / "liver_seg.nrrd"), "-r", str(DCMQI / "ct-3slice"),
                 "-f", "rtstruct", "-o", str(rt)]) == 0
    assert main(["export", str(rt), "-r", str(DCMQI / "ct-3slice"), "-f", "nifti",
                 "-o", str(out)]) == 0
    np.testing.assert_array_equal(io.read(out).array, expected.array)
    assert main(["export", str(rt), "-f", "nifti", "-o", str(out)]) == 2
    assert "Pass the DICOM series with --reference" in capsys.readouterr().err
    assert main(["export", str(DCMQI / "partial_overlaps.dcm"), "-f", "nifti", "-o",
                 str(out)]) == 2
    assert "overlap" in capsys.readouterr().err
