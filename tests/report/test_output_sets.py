"""Report sets are all or nothing, and survive hostile label names (5,000 characters,
mathtext, control characters) with the full name kept in the JSON."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from medseg.errors import OutputError
from medseg.io import write
from medseg.report.cohort import evaluate_cohort
from medseg.report.evaluate import evaluate_case
from tests.conftest import require_tool
from tests.report.conftest import synthetic_pair

REPORT_FILES = ["report.csv", "report.html", "report.json", "report.pdf"]


def _pair(folder: Path, names: dict[int, str] | None = None, case: str = "c") -> tuple[Path,
                                                                                       Path]:
    pred, ref = synthetic_pair()
    if names:
        pred, ref = (dataclasses.replace(v, labels=names) for v in (pred, ref))
    return (write(pred, folder / "pred" / f"{case}.nii.gz"),
            write(ref, folder / "ref" / f"{case}.nii.gz"))


@pytest.mark.external
def test_a_5000_character_name_renders_elided_and_stays_whole_in_json(tmp_path: Path) -> None:
    long = "L" * 5000
    pred, ref = _pair(tmp_path, {1: long, 2: r"$\frac{broken mathtext"})
    out = tmp_path / "report"
    evaluate_case(pred, ref, out)
    assert sorted(p.name for p in out.iterdir()) == REPORT_FILES
    data = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in data["labels"]] == [long, r"$\frac{broken mathtext"]
    html = (out / "report.html").read_text()
    assert f'title="{long}"' in html and ">" + "L" * 48 + "...LLLLLLLL<" in html
    require_tool("pdfinfo")
    info = subprocess.run(["pdfinfo", str(out / "report.pdf")], capture_output=True, text=True)
    assert info.returncode == 0 and "Pages:" in info.stdout
    text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True,
                          text=True).stdout
    assert "L" * 28 in text and "L" * 100 not in text


def test_a_full_disk_leaves_no_partial_report(tmp_path: Path, full_fs: Path) -> None:
    pred, ref = _pair(tmp_path)
    before = sorted(p.name for p in full_fs.iterdir())
    with pytest.raises(OutputError, match="disk is full"):
        evaluate_case(pred, ref, full_fs / "report")
    with pytest.raises(OutputError, match="disk is full"):
        evaluate_cohort(tmp_path / "pred", tmp_path / "ref", full_fs / "cohort")
    assert sorted(p.name for p in full_fs.iterdir()) == before


def test_an_old_report_is_replaced_whole_and_a_foreign_folder_refused_first(
        tmp_path: Path) -> None:
    pred, ref = _pair(tmp_path)
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text('{"old": true}')
    (out / "report.pdf").write_text("old pdf")
    evaluate_case(pred, ref, out)
    assert sorted(p.name for p in out.iterdir()) == REPORT_FILES
    assert "old" not in json.loads((out / "report.json").read_text())
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        evaluate_case(tmp_path / "missing.nii.gz", ref, out)  # refused before reading inputs
    with pytest.raises(OutputError, match="a folder is needed"):
        evaluate_case(pred, ref, tmp_path / "pred" / "c.nii.gz")


def test_cohort_with_a_failed_case_is_written_whole(tmp_path: Path) -> None:
    _pair(tmp_path, case="good")
    _pair(tmp_path, case="bad")
    (tmp_path / "pred" / "bad.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "cohort"
    report = evaluate_cohort(tmp_path / "pred", tmp_path / "ref", out)
    assert [c["case_id"] for c in report.failed] == ["bad"]
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["good"]
    assert sorted(p.name for p in (out / "cases" / "good").iterdir()) == REPORT_FILES
    assert {"index.html", "cohort.json", "cohort.csv", "cases.csv", "cohort.pdf"} <= {
        p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
