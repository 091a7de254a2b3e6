"""Display orientation, slice choice and worst-boundary location (medseg.report.slices)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.metrics import binary_metrics, surface_distances
from medseg.report.slices import (
    VIEWS,
    display_frame,
    error_slices,
    view_pixel_mm,
    view_plane,
    view_point,
    worst_boundary_point,
)
from medseg.volume import Volume
from tests.conftest import make_volume, rotation


@pytest.mark.parametrize("kind", ["identity", "oblique", "flipped", "anisotropic"])
def test_display_frame_axes_point_left_posterior_superior(kind: str) -> None:
    vol = make_volume(kind)
    frame = display_frame(vol)
    assert sorted(frame.perm) == [0, 1, 2]
    index = np.arange(np.prod(vol.shape)).reshape(vol.shape)
    canon = frame.canonical(index)
    assert canon.shape == frame.shape
    # one step along display axis d moves the world point toward L, P, S respectively
    for d in range(3):
        a, b = [1, 1, 1], [1, 1, 1]
        b[d] += 1
        ijk_a = np.unravel_index(int(canon[tuple(a)]), vol.shape)
        ijk_b = np.unravel_index(int(canon[tuple(b)]), vol.shape)
        step = vol.index_to_world(np.array(ijk_b)) - vol.index_to_world(np.array(ijk_a))
        assert step[d] > 0.5 * frame.spacing[d]
        assert frame.to_display(ijk_a) == tuple(a)
    if kind == "oblique":
        assert 10 < frame.obliquity_deg < 30
    else:
        assert frame.obliquity_deg == 0


def test_views_are_radiological_with_physical_pixels() -> None:
    """Axial: patient's right on image left, anterior on top; coronal/sagittal: superior on
    top; sagittal: anterior on the left. A RAS-stored volume (like a NIfTI) is used."""
    vol = Volume(np.zeros((6, 5, 4)), (0.7, 0.8, 3.0), direction=np.diag([-1.0, -1.0, 1.0]))
    frame = display_frame(vol)
    arr = np.zeros(vol.shape)
    right_ant_sup = (5, 4, 3)  # i toward R, j toward A, k toward S: largest indices
    arr[right_ant_sup] = 1
    canon = frame.canonical(arr)
    xyz = frame.to_display(right_ant_sup)
    assert xyz == (0, 0, 3)  # most right (x toward L), most anterior, most superior
    axial = view_plane(canon, "axial", xyz[2])
    assert axial[0, 0] == 1  # top-left = anterior, patient's right
    coronal = view_plane(canon, "coronal", xyz[1])
    assert coronal[0, 0] == 1  # top-left = superior, patient's right
    sagittal = view_plane(canon, "sagittal", xyz[0])
    assert sagittal[0, 0] == 1  # top-left = superior, anterior
    for view in VIEWS:
        col, row = view_point(frame, view, xyz)
        assert (row, col) == (0, 0)
    assert view_pixel_mm(frame, "coronal") == (0.7, 3.0)
    assert view_pixel_mm(frame, "sagittal") == (0.8, 3.0)


def test_worst_boundary_point_is_the_hausdorff_point() -> None:
    shape = (30, 30, 12)
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    ref = ((ii - 15) ** 2 + (jj - 15) ** 2 <= 36) & (kk >= 3) & (kk < 9)
    pred = ref.copy()
    pred[20:25, 14:17, 5:7] = True  # a spike sticking out of the prediction
    spacing = (0.8, 0.8, 2.5)
    sd = surface_distances(pred, ref, spacing)
    worst = worst_boundary_point(sd, 3)
    assert worst is not None and worst.label == 3
    assert worst.side == "prediction"
    assert worst.distance_mm == pytest.approx(binary_metrics(pred, ref, spacing).hd)
    assert worst.ijk[0] == 24  # the tip of the spike
    assert pred[worst.ijk] and not ref[worst.ijk]
    empty = surface_distances(np.zeros(shape, bool), ref, spacing)
    assert worst_boundary_point(empty, 3) is None


def test_error_slices_pick_most_disagreement() -> None:
    vol = Volume(np.zeros((10, 8, 6)), (1.0, 1.0, 2.0), direction=rotation("z", 180))
    frame = display_frame(vol)  # i toward R, j toward A: both display axes flipped
    ref = np.zeros(vol.shape, np.uint8)
    pred = ref.copy()
    pred[2, :, :] = 1  # 48 wrong voxels on array slice i=2
    pred[7, 3, 4] = 1
    sl = error_slices(pred, ref, frame)
    assert frame.array_index("sagittal", sl["sagittal"]) == ("i", 2)
    assert frame.array_index("axial", sl["axial"]) == ("k", 4)
    same = error_slices(ref, ref, frame)
    assert same == {"axial": 3, "coronal": 4, "sagittal": 5}
