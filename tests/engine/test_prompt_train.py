"""Promptable training: label table, prompt sampling and short real fine-tuning runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medseg.data.prompt_slices import LabelledVolume, PromptSampler, SliceTable
from medseg.engine.prompt_config import parse_finetune_config
from medseg.engine.prompt_train import (
    build_model,
    dice_bce_loss,
    load_sources,
    prompt_forward,
    run_finetune,
)
from medseg.errors import ConfigError, DatasetError
from medseg.models.lite_sam import LiteSam
from medseg.models.prompt_recipe import PromptRecipe, lite_recipe, medsam_recipe
from medseg.models.promptable import PromptModel, load_promptable, save_promptable

torch.set_num_threads(1)
DS = Path(__file__).resolve().parents[2] / "data_samples"
TINY = {"image_size": 64, "embed_dim": 32, "widths": [8, 16, 16, 32], "attn_heads": 2,
        "decoder_mlp_dim": 64, "decoder_heads": 2}
#: a 64 px recipe whose normalisation leaves 0..255 as is, prompts on pixel edges
EDGES = PromptRecipe(64, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0), coords="edges")


def _raw(tmp_path: Path, **train: Any) -> dict[str, Any]:
    return {
        "model": {"backend": "lite", "arch": TINY},
        "data": {"min_area": 20, "sources": [
            {"image": str(DS / "pyradiomics/brain1_image.nrrd"),
             "label": str(DS / "pyradiomics/brain1_label.nrrd"), "modality": "MR"}]},
        "train": {"output_dir": str(tmp_path / "run"), "iterations": 12, "batch_size": 4,
                  "lr": 3e-3, "warmup": 0, "log_every": 4, "checkpoint_every": 100,
                  "freeze_prompt_encoder": True, "augment": {"enabled": False},
                  "point_prob": 0.0, "mask_prompt_prob": 0.0, "seed": 3, **train},
    }


def _synthetic_source() -> LabelledVolume:
    lab = np.zeros((40, 30, 6), np.int32)
    lab[5:15, 5:12, 1:4] = 1      # 70 px per slice on slices 1..3
    lab[20:23, 20:23, :] = 2      # 9 px: below min_area
    lab[25:35, 2:12, 2] = 3       # excluded by name
    img = (lab * 100 + 10).astype(np.float32)
    return LabelledVolume("synthetic", img, lab, {1: "a", 2: "tiny", 3: "held_out"}, "MR",
                          (1.0, 1.0, 3.0))


def test_slice_table_min_area_exclude_and_boxes() -> None:
    table = SliceTable([_synthetic_source()], min_area=20, exclude=("held_out",))
    assert table.names() == ["a"]
    assert {(e.axis, e.index, e.value, e.area) for e in table.entries} == {
        (2, 1, 1, 70), (2, 2, 1, 70), (2, 3, 1, 70)}
    sampler = PromptSampler(table, EDGES, 32, seed=0)
    b = sampler.batch(3)
    assert b.image.shape == (3, 3, 64, 64) and b.mask.shape == (3, 1, 64, 64)
    # image [y, x] = (30, 40) -> scale 1.6: x = i 5..14 -> 8..24, y = j 5..11 -> 8..19.2
    ys, xs = torch.nonzero(b.mask[0, 0] > 0, as_tuple=True)
    x0, y0, x1, y1 = b.boxes[0].tolist()
    assert (x0, y0, x1, y1) == (xs.min().item(), ys.min().item(), xs.max().item() + 1,
                                ys.max().item() + 1)
    assert 7 <= x0 <= 9 and 23 <= x1 <= 25 and 7 <= y0 <= 9 and b.points is None
    with pytest.raises(DatasetError, match="min_area"):
        SliceTable([_synthetic_source()], min_area=500)


@pytest.mark.parametrize("coords", ["indices", "edges"])
def test_training_prompts_follow_the_recipes_coordinate_convention(coords: str) -> None:
    """Training draws the tight box and clicks in the recipe's convention: the runtime maps the
    structure's inclusive voxel box (and a click on a voxel) to the same model pixels."""
    from medseg.data.prompt_slices import AugmentSettings

    table = SliceTable([_synthetic_source()], min_area=20, exclude=("held_out",))
    none = AugmentSettings(flip=0, scale=(1.0, 1.0), aspect=0, rotate_deg=0, elastic=0,
                           intensity=0, noise=0)
    recipe = dataclasses.replace(EDGES, coords=coords)
    b = PromptSampler(table, recipe, 32, seed=0).batch(8)  # tight boxes, no augmentation
    rs = recipe.resize_for((30, 40))  # [y, x] of a slice: 1.6 model px per voxel
    box = rs.box_to_model((5, 5, 14, 11))  # the structure's voxels: i 5..14, j 5..11
    for i in range(8):
        torch.testing.assert_close(torch.as_tensor(box, dtype=torch.float64),
                                   b.boxes[i].double(), atol=0.61, rtol=0)
    edges = dataclasses.replace(rs, edges=True).box_to_model((5, 5, 14, 11))
    assert (box[2], box[3]) == pytest.approx((edges[2] - (coords == "indices") * 1.6,
                                              edges[3] - (coords == "indices") * 1.6))
    clicks = PromptSampler(table, recipe, 32, seed=0, augment=none, point_prob=1.0).batch(8)
    pos = clicks.points[clicks.point_labels == 1]
    if coords == "edges":  # a voxel's centre
        assert pos.numel() and torch.allclose(pos % 1, torch.full_like(pos, 0.5))
    else:  # a voxel's index scaled: a multiple of 1.6 model px
        ratio = pos / 1.6
        assert pos.numel() and torch.allclose(ratio, ratio.round(), atol=1e-4)


