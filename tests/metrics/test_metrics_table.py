"""LabelMetrics rows: empty-mask conventions, multi-label maps, names, per-slice Dice."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import medseg
from medseg.errors import GeometryMismatchError, MetricInputError
from medseg.metrics import LabelMetrics, binary_metrics, evaluate_label_maps, per_slice_dice
from medseg.volume import Volume
from tests.conftest import rotation
from tests.metrics.reference import TOTALSEG, random_blobs

SPACING = (0.6, 0.9, 2.5)
FIELDS = ["label", "name", "dice", "iou", "sensitivity", "precision", "volume_pred_ml",
          "volume_ref_ml", "rel_volume_diff", "hd", "hd95", "assd", "nsd", "nsd_tolerance_mm",
          "flags"]


def _box(shape: tuple[int, int, int], lo: tuple, hi: tuple) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def _same(a: dict, b: dict) -> bool:
    """Dict equality where NaN equals NaN."""
    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k]
        for k in a)


def test_overlap_and_volume_of_known_boxes() -> None:
    ref = _box((10, 10, 6), (2, 2, 1), (6, 6, 5))  # 64 voxels
    pred = _box((10, 10, 6), (4, 2, 1), (8, 6, 5))  # 64 voxels, 32 shared
    m = binary_metrics(pred, ref, SPACING, nsd_tolerance_mm=1.0, label=3, name="liver")
    voxel_ml = 0.6 * 0.9 * 2.5 / 1000
    assert (m.label, m.name, m.flags) == (3, "liver", [])
    assert m.dice == pytest.approx(0.5) and m.iou == pytest.approx(32 / 96)
    assert m.sensitivity == pytest.approx(0.5) and m.precision == pytest.approx(0.5)
    assert m.volume_pred_ml == pytest.approx(64 * voxel_ml)
    assert m.volume_ref_ml == pytest.approx(64 * voxel_ml)
    assert m.rel_volume_diff == pytest.approx(0.0)
    assert m.hd == pytest.approx(2 * 0.6)  # the box moved by 2 voxels along i
    assert m.nsd_tolerance_mm == 1.0


def test_as_dict_has_every_field_and_serialises() -> None:
    ref = random_blobs((8, 8, 8), 2, 0.3)
    m = binary_metrics(ref, ref, SPACING)
    d = m.as_dict()
    assert list(d) == FIELDS
    assert isinstance(m, LabelMetrics)
    d["flags"].append("x")
    assert m.flags == []  # a copy
    json.dumps(binary_metrics(np.zeros_like(ref), ref, SPACING).as_dict())  # inf/nan allowed


@pytest.mark.parametrize("case", ["empty_pred", "empty_ref", "both_empty"])
def test_empty_masks_give_defined_values_and_flags_without_warnings(case: str) -> None:
    box = _box((7, 8, 5), (1, 2, 1), (4, 6, 4))
    empty = np.zeros_like(box)
    pred, ref = {"empty_pred": (empty, box), "empty_ref": (box, empty),
                 "both_empty": (empty, empty)}[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics(pred, ref, SPACING, label=2, name="kidney")
    assert m.flags == [case]
    if case == "both_empty":
        assert (m.dice, m.iou, m.sensitivity, m.precision, m.nsd) == (1.0,) * 5
        assert (m.hd, m.hd95, m.assd, m.rel_volume_diff) == (0.0,) * 4
        assert (m.volume_pred_ml, m.volume_ref_ml) == (0.0, 0.0)
        return
    assert (m.dice, m.iou, m.nsd) == (0.0, 0.0, 0.0)
    assert (m.hd, m.hd95, m.assd) == (np.inf,) * 3
    if case == "empty_pred":
        assert m.sensitivity == 0.0 and math.isnan(m.precision) and m.rel_volume_diff == -1.0
    else:
        assert m.precision == 0.0 and math.isnan(m.sensitivity) and m.rel_volume_diff == np.inf


def _maps() -> tuple[Volume, Volume]:
    """Reference: TotalSegmentator labels; prediction: shifted copy, gallbladder (4) removed,
    a false-positive label 120 added."""
    ref = medseg.read(TOTALSEG)
    arr = np.roll(ref.array, 1, axis=0).copy()
    arr[arr == 4] = 0
    arr[5:9, 5:9, 3:6] = 120
    pred = ref.with_array(arr, labels={**(ref.labels or {}), 120: "extra_fp"})
    return pred, ref


def test_multi_label_maps_give_one_row_per_label_equal_to_binary_metrics() -> None:
    pred, ref = _maps()
    rows = evaluate_label_maps(pred, ref, nsd_tolerance_mm=3.0)
    present = sorted(({int(v) for v in np.unique(ref.array)}
                      | {int(v) for v in np.unique(pred.array)}) - {0})
    assert [r.label for r in rows] == present
    by_label = {r.label: r for r in rows}
    assert ref.labels is not None
    assert by_label[5].name == ref.labels[5] == "liver"
    assert by_label[120].name == "extra_fp" and by_label[120].flags == ["empty_ref"]
    assert by_label[4].flags == ["empty_pred"]
    for value in (1, 4, 5, 13, 120):
        direct = binary_metrics(pred.array == value, ref.array == value, ref.spacing,
                                nsd_tolerance_mm=3.0, label=value, name=by_label[value].name)
        assert _same(by_label[value].as_dict(), direct.as_dict())


def test_label_names_precedence_and_explicit_labels() -> None:
    ref_arr = np.zeros((12, 10, 6), dtype=np.uint8)
    ref_arr[2:6, 2:6, 1:4] = 1
    pred_arr = np.roll(ref_arr, 1, axis=1)
    pred_arr[8:11, 6:9, 2:5] = 2
    ref = Volume(ref_arr, SPACING, labels={1: "ref_one"})
    pred = Volume(pred_arr, SPACING, labels={1: "pred_one", 2: "pred_two"})
    assert [(r.label, r.name) for r in evaluate_label_maps(pred, ref)] == [
        (1, "ref_one"), (2, "pred_two")]
    rows = evaluate_label_maps(pred, ref, labels={1: "given", 7: "absent"})
    assert [(r.label, r.name, r.flags) for r in rows] == [
        (1, "given", []), (7, "absent", ["both_empty"])]
    bare = [r.name for r in evaluate_label_maps(Volume(pred_arr, SPACING),
                                                Volume(ref_arr, SPACING))]
    assert bare == ["label_1", "label_2"]


def test_geometry_matters_only_through_spacing_and_mismatch_raises() -> None:
    arr = np.zeros((10, 9, 7), dtype=np.int16)
    arr[2:7, 3:7, 1:5] = 1
    pred_arr = np.roll(arr, 1, axis=2)
    oblique = rotation("z", 15) @ rotation("x", 20)
    ref_o = Volume(arr, SPACING, (-3.0, 4.0, 5.0), oblique)
    flipped = np.diag([-1.0, 1.0, -1.0])
    ref_f = Volume(arr, SPACING, (10.0, 0.0, 0.0), flipped)
    a = evaluate_label_maps(ref_o.with_array(pred_arr, labels={}), ref_o)[0]
    b = evaluate_label_maps(ref_f.with_array(pred_arr, labels={}), ref_f)[0]
    assert a.as_dict() == b.as_dict()
    assert a.hd == pytest.approx(2.5)  # one slice of 2.5 mm
    other = Volume(pred_arr, (0.6, 0.9, 2.0), (-3.0, 4.0, 5.0), oblique)
    with pytest.raises(GeometryMismatchError, match="spacing"):
        evaluate_label_maps(other, ref_o)
    with pytest.raises(GeometryMismatchError, match="direction"):
        evaluate_label_maps(Volume(pred_arr, SPACING, (-3.0, 4.0, 5.0)), ref_o)


def test_float_label_maps_and_invalid_labels() -> None:
    arr = np.zeros((6, 6, 4), dtype=np.float32)  # BRATS stores float32 labels
    arr[1:4, 1:4, 1:3] = 2.0
    rows = evaluate_label_maps(Volume(arr, SPACING), Volume(arr, SPACING))
    assert [(r.label, r.dice) for r in rows] == [(2, 1.0)]
    with pytest.raises(MetricInputError, match="non-integer"):
        evaluate_label_maps(Volume(arr + 0.5, SPACING), Volume(arr, SPACING))
    with pytest.raises(MetricInputError, match="negative"):
        evaluate_label_maps(Volume(-arr.astype(np.int8), SPACING), Volume(arr, SPACING))
    with pytest.raises(MetricInputError, match="> 0"):
        evaluate_label_maps(Volume(arr, SPACING), Volume(arr, SPACING), labels={0: "bg"})
    with pytest.raises(MetricInputError, match="tolerance"):
        evaluate_label_maps(Volume(arr, SPACING), Volume(arr, SPACING), nsd_tolerance_mm=-1)


def test_empty_maps_give_no_rows() -> None:
    arr = np.zeros((5, 5, 5), dtype=np.uint8)
    assert evaluate_label_maps(Volume(arr, SPACING), Volume(arr, SPACING)) == []


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_per_slice_dice_matches_a_loop_and_is_nan_where_both_empty(axis: int) -> None:
    ref = random_blobs((9, 8, 7), 11, 0.3)
    pred = np.roll(ref, 1, axis=0)
    ref[:, :, 0] = pred[:, :, 0] = False  # an empty slice along k
    got = per_slice_dice(pred, ref, axis=axis)
    assert got.shape == (ref.shape[axis],) and got.dtype == np.float64
    for n in range(ref.shape[axis]):
        p, r = np.take(pred, n, axis=axis), np.take(ref, n, axis=axis)
        total = p.sum() + r.sum()
        if total == 0:
            assert np.isnan(got[n])
        else:
            assert got[n] == pytest.approx(2 * (p & r).sum() / total)
    if axis in (2, -1):
        assert np.isnan(got[0])
    with pytest.raises(MetricInputError):
        per_slice_dice(pred, ref, axis=3)
