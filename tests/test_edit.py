"""fill_between: shape interpolation between painted slices, as Slicer/ITK-SNAP users expect."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medseg.edit import annotated_slices, fill_between
from medseg.errors import LabelNotFoundError, MedsegError, NothingToFillError


def _sphere(shape: tuple[int, int, int], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    dist2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return dist2 <= radius**2


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sphere_painted_every_4th_slice_comes_back(axis: int) -> None:
    sphere = _sphere((48, 44, 40), (24, 21, 19), 14.0)
    painted = np.zeros(sphere.shape, dtype=np.uint8)
    keep = [slice(None)] * 3
    keep[axis] = slice(None, None, 4)
    painted[tuple(keep)] = sphere[tuple(keep)] * 3

    filled = fill_between(painted, 3, axis)

    assert _dice(filled == 3, sphere) > 0.9
    # the sparse input alone is far from the sphere, so the check can fail
    assert _dice(painted == 3, sphere) < 0.5
    # painted slices are unchanged
    np.testing.assert_array_equal(filled[tuple(keep)], painted[tuple(keep)])
    assert filled.dtype == painted.dtype


def test_other_labels_and_input_untouched() -> None:
    sphere = _sphere((40, 40, 30), (20, 20, 15), 12.0)
    labels = np.zeros(sphere.shape, dtype=np.int16)
    labels[:, :, ::5] = sphere[:, :, ::5] * 2
    labels[15:25, 15:25, 7] = 5  # another label inside the gap
    before = labels.copy()

    filled = fill_between(labels, 2, axis=-1)

    np.testing.assert_array_equal(labels, before)  # pure: input not modified
    assert np.all(filled[15:25, 15:25, 7] == 5)
    assert np.sum(filled == 5) == np.sum(before == 5)
    changed = filled != before
    assert changed.any()
    assert np.all(before[changed] == 0) and np.all(filled[changed] == 2)
    # nothing extrapolated outside the first and last painted slice
    first, last = annotated_slices(before, 2, 2)[0], annotated_slices(before, 2, 2)[-1]
    assert not np.any(filled[:, :, :first] == 2) and not np.any(filled[:, :, last + 1 :] == 2)


def test_moving_structure_travels_instead_of_vanishing() -> None:
    labels = np.zeros((10, 60, 60), dtype=np.uint8)
    labels[0, 10:20, 10:20] = 1
    labels[9, 40:50, 40:50] = 1  # no overlap with slice 0

    filled = fill_between(labels, 1, axis=0)

    for k in range(1, 9):
        area = int(np.sum(filled[k] == 1))
        assert 60 <= area <= 140, (k, area)
    ys, xs = np.nonzero(filled[5] == 1)
    assert 25 <= ys.mean() <= 35 and 25 <= xs.mean() <= 35


def test_linear_size_change_and_anisotropic_spacing() -> None:
    labels = np.zeros((64, 64, 9), dtype=np.uint8)
    square = _sphere((64, 64, 1), (32, 32, 0), 8.0)[:, :, 0]
    big = _sphere((64, 64, 1), (32, 32, 0), 24.0)[:, :, 0]
    labels[:, :, 0] = square
    labels[:, :, 8] = big
    filled = fill_between(labels, 1, axis=2, spacing=(0.7, 0.7, 5.0))
    radii = [np.sqrt(np.sum(filled[:, :, k]) / np.pi) for k in range(9)]
    assert all(b > a for a, b in itertools.pairwise(radii))
    assert abs(radii[4] - 16.0) < 1.0


def test_identical_slices_give_a_straight_prism() -> None:
    labels = np.zeros((30, 30, 12), dtype=np.uint8)
    shape = np.zeros((30, 30), dtype=bool)
    shape[5:20, 8:12] = True
    shape[5:9, 8:25] = True  # an L: concave, so a convex-hull fill would fail
    labels[:, :, 2] = shape
    labels[:, :, 10] = shape
    filled = fill_between(labels, 1, axis=2)
    for k in range(2, 11):
        np.testing.assert_array_equal(filled[:, :, k] == 1, shape)


def test_no_gap_is_a_copy() -> None:
    labels = np.zeros((8, 8, 4), dtype=np.uint8)
    labels[2:5, 2:5, 1:3] = 4
    filled = fill_between(labels, 4, axis=2)
    np.testing.assert_array_equal(filled, labels)
    assert filled is not labels


def test_errors_are_typed_and_say_what_to_do() -> None:
    labels = np.zeros((8, 8, 6), dtype=np.uint8)
    with pytest.raises(LabelNotFoundError, match="paint it on two slices"):
        fill_between(labels, 1, axis=2)
    labels[2:4, 2:4, 3] = 1
    with pytest.raises(NothingToFillError, match="only on slice 3"):
        fill_between(labels, 1, axis=2)
    with pytest.raises(MedsegError, match="background"):
        fill_between(labels, 0, axis=2)
    with pytest.raises(ValueError, match="axis 3"):
        fill_between(labels, 1, axis=3)
    with pytest.raises(ValueError, match="integer"):
        fill_between(labels.astype(float), 1, axis=2)
