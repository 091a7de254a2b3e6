"""Trainer on tiny real crops: loss goes down, bundles load, resume continues exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.engine.checkpoint import load_checkpoint
from medseg.engine.infer import Segmenter
from medseg.engine.train import Trainer, train
from medseg.errors import ConfigError, DatasetError
from medseg.models.bundle import read_bundle_meta
from medseg.transforms import build_val_transforms
from tests.engine.fixtures import LABELS, make_dataset, sample_ct, tiny_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"))


def _fixed_loss(trainer: Trainer) -> float:
    """Loss of the current network on a fixed, un-augmented training volume."""
    d = build_val_transforms(trainer.cfg)(trainer.train_cases[0].as_dict())
    x, y = d["image"].as_tensor()[None, :, :24, :24, :16], d["label"].as_tensor()[None,
                                                                                :, :24, :24, :16]
    trainer.net.eval()
    with torch.no_grad():
        return float(trainer.loss_fn(trainer.net(x), y))


def test_loss_decreases_and_best_bundle_predicts(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(dataset, tmp_path / "run", train={"epochs": 3, "iterations_per_epoch": 4})
    cfg.data.body_region = "abdomen"  # stored with the weights (what the model is made for)
    trainer = Trainer(cfg, progress=False)
    assert [c.id for c in trainer.val_cases] and len(trainer.train_cases) == 2
    before = _fixed_loss(trainer)
    result = trainer.fit()
    assert _fixed_loss(trainer) < before
    assert result.history[-1]["epoch"] == 3 and result.history[-1]["step"] == 12
    meta = read_bundle_meta(result.best_bundle)
    assert meta.labels == LABELS and meta.modality == "CT" and meta.roi_size == (24, 24, 16)
    assert meta.body_region == "abdomen"
    assert meta.training["config_name"] == "tiny" and len(meta.config_hash) == 16
    assert meta.preprocess == cfg.preprocess
    ct = sample_ct()
    out = Segmenter(result.best_bundle).predict(ct)
    assert out.grid_differences(ct) == [] and out.labels == LABELS
    with open(tmp_path / "run/metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_dice_mean", "dice_spleen", "dice_liver"} <= set(rows[0])
    assert (tmp_path / "run/last.safetensors").is_file()


def test_resume_continues_at_the_right_step(dataset: Path, tmp_path: Path) -> None:
    full = train(tiny_config(dataset, tmp_path / "full", train={"epochs": 3}), progress=False)
    part = tiny_config(dataset, tmp_path / "part", train={"epochs": 2})
    train(part, progress=False)
    ck = load_checkpoint(tmp_path / "part/last.pt")
    assert ck["epoch"] == 2 and ck["step"] == 4 and "optimizer" in ck and "rng" in ck
    more = Trainer(tiny_config(dataset, tmp_path / "part", train={"epochs": 3}),
                   progress=False)
    more.resume()
    assert (more.epoch, more.step) == (2, 4)
    res = more.fit()
    assert [r["epoch"] for r in res.history][-1] == 3 and res.history[-1]["step"] == 6
    a = Segmenter(full.last_bundle).net.state_dict()
    b = Segmenter(res.last_bundle).net.state_dict()
    for k in a:  # same RNG, data order and optimiser state: identical weights
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    with open(tmp_path / "part/metrics.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]


def test_2d_slice_training_dice_focal_sgd(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(dataset, tmp_path / "r2d", model={"spatial_dims": 2},
                      train={"patch_size": [24, 24], "epochs": 1, "batch_size": 2},
                      loss={"name": "dice_focal"},
                      optimizer={"name": "sgd", "lr": 0.01},
                      scheduler={"name": "cosine", "warmup_epochs": 1},
                      preprocess={"spacing": [3.0, 3.0, None]})
    res = train(cfg, progress=False)
    meta = read_bundle_meta(res.best_bundle)
    assert meta.network.spatial_dims == 2 and meta.roi_size == (24, 24)
    out = Segmenter(res.best_bundle).predict(sample_ct())
    assert out.shape == (122, 101, 30)
    assert np.isfinite(res.history[0]["train_loss"])


def test_bad_configs_name_the_problem(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data.root .*nope.*no such file"):
        Trainer(tiny_config(tmp_path / "nope/dataset.json", tmp_path / "r"))
    with pytest.raises(ConfigError, match="unknown network 'unet3000'"):
        tiny_config(dataset, tmp_path / "r", model={"name": "unet3000"})
    with pytest.raises(ConfigError, match="unknown key 'train.lr'"):
        tiny_config(dataset, tmp_path / "r", train={"lr": 0.1})


def test_inconsistent_label_sets_between_cases(tmp_path: Path) -> None:
    import nibabel as nib

    ds = make_dataset(tmp_path / "ds")
    lab_path = tmp_path / "ds/labelsTr/case1.nii.gz"
    img = nib.load(str(lab_path))
    arr = np.asarray(img.dataobj).copy()
    arr[arr == 3] = 7  # case1 calls the liver 7
    nib.save(nib.Nifti1Image(arr, img.affine), str(lab_path))
    with pytest.raises(DatasetError, match=r"case case1: .* value\(s\) \[7\]"):
        Trainer(tiny_config(ds, tmp_path / "r"))


def test_tensorboard_scalars_written(dataset: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(dataset, tmp_path / "tb", train={"epochs": 2, "tensorboard": True})
    res = train(cfg, progress=False)
    events = list((tmp_path / "tb/tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/dice_mean", "val/dice_spleen"} <= tags
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    np.testing.assert_allclose([e.value for e in loss],
                               [r["train_loss"] for r in res.history], rtol=1e-6)
    assert not (tmp_path / "tb-off").exists()
    train(tiny_config(dataset, tmp_path / "tb-off", train={"epochs": 1}), progress=False)
    assert not (tmp_path / "tb-off/tensorboard").exists()
