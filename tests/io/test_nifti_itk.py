"""NIfTI / NRRD / MHA readers and writers against SimpleITK, round trips, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg import io
from medseg.errors import (
    CorruptFileError,
    GeometryMismatchError,
    InputNotFoundError,
    InvalidImageError,
    UnsupportedFormatError,
)
from medseg.io.itk import to_sitk
from medseg.volume import Volume
from tests.conftest import SAMPLES, make_volume
from tests.io.sitk_compare import assert_matches_sitk

REAL_FILES = [
    "totalsegmentator/example_ct_sm.nii.gz",  # RAS NIfTI, int16
    "totalsegmentator/example_mr_sm.nii.gz",  # LPS NIfTI
    "totalsegmentator/example_seg.nii.gz",
    "totalsegmentator/aorta_report/test_result/models/ct_cropped.nii.gz",
    "pyradiomics/brain1_image.nrrd",  # LPS NRRD, 6.5 mm slices
    "pyradiomics/breast1_image.nrrd",
    "dcmqi/liver_seg.nrrd",
]


@pytest.mark.parametrize("rel", REAL_FILES)
def test_real_files_agree_with_simpleitk(rel: str) -> None:
    path = SAMPLES / rel
    vol = io.read(path)
    assert_matches_sitk(vol, sitk.ReadImage(str(path)))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_generated_geometry_round_trip_and_sitk(geometry_volume: Volume, ext: str,
                                                tmp_path: Path) -> None:
    path = tmp_path / f"img{ext}"
    io.write(geometry_volume, path)
    back = io.read(path)
    # NIfTI stores the affine as float32: 1e-4 mm; ITK formats are exact to print precision.
    assert back.grid_differences(geometry_volume, atol_mm=1e-4) == []
    np.testing.assert_array_equal(back.array, geometry_volume.array)
    assert back.array.dtype == geometry_volume.array.dtype
    assert_matches_sitk(back, sitk.ReadImage(str(path)))


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_label_map_round_trip_keeps_names_and_compact_dtype(tmp_path: Path, ext: str) -> None:
    ref = make_volume("oblique")
    mask = ref.with_array((ref.array > 500).astype(np.int64) + (ref.array > 1500),
                          labels={1: "liver", 2: "liver_tumour"})
    path = io.write(mask, tmp_path / f"mask{ext}", reference=ref)
    back = io.read(path)
    assert back.labels == {1: "liver", 2: "liver_tumour"}
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask.array)
    assert (tmp_path / "mask.labels.json").is_file()
    # names survive without the sidecar (stored inside the file)
    (tmp_path / "mask.labels.json").unlink()
    assert io.read(path).labels == {1: "liver", 2: "liver_tumour"}


def test_large_label_values_use_uint16(tmp_path: Path) -> None:
    ref = make_volume("identity")
    arr = np.zeros(ref.shape, np.int32)
    arr[1, 2, 3] = 1000
    back = io.read(io.write(ref.with_array(arr, labels={1000: "x"}), tmp_path / "m.nii.gz"))
    assert back.array.dtype == np.uint16 and back.array[1, 2, 3] == 1000


def test_mask_for_real_ct_lands_on_same_world_coordinates(tmp_path: Path) -> None:
    ct = io.read(SAMPLES / "pyradiomics/brain1_image.nrrd")
    label = io.read(SAMPLES / "pyradiomics/brain1_label.nrrd")
    for ext in (".nii.gz", ".nrrd", ".mha"):
        back = io.read(io.write(label, tmp_path / f"l{ext}", reference=ct))
        ijk = np.argwhere(label.array > 0)[0]
        np.testing.assert_allclose(back.index_to_world(ijk), ct.index_to_world(ijk), atol=1e-4)
        # and the same physical point as SimpleITK computes from the original label file
        img = sitk.ReadImage(str(SAMPLES / "pyradiomics/brain1_label.nrrd"))
        np.testing.assert_allclose(
            back.index_to_world(ijk),
            img.TransformIndexToPhysicalPoint([int(x) for x in ijk]), atol=1e-4)
        assert back.array[tuple(ijk)] == 1


def test_nifti_ras_file_keeps_world_positions_in_lps(tmp_path: Path) -> None:
    """A RAS NIfTI read by medseg and by nibabel: the same point, frames differ by x/y sign."""
    path = SAMPLES / "totalsegmentator/example_ct_sm.nii.gz"
    vol = io.read(path)
    aff_ras = nib.load(str(path)).affine
    ijk = np.array([10, 20, 5])
    ras = (aff_ras @ [*ijk, 1])[:3]
    np.testing.assert_allclose(vol.index_to_world(ijk), ras * [-1, -1, 1], atol=1e-5)
    assert vol.orientation == "RAS"


def test_write_with_mismatched_reference_says_what_differs(tmp_path: Path) -> None:
    ref = make_volume("oblique")
    other = make_volume("flipped")
    with pytest.raises(GeometryMismatchError, match="origin"):
        io.write(other, tmp_path / "x.nii.gz", reference=ref)
    assert not list(tmp_path.iterdir())


def test_sform_wins_over_qform_and_fallback_is_recorded(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), np.int16)
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    sform[:3, 3] = [1, 2, 3]
    qform = np.diag([-1.0, 1.0, 1.0, 1.0])
    img = nib.Nifti1Image(arr, None)  # no affine: nibabel leaves the forms as we set them
    img.header.set_sform(sform, code=2)
    img.header.set_qform(qform, code=1)
    nib.save(img, tmp_path / "both.nii.gz")
    v = io.read(tmp_path / "both.nii.gz")
    assert v.meta["nifti_xform"] == "sform" and v.spacing == (2.0, 2.0, 2.0)
    img.header.set_sform(sform, code=0)
    nib.save(img, tmp_path / "q.nii.gz")
    v = io.read(tmp_path / "q.nii.gz")
    assert v.meta["nifti_xform"] == "qform" and v.orientation == "LAS"
    img.header.set_qform(qform, code=0)
    nib.save(img, tmp_path / "none.nii.gz")
    assert io.read(tmp_path / "none.nii.gz").meta["nifti_xform"] == "fallback"


def test_4d_nifti_is_refused_and_singleton_4d_is_squeezed(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)),
             tmp_path / "t.nii.gz")
    with pytest.raises(InvalidImageError, match="4D NIfTI"):
        io.read(tmp_path / "t.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)),
             tmp_path / "s.nii.gz")
    assert io.read(tmp_path / "s.nii.gz").shape == (4, 5, 6)


def test_nifti_with_nan_is_refused_or_zeroed(tmp_path: Path) -> None:
    arr = np.ones((4, 4, 4), np.float32)
    arr[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "n.nii.gz")
    with pytest.raises(InvalidImageError, match="1 voxel"):
        io.read(tmp_path / "n.nii.gz")
    v = io.read(tmp_path / "n.nii.gz", nan="zero")
    assert v.array[1, 1, 1] == 0 and v.array.sum() == 63


def test_2d_images_get_a_slice_axis(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((5, 6), np.int16), np.eye(4)), tmp_path / "2d.nii")
    assert io.read(tmp_path / "2d.nii").shape == (5, 6, 1)
    img = sitk.GetImageFromArray(np.ones((6, 5), np.uint8))
    sitk.WriteImage(img, str(tmp_path / "2d.nrrd"))
    assert io.read(tmp_path / "2d.nrrd").shape == (5, 6, 1)


def test_truncated_and_garbage_files_give_corrupt_file_errors(tmp_path: Path) -> None:
    good = tmp_path / "g.nii.gz"
    io.write(make_volume("identity", shape=(40, 40, 40)), good)
    data = good.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.nii.gz"):
        io.read(tmp_path / "cut.nii.gz")
    (tmp_path / "junk.nrrd").write_bytes(b"not an image at all")
    with pytest.raises(CorruptFileError, match="junk.nrrd"):
        io.read(tmp_path / "junk.nrrd")


def test_unknown_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        io.read(tmp_path / "nope.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"\.nii"):
        io.read(tmp_path / "notes.txt")
    with pytest.raises(UnsupportedFormatError, match="export"):
        io.write(make_volume("identity"), tmp_path / "x.dcm")


def test_label_map_from_float_file_and_fractional_refusal() -> None:
    vol = make_volume("identity")
    f = vol.with_array((vol.array > 0).astype(np.float32))
    lab = io.as_label_map(f)
    assert lab.array.dtype == np.uint8 and lab.labels == {1: "label_1"}
    with pytest.raises(InvalidImageError, match="whole numbers"):
        io.as_label_map(vol.with_array(f.array * 0.5))


def test_vector_image_is_refused(tmp_path: Path) -> None:
    img = sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3)
    sitk.WriteImage(img, str(tmp_path / "v.mha"))
    with pytest.raises(InvalidImageError, match="components"):
        io.read(tmp_path / "v.mha")


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.nrrd"
    io.write(make_volume("identity"), target)
    before = target.read_bytes()

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    with pytest.raises(OSError):
        io.write(make_volume("flipped"), target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.nrrd"]


def test_to_sitk_matches_volume(geometry_volume: Volume) -> None:
    assert_matches_sitk(geometry_volume, to_sitk(geometry_volume))


def test_written_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = io.write(make_volume("identity"), tmp_path / "m.nii.gz")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_gz_written_with_isal_is_plain_gzip_and_nifti2_reads(tmp_path: Path) -> None:
    """.nii.gz goes through ISA-L: the stream must be ordinary gzip (Python's gzip and nibabel
    read it back) and NIfTI-2 files must still be recognised by their header size."""
    import gzip

    vol = make_volume("oblique", shape=(4, 5, 6))
    out = tmp_path / "v.nii.gz"
    io.write(vol, out)
    raw = gzip.decompress(out.read_bytes())
    assert int.from_bytes(raw[:4], "little") == 348
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), vol.array)
    two = tmp_path / "v2.nii.gz"
    nib.save(nib.Nifti2Image(vol.array, vol.affine_ras), str(two))
    back = io.read(two)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine_ras, vol.affine_ras)


@pytest.mark.parametrize("with_torch", [False, True])
def test_present_values_counts_uint8_and_uint16(with_torch: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from medseg.volume import present_values

    if not with_torch:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    arr = np.zeros((40, 30, 20), dtype=np.uint16, order="F")
    arr[3, 4, 5], arr[-1, -1, -1] = 7, 65535
    assert present_values(arr, chunk=1000) == [0, 7, 65535]
    assert present_values(arr.astype(np.uint8) * 0 + np.uint8(3)) == [3]
    assert present_values(np.zeros((0, 2), dtype=np.uint8)) == []
    assert present_values(np.array([70000, 0, 3], dtype=np.int32)) == [0, 3, 70000]
