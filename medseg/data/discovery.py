"""Find the cases in a folder laid out as users lay out data: images to annotate, each with the
label maps (references) that belong to it.

:func:`discover` walks a folder (at most :data:`MAX_DEPTH` levels) and decides:

* **Decathlon / nnU-Net raw layout** (a folder holding ``imagesTr``, optionally ``imagesTs``
  and ``labelsTr``): every image of ``imagesTr``/``imagesTs`` is a case (nnU-Net channel files
  ``<case>_0000``, ``_0001``... are one case, its channel 0 opened); ``labelsTr/<case>`` is its
  reference.
* **A DICOM series folder** (a folder whose files are DICOM): one case per image series;
  DICOM-SEG and RTSTRUCT files are references of the series they name
  (ReferencedSeriesSequence / RT referenced series), wherever they lie in the walk.
* **Image files** (NIfTI, NRRD, MetaImage, MGH): a file is a *label map*, not a case, when
  its name says so (a word ``seg``, ``segmentation``, ``label(s)``, ``mask(s)``, ``gt`` in
  its name, split at ``_ - .``, or a word ending in ``mask``, ``seg``, ``label(s)``), when a
  medseg label sidecar (``<name>.labels.json``) sits beside it, or when its content is one
  (whole non-negative numbers, at most :data:`MAX_LABEL_VALUES` distinct values) and it lies
  on the grid of another image of its folder.
  Every other file is an image case.
* **A label map beside an image becomes that case's reference** when both lie on the same
  voxel grid (headers only, :mod:`medseg.data.grid_key`); when several images share the
  grid, the one whose name shares most words with the label map's takes it.
* **A collection folder** (anything else: a folder of cases, like ``data_samples/dcmqi``) is
  not a case: it is walked, and listed in :attr:`Discovery.collections`.

A case's references are ordered best first: name likeness, then a DICOM object naming the
series by UID, then name; :attr:`FoundCase.reference` is the first. Label maps that fit no
image are listed in :attr:`Discovery.unmatched`. Nothing outside ``roots`` is listed or read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.discovery_dicom import scan_dicom_folder
from medseg.data.grid_key import GridKey, file_grid
from medseg.io.roots import Roots, as_roots, is_inside, resolve_inside

__all__ = ["IMAGE_EXT", "LABEL_WORDS", "MAX_DEPTH", "Discovery", "FoundCase", "discover",
           "is_label_name"]

IMAGE_EXT = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz", ".mgh")
#: words that make a file name a label map's
LABEL_WORDS = frozenset({"seg", "segmentation", "segmentations", "label", "labels", "labelmap",
                         "mask", "masks", "gt", "annotation", "annotations"})
#: words that only say "image" (ignored when matching a label map's name to an image's)
_IMAGE_WORDS = frozenset({"image", "img", "ct", "mr", "mri", "vol", "volume", "0000"})
MAX_DEPTH = 4
MAX_LABEL_VALUES = 64
_SIDECAR = ".labels.json"
_LABEL_ENDINGS = ("mask", "masks", "seg", "label", "labels")


@dataclass(frozen=True)
class FoundCase:
    """One case: ``image`` is a file or a DICOM folder (``series``: its SeriesInstanceUID
    when the folder holds several); ``name`` its path relative to the walked folder."""

    name: str
    image: Path
    references: tuple[Path, ...] = ()
    series: str | None = None

    @property
    def reference(self) -> Path | None:
        """The best reference (see the module docstring), or None."""
        return self.references[0] if self.references else None


@dataclass
class Discovery:
    """What :func:`discover` found under ``root``."""

    root: Path
    cases: list[FoundCase] = field(default_factory=list)
    collections: list[Path] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)


@dataclass
class _Image:
    path: Path
    series: str | None = None
    grid: GridKey | None = None
    uid: str | None = None
    refs: list[tuple[tuple[float, int, str], Path]] = field(default_factory=list)


def words(name: str) -> set[str]:
    """Lower-case words of a file name without its extension, split at ``_ - .`` and spaces."""
    low = name.lower()
    for ext in (*IMAGE_EXT, ".dcm"):
        if low.endswith(ext):
            low = low[: -len(ext)]
            break
    return {w for w in re.split(r"[_\-. ]+", low) if w}


def is_label_name(name: str) -> bool:
    """Whether a file name says it is a label map: a word of :data:`LABEL_WORDS`, or a word
    ending in ``mask``, ``seg`` or ``label(s)`` (``brainmask``, ``tumorseg``)."""
    return any(w in LABEL_WORDS or w.endswith(_LABEL_ENDINGS) for w in words(name))


def _stem(name: str) -> str:
    low = name.lower()
    for ext in IMAGE_EXT:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def discover(folder: str | Path, roots: Roots | list[Path] | None = None) -> Discovery:
    """The cases under ``folder`` (see the module docstring), sorted by name.

    Raises:
        PathOutsideRootsError: ``folder`` lies outside ``roots``.
    """
    allowed = as_roots(roots)
    base = resolve_inside(folder, allowed, what="cases folder")
    found = Discovery(root=base)
    walk = _Walk(allowed)
    walk.folder(base, 0)
    images = list(walk.series)
    for home, files in walk.files:
        images += _files(home, files, walk.series, found, allowed)
    images += walk.decathlon(found)
    _attach_dicom_refs(images, walk.dicom_refs, found)
    for img in images:
        refs = tuple(p for _, p in sorted(img.refs, key=lambda r: r[0]))
        found.cases.append(FoundCase(_case_name(img, base), img.path, refs, img.series))
    found.cases.sort(key=lambda c: c.name.lower())
    found.collections = sorted(f for f in walk.walked if f != base and f not in walk.series_dirs
                               and any(f in c.image.parents for c in found.cases))
    found.unmatched.sort()
    return found


def _case_name(img: _Image, base: Path) -> str:
    rel = img.path.relative_to(base) if img.path != base else Path(img.path.name)
    name = _stem(rel.as_posix())
    return f"{name} [{img.series}]" if img.series else name


def _entries(folder: Path, roots: Roots) -> list[Path]:
    try:
        items = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return []
    return [p for p in items if not p.name.startswith(".") and is_inside(p, roots)]


class _Walk:
    """Phase one: collect DICOM series, image files per folder, DICOM references and
    Decathlon folders; nothing is classified yet."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.series: list[_Image] = []
        self.series_dirs: set[Path] = set()
        self.files: list[tuple[Path, list[Path]]] = []
        self.dicom_refs: list[Path] = []
        self.decathlons: list[Path] = []
        self.walked: list[Path] = []

    def folder(self, folder: Path, depth: int) -> None:
        self.walked.append(folder)
        if (folder / "imagesTr").is_dir() or (folder / "imagesTs").is_dir():
            self.decathlons.append(folder)
            return
        entries = _entries(folder, self.roots)
        dicom = scan_dicom_folder(folder, self.roots)
        self.dicom_refs += dicom.references
        several = len(dicom.series) > 1
        for s in dicom.series:
            self.series.append(_Image(folder, s.uid if several else None, s.grid, s.uid))
            self.series_dirs.add(folder)
        files = [p for p in entries if p.is_file() and p.name.lower().endswith(IMAGE_EXT)]
        if files:
            self.files.append((folder, files))
        if dicom.series or depth + 1 > MAX_DEPTH:
            return  # a series folder's sub-folders are not walked
        for sub in (p for p in entries if p.is_dir()):
            self.folder(sub, depth + 1)

    def decathlon(self, found: Discovery) -> list[_Image]:
        out: list[_Image] = []
        for folder in self.decathlons:
            out += _decathlon(folder, self.roots, found)
        return out


