"""Transform pipelines built from config, on the real sample CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.config import IntensityConfig, PreprocessConfig
from medseg.transforms import (
    build_infer_transforms,
    build_train_transforms,
    build_val_transforms,
    intensity_transform,
)
from medseg.volume import Volume
from tests.engine.fixtures import make_dataset, sample_ct, tiny_config

torch.set_num_threads(1)


def _meta_image(vol) -> MetaTensor:  # type: ignore[no-untyped-def]
    arr = torch.from_numpy(vol.array.astype(np.float32))[None]
    return MetaTensor(arr, affine=torch.as_tensor(vol.affine_ras))


def test_infer_pipeline_resamples_and_inverts_to_input_grid() -> None:
    vol = sample_ct()  # 122x101x30 @ 3 mm RAS
    pre = PreprocessConfig(spacing=(4.0, 4.0, 5.0), intensity=IntensityConfig(window=(-200, 300)))
    pipe = build_infer_transforms(pre)
    out = pipe({"image": _meta_image(vol)})["image"]
    assert out.shape[1:] == (92, 76, 18)  # ceil-ish of extent / new spacing, MONAI convention
    np.testing.assert_allclose(np.abs(np.diag(out.affine.numpy())[:3]), [4, 4, 5], atol=1e-5)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    back = pipe.inverse({"image": out})["image"]
    assert tuple(back.shape[1:]) == vol.shape
    np.testing.assert_allclose(back.affine.numpy(), vol.affine_ras, atol=1e-4)


def test_orientation_lps_input_becomes_ras() -> None:
    vol = sample_ct()
    flipped = vol.array[::-1, ::-1, :].copy()  # same world, now LPS-ordered voxels
    aff = vol.affine_ras.copy()
    aff[:3, 3] = vol.affine_ras[:3, :3] @ np.array([121, 100, 0]) + vol.affine_ras[:3, 3]
    aff[:, :2] *= -1
    aff[3, :2] = 0
    lps = MetaTensor(torch.from_numpy(flipped.astype(np.float32))[None],
                     affine=torch.as_tensor(aff))
    pipe = build_infer_transforms(PreprocessConfig(spacing=None))
    a = pipe({"image": lps})["image"]
    b = pipe({"image": _meta_image(vol)})["image"]
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("mode", ["mr_percentile", "zscore", "none"])
def test_intensity_modes(mode: str) -> None:
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.normal(300, 50, (1, 20, 20, 10)).astype(np.float32))
    t = intensity_transform(IntensityConfig(mode=mode, percentiles=(1, 99)))[0]
    out = np.asarray(t({"image": img})["image"])
    if mode == "mr_percentile":
        assert out.min() == 0.0 and out.max() == 1.0
        assert 0.4 < np.median(out) < 0.6
    elif mode == "zscore":
        assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3
    else:
        np.testing.assert_array_equal(out, img.numpy())


def test_foreground_crop_is_inverted() -> None:
    ct = sample_ct()
    air = np.pad(ct.array, ((12, 12), (0, 0), (0, 0)), constant_values=-1024)
    vol = Volume(air, ct.spacing, ct.origin, ct.direction, modality="CT")
    pre = PreprocessConfig(spacing=None, foreground_crop=True,
                           intensity=IntensityConfig(window=(-200, 300)))
    pipe = build_infer_transforms(pre)
    out = pipe({"image": _meta_image(vol)})["image"]
    assert out.shape[1] == 121 + 2 * 2  # air removed, 2-voxel margin kept
    back = pipe.inverse({"image": out})["image"]
    assert tuple(back.shape[1:]) == vol.shape


@pytest.mark.parametrize("dims", [3, 2])
def test_train_and_val_pipelines(tmp_path: Path, dims: int) -> None:
    ds = make_dataset(tmp_path / "ds")
    extra = {} if dims == 3 else {"model": {"spatial_dims": 2},
                                  "train": {"patch_size": [24, 24]}}
    cfg = tiny_config(ds, tmp_path / "run", **extra)  # type: ignore[arg-type]
    item = {"image": str(tmp_path / "ds/imagesTr/case0.nii.gz"),
            "label": str(tmp_path / "ds/labelsTr/case0.nii.gz")}
    tf = build_train_transforms(cfg)
    tf.set_random_state(seed=0)
    patches = tf(item)
    assert len(patches) == cfg.augment.num_samples
    want = (1, 24, 24, 16) if dims == 3 else (1, 24, 24)
    for p in patches:
        assert tuple(p["image"].shape) == want and tuple(p["label"].shape) == want
        assert set(np.unique(p["label"].numpy())) <= {0, 1, 2, 3}
    assert any(p["label"].numpy().max() > 0 for p in patches)  # positive sampling works
    val = build_val_transforms(cfg)(item)
    assert tuple(val["image"].shape) == (1, 48, 40, 30)
    assert set(np.unique(val["label"].numpy())) == {0, 1, 2, 3}


def test_flip_axes_respected(tmp_path: Path) -> None:
    from monai.transforms import RandFlipd

    ds = make_dataset(tmp_path / "ds")
    cfg = tiny_config(ds, tmp_path / "run", augment={"flip_axes": [1, 2], "flip_prob": 0.5})
    flips = [t for t in build_train_transforms(cfg).transforms if isinstance(t, RandFlipd)]
    assert sorted(t.flipper.spatial_axis for t in flips) == [1, 2]
