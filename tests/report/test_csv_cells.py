"""CSV formula injection: every CSV medseg writes shows hostile text as text (OWASP)."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import pytest

from medseg.io import write
from medseg.report.cohort import evaluate_cohort
from medseg.report.csv_cells import csv_cell, csv_text
from medseg.report.evaluate import evaluate_case
from tests.report.conftest import synthetic_pair

HOSTILE = {1: '=HYPERLINK("http://evil.example","x")', 2: "+cmd|' /C calc'!A0"}


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("-inf", "'-inf"), ("liver", "liver"),
    ("-0.5", "-0.5"), ("+3", "+3"), ("-1e-3", "-1e-3"), (-0.5, -0.5), (None, ""),
    (3, 3), (float("nan"), float("nan")),
])
def test_cells(value: object, cell: object) -> None:
    got = csv_cell(value)
    assert got == cell or (got != got and cell != cell)  # NaN == NaN for this table


def test_csv_text_round_trips_through_a_csv_reader() -> None:
    text = csv_text(["name", "dice"], [["=x,\n\"y\"", -0.25], ["ok", 0.5]], float_format=".3g")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["name", "dice"], ["'=x,\n\"y\"", "-0.25"], ["ok", "0.5"]]


def _hostile_pair(tmp_path: Path, sub: str) -> tuple[Path, Path]:
    pred, ref = synthetic_pair()
    pred, ref = (dataclasses.replace(v, labels=HOSTILE) for v in (pred, ref))
    return (write(pred, tmp_path / "pred" / f"{sub}.nii.gz"),
            write(ref, tmp_path / "ref" / f"{sub}.nii.gz"))


def test_report_and_cohort_csvs_neutralise_label_names(tmp_path: Path) -> None:
    pred, ref = _hostile_pair(tmp_path, "c1")
    _hostile_pair(tmp_path, "=c2")
    evaluate_case(pred, ref, tmp_path / "case")
    cohort = tmp_path / "cohort"
    evaluate_cohort(tmp_path / "pred", tmp_path / "ref", cohort)
    for path in (tmp_path / "case" / "report.csv", cohort / "cohort.csv", cohort / "cases.csv"):
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        assert rows, path
        for row in rows:
            assert not any(v.startswith(("=", "+", "@")) for v in row.values()), (path, row)
            assert row["name"] in {"'" + n for n in HOSTILE.values()}
    cases = list(csv.DictReader(io.StringIO((cohort / "cases.csv").read_text())))
    assert {r["case_id"] for r in cases} == {"c1", "'=c2"}
    assert any(float(r["dice"]) < 1 for r in cases)  # numbers stay numbers
