"""The annotator in DICOM exports: DICOM-SEG ContentCreatorName, RTSTRUCT ROIInterpreter, as a
PN, from the library, the CLI (--annotator) and the app's export; blank when anonymised."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.io.dicom_seg import Algorithm, person_name, write_dicom_seg
from medseg.io.rtstruct import write_rtstruct
from tests.conftest import SAMPLES, require_tool
from tests.io.export_fixtures import ct3, dciodvfy, liver3


@pytest.mark.parametrize(("text", "pn"), [
    ("Doe^Jane", "Doe^Jane"), ("Jane Doe", "Doe^Jane"), ("Jane  Q  Doe", "Doe^Jane Q"),
    ("Doe, Jane", "Doe^Jane"), ("root", "root"), ("Zoë Ærø", "Ærø^Zoë")])
def test_person_names(text: str, pn: str) -> None:
    assert person_name(text) == pn


@pytest.mark.parametrize("text", ["a\\b", "x=y", "bell\x07", "   ", "a" * 70])
def test_names_a_pn_cannot_hold_are_refused_before_writing(text: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Annotator name"):
        write_dicom_seg(liver3(), ct3(), tmp_path / "s.dcm",
                        algorithm=Algorithm("manual", creator=text))
    assert not (tmp_path / "s.dcm").exists()


def test_seg_and_rtstruct_record_the_annotator(tmp_path: Path) -> None:
    algo = Algorithm("semiautomatic", "medseg app", "1", creator="Jane Doe")
    seg = write_dicom_seg(liver3(), ct3(), tmp_path / "s.dcm", algorithm=algo)
    rt = write_rtstruct(liver3(), ct3(), tmp_path / "r.dcm", algorithm=algo)
    assert pydicom.dcmread(tmp_path / "s.dcm").ContentCreatorName == "Doe^Jane"
    rois = pydicom.dcmread(tmp_path / "r.dcm").RTROIObservationsSequence
    assert [r.ROIInterpreter for r in rois] == ["Doe^Jane"]
    assert seg["content_creator"] == rt["content_creator"] == "Doe^Jane"
    tool = require_tool("dciodvfy")
    for path in (tmp_path / "s.dcm", tmp_path / "r.dcm"):
        errors, warnings = dciodvfy(path, tool)
        assert errors == [], errors
        assert not [w for w in warnings if "Patient's Name" not in w], warnings


def test_anonymised_exports_leave_the_annotator_out(tmp_path: Path) -> None:
    algo = Algorithm("manual", creator="Jane Doe")
    write_dicom_seg(liver3(), ct3(), tmp_path / "s.dcm", algorithm=algo, anonymize=True)
    write_rtstruct(liver3(), ct3(), tmp_path / "r.dcm", algorithm=algo, anonymize=True)
    assert not str(pydicom.dcmread(tmp_path / "s.dcm").get("ContentCreatorName", ""))
    rois = pydicom.dcmread(tmp_path / "r.dcm").RTROIObservationsSequence
    assert all(not str(r.ROIInterpreter) for r in rois)


def test_cli_export_annotator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dcmqi = SAMPLES / "dcmqi"
    out = tmp_path / "liver_seg.dcm"
    rc = main(["export", str(dcmqi / "liver_seg.nrrd"), "-r", str(dcmqi / "ct-3slice"),
               "-f", "seg", "-o", str(out), "--algorithm-type", "manual",
               "--annotator", "Doe, Jane"])
    assert rc == 0, capsys.readouterr().err
    assert pydicom.dcmread(out).ContentCreatorName == "Doe^Jane"
    rc = main(["export", str(dcmqi / "liver_seg.nrrd"), "-r", str(dcmqi / "ct-3slice"),
               "-f", "rtstruct", "-o", str(tmp_path / "rt.dcm"), "--annotator", "a\\b"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: Annotator name") and "Traceback" not in err
    assert not (tmp_path / "rt.dcm").exists()


def test_app_export_records_the_annotator(tmp_path: Path) -> None:
    import numpy as np

    from app.annotation import Annotation
    from app.case import open_case
    from app.export_panel import build_export

    dcmqi = SAMPLES / "dcmqi"
    case = open_case("ct3", dcmqi / "ct-3slice", dcmqi / "liver_seg.nrrd", roots=(SAMPLES,))
    ann = Annotation.empty(case.image_lps.shape)
    value = ann.add_label("liver").value
    assert case.labels_lps is not None
    ann.set_voxels(np.asarray(case.labels_lps.array) > 0, value, "paint")
    for fmt, read in (("seg", lambda d: d.ContentCreatorName),
                      ("rtstruct", lambda d: d.RTROIObservationsSequence[0].ROIInterpreter)):
        name, data, _ = build_export(case, ann, fmt, [value], tmp_path / fmt,
                                     annotator="Jane Doe")
        (tmp_path / name).write_bytes(data)
        assert read(pydicom.dcmread(tmp_path / name)) == "Doe^Jane"
