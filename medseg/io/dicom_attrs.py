"""DICOM header values read defensively, and the attributes an image must carry.

Hostile or damaged headers hold values pydicom cannot convert (an IS of ``"x"``); these helpers
never let such a value raise out of series discovery, and say which file and which attribute
is at fault when the value matters (NumberOfFrames, the Image Pixel module).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from medseg.errors import CorruptFileError, MissingDicomAttributeError

__all__ = ["REQUIRED_PIXEL_ATTRIBUTES", "check_frames", "check_required", "int_or_zero",
           "series_number", "text"]

#: Image Pixel module attributes every image of a series must carry (DICOM type 1): without
#: them the pixels cannot be decoded, or only by guessing (e.g. signed data read as unsigned).
REQUIRED_PIXEL_ATTRIBUTES = ("Rows", "Columns", "BitsAllocated", "BitsStored",
                             "PixelRepresentation", "SamplesPerPixel",
                             "PhotometricInterpretation")


def text(ds: Dataset, keyword: str) -> str:
    """The element as text, ``""`` when absent or not convertible (a hostile value)."""
    try:
        value = ds.get(keyword)
        return "" if value is None else str(value).strip()
    except (ValueError, TypeError, OverflowError):
        return ""


def series_number(ds: Dataset) -> int | None:
    """SeriesNumber as an int, ``None`` when absent or not a number."""
    try:
        return int(float(ds.get("SeriesNumber")))
    except (TypeError, ValueError, OverflowError):
        return None


def check_frames(ds: Dataset, name: str) -> None:
    """NumberOfFrames must be a positive integer when present (it sizes the pixel data)."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError, OverflowError):
        frames = 0
    if frames < 1:
        raise CorruptFileError(
            f"{name}: NumberOfFrames is not a positive integer, so the size of its pixel data "
            "is unknown; the header is damaged. Remove the file or re-export it.")


def int_or_zero(ds: Dataset, keyword: str) -> int:
    """An integer element (e.g. Rows), 0 when absent or not convertible."""
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def check_required(images: list[tuple[str, Dataset]], label: str) -> None:
    """Every image of the chosen series carries the pixel attributes decoding needs."""
    for name, ds in images:
        missing = [k for k in REQUIRED_PIXEL_ATTRIBUTES if not text(ds, k)]
        if missing:
            others = sum(1 for n, o in images if n != name and any(not text(o, k)
                                                                   for k in missing))
            more = f" (and {others} other file(s) of the series)" if others else ""
            raise MissingDicomAttributeError(
                f"{name}: no {', '.join(missing)} in the header{more}, so the pixels of "
                f"series {label} cannot be decoded without guessing. The file is damaged or "
                "was stripped by a tool; re-export the series from the scanner/PACS.")