def test_propagation_step_samples_teach_where_a_structure_ends() -> None:
    """propagate_prob 1: target = a neighbour slice (empty past the structure's end), mask
    prompt = the key slice's mask, box = its bbox + 2-6 slice px, no clicks."""
    from medseg.data.prompt_slices import AugmentSettings

    table = SliceTable([_synthetic_source()], min_area=20, exclude=("held_out",))
    none = AugmentSettings(flip=0, scale=(1.0, 1.0), aspect=0, rotate_deg=0, elastic=0,
                           intensity=0, noise=0)
    sampler = PromptSampler(table, EDGES, 32, seed=0, augment=none, propagate_prob=1.0,
                            point_prob=1.0)
    b = sampler.batch(40)
    assert bool(b.has_mask_input.all()) and b.points is None
    areas = b.mask.sum((1, 2, 3))
    assert (areas == 0).any() and (areas > 0).any()  # slices 0 and 4 end the structure
    for i in range(40):
        prompt = b.mask_input[i, 0] > 0  # the key slice's structure at 32 px: x 4..12, y 4..9
        ys, xs = torch.nonzero(prompt, as_tuple=True)
        x0, y0, x1, y1 = b.boxes[i].tolist()
        assert x0 <= 2 * xs.min() and x1 >= 2 * (xs.max() + 1) - 1
        assert y0 <= 2 * ys.min() and y1 >= 2 * (ys.max() + 1) - 1
        assert x1 - x0 <= 16 + 2 * 6 * 1.6 + 2


def test_box_only_propagation_steps_have_no_mask_prompt_and_the_given_margin() -> None:
    """train.propagate_mask_prompt false (the runtime's box-only propagation): step samples
    carry no mask prompt; their box is the key mask's bbox + propagate_margin px per side."""
    from medseg.data.prompt_slices import AugmentSettings

    table = SliceTable([_synthetic_source()], min_area=20, exclude=("held_out",))
    none = AugmentSettings(flip=0, scale=(1.0, 1.0), aspect=0, rotate_deg=0, elastic=0,
                           intensity=0, noise=0)
    sampler = PromptSampler(table, EDGES, 32, seed=0, augment=none,
                            propagate_prob=1.0, mask_prompt_prob=1.0,
                            propagate_margin=(1.0, 1.0), propagate_mask_prompt=False)
    b = sampler.batch(20)
    assert not bool(b.has_mask_input.any()) and float(b.mask_input.abs().sum()) == 0
    # the structure is the same rectangle on slices 1..3, so where the target is not empty its
    # bbox is the key slice's: the box is that bbox + 1 slice px (1.6 model px) per side
    checked = 0
    for i in range(20):
        ys, xs = torch.nonzero(b.mask[i, 0] > 0, as_tuple=True)
        if not xs.numel():
            continue
        want = torch.tensor([xs.min() - 1.6, ys.min() - 1.6, xs.max() + 1 + 1.6,
                             ys.max() + 1 + 1.6]).clamp(0, 64)
        torch.testing.assert_close(b.boxes[i].double(), want.double(), atol=1e-4, rtol=0)
        checked += 1
    assert checked >= 5
    with pytest.raises(ConfigError, match="propagate_margin_px"):
        parse_finetune_config({**_raw(Path("/tmp")), "train": {"propagate_margin_px": [3, 1]}})


