"""The shipped default CT-organ model (medseg/weights/ct_organs_2d.safetensors, configs/demo.yaml)
loads by name and segments the bundled DICOM series on its exact grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medseg import io
from medseg.engine.infer import Segmenter
from medseg.models.bundle import DEFAULT_BUNDLE, read_bundle_meta, shipped_bundles
from tests.conftest import SAMPLES

torch.set_num_threads(1)
TS = SAMPLES / "totalsegmentator"


def test_default_bundle_is_shipped_small_and_self_describing() -> None:
    path = shipped_bundles()[DEFAULT_BUNDLE]
    assert path.stat().st_size < 20e6
    meta = read_bundle_meta(path)
    assert meta.modality == "CT"
    assert set(meta.labels.values()) == {"spleen", "kidney_right", "kidney_left", "liver"}


def test_default_model_segments_the_sample_series_on_its_grid() -> None:
    """Regression on one of its two training CTs (held-out figures: bench/demo_model.py)."""
    image = io.read(TS / "example_ct_dicom")
    ref = io.read(TS / "example_seg_dicom.nii.gz", label=True).conform_to(image)
    seg = Segmenter("default", device="cpu")
    pred = seg.predict(image)
    assert not isinstance(pred, tuple)
    assert pred.grid_differences(image) == []
    for value, name in seg.labels.items():
        if name in ("liver", "spleen"):
            ts_value = {"spleen": 1, "liver": 5}[name]
            a, b = pred.array == value, ref.array == ts_value
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, name


def test_cli_predict_default(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medseg.cli import app

    res = CliRunner().invoke(app, ["predict", "default", str(TS / "example_ct_dicom"),
                                   "--out", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    (mask_path,) = tmp_path.glob("*.nii.gz")
    mask = io.read(mask_path, label=True)
    assert mask.grid_differences(io.read(TS / "example_ct_dicom")) == []
    assert "liver" in (mask.labels or {}).values()
    assert np.count_nonzero(mask.array) > 0
