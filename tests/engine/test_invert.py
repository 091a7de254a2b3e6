"""Label inversion: the boundary-only path equals the argmax of full trilinear resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.engine.invert import (
    first_argmax_,
    iter_native_labels,
    iter_native_slabs,
)


def _smooth_probs(shape: tuple[int, int, int], k: int, seed: int, sigma: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    logits = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), sigma) * 40
                       for _ in range(k)]).astype(np.float32)
    return torch.softmax(torch.from_numpy(logits), 0)


def _reference(probs: torch.Tensor, mapping, shape) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = torch.empty(shape, dtype=torch.uint8)
    for i0, i1, v in iter_native_slabs(probs, mapping, shape):
        first_argmax_(v, out[i0:i1])
    return out.numpy()


# model grid (20, 24, 18); input axes: i -> model z flipped, j -> model x scaled, k -> model y
MAPPING = [(2, -0.37, 17.2), (0, 0.61, 0.3), (1, 0.8, -0.4)]
NATIVE = (50, 31, 29)


@pytest.mark.parametrize("sigma", [3.0, 0.0])
@pytest.mark.parametrize("dense_fraction", [0.0, 0.25, 1.0])
def test_labels_equal_argmax_of_resampled_probabilities(sigma: float,
                                                        dense_fraction: float) -> None:
    probs = _smooth_probs((20, 24, 18), 4, seed=1, sigma=sigma)
    ref = _reference(probs, MAPPING, NATIVE)
    got = np.empty(NATIVE, dtype=np.uint8)
    for i0, i1, lab in iter_native_labels(probs, MAPPING, NATIVE, slab_voxels=7 * 31 * 29,
                                          dense_fraction=dense_fraction):
        got[i0:i1] = lab.numpy()
    np.testing.assert_array_equal(got, ref)
    assert len(np.unique(ref)) == 4  # every class present: boundaries were exercised


def test_ties_pick_the_first_class_like_argmax() -> None:
    probs = torch.full((3, 6, 6, 6), 1 / 3)
    probs[2, 3:] = 0.5  # class 2 wins on half; elsewhere a three-way tie -> class 0
    mapping = [(0, 0.5, 0.0), (1, 0.5, 0.0), (2, 0.5, 0.0)]
    got = np.concatenate([lab.numpy() for _, _, lab in
                          iter_native_labels(probs, mapping, (12, 12, 12), dense_fraction=1.0)])
    np.testing.assert_array_equal(got, _reference(probs, mapping, (12, 12, 12)))
    assert set(np.unique(got)) == {0, 2}


def test_memory_bounds_split_slabs_and_boundary_chunks_without_changing_labels() -> None:
    probs = _smooth_probs((20, 24, 18), 6, seed=2, sigma=2.0)
    ref = _reference(probs, MAPPING, NATIVE)
    parts = list(iter_native_labels(probs, MAPPING, NATIVE, slab_bytes=4 * 6 * 4 * 50,
                                    dense_fraction=1.0))
    assert len(parts) == NATIVE[0]  # the byte budget allows one input row per slab
    got = np.concatenate([lab.numpy() for _, _, lab in parts])
    np.testing.assert_array_equal(got, ref)
