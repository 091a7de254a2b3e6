"""Segmenter: geometry-exact output, equivalence with a plain MONAI recipe, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai import transforms as mt
from monai.inferers import sliding_window_inference
from scipy.spatial.transform import Rotation

from medseg import io
from medseg.engine.infer import PostProcess, Segmenter
from medseg.engine.postprocess import postprocess_labels
from medseg.errors import ModelInputError
from medseg.models.bundle import load_bundle
from medseg.volume import Volume
from tests.engine.fixtures import CT, LABELS, random_bundle, sample_ct

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("b") / "random.safetensors")


@pytest.fixture(scope="module")
def segmenter(bundle: Path) -> Segmenter:
    return Segmenter(bundle, device="cpu")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def test_matches_plain_monai_recipe(bundle: Path, segmenter: Segmenter) -> None:
    """LoadImaged -> Orientationd -> Spacingd -> ScaleIntensityRanged -> sliding window ->
    Invertd (probabilities) -> argmax, same network and weights."""
    net, _ = load_bundle(bundle)
    pre = mt.Compose([
        mt.LoadImaged("image"), mt.EnsureChannelFirstd("image"),
        mt.Orientationd("image", axcodes="RAS"),
        mt.Spacingd("image", pixdim=(4.0, 4.0, 4.0), mode="bilinear"),
        mt.ScaleIntensityRanged("image", -200, 300, 0.0, 1.0, clip=True)])
    d = pre({"image": str(CT)})
    with torch.no_grad():
        logits = sliding_window_inference(d["image"][None], (32, 32, 32), 2, net, overlap=0.25,
                                          mode="gaussian")
    d["pred"] = torch.softmax(logits[0], 0)
    inv = mt.Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False)(d)["pred"]
    ref = inv.argmax(0).numpy()
    ours = segmenter.predict(io.read(CT))
    assert isinstance(ours, Volume) and ours.array.dtype == np.uint8
    assert ours.labels == LABELS
    for c in range(1, 4):
        assert (ref == c).sum() > 1000  # non-trivial masks
        assert _dice(ref == c, ours.array == c) >= 0.99, c


def _lps_copy(vol: Volume) -> Volume:
    """The same world image stored with i, j reversed (LPS-ordered voxels)."""
    origin = vol.index_to_world(np.array(vol.shape) - [1, 1, vol.shape[2]])
    return Volume(vol.array[::-1, ::-1, :].copy(), vol.spacing, tuple(origin),
                  vol.direction @ np.diag([-1.0, -1.0, 1.0]), modality="CT")


def _via_nifti(vol: Volume, path: Path) -> Volume:
    io.write(vol, path)
    return io.read(path)


def test_geometry_ras_lps_and_world_agreement(segmenter: Segmenter, tmp_path: Path) -> None:
    ras = io.read(CT)
    lps = _via_nifti(_lps_copy(ras), tmp_path / "lps.nii.gz")
    assert ras.orientation == "RAS" and lps.orientation == "LPS"
    out_ras = segmenter.predict(ras)
    out_lps = segmenter.predict(lps)
    assert out_ras.grid_differences(ras) == [] and out_lps.grid_differences(lps) == []
    np.testing.assert_array_equal(out_lps.array[::-1, ::-1, :], out_ras.array)


def test_geometry_oblique_anisotropic(segmenter: Segmenter, tmp_path: Path) -> None:
    ct = sample_ct()
    rot = Rotation.from_euler("zx", [25, 10], degrees=True).as_matrix()
    vol = _via_nifti(Volume(ct.array[:, :, :20], (2.5, 3.0, 4.5), (10.0, -20.0, 30.0),
                            rot @ ct.direction, modality="CT"), tmp_path / "oblique.nii.gz")
    assert np.abs(vol.direction).max(axis=0).min() < 0.95  # truly oblique after the file trip
    out = segmenter.predict(vol)
    assert out.grid_differences(vol) == []
    assert out.shape == vol.shape and len(np.unique(out.array)) > 1


def test_geometry_dicom_series_smaller_than_roi(segmenter: Segmenter) -> None:
    vol = io.read(ROOT / "data_samples/dcmqi/ct-3slice")  # 512x512x3, fewer slices than ROI
    out = segmenter.predict(vol)
    assert out.grid_differences(vol) == [] and out.array.dtype == np.uint8
    tiny = Volume(vol.array[200:210, 200:212, :], vol.spacing, vol.origin, vol.direction,
                  modality="CT")  # 10x12x3 voxels: every axis smaller than the 32^3 ROI
    assert segmenter.predict(tiny).shape == (10, 12, 3)


def test_probabilities_tta_and_invert_labels(bundle: Path, segmenter: Segmenter) -> None:
    ct = sample_ct()
    crop = Volume(ct.array[30:90, 20:80, :], ct.spacing, tuple(ct.index_to_world([30, 20, 0])),
                  ct.direction, modality="CT")
    lab, probs = segmenter.predict(crop, return_probabilities=True)
    assert probs.shape == (4, *crop.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(probs.argmax(0), lab.array)
    tta = segmenter.predict(crop, tta=True)
    assert tta.grid_differences(crop) == [] and not np.array_equal(tta.array, lab.array)
    nearest = Segmenter(bundle, invert="labels").predict(crop)
    assert nearest.shape == crop.shape
    assert set(np.unique(nearest.array)) <= {0, 1, 2, 3}


def test_2d_model_predicts_slice_by_slice(tmp_path: Path) -> None:
    path = random_bundle(tmp_path / "m2d.safetensors", spatial_dims=2, spacing=(4.0, 4.0, None))
    ct = sample_ct()
    out = Segmenter(path).predict(ct)
    assert out.grid_differences(ct) == [] and len(np.unique(out.array)) > 1


def test_input_errors(bundle: Path, segmenter: Segmenter) -> None:
    ct = sample_ct()
    mr = Volume(ct.array, ct.spacing, ct.origin, ct.direction, modality="MR")
    with pytest.raises(ModelInputError, match=r"modality MR does not match .* trained on CT"):
        segmenter.predict(mr)
    flat = Volume(ct.array[:, :, :1], ct.spacing, ct.origin, ct.direction, modality="CT")
    with pytest.raises(ModelInputError, match=r"2D image .* 3D model"):
        segmenter.predict(flat)
    with pytest.raises(ModelInputError, match="1 image channel"):
        segmenter.predict([ct, ct])


def test_postprocess_options() -> None:
    lab = np.zeros((20, 20, 20), dtype=np.uint8)
    lab[2:10, 2:10, 2:10] = 1
    lab[5, 5, 5] = 0  # a hole
    lab[15:17, 15:17, 15:17] = 1  # small second component (8 voxels)
    lab[12:18, 2:6, 2:6] = 2
    big = 8**3 - 1
    out = postprocess_labels(lab, PostProcess(largest_component=True))
    assert (out == 1).sum() == big and (out == 2).sum() == 96
    out = postprocess_labels(lab, PostProcess(fill_holes=True))
    assert out[5, 5, 5] == 1 and (out == 1).sum() == big + 1 + 8
    out = postprocess_labels(lab, PostProcess(min_size=10))
    assert (out == 1).sum() == big and (out == 2).sum() == 96
    out = postprocess_labels(lab, PostProcess(min_size=100))
    assert (out == 2).sum() == 0 and (out == 1).sum() == big
    assert postprocess_labels(lab, PostProcess()) is lab


def _oblique() -> Volume:
    ct = sample_ct()
    rot = Rotation.from_euler("zx", [25, 10], degrees=True).as_matrix()
    return Volume(ct.array[:, :, :20], (2.5, 3.0, 4.5), (10.0, -20.0, 30.0), rot @ ct.direction,
                  modality="CT")


@pytest.mark.parametrize("make", [sample_ct, _oblique])
def test_slab_inversion_equals_monai_inverse(bundle: Path, make, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The separable slab path gives MONAI's own Compose.inverse result (the fallback)."""
    import medseg.engine.infer as infer_mod
    from medseg.engine.invert import axis_mapping

    vol = make()
    results = {}
    for mode in ("probabilities", "labels"):
        seg = Segmenter(bundle, invert=mode)  # type: ignore[arg-type]
        fast, p_fast = seg.predict(vol, return_probabilities=True)
        with monkeypatch.context() as m:
            m.setattr(infer_mod, "axis_mapping", lambda *a, **k: None)
            slow, p_slow = seg.predict(vol, return_probabilities=True)
        np.testing.assert_allclose(p_fast, p_slow, atol=1e-4)
        results[mode] = (fast.array, slow.array)
    fast, slow = results["probabilities"]
    assert (fast == slow).mean() > 0.9999
    # nearest neighbour: identical except where a voxel lies exactly half-way (tie-breaking)
    pre = Segmenter(bundle).preprocess([vol])
    mapping = axis_mapping(vol.affine_ras, pre.affine.numpy())
    assert mapping is not None
    ties = np.zeros(vol.shape, dtype=bool)
    for a, (_, scale, offset) in enumerate(mapping):
        frac = (np.arange(vol.shape[a]) * scale + offset) % 1.0
        shape = [1, 1, 1]
        shape[a] = -1
        ties |= (np.abs(frac - 0.5) < 1e-3).reshape(shape)
    fast, slow = results["labels"]
    np.testing.assert_array_equal(fast[~ties], slow[~ties])


