"""Surface voxels and surface distances against brute force, cropping, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.distance import cdist

from medseg.errors import GeometryMismatchError, MedsegError, MetricInputError
from medseg.metrics import SurfaceDistances, surface_distances, surface_voxels
from tests.metrics.reference import perturb, random_blobs

masks = st.builds(
    lambda shape, seed, fill: random_blobs(shape, seed, fill),
    st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 9)),
    st.integers(0, 2**31 - 1), st.floats(0.05, 0.9))


@settings(max_examples=40, deadline=None)
@given(mask=masks)
def test_surface_voxels_are_mask_minus_its_6_connected_erosion(mask: np.ndarray) -> None:
    """Border of the image counts as background (scipy's erosion, border_value=0)."""
    expected = mask & ~ndimage.binary_erosion(mask)
    np.testing.assert_array_equal(surface_voxels(mask), expected)


def test_surface_of_a_box_is_its_shell_and_border_is_background() -> None:
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[1:5, 1:5, 1:5] = True
    surf = surface_voxels(mask)
    assert surf.sum() == 64 - 8  # 4^3 cube minus its 2^3 interior
    full = np.ones((3, 4, 5), dtype=bool)
    assert surface_voxels(full).sum() == 3 * 4 * 5 - 1 * 2 * 3


@settings(max_examples=40, deadline=None)
@given(ref=masks, seed=st.integers(0, 1000),
       spacing=st.tuples(*[st.floats(0.2, 6.0)] * 3))
def test_distances_equal_brute_force_in_voxel_order(ref: np.ndarray, seed: int,
                                                    spacing: tuple) -> None:
    pred = perturb(ref, seed)
    got = surface_distances(pred, ref, spacing)
    sp, sr = surface_voxels(pred), surface_voxels(ref)
    p_ijk, r_ijk = np.argwhere(sp), np.argwhere(sr)
    np.testing.assert_array_equal(got.pred_surface_ijk, p_ijk)
    np.testing.assert_array_equal(got.ref_surface_ijk, r_ijk)
    assert got.pred_to_ref.dtype == np.float64
    if len(p_ijk) and len(r_ijk):
        d = cdist(p_ijk * np.array(spacing), r_ijk * np.array(spacing))
        np.testing.assert_allclose(got.pred_to_ref, d.min(axis=1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.ref_to_pred, d.min(axis=0), rtol=1e-12, atol=1e-12)
    else:
        assert np.all(np.isinf(got.pred_to_ref)) and np.all(np.isinf(got.ref_to_pred))


def test_cropping_changes_nothing_and_indices_are_in_the_full_array() -> None:
    ref = random_blobs((10, 9, 7), 3, 0.4)
    pred = perturb(ref, 5)
    small = surface_distances(pred, ref, (0.7, 0.9, 3.0))
    big_p = np.zeros((40, 30, 20), dtype=bool)
    big_r = np.zeros_like(big_p)
    big_p[20:30, 5:14, 11:18] = pred
    big_r[20:30, 5:14, 11:18] = ref
    big = surface_distances(big_p, big_r, (0.7, 0.9, 3.0))
    # Only voxels touching the small image's border may differ (they stop being border voxels).
    inner = np.all((small.ref_surface_ijk > 0) & (small.ref_surface_ijk < [[9, 8, 6]]), axis=1)
    assert set(map(tuple, small.ref_surface_ijk[inner] + [20, 5, 11])) <= set(
        map(tuple, big.ref_surface_ijk))
    assert np.all(big_r[tuple(big.ref_surface_ijk.T)])
    assert np.all(big_p[tuple(big.pred_surface_ijk.T)])


def test_memory_layout_does_not_matter() -> None:
    """nibabel hands out Fortran-ordered arrays; views with strides must work too."""
    ref = random_blobs((14, 12, 9), 8, 0.3)
    pred = perturb(ref, 9)
    c = surface_distances(pred, ref, (0.7, 1.1, 2.9))
    f = surface_distances(np.asfortranarray(pred), np.asfortranarray(ref), (0.7, 1.1, 2.9))
    np.testing.assert_array_equal(c.pred_to_ref, f.pred_to_ref)
    np.testing.assert_array_equal(c.ref_to_pred, f.ref_to_pred)
    big_p = np.zeros((28, 12, 18), dtype=bool)
    big_r = np.zeros_like(big_p)
    big_p[::2, :, ::2], big_r[::2, :, ::2] = pred, ref
    v = surface_distances(big_p[::2, :, ::2], big_r[::2, :, ::2], (0.7, 1.1, 2.9))
    np.testing.assert_array_equal(c.ref_to_pred, v.ref_to_pred)


def test_far_apart_surfaces_use_the_exact_fallback() -> None:
    """Beyond the neighbour-offset ball the k-d tree answers; both agree with brute force."""
    a = np.zeros((60, 8, 8), dtype=bool)
    b = np.zeros_like(a)
    a[2:5, 2:6, 2:6] = True
    b[50:58, 1:7, 3:5] = True
    b[6, 3, 3] = True  # one near point, many far ones
    d = surface_distances(a, b, (1.0, 0.5, 0.5))
    pa, pb = d.pred_surface_ijk * [1.0, 0.5, 0.5], d.ref_surface_ijk * [1.0, 0.5, 0.5]
    full = cdist(pa, pb)
    np.testing.assert_allclose(d.pred_to_ref, full.min(axis=1), rtol=1e-12)
    np.testing.assert_allclose(d.ref_to_pred, full.min(axis=0), rtol=1e-12)
    assert d.hausdorff() > 40


def test_known_distances_with_anisotropic_spacing() -> None:
    """Two single voxels: the distance is the spacing-weighted offset."""
    a = np.zeros((5, 5, 5), dtype=bool)
    b = np.zeros_like(a)
    a[1, 1, 1] = True
    b[3, 2, 4] = True
    d = surface_distances(a, b, (0.5, 2.0, 3.0))
    expected = np.sqrt((2 * 0.5) ** 2 + 2.0**2 + (3 * 3.0) ** 2)
    assert d.pred_to_ref.tolist() == pytest.approx([expected])
    assert d.hausdorff() == pytest.approx(expected)
    assert d.hausdorff(95) == pytest.approx(expected)
    assert d.assd() == pytest.approx(expected)
    assert d.nsd(expected) == 1.0 and d.nsd(expected - 1e-6) == 0.0


def test_empty_conventions_of_surface_distances() -> None:
    ref = np.zeros((4, 4, 4), dtype=bool)
    ref[1:3, 1:3, 1:3] = True
    empty = np.zeros_like(ref)
    one = surface_distances(empty, ref, (1.0, 1.0, 1.0))
    assert one.pred_to_ref.size == 0 and one.ref_to_pred.size == 8
    assert np.all(np.isinf(one.ref_to_pred)) and one.one_empty
    assert (one.hausdorff(), one.hausdorff(95), one.assd(), one.nsd(2.0)) == (
        np.inf, np.inf, np.inf, 0.0)
    both = surface_distances(empty, empty, (1.0, 1.0, 1.0))
    assert both.both_empty and both.pred_surface_ijk.shape == (0, 3)
    assert (both.hausdorff(), both.hausdorff(95), both.assd(), both.nsd(2.0)) == (
        0.0, 0.0, 0.0, 1.0)


def test_surface_distances_is_frozen() -> None:
    d = SurfaceDistances(np.zeros(1), np.zeros(1))
    with pytest.raises(AttributeError):
        d.pred_to_ref = np.ones(1)  # type: ignore[misc]


@pytest.mark.parametrize(("pred", "ref", "spacing", "error"), [
    (np.zeros((3, 3, 3), bool), np.zeros((3, 3, 4), bool), (1, 1, 1), GeometryMismatchError),
    (np.full((3, 3, 3), 2), np.zeros((3, 3, 3), bool), (1, 1, 1), MetricInputError),
    (np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool), (1, 1), MetricInputError),
    (np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool), (1, 0, 1), MetricInputError),
    (np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool), (1, np.nan, 1), MetricInputError),
    (np.zeros((1, 3, 3, 3), bool), np.zeros((1, 3, 3, 3), bool), (1, 1, 1), MetricInputError),
    (np.array(["a"]), np.array(["a"]), (1,), MetricInputError),
])
def test_invalid_inputs_raise_medseg_errors(pred: np.ndarray, ref: np.ndarray, spacing: tuple,
                                            error: type) -> None:
    with pytest.raises(error) as info:
        surface_distances(pred, ref, spacing)
    assert isinstance(info.value, MedsegError)


def test_zero_one_integer_masks_are_accepted() -> None:
    ref = random_blobs((8, 8, 8), 1, 0.3)
    a = surface_distances(ref.astype(np.uint8), ref.astype(np.float32), (1, 1, 2))
    b = surface_distances(ref, ref, (1, 1, 2))
    np.testing.assert_array_equal(a.pred_to_ref, b.pred_to_ref)


def test_bad_percentile_and_tolerance() -> None:
    d = surface_distances(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), (1, 1, 1))
    with pytest.raises(MetricInputError):
        d.hausdorff(101)
    for tau in (-1.0, np.inf, "x"):
        with pytest.raises(MetricInputError):
            d.nsd(tau)  # type: ignore[arg-type]