def test_synthetic_lesion_paints_its_target_with_a_soft_rim_inside_the_tissue() -> None:
    from medseg.data.prompt_slices import synthetic_lesion

    img = torch.full((1, 1, 96, 96), 100.0)
    img[..., :, :30] = 0.0  # air on the left: lesions are centred on tissue only
    valid = torch.ones_like(img)
    seen = 0
    for seed in range(40):
        got = synthetic_lesion(img, valid, np.random.default_rng(seed))
        if got is None:
            continue
        out, mask = got
        seen += 1
        m = mask[0, 0] > 0.5
        assert out.shape == img.shape and float(out.min()) >= 0 and float(out.max()) <= 255
        assert int(m.sum()) >= 30
        changed = (out - img).abs()[0, 0] > 0.5
        assert float((changed & m).sum()) > 0.7 * float(m.sum())  # the target is painted
        assert float((changed & ~m).sum()) > 0  # and the fading rim reaches past it
        xs = torch.nonzero(m, as_tuple=True)[1]
        assert float(xs.float().mean()) >= 20  # centred in the tissue, not in the air
        again = synthetic_lesion(img, valid, np.random.default_rng(seed))
        assert again is not None and torch.equal(again[0], out)  # seeded
    assert seen >= 30
    assert synthetic_lesion(torch.zeros(1, 1, 64, 64), torch.ones(1, 1, 64, 64),
                            np.random.default_rng(0)) is None  # no tissue: no lesion


def test_lesion_samples_replace_the_target_and_carry_no_mask_prompt() -> None:
    from medseg.data.prompt_slices import AugmentSettings

    table = SliceTable([_synthetic_source()], min_area=20, exclude=("held_out",))
    none = AugmentSettings(flip=0, scale=(1.0, 1.0), aspect=0, rotate_deg=0, elastic=0,
                           intensity=0, noise=0, lesion=1.0)
    sampler = PromptSampler(table, EDGES, 32, seed=0, augment=none, mask_prompt_prob=1.0)
    b = sampler.batch(8)
    assert not bool(b.has_mask_input.any())
    structure = torch.zeros(64, 64, dtype=torch.bool)  # structure "a": x 8..24, y 8..19
    structure[8:19, 8:24] = True
    masks = [b.mask[i, 0] > 0.5 for i in range(8)]
    assert not any(torch.equal(m, structure) for m in masks)
    assert len({int(m.sum()) for m in masks}) > 4  # a new lesion each time
    for i, m in enumerate(masks):  # the box prompts the lesion, as a user's box would
        xs = torch.nonzero(m, as_tuple=True)[1]
        x0, _, x1, _ = b.boxes[i].tolist()
        assert abs(x0 - float(xs.min())) <= 20 and abs(x1 - float(xs.max()) - 1) <= 20


def test_random_intensity_curve_is_piecewise_linear_through_its_knots() -> None:
    from medseg.data.prompt_slices import random_curve

    x = torch.linspace(0, 1, 101)
    y = random_curve(x, np.random.default_rng(4))
    knots = np.random.default_rng(4).uniform(0, 1, size=6)
    np.testing.assert_allclose(y[::20].numpy(), knots, rtol=1e-6)  # x = 0, 0.2, ..., 1
    np.testing.assert_allclose(y[10].item(), (knots[0] + knots[1]) / 2, rtol=1e-5)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


