"""One case: load prediction, reference (and image), compute metrics, locate errors, and hold
everything a report shows in a :class:`CaseReport` (JSON/CSV for machines).

Every array here is a label map or image on the **reference grid** (``[i, j, k]``, LPS geometry
of the reference); a prediction on another grid is refused unless resampling was asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

import medseg
from medseg.errors import GeometryMismatchError, InputNotFoundError
from medseg.io import read
from medseg.io.labels import labels_from_json, read_text_file
from medseg.metrics import (
    LabelMetrics,
    SurfaceDistances,
    evaluate_label_maps,
    per_slice_dice,
    surface_distances,
)
from medseg.metrics.surface import union_crop
from medseg.report.csv_cells import csv_text
from medseg.resample import resample_to
from medseg.volume import Volume, present_values

CONVENTIONS: dict[str, str] = {
    "world_frame": "LPS (DICOM/ITK): x toward the patient's Left, y toward Posterior, "
                   "z toward Superior; millimetres",
    "index_order": "[i, j, k] (nibabel order); k is the slice axis",
    "grid": "all metrics are computed on the reference grid (shape/spacing/origin/direction "
            "under geometry.grid)",
    "volumes": "ml = voxel count x voxel volume (mm^3) / 1000",
    "distances": "surface distances in mm from medseg.metrics.surface_distances (spacing-aware, "
                 "see docs/metrics.md); hd, hd95, assd and nsd as defined there",
    "nsd": "normalised surface Dice at tolerance nsd_tolerance_mm",
    "null": "null in JSON = NaN (undefined, e.g. precision of an empty evaluated mask) or inf "
            "(distance to an empty segmentation); CSV writes nan/inf; flags say which case",
    "display": "figures use the radiological convention: axial and coronal with the patient's "
               "Right on the image's left, sagittal with Anterior on the left, Superior up; "
               "pixels keep their physical size (true aspect ratio)",
}


@dataclass
class CaseInputs:
    """Prediction, reference and optional image, all on the reference grid.

    ``pred`` and ``ref`` hold integer label maps ``(I, J, K)``; ``image`` the intensities for
    display. ``names`` maps every label value to its display name.
    """

    pred: Volume
    ref: Volume
    image: Volume | None
    names: dict[int, str]
    paths: dict[str, str | None]
    grids: dict[str, dict[str, Any]]
    resampling: list[str] = field(default_factory=list)


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def case_name(path: str | Path) -> str | None:
    """Case id of an image file (name without its image extension); ``None`` for other files
    (``.labels.json`` sidecars, ``.raw`` data of ``.mhd`` headers, notes...)."""
    p = Path(path)
    low = p.name.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf):
            return p.name[: -len(suf)]
    return None


def _grid(volume: Volume) -> dict[str, Any]:
    """Geometry summary of a volume (JSON-ready)."""
    return {
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 6) for s in volume.spacing],
        "origin_lps_mm": [round(o, 4) for o in volume.origin],
        "orientation": volume.orientation,
        "direction": np.round(volume.direction, 6).tolist(),
    }


def read_label_names(path: str | Path) -> dict[int, str]:
    """Label names from a JSON file: ``{"labels": {"1": "liver"}}`` or ``{"1": "liver"}``."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: label-name file not found. Pass a JSON file such as "
                                 '{"labels": {"1": "liver"}} with --labels, or leave it out.')
    return labels_from_json(read_text_file(p), str(p))


def _onto_ref(vol: Volume, ref: Volume, what: str, *, label: bool, allow: bool,
              notes: list[str]) -> Volume:
    diffs = vol.grid_differences(ref)
    if not diffs:
        return vol
    try:  # same voxel centres with permuted/flipped axes: exact re-indexing, no interpolation
        conformed = vol.conform_to(ref)
    except GeometryMismatchError:
        pass
    else:
        notes.append(f"{what} re-indexed exactly onto the reference grid (same voxel centres, "
                     f"axes stored as {vol.orientation}, reference {ref.orientation})")
        return conformed
    if not allow:
        raise GeometryMismatchError(
            f"The {what} and the reference are on different voxel grids ({'; '.join(diffs)}). "
            "Pass --resample-to ref to resample it onto the reference grid "
            f"({'nearest neighbour' if label else 'linear'}), or give files on the same grid."
        )
    notes.append(f"{what} resampled onto the reference grid with "
                 f"{'nearest-neighbour' if label else 'linear'} interpolation in world space "
                 f"(--resample-to ref); differences were: {'; '.join(diffs)}")
    return resample_to(vol, ref, label=label)


