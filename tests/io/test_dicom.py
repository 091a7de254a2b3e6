"""DICOM series reader: agreement with SimpleITK/GDCM on real and generated series."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import medseg.io as mio
from medseg.errors import SeriesSelectionError
from medseg.io.dicom import list_series, read_dicom
from medseg.volume import Volume
from tests.conftest import SAMPLES
from tests.dicom_factory import expected_read, make_volume, rotation, write_series
from tests.io.sitk_compare import assert_matches_sitk

TOTALSEG = SAMPLES / "totalsegmentator" / "example_ct_dicom"
DCMQI = SAMPLES / "dcmqi" / "ct-3slice"

GEOMETRIES = {
    "oblique": (rotation("z", 20) @ rotation("x", 20), (0.8, 0.9, 2.5)),
    "flipped": (np.diag([-1.0, -1.0, 1.0]) @ rotation("y", 10), (1.2, 1.1, 3.0)),
    "left-handed": (np.diag([1.0, -1.0, 1.0]), (0.9, 0.9, 2.0)),
    "anisotropic": (np.eye(3), (0.5, 0.7, 5.0)),
}


def sitk_series(folder: Path) -> sitk.Image:
    """The series as SimpleITK/GDCM reads it, files ordered by GDCM's own sorter."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_same_volume(got: Volume, want: Volume) -> None:
    assert got.grid_differences(want) == []
    assert got.array.dtype == want.array.dtype
    np.testing.assert_array_equal(got.array, want.array)


@pytest.fixture(scope="module")
def totalseg() -> Volume:
    return read_dicom(TOTALSEG)


# ------------------------------------------------------------------ real series
def test_totalsegmentator_jpeg2000_matches_sitk(totalseg: Volume) -> None:
    assert totalseg.shape == (512, 512, 20)
    assert totalseg.array.dtype == np.int16 and totalseg.modality == "CT"
    assert_matches_sitk(totalseg, sitk_series(TOTALSEG))


def test_dcmqi_ct_matches_sitk() -> None:
    vol = read_dicom(DCMQI)
    assert vol.shape == (512, 512, 3)
    assert_matches_sitk(vol, sitk_series(DCMQI))
    assert vol.meta["dicom"].series_uid == pydicom.dcmread(DCMQI / "01.dcm").SeriesInstanceUID


def test_totalsegmentator_blank_uids_are_recovered(totalseg: Volume) -> None:
    src = totalseg.meta["dicom"]
    assert src.series_uid is None and src.study_uid is None
    assert src.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert len(src.datasets) == 20 and "PixelData" not in src.datasets[0]
    for ds, uid in zip(src.datasets, src.sop_instance_uids, strict=True):
        assert uid and ds.SOPInstanceUID == uid == ds.file_meta.MediaStorageSOPInstanceUID
    infos = list_series(TOTALSEG)
    assert [(i.number, i.n_images, i.description) for i in infos] == [(1, 20, "CT Body 3.0")]
    assert infos[0].uid.startswith("nouid-") and list_series(TOTALSEG)[0].uid == infos[0].uid
    assert read_dicom(TOTALSEG, series=infos[0].uid).shape == totalseg.shape


