"""The comparison report speaks of the clinician's annotation (not a "prediction"), lists many
reference labels readably, and gets a clean file name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.annotation import Annotation
from app.case import open_case
from app.compare_panel import build_report, reference_table, report_name
from tests.conftest import SAMPLES


def test_report_calls_it_annotation_vs_reference(tmp_path: Path) -> None:
    dcmqi = SAMPLES / "dcmqi"
    case = open_case("CT 3 slices + liver (dcmqi)", dcmqi / "ct-3slice",
                     dcmqi / "liver_seg.nrrd", roots=(SAMPLES,))
    assert case.labels_lps is not None and case.labels is not None
    ann = Annotation.empty(case.image_lps.shape)
    value = ann.add_label("liver").value
    ann.set_voxels(np.roll(np.asarray(case.labels_lps.array) > 0, 4, axis=0), value, "paint")
    result = build_report(case, ann, case.labels, tmp_path, True, 2.0)
    html = result["files"]["html"].decode()
    assert "annotation contours orange" in html and "Vol. annot ml" in html
    assert "prediction" not in html.lower()
    assert '"subject": "annotation"' in result["files"]["json"].decode()
    captions = " ".join(f.caption for f in result["figures"])
    assert "prediction" not in captions and "annotation" in captions


def test_many_reference_labels_in_a_readable_table() -> None:
    ts = SAMPLES / "totalsegmentator"
    case = open_case("ct", ts / "example_ct_sm.nii.gz", ts / "example_seg.nii.gz",
                     roots=(SAMPLES,))
    assert case.labels is not None
    ann = Annotation.empty(case.image_lps.shape)
    ann.add_label("liver")
    rows = reference_table(ann, case.labels)
    assert len(rows) == len(case.labels.labels or {}) > 30
    assert rows[0]["reference label"] == "liver" and rows[0]["in your annotation"] == "yes"
    assert all(r["in your annotation"] == "" for r in rows[1:])
    assert sum(int(r["voxels"]) for r in rows) == int(np.count_nonzero(case.labels.array))


def test_report_file_name_is_clean() -> None:
    assert report_name("CT abdomen, DICOM (JPEG 2000)", "pdf") == \
        "CT_abdomen_DICOM_JPEG_2000_report.pdf"
    assert report_name("example_ct_sm.nii.gz", "html") == "example_ct_sm_report.html"
