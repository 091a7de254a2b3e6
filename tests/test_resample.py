"""Tests of medseg.resample: world-space resampling onto a reference grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.io import read
from medseg.resample import resample_to
from medseg.volume import Volume

DATA = Path(__file__).resolve().parents[1] / "data_samples"


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def oblique_labels() -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4, size=(9, 7, 5)).astype(np.uint8)
    return Volume(arr, (0.8, 1.1, 3.5), (10.0, -20.0, 5.0), _rotation(0.3, -0.2, 0.5),
                  labels={1: "a", 2: "b", 3: "c"}, modality="SEG")


def test_identity_is_exact_copy_brain1() -> None:
    lab = read(DATA / "pyradiomics/brain1_label.nrrd", label=True)
    out = resample_to(lab, lab)
    assert out.array is not lab.array
    np.testing.assert_array_equal(out.array, lab.array)
    assert out.array.dtype == lab.array.dtype
    assert out.labels == lab.labels and out.modality == lab.modality
    assert "resampled_from" not in out.meta


def test_flipped_reference_grid_flips_voxels(oblique_labels: Volume) -> None:
    v = oblique_labels
    d = v.direction.copy()
    d[:, 0] *= -1  # same physical voxels, i axis reversed
    origin = v.index_to_world([v.shape[0] - 1, 0, 0])
    ref = Volume(np.zeros(v.shape), v.spacing, tuple(origin), d)
    out = resample_to(v, ref)
    np.testing.assert_array_equal(out.array, v.array[::-1])
    assert out.labels == v.labels
    assert out.meta["resampled_from"]["interpolator"] == "nearest neighbour"


def test_permuted_reference_grid_transposes_voxels(oblique_labels: Volume) -> None:
    v = oblique_labels
    perm = (2, 0, 1)
    ref = Volume(np.zeros(tuple(v.shape[p] for p in perm)), tuple(v.spacing[p] for p in perm),
                 v.origin, v.direction[:, perm])
    out = resample_to(v, ref)
    np.testing.assert_array_equal(out.array, np.transpose(v.array, perm))
    assert out.shape == ref.shape and out.spacing == ref.spacing


def test_labels_never_blend_on_oblique_grid(oblique_labels: Volume) -> None:
    v = oblique_labels
    ref = Volume(np.zeros((20, 18, 12)), (0.6, 0.6, 1.0), (6.0, -24.0, 2.0), _rotation(0, 0, 0.1))
    out = resample_to(v, ref)
    assert set(np.unique(out.array)) <= {0, 1, 2, 3}
    assert out.array.dtype == np.uint8
    # every output voxel holds the input value at the nearest input voxel of the same point
    ijk_out = np.argwhere(np.ones(ref.shape, bool))
    cont = v.world_to_index(ref.index_to_world(ijk_out))
    inside = np.all((cont > -0.5 + 1e-3) & (cont < np.array(v.shape) - 0.5 - 1e-3), axis=1)
    clear = np.all(np.abs(cont - np.round(cont)) < 0.45, axis=1) & inside
    assert clear.sum() > 100
    near = np.round(cont[clear]).astype(int)
    expected = v.array[near[:, 0], near[:, 1], near[:, 2]]
    got = out.array[ijk_out[clear, 0], ijk_out[clear, 1], ijk_out[clear, 2]]
    np.testing.assert_array_equal(got, expected)
    outside = ~np.all((cont > -0.5) & (cont < np.array(v.shape) - 0.5), axis=1)
    assert outside.any()
    assert np.all(out.array[tuple(ijk_out[outside].T)] == 0)


def test_anisotropic_upsampling_keeps_original_slices_brain1() -> None:
    lab = read(DATA / "pyradiomics/brain1_label.nrrd", label=True)
    crop = Volume(lab.array[150:214, 80:160, :], lab.spacing,
                  tuple(lab.index_to_world([150, 80, 0])), lab.direction, labels=lab.labels)
    assert crop.array.sum() > 0
    sp = crop.spacing
    ref = Volume(np.zeros((64, 80, 2 * crop.shape[2] - 1)), (sp[0], sp[1], sp[2] / 2),
                 crop.origin, crop.direction)
    out = resample_to(crop, ref, label=True)
    np.testing.assert_array_equal(out.array[:, :, ::2], crop.array)
    assert set(np.unique(out.array)) == {0, 1}
    assert out.array.sum() > crop.array.sum()


def test_linear_interpolation_for_images() -> None:
    i = np.arange(6, dtype=np.int16)
    arr = np.broadcast_to((i * 10)[:, None, None], (6, 3, 2)).copy()
    img = Volume(arr, (2.0, 1.0, 4.0), (0.0, 0.0, 0.0), modality="CT")
    ref = Volume(np.zeros((6, 3, 2)), (2.0, 1.0, 4.0), (1.0, 0.0, 0.0))  # half a voxel along i
    out = resample_to(img, ref)
    assert out.array.dtype == np.float32 and out.modality == "CT" and out.labels is None
    np.testing.assert_allclose(out.array[:5, 1, 0], [5, 15, 25, 35, 45], atol=1e-4)
    assert out.array[5, 1, 0] == pytest.approx(0.0)  # outside: the image minimum


def test_label_flag_forces_nearest_on_unlabelled_volume() -> None:
    arr = np.zeros((4, 4, 4), bool)
    arr[1:3, 1:3, 1:3] = True
    v = Volume(arr, (1.0, 1.0, 1.0))
    ref = Volume(np.zeros((8, 8, 8)), (0.5, 0.5, 0.5), (-0.25, -0.25, -0.25))
    out = resample_to(v, ref, label=True)
    assert out.array.dtype == np.bool_
    assert out.array.sum() == 8 * arr.sum()
