"""Label-map post-processing: largest component, hole filling, minimum component size.

Every function takes and returns an integer label map ``(I, J, K)`` (uint8/uint16, any grid);
connectivity is 26-neighbour in 3D (full). Work is done inside each label's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["PostProcess", "postprocess_labels"]


@dataclass(frozen=True)
class PostProcess:
    """Options, applied per label in this order: ``min_size`` (voxels; smaller components
    become background), ``largest_component`` (keep one component), ``fill_holes`` (enclosed
    background voxels take the label)."""

    largest_component: bool = False
    fill_holes: bool = False
    min_size: int = 0

    @property
    def active(self) -> bool:
        return self.largest_component or self.fill_holes or self.min_size > 0


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    comp, n = ndimage.label(mask, structure=structure)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    sizes[0] = 0
    return comp, sizes


def postprocess_labels(labels: np.ndarray, options: PostProcess) -> np.ndarray:
    """Apply ``options`` to every non-zero label of ``labels`` (modified copy, same dtype)."""
    if not options.active:
        return labels
    out = labels.copy()
    boxes = ndimage.find_objects(out)
    for idx, box in enumerate(boxes):
        if box is None:
            continue
        value = idx + 1
        view = out[box]
        mask = view == value
        if options.min_size > 0 or options.largest_component:
            comp, sizes = _components(mask)
            keep = sizes >= max(options.min_size, 1)
            if options.largest_component and keep.any():
                largest = int(np.argmax(sizes))
                keep = np.zeros_like(keep)
                keep[largest] = True
            view[mask & ~keep[comp]] = 0
            mask = view == value
        if options.fill_holes and mask.any():
            holes = ndimage.binary_fill_holes(mask) & (view == 0)
            view[holes] = value
    return out