@contextlib.contextmanager
def _naming(path: str | Path | None, ref_path: str | Path) -> Iterator[None]:
    """Prefix the files to a grid mismatch (``pred.nii.gz vs reference ref.nii.gz: ...``)."""
    try:
        yield
    except GeometryMismatchError as exc:
        raise GeometryMismatchError(f"{path} vs reference {ref_path}: {exc}") from None


def load_case(pred_path: str | Path, ref_path: str | Path, *,
              image_path: str | Path | None = None, labels_path: str | Path | None = None,
              resample_to_ref: bool = False) -> CaseInputs:
    """Read the files of one case and bring them onto the reference grid.

    Label names: the ``labels_path`` JSON wins, then the names stored with the reference,
    then those stored with the prediction, else ``label_<N>``.

    Raises:
        GeometryMismatchError: prediction or image on another grid and not
            ``resample_to_ref``.
    """
    ref = read(ref_path, label=True)
    pred = read(pred_path, label=True)
    image = read(image_path, label=False) if image_path is not None else None
    grids = {"reference": _grid(ref), "prediction": _grid(pred)}
    if image is not None:
        grids["image"] = _grid(image)
    notes: list[str] = []
    with _naming(pred_path, ref_path):
        pred = _onto_ref(pred, ref, "prediction", label=True, allow=resample_to_ref,
                         notes=notes)
    if image is not None:
        with _naming(image_path, ref_path):
            image = _onto_ref(image, ref, "image", label=False, allow=resample_to_ref,
                              notes=notes)
    names: dict[int, str] = {}
    names.update(pred.labels or {})
    names.update(ref.labels or {})
    if labels_path is not None:
        names.update(read_label_names(labels_path))
    present = sorted((set(present_values(np.asarray(pred.array)))
                      | set(present_values(np.asarray(ref.array))))
                     - {0})
    names = {int(v): names.get(int(v), f"label_{int(v)}") for v in present}
    paths = {"prediction": str(Path(pred_path).resolve()),
             "reference": str(Path(ref_path).resolve()),
             "image": str(Path(image_path).resolve()) if image_path is not None else None,
             "labels": str(Path(labels_path).resolve()) if labels_path is not None else None}
    return CaseInputs(pred, ref, image, names, paths, grids, notes)


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars/arrays by Python values, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def file_digest(path: str | None) -> dict[str, Any] | None:
    """Size and SHA-256 of a file (``None`` for no path; folders get only their path)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return {"path": path}
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"path": path, "bytes": p.stat().st_size, "sha256": h.hexdigest()}


@dataclass
class CaseReport:
    """Everything one case report shows. ``surface[label] = (pred_to_ref, ref_to_pred)``
    distances in mm; ``slice_dice[label]`` one Dice per slice along k (NaN where both empty)."""

    case_id: str
    metrics: list[LabelMetrics]
    names: dict[int, str]
    inputs: dict[str, Any]
    geometry: dict[str, Any]
    locations: dict[str, Any]
    surface: dict[int, tuple[np.ndarray, np.ndarray]]
    slice_dice: dict[int, np.ndarray]
    nsd_tolerance_mm: float
    #: what the evaluated map is called in the report's words: "prediction" (a model's
    #: output, medseg evaluate) or "annotation" (a person's, the app's Compare panel)
    subject: str = "prediction"
    created_utc: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                             .strftime("%Y-%m-%dT%H:%M:%SZ"))
    medseg_version: str = medseg.__version__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content of ``report.json`` (NaN written as null)."""
        return _json_safe({
            "case_id": self.case_id,
            "medseg_version": self.medseg_version,
            "created_utc": self.created_utc,
            "nsd_tolerance_mm": self.nsd_tolerance_mm,
            "subject": self.subject,
            "inputs": {k: file_digest(v) for k, v in self.inputs.items()},
            "geometry": self.geometry,
            "conventions": CONVENTIONS,
            "labels": [m.as_dict() for m in self.metrics],
            "locations": self.locations,
            "per_slice_dice_k": {str(k): v for k, v in self.slice_dice.items()},
        })

    def csv_text(self) -> str:
        """``report.csv``: one row per label, the columns of :meth:`LabelMetrics.as_dict`
        (flags joined by ``;``, NaN as ``nan``); text cells neutralised against spreadsheet
        formulas (:mod:`medseg.report.csv_cells`)."""
        rows = [m.as_dict() for m in self.metrics]
        cols = list(rows[0]) if rows else ["label", "name"]
        body = [[self.case_id, *(";".join(v) if isinstance(v, list) else v
                                 for v in (row[c] for c in cols))] for row in rows]
        return csv_text(["case_id", *cols], body)


