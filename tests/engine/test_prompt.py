"""PromptSession: voxel-coordinate prompts, embedding cache, masks as label maps, the modality
decision, typed errors. The session keeps no masks (the caller owns them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io
from medseg.engine.prompt import EmbeddingCache, PromptSession
from medseg.errors import (
    EmptyBoxError,
    MedsegError,
    NoVolumeSetError,
    PromptError,
    PromptOutsideImageError,
)
from medseg.volume import Volume
from tests.conftest import rotation
from tests.prompt_factory import ThresholdModel, tiny_prompt_model

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
BRAIN = ROOT / "data_samples/pyradiomics/brain1_image.nrrd"
BRAIN_LABEL = ROOT / "data_samples/pyradiomics/brain1_label.nrrd"


def _rect_volume() -> Volume:
    """64 x 80 x 6 oblique anisotropic volume; slice 3 holds a bright rectangle
    i in 10..20, j in 40..45 (and slice 1 a dimmer one elsewhere)."""
    arr = np.zeros((64, 80, 6), np.float32)
    arr[10:21, 40:46, 3] = 1000.0
    arr[40:50, 5:15, 1] = 1000.0
    return Volume(arr, (0.7, 0.9, 3.0), (10.0, -5.0, 2.0), rotation("z", 30) @ rotation("x", 10),
                  modality="MR")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_box_lands_on_the_prompted_voxels_axis2() -> None:
    vol = _rect_volume()
    s = PromptSession(ThresholdModel(image_size=128, level=100))
    s.set_volume(vol, axis=2)
    assert s.slice_shape == (64, 80)
    mask, score = s.predict(3, box=(8, 38, 22, 47))
    assert mask.shape == (64, 80) and score > 0.9
    truth = vol.array[:, :, 3] > 0
    assert _iou(mask, truth) > 0.85
    labels = s.to_volume({3: mask}, 1, "rect")
    assert labels.shape == vol.shape and labels.labels == {1: "rect"}
    assert np.nonzero(labels.array.any(axis=(0, 1)))[0].tolist() == [3]
    assert labels.grid_differences(vol) == []
    assert not hasattr(s, "objects") and not hasattr(s, "undo")  # no second store of masks
    # the same numbers with x and y swapped select nothing bright
    empty, _ = s.predict(3, box=(38, 8, 47, 22))
    assert not empty.any()


def test_box_on_axis0_uses_the_remaining_axes_as_x_and_y() -> None:
    vol = _rect_volume()
    s = PromptSession(ThresholdModel(image_size=128, level=100))
    s.set_volume(vol, axis=0)
    assert s.slice_shape == (80, 6) and s.n_slices == 64
    mask, _ = s.predict(15, box=(38, 2, 47, 4))  # x = j, y = k
    assert mask.shape == (80, 6)
    assert np.array_equal(np.nonzero(mask.any(axis=1))[0], np.arange(40, 46))
    assert np.nonzero(mask.any(axis=0))[0].tolist() == [3]
    arr = s.to_volume({15: mask}).array > 0
    assert np.array_equal(arr[15], mask) and arr.sum() == mask.sum()


def test_real_tumour_slice_with_box_and_tiny_sam() -> None:
    img, lab = io.read(BRAIN), io.read(BRAIN_LABEL)
    k = 14
    xs, ys = np.nonzero(lab.array[:, :, k])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    fake = PromptSession(ThresholdModel(image_size=256, level=120))
    fake.set_volume(img)
    mask, _ = fake.predict(k, box=box)
    near = np.zeros_like(mask)
    near[box[0] - 2:box[2] + 3, box[1] - 2:box[3] + 3] = True
    assert mask.any() and not (mask & ~near).any()  # only inside the box's neighbourhood
    s = PromptSession(tiny_prompt_model())
    s.set_volume(img)
    mask2, score = s.predict(k, box=box, points=[(xs[0], ys[0], True)])
    assert mask2.shape == img.shape[:2] and np.isfinite(score)
    out = s.to_volume({k: mask2})
    assert out.array[:, :, :k].max() == 0 and out.array[:, :, k + 1:].max() == 0
    assert out.array[:, :, k].sum() == mask2.sum()


def test_embeddings_are_cached_and_the_lru_respects_its_budget() -> None:
    vol = _rect_volume()
    model = tiny_prompt_model()
    s = PromptSession(model)
    s.set_volume(vol)
    s.predict(3, box=(8, 38, 22, 47))
    s.predict(3, points=[(15, 42, True)])
    s.predict(3, box=(5, 30, 25, 50))
    assert s.embeddings_computed == 1 and s.cache.hits >= 2
    one = s.cache.nbytes
    assert one == 32 * 8 * 8 * 4
    small = PromptSession(model, cache_bytes=int(2.5 * one))
    small.set_volume(vol)
    for k in range(4):
        small.predict(k, box=(8, 38, 22, 47))
    assert len(small.cache) == 2 and small.cache.nbytes <= small.cache.budget_bytes
    assert small.embeddings_computed == 4
    small.predict(3, box=(8, 38, 22, 47))  # most recent: still cached
    assert small.embeddings_computed == 4
    small.predict(0, box=(8, 38, 22, 47))  # evicted: recomputed
    assert small.embeddings_computed == 5
    small.embed_slices([4, 5, 4])  # batched, duplicates computed once
    assert small.embeddings_computed == 7 and len(small.cache) == 2


def test_cache_unit_eviction_order() -> None:
    c = EmbeddingCache(budget_bytes=3 * 400)
    for key in "abc":
        c.put(key, torch.zeros(100))
    assert c.get("a") is not None  # a becomes most recent
    c.put("d", torch.zeros(100))
    assert "b" not in c and {"a", "c", "d"} <= {k for k in "abcd" if k in c}
    c.put("huge", torch.zeros(1000))
    assert "huge" not in c and c.nbytes == 1200


def test_click_refinement_takes_the_callers_mask_as_mask_prompt() -> None:
    """A click alone on a slice with a mask refines that mask: the caller passes it as
    ``mask_input`` (the session keeps no masks)."""
    vol = _rect_volume()
    s = PromptSession(tiny_prompt_model())
    s.set_volume(vol)
    first, _ = s.predict(3, box=(8, 38, 22, 47))
    seen = []
    inner = s.model.decode

    def spy(embedding: torch.Tensor, **kw: object) -> object:
        seen.append(kw.get("mask_input"))
        return inner(embedding, **kw)  # type: ignore[arg-type]

    s.model.decode = spy  # type: ignore[method-assign]
    s.predict(3, points=[(15, 42, True)], mask_input=first)
    s.predict(3, points=[(15, 42, True)])
    assert seen[0] is not None and seen[0].shape == (1, 1, 32, 32) and seen[1] is None
    torch.testing.assert_close(seen[0], s.mask_prompt(first))
    with pytest.raises(PromptError, match="mask_input has shape"):
        s.predict(3, points=[(15, 42, True)], mask_input=first[:10])


def test_prompt_errors_are_typed_and_explain_the_fix() -> None:
    s = PromptSession(ThresholdModel(image_size=64))
    with pytest.raises(NoVolumeSetError, match="set_volume"):
        s.predict(0, box=(0, 0, 1, 1))
    s.set_volume(_rect_volume())
    with pytest.raises(PromptOutsideImageError, match=r"x must lie in 0\.\.63"):
        s.predict(3, box=(50, 10, 64, 20))
    with pytest.raises(PromptOutsideImageError):
        s.predict(3, box=(-1, 10, 5, 20))
    with pytest.raises(EmptyBoxError, match="x0 <= x1"):
        s.predict(3, box=(20, 10, 5, 20))
    with pytest.raises(PromptOutsideImageError, match="Point"):
        s.predict(3, points=[(10, 80, True)])
    with pytest.raises(PromptOutsideImageError, match="Slice 6"):
        s.predict(6, box=(0, 0, 5, 5))
    with pytest.raises(PromptError, match="Give a box"):
        s.predict(3)
    with pytest.raises(PromptError, match="only negative clicks.*positive click"):
        s.predict(3, points=[(10, 10, False), (12, 12, False)])
    s.predict(3, box=(0, 0, 20, 20), points=[(10, 10, False)])  # with a box: fine
    with pytest.raises(PromptError, match="positive integer"):
        s.to_volume({3: np.zeros((64, 80), bool)}, 0)
    with pytest.raises(PromptError, match=r"A point is \(x, y, positive\)"):
        s.predict(3, points=[(10, 10)])  # was a bare IndexError
    with pytest.raises(PromptError, match="axis"):
        s.set_volume(_rect_volume(), axis=3)
    for exc in (NoVolumeSetError, PromptOutsideImageError, EmptyBoxError):
        assert issubclass(exc, MedsegError)


def test_modality_decision_selects_the_window() -> None:
    """The session's window follows the one modality decision: the header's modality, else the
    data (HU air means CT), else the override; the recipe's CT window for CT, percentiles
    otherwise."""
    import dataclasses

    model = tiny_prompt_model()
    model.recipe = dataclasses.replace(model.recipe, ct_window=(-160.0, 240.0))
    vol = _rect_volume()  # header MR, values 0..1000
    s = PromptSession(model)
    s.set_volume(vol)
    assert s.modality.source == "header" and s.window == pytest.approx(
        tuple(np.percentile(vol.array, [0.5, 99.5])))
    s.set_volume(vol, modality="ct")
    assert s.modality.modality == "CT" and s.modality.source == "override"
    assert s.window == (-160.0, 240.0)
    ct = dataclasses.replace(vol, array=vol.array - 1024.0, modality=None)  # NIfTI-like CT
    s.set_volume(ct)
    assert (s.modality.modality, s.modality.source) == ("CT", "data")
    assert s.window == (-160.0, 240.0)
    s.set_volume(dataclasses.replace(vol, modality=None))  # no header, no air: not CT
    assert s.modality.modality is None and s.window[1] == pytest.approx(1000.0)
