"""The lite promptable model: shapes, size budget, weights format and the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg import io as mio
from medseg.errors import PromptModelError
from medseg.models.lite_sam import LiteSam, LiteSamConfig, build_lite_sam
from medseg.models.prompt_recipe import PromptRecipe, lite_recipe
from medseg.models.promptable import LITE_STEM, PromptModel, load_promptable, save_promptable

torch.set_num_threads(1)
DS = Path(__file__).resolve().parents[2] / "data_samples"
SHIPPED = LITE_STEM.with_suffix(".safetensors")


def test_forward_shapes_and_parameter_budget() -> None:
    net = build_lite_sam().eval()
    cfg = net.config
    assert net.n_parameters() < 5_000_000  # ~10 MB of float32
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.inference_mode():
        emb = net.image_encoder(x)
        assert emb.shape == (2, cfg.embed_dim, cfg.embedding_size, cfg.embedding_size)
        boxes = torch.tensor([[10.0, 20.0, 120.0, 90.0], [0.0, 0.0, 255.0, 255.0]])
        low, iou = net.decode(emb, boxes=boxes)
        assert low.shape == (2, 1, 4 * cfg.embedding_size, 4 * cfg.embedding_size)
        assert iou.shape == (2, 1)
        pts = (torch.tensor([[[50.0, 60.0]], [[5.0, 6.0]]]), torch.tensor([[1], [0]]))
        low3, iou3 = net.decode(emb, points=pts, mask_input=low, multimask=True)
        assert low3.shape[1] == 3 and iou3.shape == (2, 3)
    assert net.prompt_encoder.mask_input_size == (low.shape[-2], low.shape[-1])


TINY = LiteSamConfig(image_size=64, embed_dim=32, widths=(8, 16, 16, 32), attn_heads=2,
                    decoder_mlp_dim=64, decoder_heads=2)


def _save(net: LiteSam, path: Path, recipe: PromptRecipe | None = None) -> Path:
    model = PromptModel(net, recipe or lite_recipe(net.config.image_size), name="lite-test",
                        version="0")
    return save_promptable(model, path, {"note": "test"})[0]


def test_save_load_roundtrip_and_wrong_architecture(tmp_path: Path) -> None:
    net = build_lite_sam(TINY).eval()
    path = _save(net, tmp_path / "m")
    doc = json.loads(path.with_suffix(".json").read_text())
    assert doc["builder"] == "medseg.models.lite_sam:build_lite_sam"
    assert doc["training"] == {"note": "test"} and doc["recipe"]["ct_window"] == [-160, 240]
    back = load_promptable(path).sam
    assert isinstance(back, LiteSam)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(net.image_encoder(x), back.image_encoder(x))
    # same file with the default (larger) architecture in its JSON: a clear error
    doc["arch"] = {}
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(PromptModelError, match="do not fit"):
        load_promptable(path)
    with pytest.raises(PromptModelError, match="unknown keys"):
        LiteSamConfig.from_dict({"image_sise": 64})
    with pytest.raises(PromptModelError, match="unknown keys"):  # a recipe field, not arch
        LiteSamConfig.from_dict({"mask_threshold": 1.0})
    with pytest.raises(PromptModelError, match="mask_threshold must be a finite number"):
        PromptRecipe.from_dict({"image_size": 64, "mask_threshold": "high"})


def test_prompt_coordinate_convention_travels_in_the_recipe(tmp_path: Path) -> None:
    """The prompt-coordinate convention is a recipe field in the weights JSON: "edges" is kept
    and used, a bad value is a clear error; the shipped weights use SAM's "indices"."""
    path = _save(build_lite_sam(TINY).eval(), tmp_path / "m")
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    assert doc["recipe"]["coords"] == "indices" and not load_promptable(path).resize_for(
        (10, 20)).edges
    doc["recipe"]["coords"] = "edges"
    meta.write_text(json.dumps(doc))
    assert load_promptable(path).resize_for((10, 20)).edges
    doc["recipe"]["coords"] = "corners"
    meta.write_text(json.dumps(doc))
    with pytest.raises(PromptModelError, match="coords"):
        load_promptable(path)
    assert load_promptable("lite").recipe.coords == "indices"