def test_foreground_crop_bundle_uses_monai_inverse(tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    src = random_bundle(tmp_path / "m.safetensors")
    from tests.models.test_bundle import read_bundle_meta_raw

    raw = json.loads(read_bundle_meta_raw(src))
    raw["preprocess"]["foreground_crop"] = True
    save_file(load_file(str(src)), str(tmp_path / "crop.safetensors"),
              metadata={"medseg": json.dumps(raw)})
    ct = sample_ct()
    air = np.pad(ct.array, ((12, 12), (0, 0), (0, 0)), constant_values=-1024)
    vol = Volume(air, ct.spacing, ct.origin, ct.direction, modality="CT")
    seg = Segmenter(tmp_path / "crop.safetensors")
    assert seg._preprocess_axis_aligned([vol]) is None  # the crop needs MONAI's own pipeline
    out = seg.predict(vol)
    assert out.grid_differences(vol) == []
    assert (out.array[:5] == 0).all() and (out.array[-5:] == 0).all()  # cropped air: background
    assert len(np.unique(out.array[20:-20])) == 4


def test_last_stats_report_time_and_memory(segmenter: Segmenter) -> None:
    segmenter.predict(sample_ct(), postprocess=PostProcess(fill_holes=True))
    st = segmenter.last_stats
    assert {"preprocess_s", "sliding_window_s", "invert_s", "postprocess_s"} <= set(st)
    assert all(v >= 0 for v in st.values()) and st["peak_rss_mb"] > 50


def test_rotated_resampled_copy_agrees_in_world_space(tmp_path: Path) -> None:
    """A quickly trained model segments the spleen on the CT and on a copy resampled onto a
    grid rotated 20 degrees about the slice axis; mapped back through world coordinates the
    masks agree, far better than when the rotation is ignored (a geometry bug would do that)."""
    from scipy import ndimage

    from medseg.engine.train import train
    from tests.engine.fixtures import make_dataset, tiny_config

    ds = make_dataset(tmp_path / "ds", depth=28)
    cfg = tiny_config(ds, tmp_path / "run", augment={"enabled": False, "num_samples": 1},
                      train={"patch_size": [48, 40, 28], "epochs": 8, "iterations_per_epoch": 5,
                             "batch_size": 2, "val_every": 8})
    seg = Segmenter(train(cfg, progress=False).last_bundle)
    ct = sample_ct()
    ref = seg.predict(ct).array
    centre = np.array(ct.shape) / 2 - 0.5
    direction = ct.direction @ Rotation.from_euler("z", 20, degrees=True).as_matrix()
    origin = ct.index_to_world(centre) - (direction * np.array(ct.spacing)) @ centre
    grid = Volume(np.zeros(ct.shape, np.int16), ct.spacing, tuple(origin), direction)
    ijk = np.indices(ct.shape).reshape(3, -1).T
    values = ndimage.map_coordinates(ct.array.astype(np.float32),
                                     ct.world_to_index(grid.index_to_world(ijk)).T, order=1,
                                     cval=-1024).reshape(ct.shape)
    rotated = seg.predict(grid.with_array(values.astype(np.int16), modality="CT"))
    assert rotated.grid_differences(grid) == []
    roi = np.zeros(ct.shape, dtype=bool)
    roi[10:62, 18:64, :28] = True  # where the training crops were: the model is competent
    scores = {}
    for name, frame in (("world", rotated),
                        ("rotation ignored", Volume(rotated.array, ct.spacing, ct.origin,
                                                    ct.direction))):
        back = ndimage.map_coordinates(rotated.array, frame.world_to_index(
            ct.index_to_world(ijk)).T, order=0, cval=255).reshape(ct.shape)
        valid = roi & (back != 255)
        scores[name] = _dice((ref == 1) & valid, (back == 1) & valid)
    assert scores["world"] >= 0.6
    assert scores["world"] >= scores["rotation ignored"] + 0.2


def test_input_volume_is_never_modified(tmp_path: Path) -> None:
    path = random_bundle(tmp_path / "native.safetensors", spacing=None)  # no resampling step
    ct = sample_ct()
    vol = Volume(ct.array.astype(np.float32), ct.spacing, ct.origin, ct.direction, modality="CT")
    before = vol.array.copy()
    out = Segmenter(path).predict(vol, tta=True)
    np.testing.assert_array_equal(vol.array, before)
    assert out.grid_differences(vol) == []


def _lps_flipped() -> Volume:
    ct = sample_ct()
    return ct.reorient("RAI")  # stored with two axes flipped: orientation must permute back


@pytest.mark.parametrize("make", [sample_ct, _lps_flipped, _oblique])
def test_separable_preprocess_equals_monai_pipeline(segmenter: Segmenter, make) -> None:  # type: ignore[no-untyped-def]
    """The fast path's model grid and voxels are MONAI's Orientationd + Spacingd + intensity.
    (Spacingd keeps an oblique input's direction, so its model grid is axis-aligned to it.)"""
    vol = make()
    fast = segmenter._preprocess_axis_aligned([vol])
    assert fast is not None, "axis-aligned input must take the separable path"
    ref = segmenter._preprocess_monai([vol])
    assert fast.shape == ref.shape
    np.testing.assert_allclose(fast.affine.numpy(), ref.affine.numpy(), atol=1e-6)
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), atol=1e-4)  # grid_sample rounding