def _files(home: Path, files: list[Path], series: list[_Image], found: Discovery,
           roots: Roots) -> list[_Image]:
    """Split the image files of ``home`` into cases and label maps; a label map goes to the
    image on its grid among these files and the DICOM series in ``home`` or its sub-folders."""
    grids = {p: file_grid(p) for p in files}
    labels = [p for p in files if _named_label(p)]
    local = [s for s in series if s.path == home or s.path.parent == home]
    cases: list[_Image] = []
    for p in (p for p in files if p not in labels):
        info = grids[p]
        if info is not None and _shares_grid(p, info[0], grids, labels, local) \
                and _few_values(p, roots):
            labels.append(p)
        else:
            cases.append(_Image(p, grid=None if info is None else info[0]))
    for lab in labels:
        info = grids[lab]
        if info is None or not _attach(lab, info[0], cases + local):
            found.unmatched.append(lab)
    return cases


def _named_label(p: Path) -> bool:
    return is_label_name(p.name) or (p.parent / (_stem(p.name) + _SIDECAR)).is_file()


def _shares_grid(p: Path, grid: GridKey, grids: dict[Path, tuple[GridKey, bool] | None],
                 labels: list[Path], local: list[_Image]) -> bool:
    """Whether another image of the folder (a file not named a label map, or a series) has
    ``p``'s grid."""
    others = [g[0] for q, g in grids.items() if q != p and g is not None and q not in labels]
    others += [img.grid for img in local if img.grid is not None]
    return any(grid.matches(g) for g in others)


