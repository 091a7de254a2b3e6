"""nnU-Net model folders: reading, safe checkpoints, strict weights, refusals.

Fixtures: ``tests/fixtures/nnunet/models`` (made by the real ``nnunetv2``, see
``tests/fixtures/nnunet/make_fixtures.py``); hostile variants are copies edited at test time.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from medseg.errors import ForeignModelError, UnsafeModelError
from medseg.models.importer import convert, source_kind
from medseg.models.nnunet import load_checkpoint, read_model_folder
from medseg.models.nnunet.folder import _old_plans_architecture
from medseg.models.nnunet.network import build_network, canonical_state_dict
from tests.fixtures.nnunet.inputs import BRAIN, CT_2D, CT_FULLRES

MODELS = Path(__file__).resolve().parents[1] / "fixtures/nnunet/models"


class Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def hostile_folder(tmp: Path, marker: Path) -> Path:
    """The CT fixture with fold 0's checkpoint carrying a payload next to its real weights."""
    dst = tmp / "Dataset501_CTOrgans" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    shutil.copytree(MODELS / CT_FULLRES, dst, ignore=shutil.ignore_patterns("fold_1"))
    ckpt = torch.load(dst / "fold_0/checkpoint_final.pth", weights_only=False)
    ckpt["logging"] = Payload(marker)
    torch.save(ckpt, dst / "fold_0/checkpoint_final.pth")
    return dst


def test_fixture_folders_read() -> None:
    m = read_model_folder(MODELS / CT_FULLRES)
    r = m.recipe
    assert r.configuration == "3d_fullres" and r.spatial_dims == 3
    assert r.labels == {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "liver"}
    assert [c.scheme for c in r.channels] == ["CTNormalization"] and m.modality == "CT"
    assert r.mirror_axes == (0, 1, 2) and len(m.checkpoints) == 2
    assert m.provenance["folds"] == ["0", "1"] and m.provenance["trainer"] == "nnUNetTrainer"
    assert set(m.provenance["files"]) == {"plans.json", "dataset.json",
                                          "fold_0/checkpoint_final.pth",
                                          "fold_1/checkpoint_final.pth"}
    brain = read_model_folder(MODELS / BRAIN).recipe
    assert brain.transpose_forward == (1, 0, 2)
    assert brain.channels[0].scheme == "ZScoreNormalization"
    assert read_model_folder(MODELS / CT_2D).recipe.spatial_dims == 2
    assert source_kind(MODELS / "Dataset501_CTOrgans") == "nnunet"


def test_checkpoint_loads_weights_only() -> None:
    ck = load_checkpoint(MODELS / CT_FULLRES / "fold_0/checkpoint_final.pth")
    assert ck.trainer_name == "nnUNetTrainer" and ck.configuration == "3d_fullres"
    assert all(isinstance(v, torch.Tensor) for v in ck.weights.values())
    # the same file needs numpy's scalar/dtype types: without the allow-list it is refused
    with pytest.raises(Exception, match="(?i)weights only load failed|unsupported global"):
        torch.load(MODELS / CT_FULLRES / "fold_0/checkpoint_final.pth", weights_only=True)