def per_label_details(pred: np.ndarray, ref: np.ndarray, labels: list[int],
                      spacing: tuple[float, float, float]
                      ) -> tuple[dict[int, SurfaceDistances], dict[int, np.ndarray]]:
    """Surface distances (voxel indices in the full array) and Dice per k-slice of each label.

    ``pred`` and ``ref`` are integer label maps ``(I, J, K)`` on one grid. Each label is
    cropped to the box of its union plus one voxel first (as medseg.metrics does), so the cost
    follows the structures, not the image size.
    """
    boxes_p, boxes_r = ndi.find_objects(pred), ndi.find_objects(ref)
    surfaces: dict[int, SurfaceDistances] = {}
    slice_dice: dict[int, np.ndarray] = {}
    for lab in labels:
        boxes = [b[lab - 1] if lab <= len(b) else None for b in (boxes_p, boxes_r)]
        crop = union_crop(boxes, pred.shape) or tuple(slice(0, 1) for _ in pred.shape)
        p, r = pred[crop] == lab, ref[crop] == lab
        off = np.array([c.start for c in crop], dtype=np.int64)
        sd = surface_distances(p, r, spacing)
        surfaces[lab] = dataclasses.replace(sd, pred_surface_ijk=sd.pred_surface_ijk + off,
                                            ref_surface_ijk=sd.ref_surface_ijk + off)
        full = np.full(pred.shape[2], np.nan)
        full[crop[2]] = per_slice_dice(p, r, axis=2)
        slice_dice[lab] = full
    return surfaces, slice_dice


def compute_case(inputs: CaseInputs, *, nsd_tolerance_mm: float = 2.0,
                 case_id: str = "case", subject: str = "prediction") -> CaseReport:
    """Metrics per label, surface distances, per-slice Dice and error locations.
    ``subject`` names the evaluated map in the report ("prediction" or "annotation")."""
    from medseg.report.locate import locate_errors

    metrics = evaluate_label_maps(inputs.pred, inputs.ref, labels=inputs.names,
                                  nsd_tolerance_mm=nsd_tolerance_mm)
    surfaces, slice_dice = per_label_details(inputs.pred.array, inputs.ref.array,
                                             list(inputs.names), inputs.ref.spacing)
    def named(d: dict[str, Any]) -> dict[str, Any]:
        return {subject if k == "prediction" else k: v for k, v in d.items()}

    geometry = {"grid": _grid(inputs.ref), "inputs": named(inputs.grids),
                "resampling": inputs.resampling or ["none: all inputs on the reference grid"]}
    return CaseReport(case_id=case_id, metrics=metrics, names=dict(inputs.names),
                      inputs=named(dict(inputs.paths)), geometry=geometry, subject=subject,
                      locations=locate_errors(inputs, metrics, surfaces),
                      surface={k: (np.asarray(v.pred_to_ref), np.asarray(v.ref_to_pred))
                               for k, v in surfaces.items()},
                      slice_dice=slice_dice, nsd_tolerance_mm=nsd_tolerance_mm)