def _few_values(path: Path, roots: Roots) -> bool:
    """Whether the voxels are a label map's: whole numbers >= 0 (integer or float storage,
    e.g. a NIfTI with a scale slope), at most :data:`MAX_LABEL_VALUES` distinct values (on
    every second voxel along each axis)."""
    from medseg import io
    from medseg.errors import MedsegError

    try:
        arr = np.asarray(io.read(path, label=False, roots=roots).array)
    except MedsegError:
        return False
    sample = arr[tuple(slice(None, None, 2) for _ in arr.shape)]
    if sample.size == 0 or not np.all(np.isfinite(sample)) or sample.min() < 0:
        return False
    values = np.unique(sample)
    return len(values) <= MAX_LABEL_VALUES and bool(np.all(values == np.round(values)))


def _attach(label: Path, grid: GridKey, candidates: list[_Image]) -> bool:
    """Give ``label`` to the same-grid image(s) whose names share most words with it."""
    fits = [img for img in candidates if img.grid is not None and img.grid.matches(grid)]
    if not fits:
        return False
    lw = words(label.name) - LABEL_WORDS - _IMAGE_WORDS
    scores = [len(lw & (words(img.path.name) - _IMAGE_WORDS)) for img in fits]
    best = max(scores)
    for img, score in zip(fits, scores, strict=True):
        if score == best:
            img.refs.append(((-float(score), 1, label.name.lower()), label))
    return True


def _attach_dicom_refs(images: list[_Image], refs: list[Path], found: Discovery) -> None:
    """A DICOM-SEG / RTSTRUCT goes to the series it names by UID."""
    from medseg.data.discovery_dicom import referenced_series

    by_uid = {img.uid: img for img in images if img.uid}
    for ref in refs:
        targets = [by_uid[u] for u in referenced_series(ref) if u in by_uid]
        for img in targets:
            img.refs.append(((0.0, 0, ref.name.lower()), ref))
        if not targets:
            found.unmatched.append(ref)


def _decathlon(folder: Path, roots: Roots, found: Discovery) -> list[_Image]:
    """``imagesTr``/``imagesTs`` cases with ``labelsTr`` references, matched by case id."""
    labels_dir = folder / "labelsTr"
    labels = {_stem(p.name): p for p in _entries(labels_dir, roots)
              if p.is_file() and p.name.lower().endswith(IMAGE_EXT)} if labels_dir.is_dir() else {}
    used: set[str] = set()
    images: list[_Image] = []
    for sub in ("imagesTr", "imagesTs"):
        d = folder / sub
        if not d.is_dir():
            continue
        cases: dict[str, Path] = {}
        for p in _entries(d, roots):
            if p.is_file() and p.name.lower().endswith(IMAGE_EXT):
                cid = re.sub(r"_\d{4}$", "", _stem(p.name))
                if cid not in cases or p.name < cases[cid].name:
                    cases[cid] = p  # channel 0 first
        for cid, p in sorted(cases.items()):
            img = _Image(p)
            if sub == "imagesTr" and cid in labels:
                img.refs.append(((0.0, 0, ""), labels[cid]))
                used.add(cid)
            images.append(img)
    found.unmatched += [p for cid, p in labels.items() if cid not in used]
    return images
