"""The DICOM side of case discovery: which files of one folder form image series, and which
are DICOM-SEG / RTSTRUCT objects naming a series (references). Headers only: no pixel data
is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medseg.data.grid_key import GridKey, dicom_series_grid
from medseg.io.roots import Roots, is_inside

__all__ = ["DicomFolder", "SeriesGrid", "is_dicom_file", "referenced_series",
           "scan_dicom_folder"]

#: SOP classes that are references (segmentations), not images to annotate
SEG_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
                             "1.2.840.10008.5.1.4.1.1.66.7"})  # Label Map Segmentation
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_TAGS = ["SOPClassUID", "Modality", "SeriesInstanceUID", "Rows", "ImagePositionPatient"]


@dataclass(frozen=True)
class SeriesGrid:
    """One image series of a folder: its SeriesInstanceUID, files and grid (None when the
    headers lack geometry)."""

    uid: str
    files: tuple[Path, ...]
    grid: GridKey | None


@dataclass
class DicomFolder:
    """The DICOM content directly inside one folder (sub-folders not included)."""

    series: list[SeriesGrid] = field(default_factory=list)
    references: list[Path] = field(default_factory=list)


def is_dicom_file(path: Path) -> bool:
    """A file with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def scan_dicom_folder(folder: Path, roots: Roots) -> DicomFolder:
    """Image series (grouped by SeriesInstanceUID, sorted by UID) and SEG/RTSTRUCT files
    directly inside ``folder``; files outside ``roots`` are skipped."""
    import pydicom

    out = DicomFolder()
    groups: dict[str, list[Path]] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for p in entries:
        if p.name.startswith(".") or not p.is_file() or not is_inside(p, roots) \
                or not is_dicom_file(p):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=_TAGS)
        except (OSError, ValueError, pydicom.errors.InvalidDicomError):
            continue
        sop = str(ds.get("SOPClassUID", ""))
        if sop in SEG_SOP_CLASSES or sop == RTSTRUCT_SOP_CLASS:
            out.references.append(p)
        elif "Rows" in ds and "ImagePositionPatient" in ds:
            groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(p)
    for uid, files in sorted(groups.items()):
        out.series.append(SeriesGrid(uid, tuple(files), dicom_series_grid(files)))
    return out


def referenced_series(path: Path) -> list[str]:
    """SeriesInstanceUIDs a DICOM-SEG (ReferencedSeriesSequence) or RTSTRUCT (Referenced
    Frame of Reference > RT Referenced Study > RT Referenced Series) names."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, ValueError, pydicom.errors.InvalidDicomError):
        return []
    uids = [str(s.get("SeriesInstanceUID", "")) for s in ds.get("ReferencedSeriesSequence", [])]
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            uids += [str(s.get("SeriesInstanceUID", ""))
                     for s in study.get("RTReferencedSeriesSequence", [])]
    return [u for u in uids if u]
