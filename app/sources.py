"""Where the app gets images: bundled samples, uploads, and server paths inside data roots."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app.settings import SAMPLES_DIR
from medseg.errors import PathOutsideRootsError, UploadTooLargeError
from medseg.io.atomic import write_bytes_atomic
from medseg.io.roots import resolve_inside

__all__ = ["PathOutsideRootsError", "UploadTooLargeError"]


@dataclass(frozen=True)
class SampleCase:
    """A bundled case: image (file or DICOM folder) and, when shipped, its reference labels."""

    name: str
    image: Path
    labels: Path | None
    description: str


_TS = SAMPLES_DIR / "totalsegmentator"
SAMPLES: tuple[SampleCase, ...] = (
    SampleCase("CT abdomen, DICOM (JPEG 2000)", _TS / "example_ct_dicom",
               _TS / "example_seg_dicom.nii.gz", "512x512x20, 31 organs (TotalSegmentator)"),
    SampleCase("CT abdomen, NIfTI 3 mm", _TS / "example_ct_sm.nii.gz", _TS / "example_seg.nii.gz",
               "122x101x30, 41 organs (TotalSegmentator)"),
    SampleCase("MR abdomen, NIfTI 3 mm", _TS / "example_mr_sm.nii.gz",
               _TS / "example_seg_mr.nii.gz", "117x91x20, 23 organs (TotalSegmentator MR)"),
    SampleCase("MR brain tumour (T1 post-Gd)", SAMPLES_DIR / "pyradiomics/brain1_image.nrrd",
               SAMPLES_DIR / "pyradiomics/brain1_label.nrrd", "256x256x25 @ 6.5 mm, TCGA-GBM"),
    SampleCase("CT 3 slices + liver (dcmqi)", SAMPLES_DIR / "dcmqi/ct-3slice",
               SAMPLES_DIR / "dcmqi/liver_seg.nrrd", "512x512x3 DICOM, liver label"),
)

UPLOAD_TYPES = ("nii", "gz", "nrrd", "mha", "zip", "dcm")


def safe_name(name: str) -> str:
    """A file name without folders or odd characters (keeps the extension)."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return cleaned or "upload"


def save_upload(name: str, data: bytes, folder: Path, max_mb: int) -> Path:
    """Store an uploaded file in ``folder`` (atomically) and return its path."""
    size_mb = len(data) / 2**20
    if size_mb > max_mb:
        raise UploadTooLargeError(
            f"{name}: {size_mb:.0f} MB is over the upload limit of {max_mb} MB. Put the file in "
            "a server data folder and open it from there, or raise MEDSEG_MAX_UPLOAD_MB."
        )
    path = folder / safe_name(name)
    write_bytes_atomic(path, data)
    return path


def resolve_in_roots(path: str | Path, roots: tuple[Path, ...]) -> Path:
    """Resolve ``path`` (symlinks too) and refuse it unless it lies inside one of ``roots``."""
    return resolve_inside(path, roots)


def list_entries(folder: str | Path, roots: tuple[Path, ...]) -> list[Path]:
    """Sub-folders and image files of a folder inside the data roots, folders first."""
    base = resolve_in_roots(folder, roots)
    if not base.is_dir():
        raise PathOutsideRootsError(f"{folder}: not a folder inside the data roots.")
    entries = [e for e in base.iterdir() if not e.name.startswith(".")]
    return sorted(entries, key=lambda e: (not e.is_dir(), e.name.lower()))