def test_totalsegmentator_voxel_world_positions(totalseg: Volume) -> None:
    src = totalseg.meta["dicom"]
    for k in range(totalseg.shape[2]):
        ipp = np.asarray(src.datasets[k].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(totalseg.index_to_world([0, 0, k]), ipp, atol=1e-4)
    # sorted along the normal (+z here), whatever the file names say
    z = [float(ds.ImagePositionPatient[2]) for ds in src.datasets]
    assert z == sorted(z)


def test_totalsegmentator_grid_matches_reference_segmentation(totalseg: Volume) -> None:
    seg = mio.read(SAMPLES / "totalsegmentator" / "example_seg_dicom.nii.gz")
    seg = seg.reorient(totalseg.orientation)  # the NIfTI stores j flipped (LAS)
    seg.check_same_grid(totalseg, what="TotalSegmentator labels", reference="DICOM CT")
    organs = seg.array > 0  # the labels lie on tissue, not air: voxels correspond
    assert organs.sum() > 1000
    assert (totalseg.array[organs] > -500).mean() > 0.95


def test_file_input_and_non_image_objects_ignored(tmp_path: Path) -> None:
    one = read_dicom(DCMQI / "02.dcm")
    assert one.shape == (512, 512, 1)
    assert one.spacing[2] == pytest.approx(float(pydicom.dcmread(DCMQI / "02.dcm").SliceThickness))
    folder = tmp_path / "mixed"
    shutil.copytree(DCMQI, folder)
    shutil.copy(SAMPLES / "dcmqi" / "liver.dcm", folder / "seg.dcm")  # DICOM-SEG
    shutil.copy(SAMPLES / "rt-utils" / "mock_data" / "rt.dcm", folder / "rt.dcm")  # RTSTRUCT
    assert [i.n_images for i in list_series(folder)] == [3]
    assert_same_volume(read_dicom(folder), read_dicom(DCMQI))


# ------------------------------------------------------------------ generated series
@pytest.mark.parametrize("compression", [None, "rle", "jpegls", "j2k"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_generated_series_roundtrip(tmp_path: Path, geometry: str,
                                    compression: str | None) -> None:
    direction, spacing = GEOMETRIES[geometry]
    modality = "MR" if geometry == "flipped" else "CT"  # MR: intercept 0, signed stored pixels
    src = make_volume(direction=direction, spacing=spacing, seed=len(geometry), modality=modality)
    files = write_series(src, tmp_path, compression=compression, seed=3, modality=modality)
    assert sorted(p.name for p in files) != [p.name for p in files]  # names do not give order
    vol = read_dicom(tmp_path)
    assert_same_volume(vol, expected_read(src))
    assert_matches_sitk(vol, sitk_series(tmp_path))
    numbers = [int(ds.InstanceNumber) for ds in vol.meta["dicom"].datasets]
    assert numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True)
    assert vol.modality == modality
    assert vol.meta["dicom"].datasets[0].PixelRepresentation == (modality == "MR")


@pytest.mark.parametrize("compression", [None, "j2k"])
@pytest.mark.parametrize("geometry", ["oblique", "left-handed"])
def test_enhanced_multiframe_reads_like_the_series(tmp_path: Path, geometry: str,
                                                   compression: str | None) -> None:
    direction, spacing = GEOMETRIES[geometry]
    src = make_volume(direction=direction, spacing=spacing, modality="MR")
    (path,) = write_series(src, tmp_path / "mf", modality="MR", multiframe=True,
                           compression=compression)
    write_series(src, tmp_path / "classic", modality="MR")
    vol = read_dicom(path)
    assert_same_volume(vol, expected_read(src))
    assert_same_volume(vol, read_dicom(tmp_path / "classic"))
    dicom = vol.meta["dicom"]
    assert len(dicom.datasets) == 1 and dicom.datasets[0].NumberOfFrames == src.shape[2]
    per_frame = dicom.datasets[0].PerFrameFunctionalGroupsSequence
    z = [float(np.asarray(per_frame[f - 1].PlanePositionSequence[0].ImagePositionPatient,
                          dtype=float) @ vol.direction[:, 2]) for f in dicom.frame_numbers]
    assert z == sorted(z) and sorted(dicom.frame_numbers) != dicom.frame_numbers
    infos = list_series(tmp_path / "mf")
    assert infos[0].multiframe and infos[0].n_images == src.shape[2]


def test_float_rescale_gives_float32(tmp_path: Path) -> None:
    src = make_volume(modality="MR")
    src = src.with_array(np.abs(src.array).astype(np.float32))
    write_series(src, tmp_path, modality="MR", slope=0.25, intercept=0.0)
    vol = read_dicom(tmp_path)
    assert vol.array.dtype == np.float32 and vol.modality == "MR"
    np.testing.assert_array_equal(vol.array, src.array)


def test_single_slice_spacing_from_thickness(tmp_path: Path) -> None:
    src = make_volume(shape=(40, 32, 1), spacing=(0.5, 0.7, 4.0))
    write_series(src, tmp_path)
    assert_same_volume(read_dicom(tmp_path), src)


def test_two_series_need_a_choice(tmp_path: Path) -> None:
    a, b = make_volume(seed=1), make_volume(seed=2, direction=rotation("x", 30))
    write_series(a, tmp_path / "a", series_number=1, description="first")
    write_series(b, tmp_path / "b", series_number=2, description="second")
    infos = list_series(tmp_path)
    assert [(i.number, i.series_number, i.description) for i in infos] == [
        (1, 1, "first"), (2, 2, "second")]
    with pytest.raises(SeriesSelectionError) as err:
        read_dicom(tmp_path)
    for info in infos:
        assert info.uid in str(err.value) and info.description in str(err.value)
    assert "--series" in str(err.value)
    assert_same_volume(read_dicom(tmp_path, series=2), b)
    assert_same_volume(read_dicom(tmp_path, series="2"), b)
    assert_same_volume(read_dicom(tmp_path, series=infos[0].uid), a)
    assert_same_volume(mio.read(tmp_path, series=1), a)


def test_zip_reads_like_the_folder(tmp_path: Path, totalseg: Volume) -> None:
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("study/", b"")
        zf.writestr("__MACOSX/study/._CT.1", b"\x00\x05\x16\x07junk")
        for f in sorted(TOTALSEG.iterdir()):
            zf.write(f, f"study/series/{f.name}")
    assert mio.detect_format(archive) == "zip"
    vol = mio.read(archive)
    assert_same_volume(vol, totalseg)
    assert vol.meta["dicom"].files[0].startswith(f"{archive}::study/series/")
    assert vol.meta["dicom"].skipped_files == []
    assert [i.n_images for i in mio.list_series(archive)] == [20]
