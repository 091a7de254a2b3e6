"""slices_to_check: the suspicious slices of a proposal come first, on real shapes."""

from __future__ import annotations

import numpy as np

from medseg.review import SIGNALS, slice_signals, slices_to_check


def _ellipsoid(shape: tuple[int, int, int] = (64, 64, 30)) -> np.ndarray:
    g = np.indices(shape, dtype=float)
    return ((g[0] - 32) / 20) ** 2 + ((g[1] - 30) / 16) ** 2 + ((g[2] - 15) / 13) ** 2 <= 1


def _image(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * truth + rng.normal(0, 5, truth.shape)


def test_a_missed_lobe_is_flagged_first_even_at_high_confidence() -> None:
    truth = _ellipsoid()
    proposal = truth.copy()
    proposal[32:, :, 9] = False  # half the section missed on slice 9
    conf = np.where(proposal.any(axis=(0, 1)), 0.9, np.nan)
    conf[20] = 0.85  # the old rule's pick: lowest confidence, a correct slice
    flagged = slices_to_check(_image(truth), proposal, conf, k=5, keys=[15])
    assert flagged[0] == 9
    assert 15 not in flagged and len(flagged) == 5


def test_an_included_wall_is_flagged() -> None:
    truth = _ellipsoid()
    proposal = truth.copy()
    proposal[5:60, 5:12, 18] = True  # a band outside the structure: no edge supports it
    flagged = slices_to_check(_image(truth), proposal, np.full(30, 0.92), k=3, keys=[15])
    assert flagged[0] == 18


def test_a_run_cut_short_flags_the_slice_past_its_end() -> None:
    truth = _ellipsoid()
    proposal = truth.copy()
    proposal[:, :, 22:] = False  # propagation stopped while the section was still large
    conf = np.where(proposal.any(axis=(0, 1)), 0.9, np.nan)
    signals = slice_signals(_image(truth), proposal, conf, keys=[15])
    assert signals[22]["cut_short"] > 0.5
    assert set(signals[22]) == set(SIGNALS)
    assert slices_to_check(_image(truth), proposal, conf, k=1, keys=[15],
                           weights={"cut_short": 1.0}) == [22]


def test_other_axes_spacing_and_empty() -> None:
    truth = np.moveaxis(_ellipsoid(), 2, 0)
    proposal = truth.copy()
    proposal[9, 32:, :] = False
    flagged = slices_to_check(_image(truth), proposal, {s: 0.9 for s in range(30)}, k=2,
                              axis=0, spacing=(3.0, 0.8, 0.8))
    assert flagged[0] == 9
    assert slices_to_check(_image(truth), np.zeros_like(truth), np.full(30, np.nan)) == []
