"""DICOM-SEG: decoding third-party files exactly, writing valid SEGs that others read back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg import io
from medseg.errors import (
    DicomReferenceRequiredError,
    EmptySegmentationError,
    GeometryMismatchError,
    LabelNameError,
    LabelNotFoundError,
    MissingDicomAttributeError,
    OverlappingSegmentsError,
)
from medseg.io.anonymize import identifying_elements
from medseg.io.codes import coding_for_label
from medseg.io.dicom_seg import (
    Algorithm,
    merge_segments,
    read_dicom_seg,
    write_dicom_seg,
    write_dicom_seg_fractional,
)
from medseg.volume import Volume
from tests.conftest import make_volume, require_tool
from tests.io.export_fixtures import (
    DCMQI,
    ORGANS,
    ct3,
    dciodvfy,
    ellipsoid,
    liver3,
    synthetic_reference,
    ts_mask,
    ts_series,
    with_datasets,
)


# ----------------------------------------------------------------------------- reading dcmqi
def test_dcmqi_liver_reads_to_the_nrrd_exactly() -> None:
    expected = liver3()
    own = read_dicom_seg(DCMQI / "liver.dcm")  # grid from the SEG's own plane positions
    assert len(own) == 1 and own[0].labels == {1: "Liver"}
    assert own[0].grid_differences(expected) == []
    np.testing.assert_array_equal(own[0].array, expected.array)
    on_series = read_dicom_seg(DCMQI / "liver.dcm", reference=ct3())[0]
    np.testing.assert_array_equal(on_series.array, expected.array)
    ras = expected.reorient("RAS")  # a reference with flipped axes gets flipped voxels
    np.testing.assert_array_equal(read_dicom_seg(DCMQI / "liver.dcm", ras)[0].array, ras.array)
    assert own[0].meta["segment"]["algorithm_type"] == "SEMIAUTOMATIC"


def test_partial_overlaps_stay_separate_segments() -> None:
    segs = read_dicom_seg(DCMQI / "partial_overlaps.dcm")
    maps = {n: io.read(DCMQI / f"partial_overlaps-{n}.nrrd").array for n in (1, 2, 3)}
    assert [s.meta["segment"]["number"] for s in segs] == [1, 2, 3, 4, 5]
    for seg in segs:  # segment n is value n in whichever NRRD holds it
        number = seg.meta["segment"]["number"]
        source = next(a for a in maps.values() if (a == number).any())
        np.testing.assert_array_equal(seg.array, (source == number).astype(np.uint8))
    assert (segs[0].array & segs[1].array).any()  # GREEN and ORANGE overlap
    with pytest.raises(OverlappingSegmentsError, match="GREEN.*ORANGE"):
        merge_segments(segs)
    merged = merge_segments([segs[0], segs[3], segs[4]])  # the three of partial_overlaps-1
    np.testing.assert_array_equal(merged.array, maps[1])
    assert merged.labels == {1: "GREEN", 4: "LIGHT_BLUE", 5: "DARK_BLUE"}


# ----------------------------------------------------------------------------- writing
@pytest.fixture(scope="module")
def ts_seg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("seg") / "organs.dcm"
    with pytest.warns(UserWarning, match="kidney_left"):
        info = write_dicom_seg(ts_mask(), ts_series(), out, labels=[*ORGANS, "kidney_left"],
                               algorithm=Algorithm("automatic", "TotalSegmentator", "2.0"))
    return out, info


def test_seg_summary_codes_and_skipped_empty(ts_seg: tuple[Path, dict]) -> None:
    _, info = ts_seg
    assert [s["name"] for s in info["segments"]] == ["spleen", "liver", "stomach",
                                                     "vertebrae_T12", "aorta"]
    assert info["skipped_empty"] == ["kidney_left"]
    assert info["derived_uids"] == ["StudyInstanceUID", "SeriesInstanceUID"]
    ds = pydicom.dcmread(ts_seg[0], stop_before_pixels=True)
    liver = ds.SegmentSequence[1]
    assert liver.SegmentLabel == "liver" and liver.SegmentAlgorithmType == "AUTOMATIC"
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert liver.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == \
        "TotalSegmentator"
    assert ds.SegmentSequence[3].SegmentedPropertyTypeCodeSequence[0].CodeValue == "23215003"
    src = ts_series().meta["dicom"]
    refs = {i.ReferencedSOPInstanceUID for i in ds.ReferencedSeriesSequence[0]
            .ReferencedInstanceSequence}
    assert refs == set(src.sop_instance_uids)
    assert ds.FrameOfReferenceUID == src.frame_of_reference_uid


def test_highdicom_and_pydicom_read_back_the_written_masks(ts_seg: tuple[Path, dict]) -> None:
    path, info = ts_seg
    mask, ref = ts_mask().array, ts_series()
    uids = ref.meta["dicom"].sop_instance_uids
    seg = hd.seg.segread(path)
    for item in info["segments"]:
        got = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=[item["segment_number"]],
            combine_segments=False, assert_missing_frames_are_empty=True)[..., 0]
        expected = np.transpose(mask == item["label_value"], (2, 1, 0))  # (K, rows, cols)
        np.testing.assert_array_equal(got.astype(bool), expected)
    ds = pydicom.dcmread(path)  # raw frames, placed by their own ImagePositionPatient
    z_of_slice = ref.index_to_world(np.c_[np.zeros((20, 2)), np.arange(20)])[:, 2]
    for f, frame in enumerate(ds.pixel_array):
        group = ds.PerFrameFunctionalGroupsSequence[f]
        number = group.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        z = float(group.PlanePositionSequence[0].ImagePositionPatient[2])
        k = int(np.argmin(np.abs(z_of_slice - z)))
        value = info["segments"][number - 1]["label_value"]
        np.testing.assert_array_equal(frame.astype(bool), (mask[:, :, k] == value).T)
    ours = read_dicom_seg(path, reference=ref)
    for item, vol in zip(info["segments"], ours, strict=True):
        np.testing.assert_array_equal(vol.array.astype(bool), mask == item["label_value"])


def test_uids_derived_for_blank_source_are_stable(tmp_path: Path) -> None:
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    for p in (a, b):
        write_dicom_seg(ts_mask(), ts_series(), p, labels=["aorta"])
    da, db = (pydicom.dcmread(p, stop_before_pixels=True) for p in (a, b))
    assert da.StudyInstanceUID == db.StudyInstanceUID and da.SOPInstanceUID != db.SOPInstanceUID
    assert da.ReferencedSeriesSequence[0].SeriesInstanceUID == \
        db.ReferencedSeriesSequence[0].SeriesInstanceUID


@pytest.mark.external
def test_dciodvfy_accepts_seg_of_all_organs(tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    out = tmp_path / "all.dcm"
    info = write_dicom_seg(ts_mask(), ts_series(), out)
    assert len(info["segments"]) == 31
    errors, warnings = dciodvfy(out, tool)
    assert errors == [], errors
    assert all("DICOMDIR" in w or "SECTRA" in w for w in warnings), warnings


def test_oblique_anisotropic_seg_matches_highdicom_geometry(tmp_path: Path) -> None:
    ref = synthetic_reference(make_volume("oblique", shape=(24, 20, 10)))
    mask = ellipsoid(ref)
    out = tmp_path / "oblique.dcm"
    write_dicom_seg(mask, ref, out, labels=[1], algorithm=Algorithm("manual"))
    vol = hd.seg.segread(out).get_volume(combine_segments=True)
    pts = vol.affine @ np.c_[np.argwhere(vol.array > 0), np.ones(int((vol.array > 0).sum()))].T
    ours = mask.index_to_world(np.argwhere(mask.array > 0))  # highdicom's array is (k, j, i)
    np.testing.assert_allclose(np.sort(pts[:3].T, axis=0), np.sort(ours, axis=0), atol=1e-3)
    back = read_dicom_seg(out)[0]  # own grid: the slices that hold frames (empty ones omitted)
    np.testing.assert_allclose(back.direction, mask.direction, atol=1e-6)
    np.testing.assert_allclose(back.spacing, mask.spacing, atol=1e-5)
    theirs = back.index_to_world(np.argwhere(back.array > 0))
    np.testing.assert_allclose(np.sort(theirs, axis=0), np.sort(ours, axis=0), atol=1e-3)
    on_ref = read_dicom_seg(out, reference=ref)[0]
    np.testing.assert_array_equal(on_ref.array, mask.array)


def test_fractional_seg_round_trips_to_8_bit(tmp_path: Path) -> None:
    ref = ct3()
    dist = np.linspace(0, 1, ref.shape[0], dtype=np.float32)[:, None, None]
    prob = ref.with_array(np.broadcast_to(dist, ref.shape).copy() * liver3().array)
    out = tmp_path / "prob.dcm"
    info = write_dicom_seg_fractional({"liver": prob}, ref, out)
    assert info["segmentation_type"] == "FRACTIONAL"
    seg = hd.seg.segread(out)
    assert seg.segmentation_type.value == "FRACTIONAL"
    back = read_dicom_seg(out, reference=ref)[0]
    assert back.array.dtype == np.float32
    assert np.abs(back.array - prob.array).max() <= 0.5 / 255 + 1e-6


# ----------------------------------------------------------------------------- typed errors
def test_mask_on_another_grid_is_refused(tmp_path: Path) -> None:
    shifted = dataclasses.replace(liver3(), origin=(0.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError, match="origin"):
        write_dicom_seg(shifted, ct3(), tmp_path / "x.dcm")
    cropped = dataclasses.replace(liver3(), array=liver3().array[:, :, :2])
    with pytest.raises(GeometryMismatchError, match="shape"):
        write_dicom_seg(cropped, ct3(), tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_unknown_label_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(LabelNotFoundError, match="1=liver"):
        write_dicom_seg(liver3(), ct3(), tmp_path / "x.dcm", labels=["spleen"])
    with pytest.raises(EmptySegmentationError), pytest.warns(UserWarning, match="empty"):
        write_dicom_seg(liver3().with_array(np.zeros(ct3().shape, np.uint8), labels={1: "liver"}),
                        ct3(), tmp_path / "x.dcm", labels=[1])


def test_series_without_image_position_is_refused(tmp_path: Path) -> None:
    def drop(datasets: list) -> None:
        del datasets[1].ImagePositionPatient

    with pytest.raises(MissingDicomAttributeError, match="ImagePositionPatient"):
        write_dicom_seg(liver3(), with_datasets(ct3(), drop), tmp_path / "x.dcm")


def test_nifti_reference_needs_a_dicom_series(tmp_path: Path) -> None:
    with pytest.raises(DicomReferenceRequiredError, match="--reference"):
        write_dicom_seg(liver3(), liver3(), tmp_path / "x.dcm")


def test_anonymized_seg_has_no_identifying_element(tmp_path: Path) -> None:
    secrets = {"PatientName": "Doe^Jane", "PatientID": "MRN-778899",
               "PatientBirthDate": "19610203", "InstitutionName": "St Example Hospital",
               "ReferringPhysicianName": "Who^Doctor", "AccessionNumber": "ACC12345",
               "OtherPatientIDs": "OTHER-42", "StudyDescription": "Secret study"}

    def inject(datasets: list) -> None:
        for ds in datasets:
            for key, value in secrets.items():
                setattr(ds, key, value)

    ref = with_datasets(ct3(), inject)
    plain, anon = tmp_path / "plain.dcm", tmp_path / "anon.dcm"
    write_dicom_seg(liver3(), ref, plain)
    write_dicom_seg(liver3(), ref, anon, anonymize=True)
    assert "Doe^Jane" in str(pydicom.dcmread(plain).PatientName)  # the test can fail
    ds = pydicom.dcmread(anon)
    assert identifying_elements(ds) == []
    values = [str(e.value) for e in ds.iterall() if e.VR != "SQ" and e.tag != 0x7FE00010]
    for secret in [*secrets.values(), "JANCT000"]:
        assert not any(secret in v for v in values), secret
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.StudyInstanceUID == ref.meta["dicom"].study_uid  # Retain UIDs option


def test_coding_table_uses_dicom_snomed_codes() -> None:
    from pydicom.sr.codedict import codes

    known = {getattr(codes.SCT, k).value for k in codes.SCT.dir()}
    names = ["liver", "spleen", "kidney_left", "pancreas", "stomach", "gallbladder", "aorta",
             "heart", "lung_upper_lobe_left", "urinary_bladder", "prostate", "brain",
             "vertebrae_L3", "vertebrae_C1", "tumor", "lesion", "neoplasm", "metastasis"]
    for name in names:
        coding = coding_for_label(name)
        assert not coding.is_generic, name
        assert coding.type.value in known, name
    assert coding_for_label("kidney_left").modifier.meaning == "Left"
    assert coding_for_label("tumour").category.meaning == "Morphologically Altered Structure"
    assert coding_for_label("thing_42").is_generic


def test_enhanced_multiframe_source(tmp_path: Path) -> None:
    """A legacy-converted enhanced CT (one file, frames in reverse slice order) as reference."""
    import glob
    import warnings

    from medseg.io.rtstruct import read_rtstruct, write_rtstruct

    files = sorted(glob.glob(str(DCMQI / "ct-3slice" / "*.dcm")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the source's single-component patient name
        image = hd.legacy.LegacyConvertedEnhancedCTImage(
            [pydicom.dcmread(f) for f in files], series_instance_uid=hd.UID(), series_number=5,
            sop_instance_uid=hd.UID(), instance_number=1)
    image.save_as(tmp_path / "mf.dcm")
    ref = io.read(tmp_path / "mf.dcm")
    frames = ref.meta["dicom"].frame_numbers
    assert frames is not None and ref.grid_differences(ct3()) == []
    write_dicom_seg(liver3(), ref, tmp_path / "seg.dcm")
    got = hd.seg.segread(tmp_path / "seg.dcm").get_pixels_by_source_frame(
        source_sop_instance_uid=ref.meta["dicom"].sop_instance_uids[0],
        source_frame_numbers=[1, 2, 3], combine_segments=True,
        assert_missing_frames_are_empty=True)
    for k, f in enumerate(frames):
        np.testing.assert_array_equal(got[f - 1] > 0, liver3().array[:, :, k].T > 0)
    write_rtstruct(liver3(), ref, tmp_path / "rt.dcm")
    np.testing.assert_array_equal(read_rtstruct(tmp_path / "rt.dcm", ref)[0].array,
                                  liver3().array)


# ----------------------------------------------------------------------------- label names
def _latin1_source() -> Volume:
    """dcmqi's 3-slice CT re-declared as Latin-1 with an accented patient name."""
    def edit(datasets: list) -> None:
        for ds in datasets:
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.PatientName = "Müller^Jürgen"
    return with_datasets(ct3(), edit)


