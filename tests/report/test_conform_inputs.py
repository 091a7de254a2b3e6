"""Reports accept a prediction stored with flipped axes on the same voxel centres, exactly."""

from __future__ import annotations

from pathlib import Path

from medseg import io
from medseg.report import load_case
from tests.conftest import SAMPLES


def test_flipped_prediction_is_reindexed_not_resampled(tmp_path: Path) -> None:
    ref = io.read(SAMPLES / "pyradiomics/brain1_label.nrrd")
    flipped = ref.reorient("RAI")
    assert flipped.grid_differences(ref)
    pred_path = io.write(flipped, tmp_path / "pred.nii.gz")
    case = load_case(pred_path, SAMPLES / "pyradiomics/brain1_label.nrrd")
    assert case.pred.grid_differences(case.ref) == []
    assert (case.pred.array == case.ref.array).all()
    assert any("re-indexed exactly" in n for n in case.resampling)