def test_payload_checkpoint_refused_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = hostile_folder(tmp_path, marker)
    for call in (lambda: load_checkpoint(folder / "fold_0/checkpoint_final.pth"),
                 lambda: read_model_folder(folder), lambda: convert(folder)):
        with pytest.raises(UnsafeModelError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and "checkpoint_final.pth" in msg and "system" in msg
    assert not marker.exists()


def test_weights_must_fit_the_plans_strictly(tmp_path: Path) -> None:
    dst = tmp_path / "m" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    shutil.copytree(MODELS / CT_FULLRES, dst, ignore=shutil.ignore_patterns("fold_1"))
    plans = json.loads((dst / "plans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [f * 2 for f in arch["features_per_stage"]]
    (dst / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ForeignModelError, match="do not fit the architecture"):
        convert(dst)


def test_aliases_must_agree() -> None:
    net = build_network("PlainConvUNet", {
        "n_stages": 2, "features_per_stage": [2, 4], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]],
        "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "nonlin": "torch.nn.LeakyReLU"}, 1, 2)
    state = {f"decoder.{k}" if k.startswith("encoder.") else k: v
             for k, v in net.state_dict().items()}
    state.update(net.state_dict())
    canonical_state_dict(net, state)  # equal twins: fine
    key = next(k for k in state if k.startswith("decoder.encoder."))
    state[key] = state[key] + 1
    with pytest.raises(ValueError, match="should be one tensor"):
        canonical_state_dict(net, state)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda p, d: p["configurations"]["3d_fullres"].update(previous_stage="3d_lowres"),
     "cascade"),
    (lambda p, d: p["configurations"]["3d_fullres"].update(preprocessor_name="MyPreprocessor"),
     "DefaultPreprocessor"),
    (lambda p, d: p["configurations"]["3d_fullres"]["architecture"].update(
        network_class_name="my.module.Net"), "not one medseg builds"),
    (lambda p, d: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(
        nonlin="os.system"), "not one medseg builds"),
    (lambda p, d: d.update(labels={"background": 0, "whole": [1, 2], "core": [2]},
                           regions_class_order=[1, 2]), "region-based"),
])
def test_refusals_are_one_line(tmp_path: Path, edit: object, match: str) -> None:
    dst = tmp_path / "m" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    shutil.copytree(MODELS / CT_FULLRES, dst, ignore=shutil.ignore_patterns("fold_1"))
    plans = json.loads((dst / "plans.json").read_text())
    ds = json.loads((dst / "dataset.json").read_text())
    edit(plans, ds)  # type: ignore[operator]
    (dst / "plans.json").write_text(json.dumps(plans))
    (dst / "dataset.json").write_text(json.dumps(ds))
    with pytest.raises(ForeignModelError, match=match) as info:
        convert(dst)
    assert "\n" not in str(info.value)


def test_missing_fold_and_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ForeignModelError, match="fold 7"):
        read_model_folder(MODELS / CT_FULLRES, folds=["7"])
    (tmp_path / "x").mkdir()
    with pytest.raises(ForeignModelError, match="neither an nnU-Net model folder"):
        convert(tmp_path / "x")
    with pytest.raises(ForeignModelError, match="several"):
        read_model_folder(MODELS / "Dataset501_CTOrgans")


def test_old_plans_format_converted_as_nnunet_does() -> None:
    old = {"UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 32,
           "unet_max_num_features": 320, "n_conv_per_stage_encoder": [2, 2, 2],
           "n_conv_per_stage_decoder": [2, 2], "patch_size": [64, 64, 64],
           "conv_kernel_sizes": [[3, 3, 3]] * 3, "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2],
                                                                          [2, 2, 2]]}
    arch = _old_plans_architecture(old)
    assert arch["arch_kwargs"]["features_per_stage"] == [32, 64, 128]
    net = build_network(arch["network_class_name"], arch["arch_kwargs"], 1, 3)
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_a_channel_named_ct_marks_a_ct_model_whatever_its_normalisation(tmp_path: Path) -> None:
    import json

    dst = tmp_path / "model"
    shutil.copytree(MODELS / CT_FULLRES, dst, ignore=shutil.ignore_patterns("fold_1"))
    plans = json.loads((dst / "plans.json").read_text())
    for cfg in plans["configurations"].values():
        if "normalization_schemes" in cfg:
            cfg["normalization_schemes"] = ["ZScoreNormalization"]
            cfg["use_mask_for_norm"] = [False]
    (dst / "plans.json").write_text(json.dumps(plans))
    m = read_model_folder(dst)
    assert m.recipe.channels[0].scheme == "ZScoreNormalization" and m.modality == "CT"
