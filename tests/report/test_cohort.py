"""Cohort evaluation: pairing by case name, per-case pages, summary statistics."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import EvaluationInputError
from medseg.io import write
from medseg.report.cohort import evaluate_cohort, pair_cases, summarise
from medseg.volume import Volume
from tests.report.conftest import synthetic_pair


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """case_a (NIfTI) and case_b (NRRD) in both; case_c only predicted; case_d only in refs;
    case_e on a different grid; label sidecars and a README next to them."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    for i, (cid, ext) in enumerate([("case_a", ".nii.gz"), ("case_b", ".nrrd")]):
        pred, ref = synthetic_pair(seed=i, shift=i + 1)
        write(pred, pred_dir / f"{cid}{ext}")  # writes case_x.labels.json too
        write(ref, ref_dir / f"{cid}.nii.gz")
    pred, ref = synthetic_pair()
    write(pred, pred_dir / "case_c.nii.gz")
    write(ref, ref_dir / "case_d.nrrd")
    write(pred, pred_dir / "case_e.nii.gz")
    off = Volume(ref.array, (1.0, 1.0, 4.0), ref.origin, ref.direction, labels=ref.labels)
    write(off, ref_dir / "case_e.nii.gz")
    (ref_dir / "README.txt").write_text("notes")
    return pred_dir, ref_dir


def test_pairing_by_name_ignores_sidecars(tmp_path: Path) -> None:
    pred_dir, ref_dir = _folders(tmp_path)
    pairing = pair_cases(pred_dir, ref_dir)
    assert [p.case_id for p in pairing.pairs] == ["case_a", "case_b", "case_e"]
    assert pairing.pairs[1].pred.name == "case_b.nrrd"
    assert pairing.unpaired["prediction"] == ["case_c.nii.gz"]
    assert pairing.unpaired["reference"] == ["case_d.nrrd"]
    assert "case_a.labels.json" in pairing.ignored["prediction"]
    assert "README.txt" in pairing.ignored["reference"]


def test_cohort_reports_summary_and_failures(tmp_path: Path) -> None:
    pred_dir, ref_dir = _folders(tmp_path)
    out = tmp_path / "out"
    cohort = evaluate_cohort(pred_dir, ref_dir, out)
    status = {c["case_id"]: c["status"] for c in cohort.cases}
    assert status == {"case_a": "ok", "case_b": "ok", "case_e": "failed"}
    (failed,) = cohort.failed
    assert "--resample-to ref" in failed["error"]
    data = json.loads((out / "cohort.json").read_text())
    assert data["unpaired"] == {"prediction": ["case_c.nii.gz"], "reference": ["case_d.nrrd"],
                                "image": []}
    # statistics equal those recomputed from the two case reports
    dice = {lab: [] for lab in (1, 2)}
    for cid in ("case_a", "case_b"):
        case = json.loads((out / "cases" / cid / "report.json").read_text())
        for row in case["labels"]:
            dice[row["label"]].append(row["dice"])
    for row in data["summary"]:
        if row["metric"] == "dice":
            vals = dice[row["label"]]
            assert row["n"] == 2
            assert row["mean"] == pytest.approx(np.mean(vals))
            assert row["median"] == pytest.approx(np.median(vals))
            assert row["iqr"] == pytest.approx(np.subtract(*np.percentile(vals, [75, 25])))
    assert dice[2][0] > dice[2][1]  # case_b's lesion is shifted twice as far
    rows = list(csv.DictReader(io.StringIO((out / "cohort.csv").read_text())))
    assert len(rows) == 2 * 11 and {r["name"] for r in rows} == {"organ_a", "lesion <b>"}
    cases_rows = list(csv.DictReader(io.StringIO((out / "cases.csv").read_text())))
    assert sorted({r["case_id"] for r in cases_rows}) == ["case_a", "case_b"]
    index = (out / "index.html").read_text()
    for cid in ("case_a", "case_b"):
        assert f'href="cases/{cid}/report.html"' in index
        page = (out / "cases" / cid / "report.html").read_text()
        assert 'href="../../index.html"' in page
    assert "case_c.nii.gz" in index and "case_d.nrrd" in index and "failed" in index
    assert "lesion &lt;b&gt;" in index and "lesion <b>" not in index
    assert (out / "cohort.pdf").read_bytes().startswith(b"%PDF-")


def test_summarise_leaves_out_inf_and_nan() -> None:
    st = summarise([1.0, 3.0, float("inf"), float("nan"), 2.0])
    assert (st["n"], st["n_inf"], st["n_nan"]) == (3, 1, 1)
    assert st["median"] == 2.0 and st["q1"] == 1.5 and st["q3"] == 2.5
    assert summarise([float("inf")])["median"] is None


def test_no_pairs_is_a_clear_error(tmp_path: Path) -> None:
    pred, ref = synthetic_pair()
    write(pred, tmp_path / "p" / "x.nii.gz")
    write(ref, tmp_path / "r" / "y.nii.gz")
    with pytest.raises(EvaluationInputError, match=r"x\.nii\.gz.*y\.nii\.gz"):
        evaluate_cohort(tmp_path / "p", tmp_path / "r", tmp_path / "out")


def test_two_files_for_one_case_are_refused(tmp_path: Path) -> None:
    pred, ref = synthetic_pair()
    write(pred, tmp_path / "p" / "x.nii.gz")
    write(pred, tmp_path / "p" / "x.nrrd")
    write(ref, tmp_path / "r" / "x.nii.gz")
    with pytest.raises(EvaluationInputError, match="one file per case"):
        pair_cases(tmp_path / "p", tmp_path / "r")