@pytest.mark.parametrize("slice_px", [0.0, 5.0])
def test_jittered_boxes_stay_in_image_and_near_the_structure(slice_px: float) -> None:
    from medseg.data.prompt_slices import AugmentSettings

    table = SliceTable([_synthetic_source()], min_area=20)
    sampler = PromptSampler(table, EDGES, 32, box_jitter=20,
                            point_prob=1.0, augment=AugmentSettings(), seed=1,
                            box_jitter_slice_px=slice_px)
    b = sampler.batch(16)
    assert bool((b.boxes >= 0).all() and (b.boxes <= 64).all())
    assert bool((b.boxes[:, 2] > b.boxes[:, 0]).all() and (b.boxes[:, 3] > b.boxes[:, 1]).all())
    assert b.points is not None and b.point_labels is not None
    for i in range(16):  # every positive click lies on the structure
        for (x, y), lab in zip(b.points[i].tolist(), b.point_labels[i].tolist(), strict=True):
            if lab == 1:
                assert b.mask[i, 0, int(y), int(x)] == 1


def _eval_loss(net: torch.nn.Module, cfg: Any) -> float:
    from medseg.engine.prompt_train import _sampler

    model = PromptModel(net, lite_recipe(64), name="eval", version="0")
    sampler = _sampler(cfg, model, load_sources(cfg), rank=0)
    sampler.aug = None
    sampler.rng = np.random.default_rng(123)
    b = sampler.batch(8)
    net.eval()
    with torch.no_grad():
        logits, _ = prompt_forward(net, b.image, b.boxes)
    return float(dice_bce_loss(logits, b.mask))


@pytest.mark.parametrize("freeze_image_encoder", [True, False])
def test_finetune_lowers_the_loss_and_writes_a_loadable_checkpoint(
        tmp_path: Path, freeze_image_encoder: bool) -> None:
    cfg = parse_finetune_config(_raw(tmp_path, freeze_image_encoder=freeze_image_encoder))
    torch.manual_seed(3)
    before_net = build_model(cfg).sam
    before = _eval_loss(before_net, cfg)
    result = run_finetune(cfg, log=lambda _m: None)
    assert result.iterations == 12 and result.checkpoint.is_file()
    model = load_promptable(result.checkpoint)
    assert isinstance(model.sam, LiteSam)
    after = _eval_loss(model.sam, cfg)
    assert after < before - 0.05, (before, after)
    enc = [p for p in before_net.image_encoder.parameters()]
    same = all(torch.equal(a, b) for a, b in zip(enc, model.sam.image_encoder.parameters(),
                                                 strict=True))
    assert same == freeze_image_encoder
    assert (tmp_path / "run/train_log.jsonl").read_text().count("\n") == 3


def test_roi_decoder_stage_trains_only_the_new_decoder_on_a_frozen_checkpoint(
        tmp_path: Path) -> None:
    """model.checkpoint + model.arch {roi_decoder: true}: the checkpoint's tensors are kept
    (and stay frozen), the RoI decoder learns, the result loads and decodes on the model grid."""
    from medseg.models.lite_sam import build_lite_sam

    torch.manual_seed(0)
    base = save_promptable(PromptModel(build_lite_sam(**TINY), lite_recipe(64), name="base",
                                       version="0"), tmp_path / "base")[0]
    raw = _raw(tmp_path, iterations=24, freeze_image_encoder=True, mask_prompt_prob=0.5,
               point_prob=0.5)
    raw["model"] = {"backend": "lite", "checkpoint": str(base),
                    "arch": {"roi_decoder": True, "roi_size": 32, "roi_width": 8}}
    cfg = parse_finetune_config(raw)
    torch.manual_seed(3)
    before_net = build_model(cfg).sam
    before = _eval_loss(before_net, cfg)
    result = run_finetune(cfg, log=lambda _m: None)
    net = load_promptable(result.checkpoint).sam
    assert isinstance(net, LiteSam) and net.roi_decoder is not None
    after = _eval_loss(net, cfg)
    assert after < before - 0.05, (before, after)
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4]) - 0.1
    old = load_promptable(base).sam.state_dict()
    for k, v in old.items():
        assert torch.equal(net.state_dict()[k], v), k  # encoder, prompt encoder, SAM decoder
    assert not all(torch.equal(a, b) for a, b in zip(
        before_net.roi_decoder.parameters(), net.roi_decoder.parameters(), strict=True))


