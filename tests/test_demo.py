"""The `make run` pipeline on the bundled sample writes a CT and its labels on one grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg import demo, io


def test_demo_writes_ct_and_labels_on_the_dicom_grid(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "re-indexed exactly" in out and "label 5 there and the written mask 5" in out
    assert "31 segments" in out and "watertight=True" in out
    assert (tmp_path / "example_ct_organs.seg.dcm").is_file()
    ct_dicom = io.read(demo.CT_DICOM)
    ct = io.read(tmp_path / "example_ct.nii.gz")
    labels = io.read(tmp_path / "example_ct_labels.nii.gz")
    assert ct.grid_differences(ct_dicom) == [] and labels.grid_differences(ct_dicom) == []
    np.testing.assert_array_equal(ct.array, ct_dicom.array)
    assert labels.labels is not None and labels.labels[5] == "liver"
