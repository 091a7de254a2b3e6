"""Case discovery on the bundled samples and on folders laid out as users lay out data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg import io
from medseg.data.discovery import discover, is_label_name
from medseg.errors import PathOutsideRootsError
from tests.dicom_factory import make_volume, write_series

SAMPLES = Path(__file__).resolve().parents[2] / "data_samples"

#: every case of data_samples/ with its best reference (None: no reference)
EXPECTED_SAMPLES = {
    "dcmqi/ct-3slice": "liver.dcm",
    "pyradiomics/brain1_image": "brain1_label.nrrd",
    "pyradiomics/brain2_image": "brain2_label.nrrd",
    "pyradiomics/breast1_image": "breast1_label.nrrd",
    "pyradiomics/prostate_phantom_subvolume": "prostate_phantom_subvolume-label.nrrd",
    "rt-utils/mock_data": "rt.dcm",
    "totalsegmentator/aorta_report/test_result/models/ct_cropped": "aorta.nii.gz",
    "totalsegmentator/example_ct": "example_seg_fast_force_split.nii.gz",
    "totalsegmentator/example_ct_dicom": "example_seg_dicom.nii.gz",
    "totalsegmentator/example_ct_sm": "example_seg.nii.gz",
    "totalsegmentator/example_mr_sm": "example_seg_mr.nii.gz",
}


def test_data_samples_lists_exactly_the_cases_with_their_references() -> None:
    found = discover(SAMPLES, [SAMPLES])
    got = {c.name: (c.reference.name if c.reference else None) for c in found.cases}
    assert got == EXPECTED_SAMPLES
    # collection folders are walked, never cases; no label map is left over
    assert SAMPLES / "dcmqi" in found.collections
    assert SAMPLES / "totalsegmentator" in found.collections
    assert not any(c.image == SAMPLES / "dcmqi" for c in found.cases)
    assert found.unmatched == []
    # every NRRD label map of the 3-slice CT (names or content) is one of its references
    ct3 = next(c for c in found.cases if c.name == "dcmqi/ct-3slice")
    assert {p.name for p in ct3.references} >= {
        "liver_seg.nrrd", "heart_seg.nrrd", "partial_overlaps-1.nrrd", "partial_overlaps.dcm"}


def test_decathlon_layout_made_from_real_samples(tmp_path: Path) -> None:
    root = tmp_path / "Task01_Brain"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    py = SAMPLES / "pyradiomics"
    shutil.copy(py / "brain1_image.nrrd", root / "imagesTr/brain1.nrrd")
    shutil.copy(py / "brain1_label.nrrd", root / "labelsTr/brain1.nrrd")
    # nnU-Net raw naming: channel files of one case, label without the channel suffix
    shutil.copy(py / "breast1_image.nrrd", root / "imagesTr/breast1_0000.nrrd")
    shutil.copy(py / "breast1_image.nrrd", root / "imagesTr/breast1_0001.nrrd")
    shutil.copy(py / "breast1_label.nrrd", root / "labelsTr/breast1.nrrd")
    shutil.copy(py / "brain2_image.nrrd", root / "imagesTs/brain2.nrrd")
    shutil.copy(py / "brain2_label.nrrd", root / "labelsTr/orphan.nrrd")
    (root / "dataset.json").write_text(json.dumps({"name": "t", "labels": {"0": "bg"}}))

    found = discover(tmp_path, [tmp_path])

    got = {c.name: (c.reference.relative_to(root).as_posix() if c.reference else None)
           for c in found.cases}
    assert got == {"Task01_Brain/imagesTr/brain1": "labelsTr/brain1.nrrd",
                   "Task01_Brain/imagesTr/breast1_0000": "labelsTr/breast1.nrrd",
                   "Task01_Brain/imagesTs/brain2": None}
    assert found.unmatched == [root / "labelsTr/orphan.nrrd"]
    assert found.collections == [root]


def test_content_and_sidecar_decide_when_names_do_not(tmp_path: Path) -> None:
    image = io.read(SAMPLES / "pyradiomics/breast1_image.nrrd")
    label = io.read(SAMPLES / "pyradiomics/breast1_label.nrrd", label=False)
    io.write(image, tmp_path / "patient7.nrrd")
    io.write(label.with_array(np.asarray(label.array).astype(np.int16)),
             tmp_path / "patient7_v2.nrrd")  # neutral name: only its content says label map
    other = io.read(SAMPLES / "totalsegmentator/example_mr_sm.nii.gz")
    io.write(other, tmp_path / "abdomen.nii.gz")
    ref = io.read(SAMPLES / "totalsegmentator/example_seg_mr.nii.gz")
    io.write(ref, tmp_path / "reader2.nii.gz")  # io.write adds reader2.labels.json
    brain = tmp_path / "brats_like"  # BraTS: float image and a float label map, plain names
    brain.mkdir()
    flair = io.read(SAMPLES / "pyradiomics/brain1_image.nrrd")
    io.write(flair.with_array(np.asarray(flair.array, np.float32) / 7.0), brain / "Flair.nii.gz")
    tumour = io.read(SAMPLES / "pyradiomics/brain1_label.nrrd", label=False)
    io.write(tumour.with_array(np.asarray(tumour.array, np.float32)),
             brain / "OTMultiClass.nii.gz")

    found = discover(tmp_path, [tmp_path])

    got = {c.name: [p.name for p in c.references] for c in found.cases}
    assert got == {"abdomen": ["reader2.nii.gz"], "patient7": ["patient7_v2.nrrd"],
                   "brats_like/Flair": ["OTMultiClass.nii.gz"]}


def test_dicom_series_folders_and_a_seg_beside_them(tmp_path: Path) -> None:
    coll = tmp_path / "study"
    for name, seed in (("s1", 1), ("s2", 2)):
        write_series(make_volume((24, 20, 5), seed=seed), coll / name)
    shutil.copy(SAMPLES / "dcmqi/liver.dcm", coll / "liver.dcm")  # names a series not here

    found = discover(tmp_path, [tmp_path])

    assert [c.name for c in found.cases] == ["study/s1", "study/s2"]
    assert all(c.references == () for c in found.cases)
    assert found.collections == [coll]
    assert found.unmatched == [coll / "liver.dcm"]


def test_roots_are_kept(tmp_path: Path) -> None:
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    shutil.copy(SAMPLES / "pyradiomics/breast1_image.nrrd", outside / "x.nrrd")
    (inside / "link.nrrd").symlink_to(outside / "x.nrrd")
    assert discover(inside, [inside]).cases == []
    with pytest.raises(PathOutsideRootsError):
        discover(outside, [inside])


@pytest.mark.parametrize(("name", "label"), [
    ("liver_seg.nrrd", True), ("example_seg_mr.nii.gz", True), ("x-label.nrrd", True),
    ("case_mask.nii", True), ("labels.nii.gz", True), ("segment_ct.nii.gz", False),
    ("brain1_image.nrrd", False), ("mask_liver.mha", True), ("gtx.nii.gz", False),
    ("brainmask.nii.gz", True), ("tumorseg.nii", True), ("Flair_subtrMeanDivStd.nii.gz", False),
    ("OTMultiClass.nii.gz", False)])
def test_label_names(name: str, label: bool) -> None:
    assert is_label_name(name) is label
