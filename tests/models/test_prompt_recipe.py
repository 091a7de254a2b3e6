"""The promptable recipe: training and serving prepare a slice identically, and the recipe's
own rules (intensity ranges, resizing, JSON)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io as mio
from medseg.data.prompt_slices import LabelledVolume, PromptSampler, SliceEntry, SliceTable
from medseg.engine.prompt import PromptSession
from medseg.errors import PromptModelError
from medseg.modality import decide_modality
from medseg.models.prompt_recipe import PromptRecipe, lite_recipe, medsam_recipe, sam_recipe
from medseg.models.promptable import PromptModel, load_promptable
from medseg.volume import Volume

torch.set_num_threads(1)
DS = Path(__file__).resolve().parents[2] / "data_samples"
TS = DS / "totalsegmentator"


def _train_and_serve(image: Volume, label: np.ndarray, k: int, model: PromptModel
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Slice ``k`` (axis 2) as the training sampler prepares it (no augmentation) and as the
    runtime does; plus the sampler's tight box and the runtime's box of the same voxels."""
    modality = decide_modality(image).modality
    source = LabelledVolume("case", np.asarray(image.array, np.float32),
                            label.astype(np.int32), {1: "s"}, modality, image.spacing,
                            axes=(2,))
    table = SliceTable([source], min_area=1)
    table.entries = [SliceEntry(0, 2, k, 1, int(label[..., k].sum()))]
    table.probs = np.ones(1)
    batch = PromptSampler(table, model.recipe, model.low_res_size, seed=0).batch(1)
    session = PromptSession(model)
    session.set_volume(image, axis=2)
    xs, ys = np.nonzero(label[..., k])
    box = session.resize.box_to_model((xs.min(), ys.min(), xs.max(), ys.max()))
    return batch.image[0], session.model_input(k)[0], batch.boxes[0], box


@pytest.mark.parametrize(("image", "label", "organ"), [
    ("example_ct_sm.nii.gz", "example_seg.nii.gz", "liver"),          # CT, no modality: data
    ("example_ct_dicom", "example_seg_dicom.nii.gz", "liver"),        # 512 px: downsampled
    ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "liver"),       # not CT: percentiles
])
def test_training_and_serving_prepare_the_same_slice_identically(image: str, label: str,
                                                                 organ: str) -> None:
    """The same slice through the training sampler (augmentation off) and through the
    runtime gives the same model input, to the bit, with the shipped model's recipe; the
    tight box of the same voxels reaches the model at the same place (to the resize's
    rounding)."""
    img = mio.read(TS / image)
    lab = mio.read(TS / label).conform_to(img, atol_mm=1e-2)
    value = {v: k for k, v in (lab.labels or {}).items()}[organ]
    mask = np.asarray(lab.array) == value
    k = int(np.argmax(mask.sum(axis=(0, 1))))
    model = load_promptable("lite")
    trained, served, train_box, serve_box = _train_and_serve(img, mask, k, model)
    assert trained.shape == served.shape == (3, 256, 256)
    assert torch.equal(trained, served)
    scale = model.recipe.image_size / max(img.shape[:2])
    torch.testing.assert_close(train_box.double(), torch.as_tensor(serve_box).double(),
                               atol=scale / 2 + 0.5, rtol=0)


def test_medsam_recipe_trains_and_serves_the_same_slice_too() -> None:
    """MedSAM's recipe (stretched, bicubic, min-max per image): the same equality."""
    img = mio.read(DS / "pyradiomics/brain1_image.nrrd")
    mask = np.asarray(mio.read(DS / "pyradiomics/brain1_label.nrrd").array) > 0
    k = int(np.argmax(mask.sum(axis=(0, 1))))
    from tests.prompt_factory import tiny_prompt_model

    model = PromptModel(tiny_prompt_model().sam, medsam_recipe(64), name="m", version="0")
    trained, served, _, _ = _train_and_serve(img, mask, k, model)
    assert torch.equal(trained, served)
    assert float(served.min()) == 0.0 and float(served.max()) == 1.0


def test_intensity_range_ct_window_or_percentiles_of_finite_voxels() -> None:
    recipe = lite_recipe()
    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    values[0, 0, 0] = np.nan
    assert recipe.intensity_range(values, "CT") == (-160.0, 240.0)
    lo, hi = recipe.intensity_range(values, "MR")
    finite = values[np.isfinite(values)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(finite, [0.5, 99.5])))
    assert recipe.intensity_range(values, None) == (lo, hi)
    assert sam_recipe().intensity_range(values, "CT") == (lo, hi)  # SAM: no CT window
    assert recipe.intensity_range(np.full((3, 3, 3), 7.0), None) == (7.0, 8.0)  # flat volume
    out = recipe.to_0_255(np.array([[-500.0, -160.0, 40.0, 240.0, np.nan]]), (-160.0, 240.0))
    assert out.tolist() == [[0.0, 0.0, 127.5, 255.0, 0.0]]


def test_resize_rounds_as_segment_anything_and_stretch_for_medsam() -> None:
    assert lite_recipe().resize_for((101, 122)).resized_hw == (212, 256)  # 211.9 -> 212
    assert lite_recipe().resize_for((3, 512)).resized_hw == (2, 256)      # 1.5 -> 2 (half up)
    assert medsam_recipe(1024).resize_for((101, 122)).resized_hw == (1024, 1024)


def test_recipe_json_round_trip_and_validation() -> None:
    recipe = dataclasses.replace(lite_recipe(), mask_threshold=1.0, coords="edges")
    assert PromptRecipe.from_dict(recipe.to_dict()) == recipe
    assert recipe.with_overrides({"mask_threshold": 2}).mask_threshold == 2.0
    bad = [({"image_size": 256, "coordz": "edges"}, "unknown keys"),
           ({"image_size": 256, "resize": "crop"}, "resize"),
           ({"image_size": 256, "ct_window": [240, -160]}, "low < high"),
           ({"image_size": 256, "percentiles": [0, 101]}, "0..100"),
           ({"image_size": 256, "mask_threshold": float("nan")}, "finite"),
           ({"image_size": 256, "click_square": 0}, "click_square"),
           ({"image_size": 4}, "image_size")]
    for data, message in bad:
        with pytest.raises(PromptModelError, match=message):
            PromptRecipe.from_dict(data)
