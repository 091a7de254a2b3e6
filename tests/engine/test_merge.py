"""Merging several models' label maps by name (TotalSegmentator's parts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medseg import io
from medseg.engine.infer import Segmenter
from medseg.engine.merge import merge_by_name, merged_names
from tests.fixtures.nnunet.inputs import make

torch.set_num_threads(2)
CT_MODELS = Path(__file__).resolve().parents[1] / "fixtures/nnunet/models/Dataset501_CTOrgans"


def test_merge_by_name_renumbers_and_later_parts_win() -> None:
    a = np.array([[0, 1, 2, 2]], dtype=np.uint8)
    b = np.array([[3, 0, 1, 0]], dtype=np.uint8)
    out, names = merge_by_name([(a, {1: "liver", 2: "spleen"}),
                                (b, {1: "spleen", 3: "aorta"})])
    assert names == {1: "liver", 2: "spleen", 3: "aorta"}
    np.testing.assert_array_equal(out, [[3, 1, 2, 2]])
    assert merged_names([{2: "x"}, {1: "x", 5: "y"}]) == {1: "x", 2: "y"}


def test_folder_of_parts_runs_each_and_merges(tmp_path: Path) -> None:
    """A folder holding several nnU-Net model folders (here the fixture's 2d and 3d_fullres)
    gives each part's labels, merged by name, later parts over earlier ones."""
    image = io.read(make("ct_sm", tmp_path))
    both = Segmenter(CT_MODELS, device="cpu", folds=["0"])
    assert both.kind == "parts" and both.labels == {1: "spleen", 2: "kidney_right",
                                                    3: "kidney_left", 4: "liver"}
    merged = both.predict(image, tta=False)
    parts = [Segmenter(f, device="cpu", folds=["0"]).predict(image, tta=False)
             for f in sorted(p for p in CT_MODELS.iterdir() if p.is_dir())]
    want, _ = merge_by_name([(np.asarray(p.array), dict(p.labels or {})) for p in parts])
    np.testing.assert_array_equal(merged.array, want)
    assert merged.grid_differences(image) == []
