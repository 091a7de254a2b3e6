"""Comparison with DeepMind's surface-distance 0.1 (surfels at voxel corners, area-weighted).

Measured on 78 real pairs by bench/metrics_agreement.py (docs/metrics.md quotes the figures);
these tests pin the same behaviour on a subset, with bounds in units of the largest voxel size.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import medseg
from medseg.metrics import binary_metrics
from tests.metrics.reference import BRAIN1, TOTALSEG, deepmind, deepmind_scores, perturb

TAU = 2.0


@pytest.fixture(scope="module")
def rows() -> list[tuple[dict, dict, float]]:
    """(ours, deepmind, largest voxel size) for real organ/tumour pairs."""
    seg = medseg.read(TOTALSEG)
    brain = medseg.read(BRAIN1)
    pairs = []
    for value in (1, 2, 3, 4, 5, 6, 7, 11, 14, 18, 20, 30, 63, 86, 117):
        ref = seg.array == value
        for spacing in (seg.spacing, (0.8, 0.8, 2.0)):
            pairs.append((perturb(ref, value), ref, tuple(spacing)))
    ref = brain.array == 1
    pairs.append((ndimage.binary_erosion(ref), ref, brain.spacing))
    pairs.append((perturb(ref, 4), ref, brain.spacing))
    out = []
    for pred, ref, spacing in pairs:
        ours = binary_metrics(pred, ref, spacing, nsd_tolerance_mm=TAU).as_dict()
        out.append((ours, deepmind_scores(pred, ref, spacing, TAU), max(spacing)))
    return out


def test_dice_is_identical(rows: list) -> None:
    for ours, dm, _ in rows:
        assert ours["dice"] == dm["dice"]


def test_hausdorff_mostly_identical_else_within_half_a_voxel(rows: list) -> None:
    same = [abs(o["hd"] - d["hd"]) <= 1e-9 for o, d, _ in rows]
    assert sum(same) >= 0.8 * len(rows)
    for ours, dm, vox in rows:
        assert abs(ours["hd"] - dm["hd"]) <= 0.5 * vox


def test_hd95_within_one_and_a_half_voxels(rows: list) -> None:
    for ours, dm, vox in rows:
        assert abs(ours["hd95"] - dm["hd95"]) <= 1.5 * vox


def test_assd_is_smaller_with_surfels(rows: list) -> None:
    """Corner surfels of a perturbed boundary are closer than voxel centres: DeepMind's ASSD is
    lower in (almost) every case, by less than one voxel."""
    lower = [d["assd"] < o["assd"] for o, d, _ in rows]
    assert sum(lower) >= 0.9 * len(rows)
    for ours, dm, vox in rows:
        assert abs(ours["assd"] - dm["assd"]) <= vox


def test_nsd_is_larger_with_surfels(rows: list) -> None:
    higher = [d["nsd"] > o["nsd"] for o, d, _ in rows]
    assert sum(higher) >= 0.9 * len(rows)
    for ours, dm, _ in rows:
        assert abs(ours["nsd"] - dm["nsd"]) <= 0.4


def test_empty_masks_in_deepmind_versus_ours() -> None:
    """DeepMind: both empty gives NaN Dice and inf HD; ours gives 1 and 0 with a flag."""
    sd = deepmind()
    ref = np.zeros((9, 9, 6), dtype=bool)
    ref[2:6, 3:7, 1:4] = True
    empty = np.zeros_like(ref)
    sp = (1.0, 1.5, 2.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        both = sd.compute_surface_distances(empty, empty, sp)
        assert np.isnan(sd.compute_dice_coefficient(empty, empty))
        assert sd.compute_robust_hausdorff(both, 100) == np.inf
        one = sd.compute_surface_distances(ref, empty, sp)
        assert sd.compute_robust_hausdorff(one, 95) == np.inf
        assert sd.compute_surface_dice_at_tolerance(one, 2.0) == 0.0
    m = binary_metrics(empty, ref, sp)
    assert (m.hd, m.hd95, m.nsd, m.flags) == (np.inf, np.inf, 0.0, ["empty_pred"])
    m = binary_metrics(empty, empty, sp)
    assert (m.dice, m.hd, m.flags) == (1.0, 0.0, ["both_empty"])
