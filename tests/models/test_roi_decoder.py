"""The box-aligned RoI decoder of the lite model: geometry, prompts, and checkpoint extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.models.lite_sam import LiteSamConfig, build_lite_sam
from medseg.models.prompt_recipe import lite_recipe
from medseg.models.promptable import PromptModel, load_promptable, save_promptable
from medseg.models.roi_decoder import (
    RoiDecoder,
    _roi_grid,
    pack_image,
    paste,
    roi_boxes,
    unpack_image,
)

torch.set_num_threads(1)
SMALL = {"image_size": 64, "embed_dim": 32, "widths": (8, 16, 16, 32), "attn_heads": 2,
         "decoder_mlp_dim": 64, "decoder_heads": 2}


def _net(**kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_lite_sam(LiteSamConfig(**{**SMALL, "roi_decoder": True, "roi_size": 32,
                                           "roi_width": 8, **kw})).eval()


def _save(net: torch.nn.Module, path: Path) -> Path:
    model = PromptModel(net, lite_recipe(64), name="roi-test", version="0")
    return save_promptable(model, path)[0]


def test_the_embedding_carries_the_model_input_exactly() -> None:
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(unpack_image(pack_image(x)), x[:, :1])
    net = _net()
    with torch.inference_mode():
        emb = net.image_encoder(x)
    assert emb.shape == (2, 32 + 64, 8, 8)
    feats, image = net.split_embedding(emb)
    assert feats.shape == (2, 32, 8, 8) and torch.equal(image, x[:, :1])


def test_roi_is_a_square_around_the_box_with_margin() -> None:
    rois = roi_boxes(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), 256)
    x0, y0, w, h = rois[0].tolist()
    assert w == h == pytest.approx(1.5 * 40 + 12)
    assert (x0 + w / 2, y0 + h / 2) == pytest.approx((20.0, 40.0))
    assert x0 < 10 and y0 < 20 and x0 + w > 30 and y0 + h > 60


def test_paste_puts_roi_pixels_back_where_they_were_sampled() -> None:
    """Sampling an image into the RoI and pasting it back is the identity inside the RoI
    (same pixel-centre convention both ways) and background outside."""
    size, n = 64, 64
    img = torch.zeros(1, 1, size, size)
    img[0, 0, 20:30, 12:40] = 1.0  # rows = y 20..29, cols = x 12..39
    rois = torch.tensor([[8.0, 16.0, 32.0, 32.0]])  # x 8..40, y 16..48: RoI pixel = 0.5 px
    roi = torch.nn.functional.grid_sample(img, _roi_grid(rois, n, size), mode="nearest",
                                          align_corners=False)
    back = paste(roi, rois, size, size)
    inside = back[0, 0, 16:48, 8:40]
    assert torch.equal(inside, img[0, 0, 16:48, 8:40])
    assert (back[0, 0, :16] == -20).all() and (back[0, 0, :, 40:] == -20).all()


def test_box_and_click_channels_sit_on_the_prompt() -> None:
    dec = RoiDecoder(feat_dim=8, image_size=64, roi_size=32, width=8)
    boxes = torch.tensor([[20.0, 10.0, 36.0, 42.0]])
    rois = roi_boxes(boxes, 64)
    grid = _roi_grid(rois, 32, 64)
    pts = torch.tensor([[[30.0, 20.0], [24.0, 40.0]]])
    x = dec.inputs(torch.zeros(1, 1, 64, 64), grid, rois, boxes, pts, torch.tensor([[1, 0]]),
                   None, None)
    assert x.shape == (1, 7, 32, 32)
    box_back = paste(x[:, 2:3] * 40 - 20, rois, 64, 64)[0, 0] > 0
    ys, xs = torch.nonzero(box_back, as_tuple=True)
    got = np.array([xs.min(), xs.max(), ys.min(), ys.max()])
    assert np.abs(got - [20, 35, 10, 41]).max() <= 1  # RoI pixels are 1.9 model pixels here
    for ch, (px, py) in ((3, (30, 20)), (4, (24, 40))):
        heat = paste(x[:, ch:ch + 1], rois, 64, 64)[0, 0]
        iy, ix = np.unravel_index(int(heat.argmax()), heat.shape)
        assert abs(ix - px) <= 1 and abs(iy - py) <= 1
    assert x[:, 5:].abs().sum() == 0  # no mask prompt: mask and flag channels empty


def test_decode_answers_box_click_and_mask_prompts_on_the_model_grid() -> None:
    net = _net()
    with torch.inference_mode():
        emb = net.image_encoder(torch.randn(2, 3, 64, 64))
        low, iou = net.decode(emb, boxes=torch.tensor([[5.0, 5.0, 30, 40], [0, 0, 63, 63]]))
        assert low.shape == (2, 1, 64, 64) and iou.shape == (2, 1)
        # the RoI of a small box: background far away from it
        assert (low[0, 0, 50:, 50:] == -20).all()
        pts = (torch.tensor([[[40.0, 44.0]], [[10.0, 12.0]]]), torch.tensor([[1], [1]]))
        low_p, _ = net.decode(emb, points=pts)
        mask = torch.zeros(2, 1, 32, 32)
        mask[:, :, 4:10, 6:12] = 8.0
        low_m, _ = net.decode(emb, mask_input=mask - 4.0)
    assert low_p.shape == low_m.shape == (2, 1, 64, 64)
    # a click-only prompt's box contains the click: its RoI is not all background there
    assert low_p[0, 0, 44, 40] > -20 and low_p[1, 0, 12, 10] > -20
    # a mask-only prompt is decoded in a RoI around the mask (model px 12..24 x 8..20)
    assert low_m[0, 0, 14, 18] > -20 and (low_m[0, 0, 50:, 50:] == -20).all()


def test_save_load_roundtrip_and_extending_a_checkpoint(tmp_path: Path) -> None:
    from medseg.engine.prompt_train import _extend_lite
    from medseg.errors import ConfigError

    net = _net()
    back = load_promptable(_save(net, tmp_path / "roi")).sam
    x = torch.randn(1, 3, 64, 64)
    box = torch.tensor([[10.0, 12.0, 40.0, 30.0]])
    with torch.inference_mode():
        torch.testing.assert_close(back.decode(back.image_encoder(x), box),
                                   net.decode(net.image_encoder(x), box))
    plain = build_lite_sam(LiteSamConfig(**SMALL)).eval()
    ext = _extend_lite(plain, {"roi_decoder": True, "roi_size": 32}, tmp_path / "p")
    assert ext.roi_decoder is not None
    for k, v in plain.state_dict().items():
        assert torch.equal(ext.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="changes tensors"):
        _extend_lite(plain, {"embed_dim": 16}, tmp_path / "p")


def test_prompt_session_and_propagation_run_on_a_roi_model(tmp_path: Path) -> None:
    """The runtime (session, click-only prompts, propagation) drives a RoI-decoder model
    unchanged: masks come back on the slice grid."""
    from medseg import io as mio
    from medseg.engine.prompt import PromptSession
    from medseg.engine.propagate import Propagator
    ds = Path(__file__).resolve().parents[2] / "data_samples"
    net = _net()
    with torch.no_grad():  # a head that says "foreground" over the whole RoI
        net.roi_decoder.head.weight.zero_()
        net.roi_decoder.head.bias.fill_(5.0)
    path = _save(net, tmp_path / "roi")
    img = mio.read(ds / "pyradiomics/brain1_image.nrrd")
    img.modality = "MR"
    session = PromptSession(load_promptable(path))
    session.set_volume(img, axis=2)
    nx, ny = session.slice_shape
    mask, score = session.predict(12, box=(60, 70, 140, 150))
    assert mask.shape == (nx, ny) and np.isfinite(score)
    xs, ys = np.nonzero(mask)  # the RoI: a square around the box, 1.5 x its side + margin
    assert xs.min() < 60 and xs.max() > 140 and ys.min() < 70 and ys.max() > 150
    assert not mask[:10].any() and not mask[:, 200:].any()
    click, _ = session.predict(12, points=[(100, 110, True)])
    assert click.shape == (nx, ny)
    res = Propagator(session).propagate({12: mask})
    assert np.asarray(res.mask.array).shape == np.asarray(img.array).shape


def test_every_prompt_of_a_roi_model_goes_to_the_roi_decoder() -> None:
    """A lite model with the RoI decoder decodes every prompt with it, whatever the image's
    modality (the runtime passes no modality to decode)."""
    net = _net()
    model = PromptModel(net, lite_recipe(64), name="r", version="0")
    with torch.inference_mode():
        emb = model.embed(torch.randn(1, 3, 64, 64))
        box = np.array([10.0, 12.0, 40.0, 30.0], np.float32)
        low, _ = model.decode(emb, box=box)
        roi, _ = net.roi_decode(emb, torch.from_numpy(box)[None])
    assert low.shape == (1, 1, 64, 64)  # RoI decoder: the model-input grid
    torch.testing.assert_close(low, roi)


def test_click_padding_does_not_stretch_the_derived_box() -> None:
    """Click-only prompts in a batch are padded with label -1 at (0, 0): the derived box must
    cover the real clicks only. It is a square of 1/6 of the input (64 / 6 px here) centred on
    the positive clicks' extent, grown to cover every positive click + 2 px; a negative click
    far away does not stretch it."""
    net = _net()
    pts = (torch.tensor([[[40.0, 44.0], [0.0, 0.0]]]), torch.tensor([[1, -1]]))
    box = net._prompt_box(pts, None, 1, torch.device("cpu"), 1 / 6)[0]
    h = 64 / 12
    torch.testing.assert_close(box, torch.tensor([40 - h, 44 - h, 40 + h, 44 + h]))
    pts = (torch.tensor([[[30.0, 44.0], [50.0, 40.0], [20.0, 20.0]]]), torch.tensor([[1, 1, 0]]))
    box = net._prompt_box(pts, None, 1, torch.device("cpu"), 1 / 6)[0]
    # centred on the positives' extent (40, 42), grown over the positive clicks at x 30 / 50;
    # the negative click at (20, 20) is left outside
    torch.testing.assert_close(box, torch.tensor([28.0, 42 - h, 52.0, 42 + h]))


def _answer_every_roi_decode_with(net: torch.nn.Module,
                                   logits: torch.Tensor) -> list[torch.Tensor]:
    """Make ``net.roi_decode`` return ``logits`` (IoU 1); returns the list the RoI boxes of
    its calls are recorded in."""
    calls: list[torch.Tensor] = []

    def fake_roi(emb: torch.Tensor, boxes: torch.Tensor, *a: object,
                 **kw: object) -> tuple[torch.Tensor, ...]:
        calls.append(boxes.clone())
        return logits, torch.ones(1, 1)

    net.roi_decode = fake_roi  # type: ignore[method-assign]
    return calls


def test_click_only_prompts_refit_the_roi_on_the_first_mask() -> None:
    """A click-only prompt is decoded twice: the second RoI box is the first mask's box grown
    by 25 % of its size per side + 2 px (covering the clicks); box prompts decode once."""
    net = _net()
    first = torch.full((1, 1, 64, 64), -20.0)
    first[0, 0, 10:30, 20:28] = 5.0  # mask: x 20..27, y 10..29
    calls = _answer_every_roi_decode_with(net, first)
    emb = torch.zeros(1, 32 + 64, 8, 8)
    net.decode(emb, points=(torch.tensor([[[24.0, 20.0]]]), torch.tensor([[1]])))
    assert len(calls) == 2
    w, h = 8.0, 20.0  # the first mask's box: [20, 10, 28, 30]
    torch.testing.assert_close(calls[1][0], torch.tensor(
        [20 - w / 4 - 2, 10 - h / 4 - 2, 28 + w / 4 + 2, 30 + h / 4 + 2]))
    calls.clear()
    net.decode(emb, boxes=torch.tensor([[5.0, 5.0, 30.0, 40.0]]))
    assert len(calls) == 1


def test_click_only_prompts_fit_the_second_box_at_the_recipes_mask_threshold() -> None:
    """The first pass's mask is cut at the recipe's ``mask_threshold`` (what the user is shown),
    not at logit 0, before its box is grown for the second pass; the recipe's click settings
    size both boxes."""
    import dataclasses

    net = _net()
    recipe = dataclasses.replace(lite_recipe(64), mask_threshold=3.0, click_grow=0.5)
    model = PromptModel(net, recipe, name="r", version="0")
    first = torch.full((1, 1, 64, 64), -20.0)
    first[0, 0, 5:40, 10:40] = 1.0  # above 0, below the threshold: not part of the mask
    first[0, 0, 10:30, 20:28] = 5.0  # the mask: x 20..27, y 10..29
    calls = _answer_every_roi_decode_with(net, first)
    model.decode(torch.zeros(1, 32 + 64, 8, 8), points=np.array([[24.0, 20.0]]),
                 point_labels=np.array([1]))
    w, h = 8.0, 20.0
    torch.testing.assert_close(calls[1][0], torch.tensor(
        [20 - w / 2 - 2, 10 - h / 2 - 2, 28 + w / 2 + 2, 30 + h / 2 + 2]))


def test_bad_roi_settings_are_typed_errors() -> None:
    from medseg.errors import PromptModelError

    with pytest.raises(PromptModelError, match="multiple of 8"):
        LiteSamConfig(roi_decoder=True, roi_size=50)
