"""SAM/MedSAM checkpoints in the official layout, the lite weights format, preprocessing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError, PromptModelError
from medseg.models import promptable
from medseg.models.prompt_recipe import PromptRecipe, medsam_recipe, sam_recipe
from medseg.models.promptable import load_promptable, save_promptable
from medseg.models.sam_modules import VIT_B, build_sam_vit, infer_vit_arch
from tests.prompt_factory import TINY_VIT, tiny_prompt_model

torch.set_num_threads(1)


def test_segment_anything_loads_without_its_package_init() -> None:
    code = (
        "import sys\n"
        "from medseg.models.sam_modules import sam_modeling, build_sam_vit, VitArch\n"
        "m = sam_modeling()\n"
        "build_sam_vit(VitArch(32, 2, 2, (1,), image_size=64, patch_size=8, window_size=4))\n"
        "assert sys.modules['segment_anything'].__file__ is None, 'package __init__ ran'\n"
        "assert 'segment_anything.automatic_mask_generator' not in sys.modules\n"
        "assert 'torchvision' not in sys.modules\n"
        "print(m.Sam.__module__)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "segment_anything.modeling.sam"


def _reference_forward(sam: torch.nn.Module, x: torch.Tensor, box: np.ndarray
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The original module's own pipeline (what segment_anything's predictor calls)."""
    with torch.inference_mode():
        emb = sam.image_encoder(x)
        sparse, dense = sam.prompt_encoder(points=None, boxes=torch.as_tensor(box)[None],
                                           masks=None)
        return sam.mask_decoder(image_embeddings=emb, image_pe=sam.prompt_encoder.get_dense_pe(),
                                sparse_prompt_embeddings=sparse,
                                dense_prompt_embeddings=dense, multimask_output=False)


def test_reduced_vit_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    sam = build_sam_vit(TINY_VIT)
    path = tmp_path / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    assert infer_vit_arch(sam.state_dict(), "x") == TINY_VIT
    model = load_promptable(path)
    assert model.recipe == sam_recipe(64)  # SAM's own preprocessing and prompt convention
    assert model.recipe.coords == "indices" and model.low_res_size == 32
    loaded = model.sam.state_dict()
    assert list(loaded) == list(sam.state_dict())
    for k, v in sam.state_dict().items():
        assert torch.equal(loaded[k], v), k
    img = np.random.default_rng(0).normal(100, 30, (50, 40))
    x, rs = model.preprocess(img, model.recipe.intensity_range(img, "MR"))
    box = rs.box_to_model((5, 10, 30, 40))
    low, iou = model.decode(model.embed(x), box=box)
    ref_low, ref_iou = _reference_forward(sam, x, box)
    torch.testing.assert_close(low, ref_low)
    torch.testing.assert_close(iou, ref_iou)
    assert low.shape == (1, 1, 32, 32)
    # MedSAM checkpoints share the layout; the file name selects MedSAM's preprocessing
    med = tmp_path / "medsam_tiny.pth"
    torch.save({"model": sam.state_dict()}, med)  # training checkpoints wrap the state dict
    medsam = load_promptable(med)
    assert medsam.recipe == medsam_recipe(64) and medsam.name == "medsam_vit_32x2"
    assert load_promptable(path, family="medsam").recipe == medsam_recipe(64)


def test_official_vit_b_layout(tmp_path: Path) -> None:
    """Full-size ViT-B (random weights) in the layout of sam_vit_b_01ec64.pth / medsam_vit_b."""
    torch.manual_seed(0)
    sam = build_sam_vit(VIT_B)
    state = sam.state_dict()
    assert sum(v.numel() for v in sam.parameters()) == 93_735_472  # SAM ViT-B's published size
    assert state["image_encoder.pos_embed"].shape == (1, 64, 64, 768)
    assert state["image_encoder.blocks.2.attn.rel_pos_h"].shape == (127, 64)  # global block
    assert state["image_encoder.blocks.0.attn.rel_pos_h"].shape == (27, 64)   # 14x14 window
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(state, path)
    del sam
    model = load_promptable(path)
    assert model.name == "sam_vit_b" and model.recipe.image_size == 1024
    loaded = model.sam.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    emb = torch.randn(1, 256, 64, 64)
    low, _ = model.decode(emb, box=np.array([100.0, 200.0, 400.0, 500.0]))
    assert low.shape == (1, 1, 256, 256)


