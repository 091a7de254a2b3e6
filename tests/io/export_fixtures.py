"""Shared inputs of the export tests: sample series, label tables, synthetic DICOM references."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import subprocess

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from medseg import io
from medseg.io.dicom_source import DicomSource
from medseg.io.export_source import align_to_reference
from medseg.volume import Volume
from tests.conftest import SAMPLES

TS = SAMPLES / "totalsegmentator"
DCMQI = SAMPLES / "dcmqi"
#: A few organs of the TotalSegmentator DICOM example (values in its "total" map).
ORGANS = ["liver", "spleen", "aorta", "stomach", "vertebrae_T12"]


@functools.lru_cache(maxsize=1)
def ts_names() -> dict[int, str]:
    data = json.loads((TS / "totalsegmentator_class_map_DERIVED.json").read_text())
    return {int(k): v for k, v in data["total"].items()}


@functools.lru_cache(maxsize=1)
def ts_series() -> Volume:
    """The real JPEG 2000 CT series (blank Study/Series UIDs), read by medseg."""
    return io.read(TS / "example_ct_dicom")


@functools.lru_cache(maxsize=1)
def ts_mask() -> Volume:
    """TotalSegmentator labels of that series, on the series' grid (LAS NIfTI reoriented)."""
    mask = io.read(TS / "example_seg_dicom.nii.gz", label=True)
    mask = dataclasses.replace(mask, labels=ts_names())
    return align_to_reference(mask, ts_series())


@functools.lru_cache(maxsize=1)
def ct3() -> Volume:
    """dcmqi's 3-slice CT (uncompressed, full UIDs, PatientName JANCT000)."""
    return io.read(DCMQI / "ct-3slice")


@functools.lru_cache(maxsize=1)
def liver3() -> Volume:
    return io.read(DCMQI / "liver_seg.nrrd")


def with_datasets(ref: Volume, edit: object = None) -> Volume:
    """``ref`` with deep copies of its DICOM headers (``edit(list_of_datasets)`` applied)."""
    src: DicomSource = ref.meta["dicom"]
    datasets = [copy.deepcopy(d) for d in src.datasets]
    if callable(edit):
        edit(datasets)
    return dataclasses.replace(ref, meta={**ref.meta,
                                          "dicom": dataclasses.replace(src, datasets=datasets)})


def synthetic_reference(vol: Volume) -> Volume:
    """``vol`` with a DicomSource made of CT headers that describe exactly its grid.

    Slice ``k`` gets ImagePositionPatient = world position of voxel (0, 0, k) and
    ImageOrientationPatient = the directions of the i and j axes, so oblique/flipped and
    anisotropic grids become DICOM series as a scanner would write them.
    """
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets, uids = [], []
    for k in range(vol.shape[2]):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Synthetic^Patient", "SYN001"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.PatientBirthDate, ds.PatientSex = "", "", "O"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in vol.index_to_world([0, 0, k])]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in
                                      np.concatenate([vol.direction[:, 0], vol.direction[:, 1]])]
        ds.PixelSpacing = [f"{vol.spacing[1]:.6f}", f"{vol.spacing[0]:.6f}"]
        ds.SliceThickness = f"{vol.spacing[2]:.6f}"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PositionReferenceIndicator = ""
        datasets.append(ds)
        uids.append(ds.SOPInstanceUID)
    src = DicomSource(datasets=datasets, series_uid=series, study_uid=study,
                      frame_of_reference_uid=frame, sop_class_uid=CTImageStorage,
                      sop_instance_uids=uids)
    return dataclasses.replace(vol, meta={"dicom": src})


def ellipsoid(vol: Volume, radii_mm: tuple[float, float, float] = (14.0, 10.0, 9.0),
              value: int = 1) -> Volume:
    """Label map on ``vol``'s grid: an ellipsoid (world-axis aligned) around the grid centre."""
    ijk = np.indices(vol.shape).reshape(3, -1).T
    world = vol.index_to_world(ijk)
    centre = vol.index_to_world((np.asarray(vol.shape) - 1) / 2.0)
    r = (((world - centre) / np.asarray(radii_mm)) ** 2).sum(axis=1)
    arr = np.where(r <= 1.0, value, 0).reshape(vol.shape).astype(np.uint8)
    return vol.with_array(arr, labels={value: "lesion" if value == 1 else f"label_{value}"})


def dciodvfy(path: object, tool: str) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) that dciodvfy prints for ``path``."""
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [ln for ln in lines if re.match(r"^\s*Error", ln)]
    warnings = [ln for ln in lines if re.match(r"^\s*Warning", ln)]
    return errors, warnings
