"""3D propagation: stopping rules, two-key fusion, local re-propagation, the keys API.

The deterministic fake backend (mask = bright voxels inside the box prompt, score = mean
brightness) makes every expected slice range computable by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io
from medseg.engine.prompt import PromptSession
from medseg.engine.propagate import PropagationConfig, PropagationResult, Propagator
from medseg.errors import PromptError
from medseg.volume import Volume
from tests.conftest import rotation
from tests.prompt_factory import ThresholdModel, tiny_prompt_model

torch.set_num_threads(1)
BRAIN = Path(__file__).resolve().parents[2] / "data_samples/pyradiomics/brain1_image.nrrd"
N = 40


def _volume(disks: dict[int, tuple[int, int, int, float]]) -> Volume:
    """48 x 48 x N; ``disks[k] = (cx, cy, radius, value)`` on slice k (values in 0..255).

    A 255 block in a corner pins the intensity window to [0, 255]."""
    arr = np.zeros((48, 48, N), np.float32)
    arr[:5, :5, :] = 255.0
    ii, jj = np.mgrid[:48, :48]
    for k, (cx, cy, r, v) in disks.items():
        arr[(ii - cx) ** 2 + (jj - cy) ** 2 <= r * r, k] = v
    return Volume(arr, (0.8, 0.8, 2.5), (3.0, 1.0, -7.0), rotation("y", 20), modality="MR")


def _session(vol: Volume) -> PromptSession:
    s = PromptSession(ThresholdModel(image_size=64, level=100))
    s.set_volume(vol)
    return s


def _box(vol: Volume, k: int) -> tuple[int, int, int, int]:
    xs, ys = np.nonzero(vol.array[8:, 8:, k] > 100)
    return int(xs.min() + 8), int(ys.min() + 8), int(xs.max() + 8), int(ys.max() + 8)


def _slices(res: PropagationResult) -> list[int]:
    return sorted(res.masks)


def _key(s: PromptSession, vol: Volume, k: int) -> dict[int, np.ndarray]:
    return {k: s.predict(k, box=_box(vol, k))[0]}


def test_propagation_stops_on_empty_slices_and_fills_the_object() -> None:
    vol = _volume({k: (26, 28, 6, 220.0) for k in range(10, 31)})
    s = _session(vol)
    keys = _key(s, vol, 20)
    res = Propagator(s).propagate(keys, name="disc")
    assert _slices(res) == list(range(10, 31)) and np.array_equal(res.masks[20], keys[20])
    assert {(st.direction, st.slice_index) for st in res.stops} == {(1, 31), (-1, 9)}
    truth = vol.array > 100
    truth[:8, :8] = False
    pred = res.mask.array > 0
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.9
    assert res.mask.grid_differences(vol) == [] and res.mask.labels == {1: "disc"}
    assert np.isnan(res.confidence[:10]).all() and np.isfinite(res.confidence[10:31]).all()
    assert res.keys == [20] and len(res.to_check) == 5 and 20 not in res.to_check
    assert not hasattr(s, "objects")  # the caller owns the masks


def test_score_threshold_stops_a_run() -> None:
    disks = {k: (26, 28, 6, 220.0 if k < 26 else 115.0) for k in range(10, 31)}
    vol = _volume(disks)
    s = _session(vol)
    res = Propagator(s, PropagationConfig(min_score=0.5)).propagate(_key(s, vol, 20))
    assert _slices(res) == list(range(10, 26))
    stop = next(st for st in res.stops if st.direction == 1)
    assert stop.slice_index == 26 and re.fullmatch(r"score 0\.4\d\d < 0\.5", stop.reason)
    res2 = Propagator(s, PropagationConfig(min_score=0.4, max_intensity_drift=None)
                      ).propagate(_key(s, vol, 20))
    assert _slices(res2) == list(range(10, 31))


def test_area_thresholds_stop_a_run() -> None:
    disks = {k: (26, 28, 8 if k <= 25 else 3, 220.0) for k in range(10, 31)}
    disks[12] = (26, 28, 1, 220.0)  # 5 voxels
    vol = _volume(disks)
    s = _session(vol)
    res = Propagator(s, PropagationConfig(min_area_ratio=0.3, min_area_px=10)
                     ).propagate(_key(s, vol, 20))
    assert _slices(res) == list(range(13, 26))
    reasons = {st.direction: st.reason for st in res.stops}
    assert "x previous" in reasons[1] and reasons[-1].startswith("area ")
    res2 = Propagator(s, PropagationConfig(min_area_ratio=0.01, max_area_ratio=100.0,
                                           min_area_px=3)).propagate(_key(s, vol, 20))
    assert _slices(res2) == list(range(10, 31))


def test_intensity_drift_stops_a_run() -> None:
    disks = {k: (26, 28, 6, 220.0 if k < 25 else 150.0) for k in range(10, 31)}
    vol = _volume(disks)
    s = _session(vol)
    res = Propagator(s, PropagationConfig(max_intensity_drift=None)).propagate(_key(s, vol, 20))
    assert _slices(res) == list(range(10, 31))  # rule off: score 150/255 passes
    res2 = Propagator(s, PropagationConfig(max_intensity_drift=0.2)).propagate(_key(s, vol, 20))
    assert _slices(res2) == list(range(10, 25))
    stop = next(st for st in res2.stops if st.direction == 1)
    assert stop.slice_index == 25 and stop.reason.startswith("intensity drift 0.2")


def test_two_key_slices_fuse_by_score_and_flag_disagreement() -> None:
    disks = {k: (14, 24, 4, 250.0) for k in range(10, 21)}
    vol = _volume(disks)
    ii, jj = np.mgrid[:48, :48]
    blob_b = (ii - 36) ** 2 + (jj - 24) ** 2 <= 16
    vol.array[blob_b[..., None] & (np.arange(N) >= 20) & (np.arange(N) <= 30)] = 180.0
    s = _session(vol)
    one = Propagator(s).propagate(_key(s, vol, 14))
    assert _slices(one) == list(range(10, 21))  # B is never reached from A alone
    keys = {**_key(s, vol, 14), 26: s.predict(26, box=(30, 18, 42, 30))[0]}
    res = Propagator(s).propagate(keys)
    assert _slices(res) == list(range(10, 31))
    m20 = res.masks[20]
    assert m20[14, 24] and not m20[36, 24]  # the brighter (higher-score) run wins on slice 20
    others = np.delete(res.confidence, [14, 20, 26])
    assert res.to_check[0] == 20 and res.confidence[20] < 0.45 < np.nanmin(others) - 0.15


def test_correction_repropagates_locally_and_equals_a_fresh_run() -> None:
    vol = _volume({k: (26, 28, 6, 220.0) for k in range(5, 36)})
    s = _session(vol)
    k10 = _key(s, vol, 10)
    prop = Propagator(s)
    prop.propagate(k10)
    same = prop.repropagate({**k10, **_key(s, vol, 20)}, 20)  # agrees with the propagation
    assert same.recomputed == [*range(11, 20), 21]  # new run down to key 10, 1 slice up
    half = s.predict(20, box=(20, 22, 26, 34))[0]
    res = prop.repropagate({**k10, 20: half}, 20)
    up = [k for k in res.recomputed if k > 20]
    # the upward run is redone only until it meets the old run again (the 1-voxel box margin
    # lets the half mask grow back over a few slices), not to the structure's end (35)
    assert up and up == list(range(21, up[-1] + 1)) and up[-1] < 30
    fresh = Propagator(s).propagate({**k10, 20: half})
    assert _slices(res) == _slices(fresh)
    for k in _slices(res):
        assert np.array_equal(res.masks[k], fresh.masks[k]), k
    with pytest.raises(PromptError, match="not a key slice"):
        prop.repropagate({**k10, 20: half}, 30)


def test_repropagate_falls_back_to_a_full_run_when_its_memory_does_not_match() -> None:
    """Without an earlier result, or when another key changed too, repropagate is a full
    propagation (the same masks as propagate gives)."""
    vol = _volume({k: (26, 28, 6, 220.0) for k in range(5, 36)})
    s = _session(vol)
    keys = {**_key(s, vol, 10), **_key(s, vol, 25)}
    full = Propagator(s).propagate(keys)
    cold = Propagator(s).repropagate(keys, 25)
    assert _slices(cold) == _slices(full) and len(cold.recomputed) == len(full.recomputed)
    prop = Propagator(s)
    prop.propagate(_key(s, vol, 10))
    moved = {**_key(s, vol, 12), **_key(s, vol, 25)}  # key 10 replaced by 12: not local
    res = prop.repropagate(moved, 25)
    want = Propagator(s).propagate(moved)
    assert res.keys == [12, 25] and res.recomputed == want.recomputed
    assert all(np.array_equal(res.masks[k], want.masks[k]) for k in want.masks)
    with pytest.raises(PromptError, match="no key slice with a mask"):
        Propagator(s).propagate({20: np.zeros((48, 48), bool)}, object_id=2)


def test_margin_in_mm_and_real_sam_path_on_brain() -> None:
    img = io.read(BRAIN)
    s = PromptSession(tiny_prompt_model(), batch_size=4)
    s.set_volume(img)
    p = Propagator(s, PropagationConfig(margin_mm=4.0, min_score=-10.0, min_area_ratio=0.0,
                                        max_area_ratio=1e9, min_area_px=1))
    assert p._margin() == (6, 6)  # 4 mm / 0.781 mm, rounded up
    key, _ = s.predict(12, box=(180, 90, 215, 120))
    res = p.propagate({12: key})
    assert res.mask.grid_differences(img) == []
    assert s.embeddings_computed <= img.shape[2]  # every slice embedded at most once
    assert set(_slices(res)) <= set(range(img.shape[2])) and 12 in _slices(res)


def test_a_new_volume_forgets_old_runs() -> None:
    a = _volume({k: (26, 28, 6, 220.0) for k in range(10, 31)})
    b = _volume({k: (20, 20, 5, 220.0) for k in range(15, 21)})
    s = _session(a)
    prop = Propagator(s)
    prop.propagate(_key(s, a, 20))
    s.set_volume(b)
    res = prop.repropagate(_key(s, b, 18), 18)
    assert _slices(res) == list(range(15, 21)) and res.keys == [18]


def test_each_step_is_prompted_with_the_previous_masks_box_only() -> None:
    """Every propagated slice gets the box of the previous slice's mask + 1 voxel, and no
    mask prompt (the lite model copies a mask prompt past a structure's end)."""
    vol = _volume({k: (26, 28, 6, 220.0) for k in range(10, 31)})
    s = _session(vol)
    keys = _key(s, vol, 20)
    seen: list[tuple[int, tuple[int, int, int, int], bool]] = []
    inner = s.predict_low_res

    def spy(k: int, **kw: object) -> object:
        seen.append((k, kw["box"], kw.get("mask_input") is not None))  # type: ignore[arg-type]
        return inner(k, **kw)  # type: ignore[arg-type]

    s.predict_low_res = spy  # type: ignore[method-assign]
    res = Propagator(s).propagate(keys)
    assert _slices(res) == list(range(10, 31))
    assert seen and not any(m for _, _, m in seen)
    x0, y0, x1, y1 = next(b for k, b, _ in seen if k == 21)
    xs, ys = np.nonzero(keys[20])
    assert (x0, y0, x1, y1) == (xs.min() - 1, ys.min() - 1, xs.max() + 1, ys.max() + 1)