def test_other_architectures_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    unrelated = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(2)}, unrelated)
    with pytest.raises(PromptModelError, match=r"not a SAM ViT-B/L/H or MedSAM checkpoint"):
        load_promptable(unrelated)
    lite_as_vit = tmp_path / "lite.pth"  # a conv-encoder Sam: decoder keys right, encoder not
    torch.save(tiny_prompt_model().sam.state_dict(), lite_as_vit)
    with pytest.raises(PromptModelError, match=r"image_encoder\.patch_embed"):
        load_promptable(lite_as_vit)
    truncated = tmp_path / "sam_trunc.pth"
    state = build_sam_vit(TINY_VIT).state_dict()
    del state["mask_decoder.iou_prediction_head.layers.0.weight"]
    torch.save(state, truncated)
    with pytest.raises(PromptModelError, match=r"missing: mask_decoder\.iou_prediction_head"):
        load_promptable(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PromptModelError, match="cannot read as a PyTorch state dict"):
        load_promptable(garbage)
    with pytest.raises(PromptModelError, match="no such file"):
        load_promptable(tmp_path / "missing.pth")
    assert issubclass(PromptModelError, MedsegError)


def test_weights_round_trip_and_missing_default(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """save_promptable writes the weights and the JSON (name, version, recipe, builder, arch);
    load_promptable rebuilds the same model with the same recipe."""
    monkeypatch.setattr(promptable, "LITE_STEM", tmp_path / "lite_sam")
    with pytest.raises(PromptModelError, match="Lite promptable model not found"):
        load_promptable("lite")
    torch.manual_seed(2)
    recipe = PromptRecipe(64, ct_window=(-100.0, 200.0), coords="edges", mask_threshold=0.5)
    model = promptable.PromptModel(build_sam_vit(TINY_VIT), recipe, name="tinyvit",
                                   version="t1")
    _, meta = save_promptable(model, tmp_path / "lite_sam", {"note": "test"})
    doc = json.loads(meta.read_text())
    assert doc["format_version"] == 2 and doc["training"] == {"note": "test"}
    assert doc["builder"] == "medseg.models.sam_builders:build_sam_vit_kwargs"
    again = load_promptable("lite")
    assert (again.name, again.version, again.recipe) == ("tinyvit", "t1", recipe)
    for k, v in model.sam.state_dict().items():
        assert torch.equal(again.sam.state_dict()[k], v)
    doc["builder"] = "os:system"
    meta.write_text(json.dumps(doc))
    with pytest.raises(PromptModelError, match="medseg.models"):
        load_promptable("lite")
    doc["builder"], doc["recipe"]["coords"] = "medseg.models.sam_builders:build_sam_vit_kwargs", \
        "corners"
    meta.write_text(json.dumps(doc))
    with pytest.raises(PromptModelError, match="coords"):
        load_promptable("lite")


def test_version_1_descriptions_are_read_as_the_same_recipe(tmp_path: Path) -> None:
    """A weights JSON of the first format (``spec`` section; threshold and pixel statistics
    in ``arch``) reads as the recipe the shipped JSON states now."""
    from medseg.models.prompt_recipe import read_description

    shipped = read_description(promptable.LITE_STEM.with_suffix(".json"))
    arch = {**shipped.arch, "roi_modalities": [], "mask_threshold": 1.0,
            "pixel_mean": [123.675, 116.28, 103.53], "pixel_std": [58.395, 57.12, 57.375]}
    v1 = {"format": "medseg-promptable", "format_version": 1, "recipe": "sam",
          "spec": {"name": "medseg-lite-sam", "image_size": 256, "embed_size": 32,
                   "window": [-160.0, 240.0], "version": "1", "recipe": "sam"},
          "builder": shipped.builder, "arch": arch, "training": {}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1))
    old = read_description(path)
    assert old.recipe == shipped.recipe and old.arch == shipped.arch
    v1["arch"] = {**arch, "roi_modalities": ["CT"]}
    path.write_text(json.dumps(v1))
    with pytest.raises(PromptModelError, match="roi_modalities"):
        read_description(path)


