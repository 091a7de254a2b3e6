"""Agreement with MONAI's voxel-surface metrics to 1e-6 (random and real masks, with spacing)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import medseg
from medseg.metrics import binary_metrics
from tests.metrics.reference import BRAIN1, TOTALSEG, monai_scores, perturb, random_blobs

# Irrational-looking tolerances: a distance can never equal them exactly, so MONAI's float32
# distances and our float64 ones fall on the same side of tau (see docs/metrics.md).
TAUS = [0.7071, 1.4142, 2.2361, 3.1623]
HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

spacing_1d = st.integers(25, 500).map(lambda v: v / 100.0)


def assert_agrees(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                  tau: float) -> None:
    """Every score of ours equals MONAI's to a relative 1e-6 (MONAI works in float32).

    HD95 is compared to 1e-6 with MONAI's distances quantiled in float64; MONAI's own float32
    ``torch.quantile`` is only checked against the bound of its float32 rank rounding.
    """
    ours = binary_metrics(pred, ref, spacing, nsd_tolerance_mm=tau)
    theirs = monai_scores(pred, ref, spacing, tau)
    for key in ("dice", "hd", "assd", "nsd"):
        assert getattr(ours, key) == pytest.approx(theirs[key], rel=1e-6, abs=1e-6), (key, ours)
    assert ours.hd95 == pytest.approx(theirs["hd95_f64"], rel=1e-6, abs=1e-6), ours
    float32_rank = 2.0**-22 * (theirs["n"] + 1) * ours.hd
    assert abs(ours.hd95 - theirs["hd95"]) <= 1e-6 * (1 + ours.hd95) + float32_rank


@st.composite
def mask_pairs(draw: st.DrawFn, ndim: int = 3, thin: bool = False
               ) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """A non-empty random blob mask, a perturbed copy and an anisotropic spacing."""
    sizes = st.integers(3, 18)
    shape = tuple(draw(sizes) for _ in range(ndim))
    if thin:
        shape = (*shape[:-1], draw(st.integers(1, 2)))
    seed = draw(st.integers(0, 2**31 - 1))
    ref = random_blobs(shape, seed, draw(st.floats(0.05, 0.6)))
    pred = perturb(ref, seed + 1)
    if not pred.any():
        pred = ref.copy()
        pred.flat[seed % pred.size] ^= True
    spacing = tuple(draw(spacing_1d) for _ in range(ndim))
    return pred, ref, spacing


@HYPO
@given(pair=mask_pairs(), tau=st.sampled_from(TAUS))
def test_random_3d_blobs_agree_with_monai(pair: tuple, tau: float) -> None:
    pred, ref, spacing = pair
    assert_agrees(pred, ref, spacing, tau)


@settings(max_examples=20, deadline=None)
@given(pair=mask_pairs(thin=True), tau=st.sampled_from(TAUS))
def test_thin_2d_like_volumes_agree_with_monai(pair: tuple, tau: float) -> None:
    pred, ref, spacing = pair
    assert_agrees(pred, ref, spacing, tau)


@settings(max_examples=20, deadline=None)
@given(pair=mask_pairs(ndim=2), tau=st.sampled_from(TAUS))
def test_2d_masks_agree_with_monai(pair: tuple, tau: float) -> None:
    pred, ref, spacing = pair
    assert_agrees(pred, ref, spacing, tau)


def test_masks_filling_the_image_agree_with_monai() -> None:
    """Every voxel on the border: the image border must count as background for both."""
    ref = np.ones((6, 7, 5), dtype=bool)
    pred = ref.copy()
    pred[2:4, 2:5, 1:4] = False  # a hole: inner surface too
    assert_agrees(pred, ref, (0.5, 1.5, 3.0), 1.4142)
    m = binary_metrics(ref, ref, (0.5, 1.5, 3.0))
    assert (m.dice, m.hd, m.hd95, m.assd, m.nsd) == (1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def totalseg() -> medseg.Volume:
    return medseg.read(TOTALSEG)


@pytest.mark.parametrize("spacing", [None, (0.8, 0.8, 2.0)])
def test_totalsegmentator_organs_agree_with_monai(totalseg: medseg.Volume,
                                                  spacing: tuple | None) -> None:
    """Real organs (3 mm CT labels) against perturbed copies, at the file's and at an
    anisotropic spacing; several organs touch the image border (30-slice crop)."""
    arr = totalseg.array
    sp = totalseg.spacing if spacing is None else spacing
    labels = [1, 2, 4, 5, 6, 7, 13, 20, 52, 86]  # spleen..pancreas, a 1-voxel label, ribs..
    for n, value in enumerate(labels):
        ref = arr == value
        assert ref.any()
        assert_agrees(perturb(ref, n), ref, sp, TAUS[n % len(TAUS)])


def test_brain_tumour_anisotropic_agrees_with_monai() -> None:
    """pyradiomics brain1 (0.78 x 0.78 x 6.5 mm) against an eroded copy."""
    vol = medseg.read(BRAIN1)
    ref = vol.array == 1
    pred = ndimage.binary_erosion(ref)
    for tau in (1.0, 2.2361, 6.6):
        assert_agrees(pred, ref, vol.spacing, tau)
    assert_agrees(perturb(ref, 4), ref, vol.spacing, 2.0)


def test_monai_empty_mask_behaviour_versus_ours() -> None:
    """What MONAI returns for empty masks (read from its source), next to our conventions."""
    ref = np.zeros((8, 8, 8), dtype=bool)
    ref[2:5, 2:6, 3:5] = True
    empty = np.zeros_like(ref)
    sp = (1.0, 1.0, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ours must not warn
        pred_empty = binary_metrics(empty, ref, sp)
        both_empty = binary_metrics(empty, empty, sp)
    m = monai_scores(empty, ref, sp, 2.0)
    # MONAI: inf HD and ASSD, but NaN HD95 (torch.quantile interpolates inf - inf).
    assert m["hd"] == np.inf and np.isnan(m["hd95"]) and m["assd"] == np.inf
    assert m["nsd"] == 0.0 and m["dice"] == 0.0
    assert (pred_empty.hd, pred_empty.hd95, pred_empty.assd) == (np.inf,) * 3
    assert (pred_empty.nsd, pred_empty.dice) == (0.0, 0.0)
    m = monai_scores(empty, empty, sp, 2.0)
    # MONAI: NaN for everything when the class is absent from both; ours: a perfect score + flag.
    assert all(np.isnan(m[k]) for k in ("dice", "hd", "hd95", "assd", "nsd"))
    assert (both_empty.dice, both_empty.hd, both_empty.nsd) == (1.0, 0.0, 1.0)
    assert both_empty.flags == ["both_empty"]