def test_big_endian_input_gives_the_native_result(segmenter: Segmenter, tmp_path: Path) -> None:
    import nibabel as nib

    ct = sample_ct()
    path = tmp_path / "be.nii.gz"
    img = nib.Nifti1Image(ct.array.astype(">i2"), ct.affine_ras,
                          header=nib.Nifti1Header(endianness=">"))
    img.set_sform(ct.affine_ras, 1)
    nib.save(img, str(path))
    assert nib.load(str(path)).get_data_dtype().byteorder == ">"
    vol = io.read(path)
    assert vol.array.dtype.isnative
    be = Volume(ct.array.astype(">i2"), ct.spacing, ct.origin, ct.direction, modality="CT")
    want = segmenter.predict(ct).array
    np.testing.assert_array_equal(segmenter.predict(vol).array, want)
    np.testing.assert_array_equal(segmenter.predict(be).array, want)


def test_native_bundle_identity_and_defaults(segmenter: Segmenter, bundle: Path) -> None:
    """A native bundle keeps its behaviour: no TTA unless asked, probabilities inverted; the
    name and version that exports record come from the bundle."""
    assert segmenter.kind == "medseg" and not segmenter.default_tta
    assert segmenter.invert == "probabilities"
    assert segmenter.name == f"medseg {bundle.stem}" and segmenter.version == "0.1.0"
    ct = sample_ct()
    np.testing.assert_array_equal(segmenter.predict(ct).array,
                                  segmenter.predict(ct, tta=False).array)


def test_unknown_model_source_is_one_line(tmp_path: Path) -> None:
    from medseg.errors import MedsegError

    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsegError) as info:
        Segmenter(tmp_path / "empty", device="cpu")
    assert "\n" not in str(info.value) and "neither an nnU-Net model folder" in str(info.value)
