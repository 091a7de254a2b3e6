"""What a DICOM reader keeps of its source series, for exporters (DICOM-SEG, RTSTRUCT)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset


@dataclass
class SeriesInfo:
    """One image series found in a folder or zip, as listed by ``medseg info``.

    ``number`` is 1-based and stable for the same input (series sorted by SeriesNumber, then UID).
    ``uid`` is the SeriesInstanceUID, or a synthetic ``"nouid-<hash>"`` key when the files blank it.
    """

    number: int
    uid: str
    description: str
    modality: str
    n_images: int
    rows: int
    columns: int
    series_number: int | None = None
    files: list[str] = field(default_factory=list)
    multiframe: bool = False


@dataclass
class DicomSource:
    """The source series of a Volume read from DICOM (stored as ``volume.meta["dicom"]``).

    ``datasets[k]`` is the header (pixel data removed) of the image that holds slice ``k`` of the
    Volume array, in the Volume's slice order. For an enhanced multi-frame image there is one
    dataset and ``frame_numbers[k]`` (1-based) says which frame became slice ``k``.

    UIDs that the files leave blank stay ``None`` here; ``SOPInstanceUID``/``SOPClassUID`` blank
    in a dataset are recovered from the file meta (``MediaStorageSOP...``) and written back into
    the kept datasets, so references made from them are valid.
    """

    datasets: list[Dataset]
    series_uid: str | None
    study_uid: str | None
    frame_of_reference_uid: str | None
    sop_class_uid: str
    sop_instance_uids: list[str]
    frame_numbers: list[int] | None = None
    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