def test_preprocess_sam_and_medsam_recipes() -> None:
    model = tiny_prompt_model()
    ct = np.full((32, 64), -1000.0)  # longest side = input size: no resampling
    ct[:, 32:] = 500.0
    ct_model = promptable.PromptModel(model.sam, dataclasses.replace(
        model.recipe, ct_window=(-200.0, 300.0)), name="t", version="0")
    window = ct_model.recipe.intensity_range(ct, "CT")
    assert window == (-200.0, 300.0)
    x, rs = ct_model.preprocess(ct, window)
    assert x.shape == (1, 3, 64, 64) and rs.resized_hw == (32, 64)
    mean, std = model.sam.pixel_mean.view(-1), model.sam.pixel_std.view(-1)
    torch.testing.assert_close(x[0, :, 5, 5], (0 - mean) / std)        # below window -> 0
    torch.testing.assert_close(x[0, :, 5, 60], (255 - mean) / std)     # above window -> 255
    assert torch.all(x[0, :, 32:] == 0)  # padded after normalising, as Sam.preprocess does
    img255 = torch.zeros(1, 3, 32, 64)
    img255[..., 32:] = 255.0
    torch.testing.assert_close(x, model.sam.preprocess(img255))
    assert rs.box_to_model((0, 0, 63, 31)).tolist() == pytest.approx([0, 0, 63, 31])
    _, rs_small = ct_model.preprocess(ct[:15, :30], window)
    assert rs_small.box_to_model((0, 0, 29, 14)).tolist() == pytest.approx(
        [0, 0, 29 * 64 / 30, 14 * 32 / 15])
    med = promptable.PromptModel(model.sam, medsam_recipe(64), name="m", version="0")
    xm, rsm = med.preprocess(ct, (-1000.0, 1000.0))
    assert rsm.resized_hw == (64, 64) and float(xm.min()) == 0.0 and float(xm.max()) == 1.0
    assert rsm.box_to_model((0, 0, 64, 32)).tolist() == pytest.approx([0, 0, 64, 64])


def test_mask_prompt_round_trips_through_the_low_res_format() -> None:
    model = tiny_prompt_model(image_size=128)
    rs = model.resize_for((90, 120))
    mask = np.zeros((90, 120), bool)
    mask[20:60, 30:100] = True
    low = rs.mask_to_low_res(mask, model.low_res_size)
    assert low.shape == (1, 1, 64, 64)
    back = (rs.logits_to_slice(low)[0, 0] > 0).numpy()
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95
    assert not back[:, :25].any() and not back[70:].any()


def test_optimized_encoder_matches_eager_for_each_batch_size() -> None:
    for sam in (tiny_prompt_model().sam, build_sam_vit(TINY_VIT)):
        recipe = tiny_prompt_model().recipe
        eager = promptable.PromptModel(sam, recipe, name="e", version="0")
        fast = promptable.PromptModel(sam, recipe, name="f", version="0", optimize=True)
        for batch in (1, 3):
            x = torch.randn(batch, 3, 64, 64)
            torch.testing.assert_close(fast.embed(x), eager.embed(x), atol=1e-4, rtol=1e-4)
        assert len(fast._traced) == 2
        assert all(isinstance(m, torch.jit.ScriptModule) for m in fast._traced.values())


def test_shipped_lite_weights_load_when_present() -> None:
    if not promptable.LITE_STEM.with_suffix(".safetensors").exists():
        pytest.skip("medseg/weights/lite_sam.safetensors not shipped in this checkout")
    model = load_promptable("lite")
    recipe = model.recipe
    assert (model.name, recipe.ct_window, recipe.mask_threshold) == (
        "medseg-lite-sam", (-160.0, 240.0), 1.0)
    x, rs = model.preprocess(np.random.default_rng(0).normal(0, 100, (80, 120)),
                             recipe.ct_window)
    emb = model.embed(x)
    assert emb.shape[-1] == recipe.image_size // 8 and x.shape[-1] == recipe.image_size
    low, iou = model.decode(emb, box=rs.box_to_model((10, 10, 60, 40)))
    # the RoI decoder (the shipped weights carry it) answers on the model input
    assert model.sam.roi_decoder is not None
    assert low.shape == (1, 1, recipe.image_size, recipe.image_size) and iou.shape == (1, 1)