def test_mask_threshold_is_saved_loaded_and_used_by_the_session(tmp_path: Path) -> None:
    """A model's calibrated mask threshold travels in its recipe, and the session's masks are
    the logits above it (not above SAM's 0)."""
    from medseg.engine.prompt import PromptSession

    cfg = LiteSamConfig(**{**TINY.__dict__, "roi_decoder": True, "roi_size": 16,
                           "roi_width": 4})
    torch.manual_seed(0)
    path = _save(build_lite_sam(cfg).eval(), tmp_path / "m")
    img = mio.read(DS / "pyradiomics/brain1_image.nrrd")
    session = PromptSession(load_promptable(path))
    session.set_volume(img, axis=2)
    low, _ = session.predict_low_res(12, box=(80, 80, 160, 150))
    full = session.resize.logits_to_slice(low.float()[None, None])[0, 0].numpy().T
    t = float(np.quantile(full[full > -20], 0.5))  # a threshold that splits this mask
    doc = json.loads(path.with_suffix(".json").read_text())
    assert doc["recipe"]["mask_threshold"] == 0.0
    doc["recipe"]["mask_threshold"] = t
    path.with_suffix(".json").write_text(json.dumps(doc))
    model = load_promptable(path)
    assert model.mask_threshold == t
    session = PromptSession(model)
    session.set_volume(img, axis=2)
    mask, _ = session.predict(12, box=(80, 80, 160, 150))
    assert np.array_equal(mask, full > t) and 0 < mask.sum() < (full > 0).sum()
    shipped = json.loads(SHIPPED.with_suffix(".json").read_text())["recipe"]["mask_threshold"]
    assert load_promptable("lite").mask_threshold == shipped


def test_shipped_weights_budget() -> None:
    assert SHIPPED.is_file(), "medseg/weights/lite_sam.safetensors must ship with the package"
    assert SHIPPED.stat().st_size < 30 * 2**20
    doc = json.loads(SHIPPED.with_suffix(".json").read_text())
    held_out = set(doc["training"]["held_out"])
    assert {"kidney_left", "kidney_right"} <= held_out
    assert not held_out & set(doc["training"]["structures"])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize(("image", "label", "value", "modality"), [
    ("totalsegmentator/example_ct.nii.gz", "totalsegmentator/example_seg_fast_force_split.nii.gz",
     5, "CT"),  # liver (held in)
    ("pyradiomics/brain1_image.nrrd", "pyradiomics/brain1_label.nrrd", 1, "MR"),
])
def test_shipped_weights_segment_a_real_held_in_slice(image: str, label: str, value: int,
                                                      modality: str) -> None:
    from medseg.engine.prompt import PromptSession

    img = mio.read(DS / image)
    img.modality = modality
    gt = np.asarray(mio.read(DS / label).array) == value
    k = int(np.argmax(gt.sum(axis=(0, 1))))
    xs, ys = np.nonzero(gt[..., k])
    session = PromptSession(load_promptable("lite"))
    session.set_volume(img, axis=2)
    mask, score = session.predict(k, box=(xs.min(), ys.min(), xs.max(), ys.max()))
    assert mask.shape == gt.shape[:2]
    assert _dice(mask, gt[..., k]) > 0.8
    assert 0.0 < score <= 1.5


@pytest.mark.parametrize("multimask", [False, True])
def test_aligned_batch_decoding_equals_the_official_decoder_per_sample(multimask: bool) -> None:
    """decode_aligned (sample i's prompts on image i, one pass) is the official MaskDecoder
    called once per sample."""
    from medseg.models.sam_modules import decode_aligned

    torch.manual_seed(0)
    net = build_lite_sam().eval()
    e, c = net.config.embedding_size, net.config.embed_dim
    emb = torch.randn(3, c, e, e)
    boxes = torch.tensor([[10.0, 20.0, 120.0, 90.0], [0.0, 0.0, 255.0, 255.0],
                          [40.0, 40.0, 60.0, 90.0]])
    pe = net.prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        sparse, dense = net.prompt_encoder(points=None, boxes=boxes, masks=None)
        got_m, got_i = decode_aligned(net.mask_decoder, emb, pe, sparse, dense, multimask)
        for i in range(3):
            m, iou = net.mask_decoder(image_embeddings=emb[i:i + 1], image_pe=pe,
                                      sparse_prompt_embeddings=sparse[i:i + 1],
                                      dense_prompt_embeddings=dense[i:i + 1],
                                      multimask_output=multimask)
            torch.testing.assert_close(got_m[i:i + 1], m, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got_i[i:i + 1], iou, atol=1e-5, rtol=1e-4)

