"""RT Structure Set (RTSTRUCT): planar contours per label, written and read with exact geometry.

Writing: for every label and every slice ``k`` of the reference grid, the outlines of the
mask are traced with ``skimage.measure.find_contours`` at level 0.5 (a padded slice, so every
contour is closed). The polygon runs through the midpoints between inside and outside voxel
centres, so rasterising it back (voxel centre inside the polygon) recovers the mask exactly.
Holes and islands are separate contours on the same slice, combined by the even-odd rule (what
plastimatch and most planning systems do). Points are mapped through the Volume geometry to
LPS millimetres (``ContourData``) and each contour references the image of its slice.

Reading (:func:`read_rtstruct`): contours are mapped back with ``reference.world_to_index``;
each must lie on one slice of the reference grid (any axis), and is filled with the even-odd rule.

The annotator (``Algorithm.creator``) is written as the ROIInterpreter of every ROI (a PN):
the RT Structure Set IOD has no ContentCreatorName (dciodvfy flags it as a non-standard
attribute), and ROIInterpreter is its "person performing the interpretation". It is left blank
when the output is anonymised.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage import draw, measure

from medseg.errors import CorruptFileError, GeometryMismatchError, UnsupportedFormatError
from medseg.io.atomic import atomic_path
from medseg.io.codes import ANATOMICAL_STRUCTURE, coding_for_label
from medseg.io.dicom_seg import PALETTE, Algorithm
from medseg.io.export_source import (
    PreparedSource,
    align_to_reference,
    clip_lo,
    declare_character_set,
    prepare_source,
    select_labels,
)
from medseg.io.labels import check_label_names
from medseg.volume import Volume

__all__ = ["RTSTRUCT_SOP_CLASS", "mask_contours", "read_rtstruct", "write_rtstruct"]

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # as referenced by planning systems
#: Copied from the source header when present (Patient and General Study modules).
COPIED = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
          "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
          "StudyDescription")
#: Largest distance (voxels) of a contour from a slice centre when reading.
PLANE_TOL = 0.05


def mask_contours(mask2d: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.float64]]:
    """Closed outlines of a 2D mask ``[i, j]`` as ``(N, 2)`` float (i, j) index polygons.

    The first point is not repeated at the end. Collinear points are dropped.
    """
    padded = np.pad(mask2d.astype(np.uint8), 1)
    out = []
    for c in measure.find_contours(padded, 0.5):
        c = c[:-1] - 1.0 if len(c) > 1 and np.allclose(c[0], c[-1]) else c - 1.0
        before, after = c - np.roll(c, 1, axis=0), np.roll(c, -1, axis=0) - c
        cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
        c = c[np.abs(cross) > 1e-9]  # drop points in the middle of straight runs
        if len(c) >= 3:
            out.append(c)
    return out


def _item(**kw: Any) -> Dataset:
    ds = Dataset()
    for key, value in kw.items():
        setattr(ds, key, value)
    return ds


def _image_ref(src: PreparedSource, reference: Volume, k: int) -> Dataset:
    ds = src.datasets[0 if src.multiframe else k]
    item = _item(ReferencedSOPClassUID=ds.SOPClassUID, ReferencedSOPInstanceUID=ds.SOPInstanceUID)
    if src.multiframe:
        item.ReferencedFrameNumber = int(reference.meta["dicom"].frame_numbers[k])
    return item


def _header(src: PreparedSource, algorithm: Algorithm, series_number: int,
            description: str) -> Dataset:
    now = datetime.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.UID(RTSTRUCT_SOP_CLASS)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    first = src.datasets[0]
    for key in COPIED:
        setattr(ds, key, first[key].value if key in first else "")
    if not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet
    if not ds.StudyDescription:
        del ds.StudyDescription
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate = ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.StructureSetTime = now.strftime("%H%M%S")
    ds.StudyInstanceUID = src.study_uid
    ds.FrameOfReferenceUID = src.frame_of_reference_uid
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = clip_lo(description)
    ds.OperatorsName = ""
    ds.Manufacturer = "medseg"
    ds.ManufacturerModelName = algorithm.name
    ds.SoftwareVersions = algorithm.resolved_version
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "medseg"
    ds.StructureSetName = clip_lo(description)
    images = [_item(ReferencedSOPClassUID=d.SOPClassUID, ReferencedSOPInstanceUID=d.SOPInstanceUID)
              for d in src.datasets]
    series = _item(SeriesInstanceUID=src.series_uid, ContourImageSequence=images)
    study = _item(ReferencedSOPClassUID=STUDY_SOP_CLASS, ReferencedSOPInstanceUID=src.study_uid,
                  RTReferencedSeriesSequence=[series])
    ds.ReferencedFrameOfReferenceSequence = [_item(
        FrameOfReferenceUID=src.frame_of_reference_uid, RTReferencedStudySequence=[study])]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    return ds


def _add_roi(ds: Dataset, number: int, name: str, data: npt.NDArray[np.bool_],
             reference: Volume, src: PreparedSource, algorithm: Algorithm) -> int:
    """Append one ROI (structure, contours, observation); return the number of contours."""
    ds.StructureSetROISequence.append(_item(
        ROINumber=number, ReferencedFrameOfReferenceUID=src.frame_of_reference_uid,
        ROIName=name, ROIGenerationAlgorithm=algorithm.type.upper(),
        ROIGenerationDescription=clip_lo(f"{algorithm.name} {algorithm.resolved_version}")))
    contours: list[Dataset] = []
    ii, jj = np.flatnonzero(data.any(axis=(1, 2))), np.flatnonzero(data.any(axis=(0, 2)))
    box = data[ii[0]:ii[-1] + 1, jj[0]:jj[-1] + 1]  # trace within the bounding box only
    for k in np.flatnonzero(data.any(axis=(0, 1))):
        for poly in mask_contours(box[:, :, k]):
            ijk = np.column_stack([poly + np.array([ii[0], jj[0]]), np.full(len(poly), float(k))])
            xyz = reference.index_to_world(ijk)
            contours.append(_item(
                ContourImageSequence=[_image_ref(src, reference, int(k))],
                ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(poly),
                ContourNumber=len(contours) + 1,
                ContourData=[f"{v:.4f}" for v in xyz.ravel()]))
    ds.ROIContourSequence.append(_item(
        ReferencedROINumber=number, ROIDisplayColor=list(PALETTE[(number - 1) % len(PALETTE)]),
        ContourSequence=contours))
    coding = coding_for_label(name)
    ds.RTROIObservationsSequence.append(_item(
        ObservationNumber=number, ReferencedROINumber=number,
        ROIInterpreter=algorithm.creator_pn or "",
        RTROIInterpretedType="ORGAN" if coding.category == ANATOMICAL_STRUCTURE else ""))
    return len(contours)


def write_rtstruct(mask: Volume, reference: Volume, out: str | Path, *,
                   labels: Sequence[int | str] | None = None, algorithm: Algorithm | None = None,
                   anonymize: bool = False, series_number: int = 301,
                   series_description: str = "medseg structures") -> dict[str, Any]:
    """Write the labels of ``mask`` as an RT Structure Set referencing ``reference``'s images.

    ``mask`` is a label map on the reference grid (or the same voxels with permuted/flipped
    axes); ``reference`` a Volume read from a DICOM series. Empty labels are skipped with a
    warning. Names must fit an ROIName (:func:`medseg.io.labels.check_label_names`, checked
    before anything is written); non-ASCII names are written as UTF-8 (ISO_IR 192). Returns a
    JSON-able summary (ROIs, contour counts).
    """
    import warnings

    from medseg.errors import EmptySegmentationError

    algorithm = algorithm or Algorithm()
    if anonymize:  # the annotator is a person's name: not in an anonymised file
        algorithm = dataclasses.replace(algorithm, creator=None)
    mask = align_to_reference(mask, reference, what="mask")
    chosen = check_label_names(select_labels(mask, labels), "rtstruct")
    src = prepare_source(reference, "RTSTRUCT")
    ds = _header(src, algorithm, series_number, series_description)
    rois: list[dict[str, Any]] = []
    skipped: list[str] = []
    for value, name in chosen.items():
        data = mask.array == value
        if not data.any():
            skipped.append(name)
            continue
        n = _add_roi(ds, len(rois) + 1, name, data, reference, src, algorithm)
        rois.append({"roi_number": len(rois) + 1, "label_value": value, "name": name,
                     "contours": n, "voxels": int(data.sum())})
    if skipped:
        warnings.warn(f"RTSTRUCT: skipping empty label(s) {', '.join(skipped)}.", stacklevel=2)
    if not rois:
        raise EmptySegmentationError("Every selected label is empty; the RTSTRUCT would hold "
                                     "no structure. Check --label and the reference series.")
    if anonymize:
        from medseg.io.anonymize import anonymize_dataset

        anonymize_dataset(ds)
    declare_character_set(ds)
    with atomic_path(out) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return {"path": str(out), "format": "RTSTRUCT", "sop_instance_uid": str(ds.SOPInstanceUID),
            "rois": rois, "skipped_empty": skipped, "derived_uids": src.derived,
            "anonymized": anonymize, "content_creator": algorithm.creator_pn}


def _rasterise(contours: list[npt.NDArray[np.float64]], grid: Volume, name: str,
               path: Path) -> npt.NDArray[np.uint8]:
    """Even-odd fill of world-space (N, 3) LPS polygons onto ``grid``: uint8 (I, J, K)."""
    out = np.zeros(grid.shape, dtype=bool)
    for pts in contours:
        idx = grid.world_to_index(pts)
        axis = int(np.argmin(np.ptp(idx, axis=0)))
        level = float(np.median(idx[:, axis]))
        if np.ptp(idx[:, axis]) > PLANE_TOL or abs(level - round(level)) > PLANE_TOL:
            raise GeometryMismatchError(
                f"{path}: a contour of ROI {name!r} does not lie on a slice of the reference "
                f"grid (index spread {np.ptp(idx, axis=0).round(3).tolist()}). Pass the image "
                "series the structure set was drawn on as reference.")
        k = round(level)
        if not 0 <= k < grid.shape[axis]:
            continue
        a, b = [x for x in range(3) if x != axis]
        rr, cc = draw.polygon(idx[:, a], idx[:, b], shape=(grid.shape[a], grid.shape[b]))
        sl: list[Any] = [slice(None)] * 3
        sl[axis] = k
        plane = out[tuple(sl)]
        plane[rr, cc] ^= True
    return out.astype(np.uint8)


def read_rtstruct(path: str | Path, reference: Volume) -> list[Volume]:
    """One uint8 0/1 Volume per ROI on the reference grid (``labels={1: ROIName}``).

    ``meta["roi"]`` holds ROI number, name and colour. Use
    :func:`medseg.io.dicom_seg.merge_segments` to combine non-overlapping ROIs.
    """
    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:  # pydicom raises many types for broken files
        raise CorruptFileError(f"{p}: not a readable DICOM file ({exc}).") from exc
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise UnsupportedFormatError(f"{p}: not an RT Structure Set (SOP class "
                                     f"{ds.get('SOPClassUID', 'missing')}).")
    names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in
             ds.get("StructureSetROISequence", [])}
    out = []
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        name = names.get(number) or f"roi_{number}"
        polys = [np.asarray(c.ContourData, dtype=np.float64).reshape(-1, 3)
                 for c in roi.get("ContourSequence", [])
                 if c.get("ContourGeometricType", "CLOSED_PLANAR") == "CLOSED_PLANAR"]
        arr = _rasterise(polys, reference, name, p)
        color = [int(v) for v in roi.get("ROIDisplayColor", [])]
        out.append(Volume(arr, reference.spacing, reference.origin, reference.direction,
                          modality="RTSTRUCT", labels={1: name},
                          meta={"roi": {"number": number, "name": name, "color": color},
                                "path": str(p)}))
    return out
