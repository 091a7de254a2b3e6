"""Volume geometry: affines, frames, world <-> index, grid checks."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import GeometryError, GeometryMismatchError
from medseg.volume import LPS_TO_RAS, Volume, lps_to_ras
from tests.conftest import make_volume, rotation


def test_affine_lps_maps_index_to_world(geometry_volume: Volume) -> None:
    v = geometry_volume
    ijk = np.array([3, 5, 2])
    expected = np.asarray(v.origin) + v.direction @ (np.asarray(v.spacing) * ijk)
    np.testing.assert_allclose(v.index_to_world(ijk), expected, atol=1e-9)
    np.testing.assert_allclose((v.affine_lps @ [*ijk, 1])[:3], expected, atol=1e-9)


def test_ras_is_lps_with_x_y_negated(geometry_volume: Volume) -> None:
    v = geometry_volume
    ijk = np.array([[1, 2, 3], [7, 0, 4]])
    lps = v.index_to_world(ijk)
    ras = v.index_to_world(ijk, frame="RAS")
    np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(lps_to_ras(lps_to_ras(v.affine_lps)), v.affine_lps)
    np.testing.assert_array_equal(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))


def test_world_to_index_inverts(geometry_volume: Volume) -> None:
    v = geometry_volume
    ijk = np.array([[0.5, 2.0, 7.25], [19, 15, 0]])
    np.testing.assert_allclose(v.world_to_index(v.index_to_world(ijk)), ijk, atol=1e-9)


def test_from_affine_round_trip_both_frames(geometry_volume: Volume) -> None:
    v = geometry_volume
    for frame, aff in (("RAS", v.affine_ras), ("LPS", v.affine_lps)):
        w = Volume.from_affine(v.array, aff, frame=frame)
        assert w.grid_differences(v, atol_mm=1e-9) == []


def test_orientation_codes() -> None:
    assert make_volume("identity").orientation == "LPS"
    assert make_volume("flipped").orientation == "RPI"
    ras = Volume.from_affine(np.zeros((2, 2, 2)), np.eye(4), frame="RAS")
    assert ras.orientation == "RAS"


def test_non_orthonormal_direction_is_refused() -> None:
    sheared = np.eye(3)
    sheared[0, 1] = 0.2
    with pytest.raises(GeometryError, match="not orthonormal"):
        Volume(np.zeros((2, 2, 2)), (1, 1, 1), direction=sheared)


def test_float32_noise_in_direction_is_cleaned() -> None:
    d = rotation("y", 33).astype(np.float32).astype(np.float64)
    v = Volume(np.zeros((2, 2, 2)), (1, 1, 1), direction=d)
    np.testing.assert_allclose(v.direction.T @ v.direction, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("bad", [(0, 1, 1), (1, -2, 1), (1, float("nan"), 1)])
def test_bad_spacing_is_refused(bad: tuple[float, float, float]) -> None:
    with pytest.raises(GeometryError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), bad)


def test_not_3d_is_refused() -> None:
    with pytest.raises(GeometryError, match="3D"):
        Volume(np.zeros((2, 2)), (1, 1, 1))


def test_check_same_grid_names_each_difference() -> None:
    a = make_volume("oblique")
    b = Volume(a.array[:, :, :-1], (0.8, 0.9, 2.6), (-101.25, 33.5, -7.0), np.eye(3))
    with pytest.raises(GeometryMismatchError) as err:
        a.check_same_grid(b, what="mask", reference="CT")
    msg = str(err.value)
    for part in ("mask", "CT", "shape", "spacing", "origin", "direction"):
        assert part in msg
    a.check_same_grid(a.with_array(a.array.copy()))


def test_with_array_keeps_geometry_and_sets_labels() -> None:
    v = make_volume("flipped")
    m = v.with_array((v.array > 0).astype(np.uint8), labels={1: "bright"})
    assert m.is_label and m.labels == {1: "bright"} and m.modality == "SEG"
    assert m.grid_differences(v) == []
    with pytest.raises(GeometryMismatchError):
        v.with_array(np.zeros((1, 2, 3)))


def test_describe_reports_labels_present() -> None:
    v = make_volume("identity")
    m = v.with_array(np.zeros(v.shape, np.uint8), labels={1: "a", 2: "b"})
    m.array[0, 0, 0] = 2
    d = m.describe()
    assert d["labels"] == {"2": "b"} and d["value_range"] == [0.0, 2.0]


@pytest.mark.parametrize("code", ["LPS", "RAS", "ASL", "IRP"])
def test_reorient_keeps_every_voxel_at_its_world_position(geometry_volume: Volume,
                                                          code: str) -> None:
    v = geometry_volume
    r = v.reorient(code)
    rng = np.random.default_rng(1)
    ijk = np.stack([rng.integers(0, s, 20) for s in v.shape], axis=1)
    world = v.index_to_world(ijk)
    rijk = np.rint(r.world_to_index(world)).astype(int)
    np.testing.assert_allclose(r.index_to_world(rijk), world, atol=1e-6)
    np.testing.assert_array_equal(r.array[tuple(rijk.T)], v.array[tuple(ijk.T)])
    assert r.orientation == code


def test_reorient_rejects_bad_codes() -> None:
    with pytest.raises(ValueError, match="orientation code"):
        make_volume("identity").reorient("LLS")


def test_conform_to_flipped_copy_is_exact_and_other_grids_fail(geometry_volume: Volume) -> None:
    v = geometry_volume
    flipped = v.reorient("RAI" if v.orientation != "RAI" else "LPS")
    assert flipped.grid_differences(v)
    back = flipped.conform_to(v)
    assert back.grid_differences(v, atol_mm=1e-9) == []
    np.testing.assert_array_equal(back.array, v.array)
    shifted = Volume(v.array, v.spacing, np.add(v.origin, 0.5), v.direction)
    with pytest.raises(GeometryMismatchError, match="origin"):
        shifted.conform_to(v)
