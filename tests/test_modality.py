"""The one modality decision: override, header, data rule; names normalised."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medseg import io
from medseg.modality import decide_modality, looks_like_ct, normalize_modality
from medseg.volume import Volume
from tests.conftest import SAMPLES


def _vol(values: np.ndarray, modality: str | None = None) -> Volume:
    return Volume(values.astype(np.float32), (1.0, 1.0, 2.0), modality=modality)


def test_override_then_header_then_data() -> None:
    ct_values = np.full((4, 4, 3), 40.0)
    ct_values[0, 0, 0] = -1024.0
    assert decide_modality(_vol(ct_values)).modality == "CT"
    assert decide_modality(_vol(ct_values)).source == "data"
    assert decide_modality(_vol(ct_values, "MR")).modality == "MR"  # the header wins
    assert decide_modality(_vol(ct_values, "MR"), "ct").describe() == "CT (chosen)"
    mr = decide_modality(_vol(np.arange(48.0).reshape(4, 4, 3)))
    assert mr.modality is None and not mr.is_ct and "not CT" in mr.describe()


def test_the_data_rule_on_real_samples() -> None:
    """NIfTI/NRRD files carry no modality: the TotalSegmentator CTs are CT by their air, the MR
    and the pyradiomics MR/mammography samples are not; DICOM says so in its header."""
    ts = SAMPLES / "totalsegmentator"
    for path, want in ((ts / "example_ct_sm.nii.gz", "CT"), (ts / "example_mr_sm.nii.gz", None),
                       (SAMPLES / "pyradiomics/brain1_image.nrrd", None),
                       (SAMPLES / "pyradiomics/breast1_image.nrrd", None)):
        vol = io.read(path)
        assert vol.modality is None
        assert decide_modality(vol).modality == want, path.name
    dicom = decide_modality(io.read(SAMPLES / "dcmqi/ct-3slice"))
    assert (dicom.modality, dicom.source) == ("CT", "header")


@pytest.mark.parametrize(("text", "want"), [("ct", "CT"), (" MRI ", "MR"), ("pet", "PT"),
                                            ("", None), (None, None), ("us", "US")])
def test_names_are_normalised(text: str | None, want: str | None) -> None:
    assert normalize_modality(text) == want


def test_non_finite_and_integer_voxels() -> None:
    vals = np.full((3, 3, 3), np.nan, np.float32)
    assert not looks_like_ct(vals)
    vals[1, 1, 1] = -1000.0
    assert looks_like_ct(vals)
    assert looks_like_ct(np.array([[[-1024]]], np.int16))
    assert not looks_like_ct(np.zeros((0, 2, 2)))
    vol = dataclasses.replace(_vol(np.zeros((2, 2, 2))), modality="")
    assert decide_modality(vol).source == "data"  # an empty header value is no modality


def test_unknown_override_is_refused_with_the_codes() -> None:
    import pytest

    from medseg.errors import ModalityError
    from medseg.modality import check_modality

    assert check_modality("mri") == "MR"
    assert check_modality(None) is None
    with pytest.raises(ModalityError, match="'XRAY' is not a DICOM modality"):
        check_modality("XRAY")
