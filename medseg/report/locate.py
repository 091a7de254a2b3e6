"""Where a case's errors are: the worst boundary point and the slices with most error voxels.

The result is a JSON-ready dict stored in ``report.json`` under ``locations`` and used to pick
the slices the figures render. Slices are given twice: as array index (axis ``i``/``j``/``k``
and index) and as display-frame index (see :mod:`medseg.report.slices`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.report.slices import (
    VIEW_AXIS,
    VIEWS,
    DisplayFrame,
    display_frame,
    error_counts,
    error_slices,
    foreground_centre,
    worst_boundary_point,
)

if TYPE_CHECKING:
    from medseg.metrics import LabelMetrics, SurfaceDistances
    from medseg.report.case import CaseInputs


def _slices_entry(frame: DisplayFrame, display: dict[str, int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for view in VIEWS:
        axis, index = frame.array_index(view, display[view])
        out[view] = {"axis": axis, "index": index, "display_index": display[view]}
    return out


def _worst_label(metrics: list[LabelMetrics]) -> int | None:
    """Label with the largest finite Hausdorff distance (ties: lowest label value)."""
    best: tuple[float, int] | None = None
    for m in metrics:
        if m.hd is not None and math.isfinite(m.hd) and (best is None or m.hd > best[0]):
            best = (float(m.hd), int(m.label))
    return None if best is None else best[1]


def locate_errors(inputs: CaseInputs, metrics: list[LabelMetrics],
                  surfaces: Mapping[int, SurfaceDistances]) -> dict[str, Any]:
    """Worst boundary point (over all labels) and largest-error slices of one case.

    ``worst_boundary`` holds the label, the voxel ``ijk`` and its LPS position, the distance
    (mm) from that boundary voxel to the other segmentation's boundary and which boundary it
    lies on; ``None`` when no label has both segmentations non-empty (then the figure uses
    the centre of the reference foreground). ``largest_error`` holds, per view, the slice
    with most voxels where prediction and reference disagree, with their count and volume.
    """
    ref, pred = inputs.ref, inputs.pred
    frame = display_frame(ref)
    lab = _worst_label(metrics)
    worst = worst_boundary_point(surfaces[lab], lab) if lab is not None and lab in surfaces \
        else None
    centre_ijk = worst.ijk if worst is not None else foreground_centre(ref.array)
    centre = frame.to_display(centre_ijk)
    wb_display = {view: centre[VIEW_AXIS[view]] for view in VIEWS}
    worst_entry: dict[str, Any] | None = None
    if worst is not None:
        worst_entry = {
            "label": worst.label, "name": inputs.names.get(worst.label, f"label_{worst.label}"),
            "ijk": list(worst.ijk),
            "world_lps_mm": np.round(ref.index_to_world(np.array(worst.ijk)), 2).tolist(),
            "distance_mm": round(worst.distance_mm, 4), "on_boundary_of": worst.side,
        }
    err_display = error_slices(pred.array, ref.array, frame)
    counts = error_counts(pred.array, ref.array, frame, err_display)
    voxel_ml = float(np.prod(ref.spacing)) / 1000.0
    largest = _slices_entry(frame, err_display)
    for view in VIEWS:
        largest[view]["error_voxels"] = counts[view]
        largest[view]["error_ml"] = round(counts[view] * voxel_ml, 4)
    return {
        "worst_boundary": worst_entry,
        "worst_boundary_slices": _slices_entry(frame, wb_display),
        "worst_boundary_display_voxel": list(centre),
        "largest_error": largest,
        "total_error_voxels": int(np.count_nonzero(pred.array != ref.array)),
        "display": {"orientation": ref.orientation, "obliquity_deg": frame.obliquity_deg,
                    "display_spacing_mm": list(frame.spacing)},
    }
