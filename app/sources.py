"""Where the app gets images: bundled samples, uploads, server paths inside data roots, and
series retrieved from a PACS into the workspace's PACS cache.

An upload is opened from its own workspace folder (``uploads/<sha256[:16]>/``, see
:mod:`app.uploads`) and may read nothing outside it. What an upload can be:

* one self-contained image file: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``), MetaImage
  (``.mha``), FreeSurfer (``.mgz``, ``.mgh``), a DICOM file (``.dcm``); a ``.mha``/``.nrrd``
  whose header names a detached data file is read only if that file lies in the upload's
  folder, which it cannot for a single upload, so it is refused by :mod:`medseg.io`;
* a lone detached header (``.mhd``, ``.nhdr``, ``.hdr``): refused at once, with the advice to
  upload header and data file together as a zip;
* a zip: a DICOM folder (read from the zip as before), or, when it holds an image file or a
  detached header, extracted (:func:`medseg.io.archive.extract_zip`: streamed, capped,
  all-or-nothing) into ``uploads/<sha256[:16]>/extracted/`` and that image opened.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.settings import SAMPLES_DIR, AppSettings
from app.uploads import StoredUpload, safe_name
from medseg.errors import (
    CorruptFileError,
    PathOutsideRootsError,
    UnsupportedFormatError,
    UploadTooLargeError,
)
from medseg.io.dicom_zip import DEFAULT_MAX_ZIP_BYTES, is_junk_member
from medseg.io.roots import resolve_inside

if TYPE_CHECKING:
    from app.case import Case
    from app.workspace import CaseSource
    from medseg.pacs.cache import Progress
    from medseg.pacs.records import SeriesRecord

__all__ = ["PathOutsideRootsError", "UploadTooLargeError", "safe_name"]


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

#: Extensions the upload widget accepts (lone detached headers are accepted to explain them).
UPLOAD_TYPES = ("nii", "gz", "nrrd", "mha", "mgz", "mgh", "zip", "dcm", "mhd", "nhdr", "hdr")
#: Headers whose voxels live in a separate data file.
DETACHED_HEADERS = (".mhd", ".nhdr", ".hdr")
#: Files inside an uploaded zip that make it an image (not a DICOM folder) to open.
ZIP_IMAGES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".mgz", ".mgh")
#: Cap on what an uploaded zip may expand to (as for DICOM zips read by medseg.io).
MAX_ZIP_BYTES = DEFAULT_MAX_ZIP_BYTES


def _is_image_name(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def zip_images(path: Path) -> list[str]:
    """The image files (members named like :data:`ZIP_IMAGES`) of a zip, from its central
    directory only (nothing is decompressed); empty for a zip of DICOM files."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist()
                     if not i.is_dir() and not is_junk_member(i.filename)]
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(f"{path.name}: not a readable zip archive ({exc}); zip the "
                               "folder again and upload it.") from exc
    return sorted(n for n in names if _is_image_name(n, ZIP_IMAGES))


def _extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` to ``dest`` whole: streamed into a hidden sibling folder by
    :func:`~medseg.io.archive.extract_zip` (capped, all-or-nothing), then renamed; when
    another session renamed its copy first, that complete copy is kept."""
    from medseg.io.archive import extract_zip

    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        extract_zip(archive, tmp / "x", max_bytes=MAX_ZIP_BYTES)
        with contextlib.suppress(OSError):  # lost the race: the other copy is complete
            (tmp / "x").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def upload_images(stored: StoredUpload) -> list[Path]:
    """What to open for a stored upload: the file itself, or the image files extracted from
    an image zip (several when the zip holds several). Refuses a lone detached header."""
    path = stored.path
    if _is_image_name(path.name, DETACHED_HEADERS):
        raise UnsupportedFormatError(
            f"{path.name}: a detached header keeps its voxels in a separate data file, which "
            "was not uploaded with it. Upload the header and its data file together as one "
            f"zip (e.g. {Path(path.name).stem}.zip holding both).")
    if not zipfile.is_zipfile(path) or not zip_images(path):
        return [path]  # an image file or a zip of DICOM files: medseg.io reads it directly
    dest = path.parent / "extracted"
    if not dest.is_dir():
        _extract(path, dest)
    found = sorted(p for p in dest.rglob("*") if p.is_file() and
                   _is_image_name(p.name, ZIP_IMAGES) and not p.name.startswith("."))
    if not found:
        raise UnsupportedFormatError(f"{path.name}: the zip holds no image file medseg reads.")
    return found


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


# ---------------------------------------------------------------------------------- PACS
# A PACS series is retrieved into the workspace's PACS cache (``<workspace>/pacs-cache``,
# medseg.pacs.cache: complete series only, resumable) and read from its series folder, the
# only folder such a case may read. The servers come from MEDSEG_PACS_SERVERS (docs/pacs.md).


def pacs_cache(settings: AppSettings) -> Path:
    """The app's PACS cache folder (inside the workspace)."""
    return settings.workspace / "pacs-cache"


def pacs_server_names() -> list[str]:
    """Names of the configured PACS servers; empty when no servers file exists (the PACS
    source then explains how to add one). A malformed file raises its typed error."""
    from medseg.pacs.servers import load_servers, servers_path

    if not servers_path().is_file():
        return []
    return sorted(load_servers())


def pacs_case_source(server: str, record: SeriesRecord) -> CaseSource:
    """The case of a PACS series, keyed by its Series Instance UID (the same series opened
    again, from any server name, finds its annotation)."""
    from app.workspace import CaseSource

    name = record.description or f"{record.modality or 'PACS'} series"
    return CaseSource("pacs", name, f"pacs://{server}/{record.study_uid}/{record.series_uid}",
                      f"pacs:{record.series_uid}", record.series_uid)


def open_pacs_case(source: CaseSource, settings: AppSettings,
                   progress: Progress | None = None) -> Case:
    """Retrieve (or find in the cache) the series ``source`` names and read it, reading only
    inside its cache folder. Nothing is opened unless the series is complete."""
    from app.case import open_case
    from medseg.pacs.uri import pull

    cached = pull(source.ref, cache=pacs_cache(settings), progress=progress)
    folder = resolve_inside(cached.path, (pacs_cache(settings).resolve(),))
    return open_case(source.name, folder, None, roots=(folder,))