def test_sam_backend_finetunes_a_checkpoint_in_the_official_layout(tmp_path: Path) -> None:
    from medseg.models.sam_modules import VitArch, build_sam_vit

    arch = VitArch(32, 2, 2, (1,), image_size=64, patch_size=16, window_size=2,
                   prompt_dim=32, decoder_mlp_dim=64, decoder_heads=2)
    torch.save(build_sam_vit(arch).state_dict(), tmp_path / "tiny_medsam.pth")
    raw = _raw(tmp_path, iterations=2, batch_size=2, freeze_image_encoder=True)
    raw["model"] = {"backend": "sam", "checkpoint": str(tmp_path / "tiny_medsam.pth")}
    result = run_finetune(parse_finetune_config(raw), log=lambda _m: None)
    model = load_promptable(result.checkpoint)
    assert model.recipe == medsam_recipe(64) and model.name == "medsam_vit_32x2"
    raw["model"] = {"backend": "lite", "checkpoint": str(tmp_path / "tiny_medsam.pth")}
    with pytest.raises(ConfigError, match="backend is 'lite'"):
        build_model(parse_finetune_config(raw))


def test_bad_configs_name_the_key(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    raw["train"]["learning_rate"] = 1.0
    with pytest.raises(ConfigError, match="unknown key 'train.learning_rate'"):
        parse_finetune_config(raw)
    with pytest.raises(ConfigError, match="needs model.checkpoint"):
        parse_finetune_config({**_raw(tmp_path), "model": {"backend": "sam"}})
    with pytest.raises(ConfigError, match="data"):
        parse_finetune_config({"model": {"backend": "lite"}})
    raw = _raw(tmp_path, freeze_image_encoder=True)
    raw["data"]["sources"][0]["label"] = str(tmp_path / "missing.nrrd")
    with pytest.raises(DatasetError, match="missing.nrrd"):
        run_finetune(parse_finetune_config(raw))


def test_take_slice_is_the_transposed_slice_and_copies_nothing() -> None:
    from medseg.data.prompt_slices import take_slice

    a = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    for axis in range(3):
        for k in range(a.shape[axis]):
            got = take_slice(a, axis, k)
            assert np.array_equal(got, np.take(a, k, axis=axis).T)
            assert np.shares_memory(got, a)


def test_loader_workers_draw_distinct_batches_from_reseeded_samplers() -> None:
    """train.workers > 0: each worker process reseeds its sampler copy, so no two of the
    first batches repeat (the same seed in every fork would give identical batches)."""
    from medseg.data.prompt_slices import AugmentSettings
    from medseg.engine.prompt_train import _batches

    table = SliceTable([_synthetic_source()], min_area=20)
    sampler = PromptSampler(table, EDGES, 16, seed=0,
                            augment=AugmentSettings())  # random affine: images never repeat
    it = _batches(sampler, 3, workers=2, seed=5)
    batches = [next(it) for _ in range(6)]
    it.close()  # shuts the loader's workers down
    for i in range(len(batches)):
        assert batches[i].image.shape == (3, 3, 64, 64)
        for j in range(i):
            assert not torch.equal(batches[i].image, batches[j].image), (i, j)


def test_unfrozen_encoder_trains_at_its_scaled_learning_rate_with_loader_workers(
        tmp_path: Path) -> None:
    from medseg.engine.prompt_train import _freeze

    cfg = parse_finetune_config(_raw(tmp_path, iterations=4, workers=2, encoder_lr_scale=0.1,
                                     freeze_image_encoder=False))
    net = build_model(cfg).sam
    groups = _freeze(net, cfg)
    enc = {id(p) for p in net.image_encoder.parameters()}
    assert [g["lr_scale"] for g in groups] == [0.1, 1.0]
    assert {id(p) for p in groups[0]["params"]} == enc
    assert not enc & {id(p) for p in groups[1]["params"]}
    assert not any(p.requires_grad for p in net.prompt_encoder.parameters())
    result = run_finetune(cfg, log=lambda _m: None)
    assert result.iterations == 4
    trained = load_promptable(result.checkpoint).sam
    assert not all(torch.equal(a, b) for a, b in zip(
        net.image_encoder.parameters(), trained.image_encoder.parameters(), strict=True))