@pytest.mark.external
def test_unicode_names_stay_unicode_and_validate(tmp_path: Path) -> None:
    tool = require_tool("dciodvfy")
    names = {1: "肝臓 Leber ü"}
    out = tmp_path / "unicode.dcm"
    write_dicom_seg(dataclasses.replace(liver3(), labels=names), _latin1_source(), out)
    ds = pydicom.dcmread(out)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.SegmentSequence[0].SegmentLabel == names[1]
    assert str(ds.PatientName) == "Müller^Jürgen"  # re-encoded from Latin-1, not mangled
    seg = hd.seg.Segmentation.from_dataset(ds)
    assert seg.get_segment_description(1).segment_label == names[1]
    assert read_dicom_seg(out, reference=ct3())[0].labels == {1: names[1]}
    errors, _ = dciodvfy(out, tool)
    assert errors == [], errors
    longest = tmp_path / "longest.dcm"  # 64 bytes: 21 CJK characters plus one ASCII
    write_dicom_seg(dataclasses.replace(liver3(), labels={1: "肝" * 21 + "x"}), ct3(), longest)
    errors, _ = dciodvfy(longest, tool)
    assert errors == [], errors


@pytest.mark.parametrize(("name", "rule"), [("x" * 65, "64 bytes"), ("肝" * 22, "66 bytes"),
                                            ("a\\b", "backslash"), ("a\nb", "U+000A")])
def test_names_a_segment_label_cannot_hold_are_refused_before_writing(
        tmp_path: Path, name: str, rule: str) -> None:
    out = tmp_path / "x.dcm"
    with pytest.raises(LabelNameError, match="label 1") as exc:
        write_dicom_seg(dataclasses.replace(liver3(), labels={1: name}), ct3(), out)
    assert rule in str(exc.value)
    with pytest.raises(LabelNameError):
        write_dicom_seg_fractional({name: liver3().with_array(liver3().array * 0.5)}, ct3(), out)
    assert list(tmp_path.iterdir()) == []


def test_algorithm_name_and_version_must_fit_a_dicom_lo() -> None:
    from medseg.errors import ConfigError

    assert Algorithm("manual", "肝" * 21 + "x", "1.0").name.endswith("x")
    for bad in ({"name": "m" * 65}, {"name": "a\\b"}, {"version": "1\n2"}, {"name": ""}):
        with pytest.raises(ConfigError, match="DICOM LO"):
            Algorithm("automatic", **bad)
