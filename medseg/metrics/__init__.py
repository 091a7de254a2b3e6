"""Spacing-aware segmentation metrics: overlap, volume and surface distances per label.

Pure functions on bool masks / label-map :class:`~medseg.volume.Volume` objects; distances in mm,
volumes in mL. Conventions (surface voxels, HD95, ASSD, NSD, empty masks) follow MONAI's
voxel-based metrics and are documented in ``docs/metrics.md``.
"""

from medseg.metrics.surface import SurfaceDistances, surface_distances, surface_voxels
from medseg.metrics.table import (
    LabelMetrics,
    binary_metrics,
    evaluate_label_maps,
    per_slice_dice,
)

__all__ = [
    "LabelMetrics",
    "SurfaceDistances",
    "binary_metrics",
    "evaluate_label_maps",
    "per_slice_dice",
    "surface_distances",
    "surface_voxels",
]
