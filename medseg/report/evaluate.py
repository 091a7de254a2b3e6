"""Case reports end to end: figures for one case and the four output files.

``DIR/report.json`` (machines), ``DIR/report.csv`` (one row per label), ``DIR/report.html``
(self-contained) and ``DIR/report.pdf``. The four are one output: all are rendered in memory
first, then written into a folder built beside ``DIR`` and swapped in whole
(:func:`medseg.io.atomic.atomic_dir`), so ``DIR`` never holds a partial or mixed set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medseg.io.atomic import OutputSet, atomic_dir, check_target_folder, write_bytes_atomic
from medseg.report import figures as F
from medseg.report.case import CaseInputs, CaseReport, case_name, compute_case, load_case
from medseg.report.overlay import overlay_panels
from medseg.report.render_html import FigureItem, case_html
from medseg.report.render_pdf import case_pdf
from medseg.report.slices import VIEWS, display_frame

#: A case-report folder: an existing one is replaced as a whole, anything else is refused.
REPORT_SET = OutputSet("case report", "report.json",
                       ("report.json", "report.csv", "report.html", "report.pdf"))

ORIENTATION_NOTE = ("Reference contours cyan (wide), prediction contours orange (thin, on top): "
                    "a cyan line alone is a missed boundary, an orange line alone a predicted "
                    "one, both together agree. Radiological convention: axial and coronal "
                    "views show the patient's right on the image's left, the sagittal view "
                    "shows anterior on the left; superior is up. Pixels keep their physical "
                    "size (true aspect ratio).")


def orientation_note(subject: str = "prediction") -> str:
    """:data:`ORIENTATION_NOTE` naming the evaluated map ``subject`` ("annotation"...)."""
    if subject == "prediction":
        return ORIENTATION_NOTE
    return ORIENTATION_NOTE.replace("prediction contours", f"{subject} contours").replace(
        "an orange line alone a predicted one", f"an orange line alone one only the {subject} "
        "has")


def _slice_notes(entry: dict[str, dict[str, object]], extra: str = "") -> dict[str, str]:
    out = {}
    for view in VIEWS:
        e = entry[view]
        note = f"{e['axis']} = {e['index']}"
        if extra and extra in e:
            note += f", {e[extra]} error voxels"
        out[view] = note
    return out


def overlay_figures(inputs: CaseInputs, report: CaseReport) -> list[FigureItem]:
    """The two orthogonal-view overlays: worst boundary point and largest error volume."""
    ref, frame = inputs.ref, display_frame(inputs.ref)
    canon_ref, canon_pred = frame.canonical(ref.array), frame.canonical(inputs.pred.array)
    if inputs.image is not None:
        background = frame.canonical(inputs.image.array)
        window: tuple[float, float] | None = F.intensity_window(inputs.image.array)
        bg_note = "on the image"
    else:
        background, window, bg_note = canon_ref, None, "on the reference mask (grey)"
    labels = sorted(report.names)
    loc = report.locations
    notes = [f"grid {ref.orientation}, spacing {' x '.join(f'{v:g}' for v in ref.spacing)} mm",
             "true physical aspect ratio", "radiological view: patient's right",
             "on image left (axial, coronal);", "anterior on left (sagittal)",
             "dashed lines: where the other views cut"]
    if frame.obliquity_deg > 0.5:
        notes.insert(1, f"oblique by {frame.obliquity_deg:.1f} deg: nearest patient axes")
    wb = loc["worst_boundary"]
    wb_slices = {v: loc["worst_boundary_slices"][v]["display_index"] for v in VIEWS}
    marker: tuple[int, int, int] | None = None
    if wb:
        title = (f"Worst boundary error: {F.label_text(wb['name'], 40)} (label {wb['label']}), "
                 f"{wb['distance_mm']:.1f} mm")
        side = report.subject if wb["on_boundary_of"] == "prediction" else wb["on_boundary_of"]
        caption = (f"Slices through the {side} boundary voxel ijk={wb['ijk']} "
                   f"(LPS {wb['world_lps_mm']} mm) that lies {wb['distance_mm']:.2f} mm from "
                   f"the other boundary (the Hausdorff distance of this label), {bg_note}. ")
        v = loc["worst_boundary_display_voxel"]
        marker = (int(v[0]), int(v[1]), int(v[2]))
    else:
        title = "Worst boundary error: none (no label present in both segmentations)"
        caption = f"Slices through the centre of the reference foreground, {bg_note}. "
    fig1 = overlay_panels(background, canon_pred, canon_ref, frame, wb_slices, labels, title,
                            window=window, marker=marker, notes=notes, subject=report.subject,
                            panel_notes=_slice_notes(loc["worst_boundary_slices"]))
    le = loc["largest_error"]
    le_slices = {v: le[v]["display_index"] for v in VIEWS}
    fig2 = overlay_panels(background, canon_pred, canon_ref, frame, le_slices, labels,
                            "Largest error volume: slices with most FP+FN voxels",
                            window=window, notes=notes, subject=report.subject,
                            panel_notes=_slice_notes(le, "error_voxels"))
    caption2 = (f"In each view, the slice holding the most voxels where {report.subject} and "
                f"reference disagree (any label; {loc['total_error_voxels']} such voxels in "
                f"the volume), {bg_note}. ")
    note = orientation_note(report.subject)
    return [FigureItem("worst_boundary", "Worst boundary error", caption + note, fig1),
            FigureItem("largest_error", "Largest error volume", caption2 + note, fig2)]


def case_figures(inputs: CaseInputs, report: CaseReport) -> list[FigureItem]:
    """Every figure of a case report, in page order."""
    names = report.names
    items = overlay_figures(inputs, report)
    if not names:  # nothing segmented in either map: the charts would be empty
        return items
    hd95 = {m.label: m.hd95 for m in report.metrics}
    items.append(FigureItem(
        "surface_histograms", "Surface-distance histograms",
        f"Per label: distances (mm) from each {report.subject} boundary voxel to the reference "
        "boundary (orange) and back (cyan); dashed = HD95, dotted = NSD tolerance.",
        F.surface_histograms(names, report.surface, hd95, report.nsd_tolerance_mm,
                             subject=report.subject)))
    k_dir = inputs.ref.orientation[2]
    items.append(FigureItem(
        "per_slice_dice", "Dice per slice",
        f"Dice on each slice along k (array axis 2, increasing toward {k_dir}); missing/grey "
        "where the label is absent from both segmentations on that slice.",
        F.slice_dice_figure(names, report.slice_dice, f"k, toward {k_dir}")))
    items.append(FigureItem(
        "volumes", "Volumes", f"Reference and {report.subject} volume per label (ml).",
        F.volumes_figure(names, {m.label: m.volume_pred_ml for m in report.metrics},
                         {m.label: m.volume_ref_ml for m in report.metrics},
                         subject=report.subject)))
    return items


def write_case_report(inputs: CaseInputs, report: CaseReport, out_dir: str | Path, *,
                      back_link: str | None = None) -> dict[str, Path]:
    """Write report.json, report.csv, report.html and report.pdf into ``out_dir``, all or
    none: ``out_dir`` must be missing, empty or an earlier case report (replaced whole);
    anything else raises :class:`~medseg.errors.OutputError` before any work."""
    out = Path(out_dir)
    check_target_folder(out, REPORT_SET)
    figs = case_figures(inputs, report)
    data = {"json": (json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n").encode(),
            "csv": report.csv_text().encode("utf-8"),
            "html": case_html(report, figs, back_link=back_link).encode("utf-8"),
            "pdf": case_pdf(report, figs)}
    with atomic_dir(out, REPORT_SET) as stage:
        for kind, content in data.items():
            write_bytes_atomic(stage / f"report.{kind}", content)
    return {kind: out / f"report.{kind}" for kind in data}


def evaluate_case(pred: str | Path, ref: str | Path, out_dir: str | Path, *,
                  image: str | Path | None = None, labels: str | Path | None = None,
                  nsd_tolerance_mm: float = 2.0, resample_to: str | None = None,
                  case_id: str | None = None, back_link: str | None = None) -> CaseReport:
    """Evaluate one prediction file against one reference file and write the report.

    Args:
        pred, ref: label-map files (any format :func:`medseg.io.read` reads).
        out_dir: folder for ``report.{json,csv,html,pdf}`` (created; see
            :func:`write_case_report` for an existing one).
        image: optional image the overlays are drawn on (else the reference mask).
        labels: optional JSON of label names.
        nsd_tolerance_mm: tolerance of the normalised surface Dice.
        resample_to: ``None`` (grids must match) or ``"ref"`` (resample prediction and image
            onto the reference grid; nearest neighbour for the prediction).
        case_id: name shown in the report (default: the prediction's file name without
            its extension).
    """
    if resample_to not in (None, "ref"):
        raise ValueError(f"resample_to must be None or 'ref', got {resample_to!r}")
    check_target_folder(out_dir, REPORT_SET)  # refuse a bad --out before the work
    inputs = load_case(pred, ref, image_path=image, labels_path=labels,
                       resample_to_ref=resample_to == "ref")
    cid = case_id or case_name(pred) or Path(pred).name
    report = compute_case(inputs, nsd_tolerance_mm=nsd_tolerance_mm, case_id=cid)
    write_case_report(inputs, report, out_dir, back_link=back_link)
    return report


def mean_dice(report: CaseReport) -> float:
    """Mean Dice over the labels of a case (NaN when there are none)."""
    vals = [m.dice for m in report.metrics if np.isfinite(m.dice)]
    return float(np.mean(vals)) if vals else float("nan")
