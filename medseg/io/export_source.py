"""The DICOM source series of an export (DICOM-SEG, RTSTRUCT): checks and UID completion.

An exported object references its source images by SOPInstanceUID and belongs to the source's
study and frame of reference. Some de-identified series blank StudyInstanceUID,
SeriesInstanceUID (and sometimes FrameOfReferenceUID) in every file. Then medseg derives the
missing UID *deterministically* from the source's SOPInstanceUIDs
(``pydicom.uid.generate_uid(entropy_srcs=...)``), writes it into copies of the source headers
and uses it everywhere in the export: every export of the same series gets the same study,
series and frame UIDs, and validators see a complete, self-consistent reference tree. The
original files are not changed, so a PACS that matches on StudyInstanceUID will file the export
under a new study; the image references (SOP Instance UIDs) stay exact.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medseg.errors import (
    DicomReferenceRequiredError,
    GeometryMismatchError,
    LabelNotFoundError,
    MissingDicomAttributeError,
)
from medseg.io.codes import normalise_name
from medseg.io.dicom_source import DicomSource
from medseg.io.labels import display_name
from medseg.volume import Volume, present_values

__all__ = ["PreparedSource", "align_to_reference", "clip_lo", "declare_character_set",
           "dicom_source_of", "prepare_source", "select_labels"]

#: Attributes every single-frame source header needs for a geometry-bearing export.
REQUIRED = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
            "Columns", "SOPInstanceUID", "SOPClassUID")
#: The same for an enhanced multi-frame source (geometry lives in functional groups).
REQUIRED_MULTIFRAME = ("Rows", "Columns", "SOPInstanceUID", "SOPClassUID",
                       "PerFrameFunctionalGroupsSequence")


@dataclass
class PreparedSource:
    """Copies of the source headers with study/series/frame UIDs filled in.

    ``datasets[k]`` is the header of slice ``k`` of the reference Volume (LPS grid);
    ``derived`` names the UIDs medseg had to generate (empty when the files had them all).
    """

    datasets: list[Dataset]
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    derived: list[str]
    multiframe: bool


def dicom_source_of(reference: Volume, fmt: str) -> DicomSource:
    """The :class:`DicomSource` of ``reference``, or a typed error explaining how to get one."""
    src = reference.meta.get("dicom")
    if not isinstance(src, DicomSource):
        where = reference.meta.get("path", "the reference image")
        raise DicomReferenceRequiredError(
            f"A {fmt} export must reference the DICOM image series the mask was drawn on, but "
            f"{where} was not read from DICOM. Pass the folder (or zip) of the original DICOM "
            "series as the reference, e.g. `medseg export mask.nii.gz --reference CT_FOLDER/ "
            f"--format {'seg' if fmt == 'DICOM-SEG' else fmt.lower()} --out out.dcm`."
        )
    if not src.datasets:
        raise DicomReferenceRequiredError(
            f"The DICOM reference for the {fmt} export holds no image headers; read the series "
            "again with medseg.io.read(folder)."
        )
    return src


def _derive(kind: str, src: DicomSource) -> str:
    return str(generate_uid(entropy_srcs=[f"medseg:{kind}", *src.sop_instance_uids]))


def _check_headers(src: DicomSource, datasets: list[Dataset]) -> None:
    required = REQUIRED if src.frame_numbers is None else REQUIRED_MULTIFRAME
    for k, ds in enumerate(datasets):
        missing = [name for name in required if ds.get(name) in (None, "", [])]
        if missing:
            name = src.files[k] if k < len(src.files) else f"slice {k}"
            raise MissingDicomAttributeError(
                f"DICOM source {name} lacks {', '.join(missing)}, which the export needs to "
                "place and reference the mask. Re-export the series from the scanner/PACS "
                "with full headers (or convert the mask to NIfTI with --format nifti)."
            )


def prepare_source(reference: Volume, fmt: str) -> PreparedSource:
    """Check the reference's DICOM headers and return copies with every UID an export needs.

    Raises :class:`DicomReferenceRequiredError` when ``reference`` is not from DICOM and
    :class:`MissingDicomAttributeError` when a header lacks position/orientation/spacing.
    """
    src = dicom_source_of(reference, fmt)
    derived: list[str] = []
    first = src.datasets[0]
    study = src.study_uid or str(first.get("StudyInstanceUID") or "")
    series = src.series_uid or str(first.get("SeriesInstanceUID") or "")
    frame = src.frame_of_reference_uid or str(first.get("FrameOfReferenceUID") or "")
    if not study:
        study = _derive("study", src)
        derived.append("StudyInstanceUID")
    if not series:
        series = _derive("series", src)
        derived.append("SeriesInstanceUID")
    if not frame:
        frame = _derive("frame", src)
        derived.append("FrameOfReferenceUID")
    datasets = []
    for k, ds in enumerate(src.datasets):
        ds = copy.deepcopy(ds)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        if k < len(src.sop_instance_uids) and not ds.get("SOPInstanceUID"):
            ds.SOPInstanceUID = src.sop_instance_uids[k]
        if not ds.get("SOPClassUID"):
            ds.SOPClassUID = src.sop_class_uid
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet  # blank = default repertoire; highdicom rejects ""
        datasets.append(ds)
    _check_headers(src, datasets)
    return PreparedSource(datasets, study, series, frame, derived,
                          multiframe=src.frame_numbers is not None)


def align_to_reference(mask: Volume, reference: Volume, what: str = "mask") -> Volume:
    """``mask`` on exactly the reference's voxel grid, or :class:`GeometryMismatchError`.

    A mask that covers the same voxel centres with its axes permuted or flipped (e.g. a NIfTI
    written in LAS/RAS for a DICOM series read as LPS) is reoriented exactly (no
    interpolation); any other difference (shape, spacing, origin, obliquity) is an error that
    names what differs.
    """
    if not mask.grid_differences(reference):
        return mask
    try:
        return mask.conform_to(reference)
    except GeometryMismatchError:
        mask.check_same_grid(reference, what=what, reference="reference DICOM series")
        raise


def select_labels(mask: Volume, wanted: Sequence[int | str] | None = None) -> dict[int, str]:
    """``{value: name}`` of the labels to export, in ascending value order.

    ``wanted`` holds label values (ints or digit strings) or names (matched case-insensitively,
    ``_``/space/``-`` ignored); ``None`` means every non-zero value present in the mask.
    Raises :class:`LabelNotFoundError` naming the available labels when one is unknown.
    """
    present = {v for v in present_values(np.asarray(mask.array)) if v != 0}
    names = {v: (mask.labels or {}).get(v, f"label_{v}") for v in present}
    names.update(mask.labels or {})
    if wanted is None or len(wanted) == 0:
        return {v: names[v] for v in sorted(present)}
    by_name = {normalise_name(n): v for v, n in names.items()}
    chosen: dict[int, str] = {}
    for item in wanted:
        text = str(item).strip()
        value = int(text) if text.isdigit() else by_name.get(normalise_name(text))
        if value is None or value not in names:
            shown = ", ".join(f"{v}={display_name(n, 40)}" for v, n in sorted(names.items())[:40])
            raise LabelNotFoundError(
                f"Label {display_name(repr(item), 80)} is not in the mask's label table ({shown}"
                f"{', ...' if len(names) > 40 else ''}). Pass a value or name from this list, "
                "or a label table with --labels names.json."
            )
        chosen[value] = names[value]
    return dict(sorted(chosen.items()))


#: Value representations whose text uses the Specific Character Set.
_TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "UC", "PN"}
UTF8 = "ISO_IR 192"


def declare_character_set(ds: Dataset) -> None:
    """Declare UTF-8 (``ISO_IR 192``) in ``ds`` when any of its text is not ASCII.

    pydicom encodes every text value with the dataset's Specific Character Set when saving;
    without a declaration non-ASCII characters (a label name such as "肝臓") would be written
    as ``?``. Text values are held decoded, so values copied from a source in another
    character set (Latin-1, ISO 2022...) are re-encoded in UTF-8 too. Pure-ASCII datasets keep
    the source's declaration (or none).
    """
    for elem in ds.iterall():
        if elem.VR not in _TEXT_VRS or elem.value is None:
            continue
        values = elem.value if isinstance(elem.value, (list, tuple)) or \
            type(elem.value).__name__ == "MultiValue" else [elem.value]
        if any(not str(v).isascii() for v in values):
            ds.SpecificCharacterSet = UTF8
            return


def clip_lo(text: str, limit: int = 64) -> str:
    """A free-text description cut to ``limit`` bytes of UTF-8 (whole characters): for LO
    descriptions medseg composes itself (series description, ROI generation description).
    Names that must survive exactly are checked instead (:mod:`medseg.io.labels`)."""
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore").rstrip()
