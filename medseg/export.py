"""One entry point for clinical exports, shared by the CLI and the app.

``export(mask, reference, fmt, out)`` writes a label map (or a probability map) as

* ``"seg"``: DICOM Segmentation (BINARY, or FRACTIONAL with ``fractional=True``);
* ``"rtstruct"``: RT Structure Set (planar contours);
* ``"stl"`` / ``"obj"``: one surface mesh per label in LPS mm (+ ``summary.json``);
* ``"nifti"``: the selected labels as a NIfTI label map (with a ``.labels.json`` sidecar).

:func:`read_mask` is the import side: it also accepts a DICOM-SEG or RTSTRUCT file, so
``medseg export seg.dcm -r CT/ -f nifti -o seg.nii.gz`` converts a SEG back to a label map.

DICOM formats need ``reference`` read from the DICOM series the mask was made on
(``medseg.io.read(folder)``); the mask must be on that grid (axis permutations/flips are undone
exactly, anything else is a :class:`GeometryMismatchError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, DicomReferenceRequiredError, MedsegError, OutputError
from medseg.io.dicom_seg import Algorithm
from medseg.volume import Volume

__all__ = ["EXPORT_FORMATS", "Algorithm", "export", "read_mask"]

EXPORT_FORMATS = ("seg", "rtstruct", "stl", "obj", "nifti")


def _with_names(mask: Volume, names: Mapping[int, str] | None) -> Volume:
    if not names:
        return mask
    merged = dict(mask.labels or {})
    merged.update({int(k): str(v) for k, v in names.items()})
    return dataclasses.replace(mask, labels=merged)


def _fit_names(mask: Volume, labels: Sequence[int | str] | None, fmt: str, fractional: bool,
               shorten: bool) -> tuple[Volume, Sequence[int | str] | None,
                                       list[dict[str, Any]]]:
    """Check the names of the labels to export for ``fmt`` before anything is written;
    with ``shorten``, rename those that do not fit. Returns the mask (with the names to write),
    the label selection and the list of renamed labels."""
    from medseg.io.export_source import select_labels
    from medseg.io.labels import check_label_names, renamed

    key = "nifti" if fmt == "nifti" else fmt
    if fractional:
        name = _fractional_name(mask, labels)
        fixed = check_label_names({1: name}, key, shorten=shorten)
        return mask, [fixed[1]], [{**r, "label_value": None} for r in renamed({1: name}, fixed)]
    chosen = select_labels(mask, labels)
    fixed = check_label_names(chosen, key, shorten=shorten)
    changes = renamed(chosen, fixed)
    if changes:
        mask = dataclasses.replace(mask, labels={**(mask.labels or {}), **fixed})
    return mask, list(chosen), changes


def _fractional_name(mask: Volume, labels: Sequence[int | str] | None) -> str:
    if labels:
        if len(labels) != 1:
            raise ConfigError("A FRACTIONAL export takes one probability map = one segment; "
                              "pass at most one --label (its name).")
        text = str(labels[0])
        return (mask.labels or {}).get(int(text), text) if text.isdigit() else text
    return (mask.labels or {}).get(1, "probability")


def _dicom_reference(reference: Volume | None, fmt: str) -> Volume:
    if reference is None:
        raise DicomReferenceRequiredError(
            f"A {fmt} export needs the DICOM image series the mask was made on. Pass it as "
            f"reference (CLI: --reference CT_FOLDER/), read with medseg.io.read(folder).")
    from medseg.io.export_source import dicom_source_of

    dicom_source_of(reference, fmt)
    return reference


def _self_check_anonymous(path: Path) -> None:
    import pydicom

    from medseg.io.anonymize import identifying_elements

    left = identifying_elements(pydicom.dcmread(path, stop_before_pixels=True))
    if left:
        path.unlink(missing_ok=True)
        raise ConfigError(f"De-identification of {path.name} left {', '.join(left[:5])}; "
                          "the file was deleted. Please report this as a bug.")


def export(mask: Volume, reference: Volume | None, fmt: str, out: str | Path, *,
           labels: Sequence[int | str] | None = None,
           label_names: Mapping[int, str] | None = None, fractional: bool = False,
           algorithm: Algorithm | None = None, anonymize: bool = False,
           frame: str = "LPS", smooth_iterations: int = 0,
           decimate: float | None = None, shorten_labels: bool = False) -> dict[str, Any]:
    """Export ``mask`` as ``fmt`` to ``out`` and return a JSON-able summary.

    Args:
        mask: label map ``(I, J, K)`` (or, with ``fractional``, float probabilities in [0, 1]).
        reference: source image; required (from DICOM) for ``seg``/``rtstruct``, optional
            (grid check only) for meshes and NIfTI.
        fmt: one of :data:`EXPORT_FORMATS`.
        out: output file (seg, rtstruct, nifti) or folder (stl, obj).
        labels: label values or names to export (default: all present).
        label_names: ``{value: name}`` overriding the names stored with the mask.
        fractional: ``seg`` only: write a FRACTIONAL SEG from a probability map.
        algorithm: algorithm type/name/version recorded in DICOM exports.
        anonymize: de-identify DICOM exports (Basic Profile, Retain UIDs); checked after writing.
        frame, smooth_iterations, decimate: mesh options (see :mod:`medseg.io.mesh`).
        shorten_labels: names that ``fmt`` cannot hold (too long for a DICOM LO, control
            characters...) are shortened (:func:`medseg.io.labels.shorten_label_name`) and
            listed under ``renamed_labels`` in the summary; without it they raise
            :class:`~medseg.errors.LabelNameError` before anything is written.

    Outputs are all-or-nothing: one file written atomically, or a mesh set swapped in whole.
    """
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}.")
    if fractional and fmt != "seg":
        raise ConfigError("--fractional applies to --format seg only.")
    out = Path(out)
    with _naming_the_mask(mask):
        mask = _with_names(mask, label_names)
        labels = list(labels) if labels else None
        mask, labels, changes = _fit_names(mask, labels, fmt, fractional, shorten_labels)
        summary = _export(mask, reference, fmt, out, labels=labels, fractional=fractional,
                          algorithm=algorithm, anonymize=anonymize, frame=frame,
                          smooth_iterations=smooth_iterations, decimate=decimate,
                          changes=changes)
    if shorten_labels:
        summary["renamed_labels"] = changes
    return summary


@contextlib.contextmanager
def _naming_the_mask(mask: Volume) -> Iterator[None]:
    """Prefix the mask's file to an error about it (empty labels, names, grid) that does not
    name it yet; output errors name their output path and pass unchanged."""
    try:
        yield
    except MedsegError as exc:
        src = mask.meta.get("path")
        if not src or isinstance(exc, OutputError) or str(src) in str(exc):
            raise
        raise type(exc)(f"{src}: {exc}") from exc


def _export(mask: Volume, reference: Volume | None, fmt: str, out: Path, *,
            labels: Sequence[int | str] | None, fractional: bool, algorithm: Algorithm | None,
            anonymize: bool, frame: str, smooth_iterations: int, decimate: float | None,
            changes: list[dict[str, Any]]) -> dict[str, Any]:
    if fmt in ("seg", "rtstruct"):
        ref = _dicom_reference(reference, "DICOM-SEG" if fmt == "seg" else "RTSTRUCT")
        if fmt == "seg" and fractional:
            from medseg.io.dicom_seg import write_dicom_seg_fractional

            summary = write_dicom_seg_fractional({_fractional_name(mask, labels): mask}, ref, out,
                                                 algorithm=algorithm, anonymize=anonymize)
        elif fmt == "seg":
            from medseg.io.dicom_seg import write_dicom_seg

            summary = write_dicom_seg(mask, ref, out, labels=labels, algorithm=algorithm,
                                      anonymize=anonymize)
        else:
            from medseg.io.rtstruct import write_rtstruct

            summary = write_rtstruct(mask, ref, out, labels=labels, algorithm=algorithm,
                                     anonymize=anonymize)
        if anonymize:
            _self_check_anonymous(out)
        return summary
    if reference is not None:
        from medseg.io.export_source import align_to_reference

        mask = align_to_reference(mask, reference, what="mask")
    if fmt in ("stl", "obj"):
        from medseg.io.mesh import write_meshes

        return write_meshes(mask, out, fmt, labels=list(labels) if labels else None,
                            frame=frame, smooth_iterations=smooth_iterations,
                            decimate=decimate, renamed_labels=changes)
    return _write_nifti(mask, out, labels)


def _write_nifti(mask: Volume, out: Path, labels: Sequence[int | str] | None) -> dict[str, Any]:
    from medseg import io
    from medseg.io.atomic import check_writable, staged_files
    from medseg.io.export_source import select_labels

    if not out.name.lower().endswith((".nii", ".nii.gz")):
        raise ConfigError(f"{out}: a NIfTI export needs a .nii.gz or .nii file name.")
    chosen = select_labels(mask, labels)
    keep = np.isin(mask.array, list(chosen))
    arr = np.where(keep, mask.array, 0).astype(mask.array.dtype)
    check_writable(out.parent, file=out)
    with staged_files(out.parent) as stage:  # the image and its label sidecar, together
        io.write(mask.with_array(arr, labels=chosen), stage / out.name)
    return {"path": str(out), "format": "NIFTI",
            "labels": [{"label_value": v, "name": n, "voxels": int(np.sum(mask.array == v))}
                       for v, n in chosen.items()]}


def read_mask(path: str | Path, reference: Volume | None = None, *,
              fractional: bool = False) -> Volume:
    """Read a mask for export: a label map file, or a DICOM-SEG / RTSTRUCT to import.

    DICOM-SEG segments become label values = segment numbers (placed on ``reference`` when
    given, else on the SEG's own grid); RTSTRUCT ROIs become values = ROI numbers on
    ``reference`` (required). Overlapping segments raise :class:`OverlappingSegmentsError`.
    """
    from medseg import io

    p = Path(path)
    kind = _dicom_object_kind(p)
    if kind == "seg":
        from medseg.io.dicom_seg import merge_segments, read_dicom_seg

        return merge_segments(read_dicom_seg(p, reference))
    if kind == "rtstruct":
        from medseg.io.dicom_seg import merge_segments
        from medseg.io.rtstruct import read_rtstruct

        if reference is None:
            raise DicomReferenceRequiredError(
                f"{p} is an RTSTRUCT: its contours need the image grid they were drawn on. "
                "Pass the DICOM series with --reference.")
        rois = read_rtstruct(p, reference)
        return merge_segments(rois, [r.meta["roi"]["number"] for r in rois])
    return io.read(p, label=not fractional)


def _dicom_object_kind(path: Path) -> str | None:
    """``"seg"``, ``"rtstruct"`` or ``None`` from the SOP class of a DICOM file."""
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] != b"DICM":
        return None
    import pydicom

    from medseg.io.dicom_seg_read import SEG_SOP_CLASSES
    from medseg.io.rtstruct import RTSTRUCT_SOP_CLASS

    sop = str(pydicom.dcmread(path, stop_before_pixels=True,
                              specific_tags=["SOPClassUID"]).get("SOPClassUID", ""))
    return "seg" if sop in SEG_SOP_CLASSES else "rtstruct" if sop == RTSTRUCT_SOP_CLASS else None
