"""RTSTRUCT: LPS contours that rasterise back exactly, validate, and agree with plastimatch."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg import io
from medseg.errors import (
    GeometryMismatchError,
    LabelNameError,
    LabelNotFoundError,
    MissingDicomAttributeError,
)
from medseg.io.anonymize import identifying_elements
from medseg.io.dicom_seg import Algorithm
from medseg.io.export_source import align_to_reference
from medseg.io.rtstruct import mask_contours, read_rtstruct, write_rtstruct
from tests.conftest import SAMPLES, make_volume, require_tool
from tests.io.export_fixtures import (
    ORGANS,
    TS,
    ct3,
    dciodvfy,
    ellipsoid,
    liver3,
    synthetic_reference,
    ts_mask,
    ts_series,
    with_datasets,
)


@pytest.fixture(scope="module")
def ts_rt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rt") / "organs_rt.dcm"
    info = write_rtstruct(ts_mask(), ts_series(), out, labels=ORGANS,
                          algorithm=Algorithm("automatic", "TotalSegmentator", "2.0"))
    return out, info


def test_contours_rasterise_back_exactly(ts_rt: tuple[Path, dict]) -> None:
    path, info = ts_rt
    back = read_rtstruct(path, ts_series())
    assert [b.labels[1] for b in back] == [r["name"] for r in info["rois"]]
    for vol, roi in zip(back, info["rois"], strict=True):
        np.testing.assert_array_equal(vol.array.astype(bool),
                                      ts_mask().array == roi["label_value"])
    ds = pydicom.dcmread(path)
    src = ts_series().meta["dicom"]
    contour = ds.ROIContourSequence[1].ContourSequence[0]  # liver
    uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
    k = src.sop_instance_uids.index(uid)
    pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
    idx = ts_series().world_to_index(pts)
    np.testing.assert_allclose(idx[:, 2], k, atol=1e-3)  # on the slice it references
    assert ds.StructureSetROISequence[1].ROIGenerationAlgorithm == "AUTOMATIC"
    assert ds.RTROIObservationsSequence[1].RTROIInterpretedType == "ORGAN"


def test_holes_and_islands_use_even_odd_contours() -> None:
    ring = np.zeros((12, 12), bool)
    ring[2:10, 2:10] = True
    ring[4:8, 4:8] = False
    ring[5, 5] = True  # island inside the hole
    polys = mask_contours(ring)
    assert len(polys) == 3
    from skimage import draw

    filled = np.zeros_like(ring)
    for p in polys:
        rr, cc = draw.polygon(p[:, 0], p[:, 1], ring.shape)
        filled[rr, cc] ^= True
    np.testing.assert_array_equal(filled, ring)


@pytest.mark.parametrize("kind", ["oblique", "flipped", "anisotropic"])
def test_generated_geometries_round_trip(kind: str, tmp_path: Path) -> None:
    ref = synthetic_reference(make_volume(kind, shape=(24, 20, 10)))
    mask = ellipsoid(ref)
    out = tmp_path / "rt.dcm"
    write_rtstruct(mask, ref, out)
    np.testing.assert_array_equal(read_rtstruct(out, ref)[0].array, mask.array)
    ds = pydicom.dcmread(out)
    pts = np.concatenate([np.asarray(c.ContourData, float).reshape(-1, 3)
                          for c in ds.ROIContourSequence[0].ContourSequence])
    centre = ref.index_to_world((np.asarray(ref.shape) - 1) / 2.0)
    r = (((pts - centre) / np.array([14.0, 10.0, 9.0])) ** 2).sum(axis=1)
    assert r.min() > 0.6 and r.max() < 1.5  # contour points hug the ellipsoid surface in LPS mm


@pytest.mark.external
def test_dciodvfy_accepts_rtstruct(ts_rt: tuple[Path, dict], tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    errors, warnings = dciodvfy(ts_rt[0], tool)
    assert errors == [], errors
    assert all("DICOMDIR" in w for w in warnings), warnings
    anon = tmp_path / "anon.dcm"
    write_rtstruct(liver3(), ct3(), anon, anonymize=True, algorithm=Algorithm("manual"))
    errors, _ = dciodvfy(anon, tool)
    assert errors == [], errors


@pytest.mark.external
def test_plastimatch_rasterises_our_contours_like_the_mask(ts_rt: tuple[Path, dict],
                                                           tmp_path: Path) -> None:
    tool = require_tool("plastimatch")
    path, info = ts_rt
    ref = ts_series()
    fixed = tmp_path / "ref.nrrd"  # the CT grid, so plastimatch rasterises onto it
    io.write(ref.with_array(np.zeros(ref.shape, np.int16)), fixed)
    out = tmp_path / "pm"
    subprocess.run([tool, "convert", "--input", str(path), "--referenced-ct",
                    str(TS / "example_ct_dicom"), "--fixed", str(fixed),
                    "--output-prefix", str(out), "--prefix-format", "nii.gz"],
                   check=True, capture_output=True, timeout=120)
    voxel_ml = float(np.prod(ref.spacing)) / 1000
    checked = 0
    for roi in info["rois"]:
        theirs = io.read(out / f"{roi['name']}.nii.gz", label=True)
        theirs = align_to_reference(theirs, ref).array > 0  # same world grid, else an error
        ours = ts_mask().array == roi["label_value"]
        dice = 2 * (ours & theirs).sum() / (ours.sum() + theirs.sum())
        if ours.sum() * voxel_ml > 1.0:
            assert dice >= 0.95, (roi["name"], dice)
            checked += 1
    assert checked == len(ORGANS)


def test_reads_rt_utils_structure_set() -> None:
    mock = SAMPLES / "rt-utils/mock_data"
    ref = io.read(mock, label=False)
    rois = read_rtstruct(mock / "rt.dcm", ref)
    assert rois and all(r.shape == ref.shape for r in rois)
    assert any(r.array.any() for r in rois)


def test_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(LabelNotFoundError, match="liver"):
        write_rtstruct(liver3(), ct3(), tmp_path / "x.dcm", labels=["kidney"])

    def drop(datasets: list) -> None:
        del datasets[0].ImagePositionPatient

    with pytest.raises(MissingDicomAttributeError, match="ImagePositionPatient"):
        write_rtstruct(liver3(), with_datasets(ct3(), drop), tmp_path / "x.dcm")
    with pytest.raises(GeometryMismatchError):
        write_rtstruct(ts_mask(), ct3(), tmp_path / "x.dcm")
    write_rtstruct(liver3(), ct3(), tmp_path / "ok.dcm")
    with pytest.raises(GeometryMismatchError, match="slice"):
        read_rtstruct(tmp_path / "ok.dcm", make_volume("oblique", shape=(512, 512, 3)))


def test_anonymized_rtstruct(tmp_path: Path) -> None:
    out = tmp_path / "anon.dcm"
    write_rtstruct(liver3(), ct3(), out, anonymize=True)
    ds = pydicom.dcmread(out)
    assert identifying_elements(ds) == []
    assert not any("JANCT000" in str(e.value) for e in ds.iterall() if e.VR != "SQ")
    assert ds.PatientName == "" and ds.PatientID == ""


# ----------------------------------------------------------------------------- label names
@pytest.mark.external
def test_unicode_roi_names_stay_unicode_and_validate(tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    name = "Niere links – 腎臓"
    out = tmp_path / "unicode_rt.dcm"
    write_rtstruct(dataclasses.replace(liver3(), labels={1: name}), ct3(), out)
    ds = pydicom.dcmread(out)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.StructureSetROISequence[0].ROIName == name
    assert read_rtstruct(out, ct3())[0].labels == {1: name}
    errors, _ = dciodvfy(out, tool)
    assert errors == [], errors


@pytest.mark.parametrize("name", ["liver\nspleen", "liver\x00", "x" * 65, "a\\b", "liver "])
def test_roi_names_with_control_characters_or_too_long_are_refused(tmp_path: Path,
                                                                   name: str) -> None:
    with pytest.raises(LabelNameError, match="label 1") as exc:
        write_rtstruct(dataclasses.replace(liver3(), labels={1: name}), ct3(),
                       tmp_path / "rt.dcm")
    assert "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []
