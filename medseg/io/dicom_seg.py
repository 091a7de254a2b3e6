"""DICOM Segmentation (SEG) objects: writer (highdicom) and reader (pydicom, geometry-exact).

Writer conventions:

* one segment per exported label, segment numbers ``1..N`` in ascending label-value order
  (the original label value is kept in the export summary, not in the file);
* ``SegmentLabel`` = label name, SNOMED CT category/type (+ laterality) from
  :mod:`medseg.io.codes`, algorithm type MANUAL / SEMIAUTOMATIC / AUTOMATIC with an Algorithm
  Identification (name, version, family "Artificial Intelligence") for the last two;
* BINARY by default; FRACTIONAL (PROBABILITY, 8 bit, max 255) from probability Volumes;
* one multi-frame instance, empty frames omitted (highdicom default); **empty segments are
  skipped with a warning** (they would be described but own no frame, which some viewers
  reject); all segments empty raises :class:`EmptySegmentationError`;
* the mask must be on the reference series' voxel grid (:func:`align_to_reference`).

Reader: :func:`read_dicom_seg` places every frame by its own ImagePositionPatient and the
shared orientation/spacing, either onto a given reference grid or onto the grid spanned by the
SEG's frames; each segment is returned separately (overlaps are kept).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.errors import ConfigError, EmptySegmentationError, UnsupportedFormatError
from medseg.io.atomic import atomic_path
from medseg.io.codes import coding_for_label
from medseg.io.export_source import (
    align_to_reference,
    clip_lo,
    declare_character_set,
    prepare_source,
    select_labels,
)
from medseg.io.labels import check_label_names, display_name, label_name_problem
from medseg.volume import Volume

__all__ = [
    "ALGORITHM_TYPES",
    "Algorithm",
    "merge_segments",
    "person_name",
    "read_dicom_seg",
    "write_dicom_seg",
    "write_dicom_seg_fractional",
]

ALGORITHM_TYPES = ("manual", "semiautomatic", "automatic")

#: Display colours (RGB) cycled over segments.
PALETTE = [(221, 130, 101), (144, 238, 144), (0, 151, 206), (216, 101, 79), (183, 156, 220),
           (241, 214, 145), (128, 174, 128), (250, 250, 225), (177, 122, 101), (111, 184, 210),
           (255, 181, 158), (220, 245, 20), (230, 220, 70), (200, 200, 235), (250, 210, 210)]


def person_name(text: str) -> str:
    """A person's name as a DICOM PN value (``Family^Given Middle``).

    ``Doe^Jane`` is kept as given; ``Doe, Jane`` becomes ``Doe^Jane``; ``Jane Q Doe``
    becomes ``Doe^Jane Q`` (the last word taken as the family name); a single word (a login
    name) is a family name alone. Raises :class:`ConfigError` for text a PN cannot hold
    (backslash, ``=``, control characters, a name group over 64 characters, empty)."""
    raw = " ".join(text.split())
    bad = next((ch for ch in raw if ch in "\\=" or ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None or not raw:
        why = "is empty" if not raw else f"holds {bad!r}"
        raise ConfigError(f"Annotator name {display_name(repr(text), 80)} {why}, which a DICOM "
                          "person name cannot hold; give a plain name such as 'Jane Doe' or "
                          "'Doe^Jane' (--annotator, or the app's Annotator field).")
    if "^" in raw:
        pn = raw
    elif "," in raw:
        family, _, first = raw.partition(",")
        pn = f"{family.strip()}^{first.strip()}"
    elif " " in raw:
        *given, family = raw.split(" ")
        pn = f"{family}^{' '.join(given)}"
    else:
        pn = raw
    if len(pn.encode("utf-8")) > 64:
        raise ConfigError(f"Annotator name {display_name(repr(text), 80)} is longer than the "
                          "64 bytes of a DICOM person name; give a shorter name (--annotator).")
    return pn


@dataclass(frozen=True)
class Algorithm:
    """Who/what made the segmentation: ``type`` is manual, semiautomatic or automatic;
    ``name``/``version`` identify the algorithm (model); ``creator`` is the person who made
    or corrected it (the annotator), written as the DICOM-SEG ContentCreatorName and the
    RTSTRUCT ROIInterpreter of every ROI, as a PN (:func:`person_name`); blank when
    anonymised."""

    type: str = "automatic"
    name: str = "medseg"
    version: str | None = None
    creator: str | None = None

    @property
    def creator_pn(self) -> str | None:
        """``creator`` as a DICOM PN, or None when no creator is known."""
        return None if not self.creator else person_name(self.creator)

    def __post_init__(self) -> None:
        if self.type not in ALGORITHM_TYPES:
            raise ConfigError(f"Algorithm type {self.type!r} is not one of "
                              f"{', '.join(ALGORITHM_TYPES)}.")
        for what, text in (("name", self.name), ("version", self.version)):
            problem = None if text is None else label_name_problem(text, "seg")
            if problem:  # both are DICOM LO values, with the rules of a SegmentLabel
                raise ConfigError(
                    f"Algorithm {what} {display_name(repr(text), 80)} {problem} in a DICOM LO "
                    f"value (AlgorithmName/Version, ManufacturerModelName); give a plain "
                    f"{what} of at most 64 bytes (--model-{what}).")
        _ = self.creator_pn  # refuse a name a PN cannot hold before anything is written

    @property
    def resolved_version(self) -> str:
        if self.version:
            return self.version
        from medseg import __version__

        return __version__


@dataclass
class _Segment:
    value: int
    name: str
    data: npt.NDArray[Any]  # (I, J, K) bool or float32 in [0, 1], on the reference grid


def _description(number: int, seg: _Segment, algorithm: Algorithm) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    coding = coding_for_label(seg.name)
    ident = None
    if algorithm.type != "manual":
        ident = hd.AlgorithmIdentificationSequence(
            name=algorithm.name, version=algorithm.resolved_version,
            family=codes.cid7162.ArtificialIntelligence)
    desc = hd.seg.SegmentDescription(
        segment_number=number, segment_label=seg.name,
        segmented_property_category=coding.category, segmented_property_type=coding.type,
        algorithm_type=algorithm.type.upper(), algorithm_identification=ident,
        display_color=hd.color.CIELabColor.from_rgb(*PALETTE[(number - 1) % len(PALETTE)]))
    if coding.modifier is not None:
        item = desc.SegmentedPropertyTypeCodeSequence[0]
        item.SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept(
            coding.modifier.value, coding.modifier.scheme_designator, coding.modifier.meaning)]
    return desc


def _frames(arr: npt.NDArray[Any], frame_numbers: list[int] | None) -> npt.NDArray[Any]:
    """(I, J, K[, S]) volume -> (frames, rows=J, columns=I[, S]) in source frame order."""
    out = np.moveaxis(arr, (0, 1, 2), (2, 1, 0))
    if frame_numbers is not None:
        order = np.argsort(frame_numbers)
        out = out[order]
    return np.ascontiguousarray(out)


def _write(segments: list[_Segment], reference: Volume, out: str | Path, *,
           fractional: bool, algorithm: Algorithm, anonymize: bool,
           series_number: int, series_description: str) -> dict[str, Any]:
    import highdicom as hd

    src = prepare_source(reference, "DICOM-SEG")
    kept = [s for s in segments if np.any(s.data)]
    skipped = [s.name for s in segments if not np.any(s.data)]
    if skipped:
        warnings.warn(f"DICOM-SEG: skipping empty segment(s) {', '.join(skipped)} "
                      "(no voxel set on this grid).", stacklevel=3)
    if not kept:
        raise EmptySegmentationError(
            "Every selected label is empty on the reference grid, so the DICOM-SEG would hold "
            "no segment. Check the label selection (--label) and that the mask belongs to this "
            "series.")
    frame_numbers = reference.meta["dicom"].frame_numbers
    n_frames = int(src.datasets[0].get("NumberOfFrames", 0)) if src.multiframe else 0
    if frame_numbers is not None and sorted(frame_numbers) != list(range(1, n_frames + 1)):
        raise UnsupportedFormatError(
            f"The multi-frame reference uses {len(frame_numbers)} of its {n_frames} frames as "
            "slices; a DICOM-SEG must map onto whole source images. Export as RTSTRUCT or "
            "NIfTI instead.")
    if fractional:
        stacked = np.stack([np.clip(s.data, 0, 1).astype(np.float32) for s in kept], axis=-1)
        pixels = _frames(stacked, frame_numbers)
    else:
        dtype = np.uint8 if len(kept) < 256 else np.uint16
        labelmap = np.zeros(reference.shape, dtype=dtype)
        for number, seg in enumerate(kept, start=1):
            labelmap[seg.data.astype(bool)] = number
        pixels = _frames(labelmap, frame_numbers)
    sources = src.datasets[:1] if src.multiframe else src.datasets
    with warnings.catch_warnings():  # about the *source's* single-component patient names
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        seg_ds = _segmentation(hd, sources, pixels, kept, fractional, algorithm, series_number,
                               series_description)
    if anonymize:
        from medseg.io.anonymize import anonymize_dataset

        anonymize_dataset(seg_ds)
    declare_character_set(seg_ds)
    with atomic_path(out) as tmp:
        seg_ds.save_as(tmp)
    return {"path": str(out), "format": "DICOM-SEG",
            "segmentation_type": "FRACTIONAL" if fractional else "BINARY",
            "sop_instance_uid": str(seg_ds.SOPInstanceUID), "frames": int(seg_ds.NumberOfFrames),
            "segments": [_summary(n, s) for n, s in enumerate(kept, 1)],
            "skipped_empty": skipped, "derived_uids": src.derived, "anonymized": anonymize,
            "content_creator": None if anonymize else algorithm.creator_pn}


def _segmentation(hd: Any, sources: list[Any], pixels: npt.NDArray[Any], kept: list[_Segment],
                  fractional: bool, algorithm: Algorithm, series_number: int,
                  series_description: str) -> Any:
    """The highdicom Segmentation of ``pixels`` (frames, rows, cols[, segments])."""
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels,
        segmentation_type="FRACTIONAL" if fractional else "BINARY",
        segment_descriptions=[_description(n, s, algorithm) for n, s in enumerate(kept, 1)],
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medseg", manufacturer_model_name=algorithm.name,
        software_versions=algorithm.resolved_version, device_serial_number="0",
        content_label="SEGMENTATION", content_description=clip_lo(series_description),
        content_creator_name=algorithm.creator_pn, series_description=clip_lo(series_description))


def _summary(number: int, seg: _Segment) -> dict[str, Any]:
    coding = coding_for_label(seg.name)
    return {"segment_number": number, "label_value": seg.value, "name": seg.name,
            "category": coding.category.meaning, "type": f"SCT {coding.type.value} "
            f"{coding.type.meaning}" + (f" ({coding.modifier.meaning})" if coding.modifier else ""),
            "voxels": int(np.count_nonzero(seg.data))}


def write_dicom_seg(mask: Volume, reference: Volume, out: str | Path, *,
                    labels: Sequence[int | str] | None = None,
                    algorithm: Algorithm | None = None, anonymize: bool = False,
                    series_number: int = 300,
                    series_description: str = "medseg segmentation") -> dict[str, Any]:
    """Write the labels of ``mask`` as a BINARY multi-segment DICOM-SEG referencing ``reference``.

    Args:
        mask: label map (integer voxels, names in ``mask.labels``) on the reference grid.
        reference: the source image Volume read from DICOM (``meta["dicom"]`` a DicomSource).
        out: output ``.dcm`` path (written atomically).
        labels: values or names to export (default: every label present). Their names must
            fit a SegmentLabel (:func:`medseg.io.labels.check_label_names`, checked before
            anything is written); non-ASCII names are written as UTF-8 (ISO_IR 192).
        algorithm: segmentation algorithm identification (default automatic, "medseg").
        anonymize: de-identify the output (see :mod:`medseg.io.anonymize`).

    Returns:
        a JSON-able summary (segments with numbers, codes and voxel counts; skipped empties).
    """
    mask = align_to_reference(mask, reference, what="mask")
    chosen = check_label_names(select_labels(mask, labels), "seg")
    segments = [_Segment(v, n, mask.array == v) for v, n in chosen.items()]
    return _write(segments, reference, out, fractional=False,
                  algorithm=algorithm or Algorithm(), anonymize=anonymize,
                  series_number=series_number, series_description=series_description)


def write_dicom_seg_fractional(probabilities: Mapping[str, Volume], reference: Volume,
                               out: str | Path, *, algorithm: Algorithm | None = None,
                               anonymize: bool = False, series_number: int = 300,
                               series_description: str = "medseg probabilities"
                               ) -> dict[str, Any]:
    """Write probability maps (``{name: Volume of float in [0, 1]}``) as a FRACTIONAL SEG.

    Values are stored as PROBABILITY with 8 bits (``round(p * 255)``); each map must be on the
    reference grid. Maps that are zero everywhere are skipped with a warning.
    """
    check_label_names(dict(enumerate(probabilities, start=1)), "seg")
    segments = []
    for number, (name, vol) in enumerate(probabilities.items(), start=1):
        vol = align_to_reference(vol, reference, what=f"probability map {name!r}")
        data = np.asarray(vol.array, dtype=np.float32)
        if not np.all(np.isfinite(data)) or data.min() < 0 or data.max() > 1:
            raise ConfigError(f"Probability map {name!r} must hold values in [0, 1] "
                              f"(found {np.nanmin(data):.3g}..{np.nanmax(data):.3g}); "
                              "pass probabilities, not logits or a label map.")
        segments.append(_Segment(number, name, data))
    return _write(segments, reference, out, fractional=True,
                  algorithm=algorithm or Algorithm(), anonymize=anonymize,
                  series_number=series_number, series_description=series_description)


def merge_segments(segments: Sequence[Volume], values: Sequence[int] | None = None) -> Volume:
    """Merge binary segment Volumes (same grid) into one label map.

    ``values[n]`` is the label value of ``segments[n]`` (default: its SEG segment number).
    Raises :class:`OverlappingSegmentsError` when two segments share a voxel.
    """
    from medseg.errors import OverlappingSegmentsError

    if not segments:
        raise EmptySegmentationError("No segments to merge.")
    first = segments[0]
    out = np.zeros(first.shape, dtype=np.uint16)
    names: dict[int, str] = {}
    for n, seg in enumerate(segments):
        seg.check_same_grid(first, what=f"segment {n + 1}", reference="first segment")
        value = int(values[n]) if values is not None else int(
            seg.meta.get("segment", {}).get("number", n + 1))
        name = (seg.labels or {}).get(1, f"segment_{value}")
        inside = np.asarray(seg.array) > 0
        clash = inside & (out > 0)
        if clash.any():
            other = names[int(out[clash][0])]
            raise OverlappingSegmentsError(
                f"Segments {other!r} and {name!r} overlap in {int(clash.sum())} voxels, so they "
                "cannot share one label map. Keep them as separate masks (the list that "
                "read_dicom_seg returns) or export them one by one.")
        out[inside] = value
        names[value] = name
    dtype = np.uint8 if out.max() <= 255 else np.uint16
    return first.with_array(out.astype(dtype), labels=names)


def read_dicom_seg(path: str | Path, reference: Volume | None = None) -> list[Volume]:
    """Decode a DICOM-SEG into one Volume per segment (see :mod:`medseg.io.dicom_seg_read`)."""
    from medseg.io.dicom_seg_read import read_segments

    return read_segments(path, reference)
