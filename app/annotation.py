"""The editable annotation of a case: a label table and a label map with undo/redo.

The label map ``array`` lives on the **display grid** (the case image exactly reoriented to
LPS, ``Case.image_lps``, indexed ``[i, j, k]``); :meth:`Annotation.to_volume` brings it back to
the image's own grid exactly (``Volume.conform_to``) for saving and export. Every edit is one
:class:`Patch` (the changed bounding box before and after), so undo/redo costs memory in
proportion to the edit, not to the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app import render
from medseg.errors import MedsegError
from medseg.volume import Volume

MAX_UNDO = 50
#: Names offered when adding a label (any other name can be typed).
COMMON_LABELS = ("liver", "spleen", "kidney_right", "kidney_left", "pancreas", "stomach",
                 "gallbladder", "aorta", "lung_right", "lung_left", "heart", "bladder",
                 "tumour", "lesion", "oedema", "necrosis")


class AnnotationError(MedsegError):
    """An annotation edit that cannot be applied (unknown label, duplicate name...)."""


@dataclass
class LabelDef:
    """One named label: its value in the label map and its overlay colour (RGB 0-255)."""

    value: int
    name: str
    color: tuple[int, int, int]

    def as_dict(self) -> dict[str, object]:
        return {"value": self.value, "name": self.name, "color": list(self.color)}


@dataclass
class Patch:
    """One undoable edit: ``before``/``after`` of the box ``region`` of the label map."""

    region: tuple[slice, slice, slice]
    before: np.ndarray
    after: np.ndarray
    action: str


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Smallest box (3 slices) holding every True voxel of ``mask``; None if empty."""
    if not mask.any():
        return None
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.nonzero(mask.any(axis=other))[0]
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


@dataclass
class Annotation:
    """Label table + label map ``array`` (uint16 ``[i, j, k]`` on the LPS display grid)."""

    array: np.ndarray
    labels: list[LabelDef] = field(default_factory=list)
    undo_stack: list[Patch] = field(default_factory=list)
    redo_stack: list[Patch] = field(default_factory=list)
    edits: int = 0

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Annotation:
        return cls(np.zeros(shape, dtype=np.uint16))

    # ------------------------------------------------------------------ label table
    def label(self, value: int) -> LabelDef:
        for lab in self.labels:
            if lab.value == value:
                return lab
        raise AnnotationError(f"No label with value {value}; add it in the Labels panel first.")

    def names(self) -> dict[int, str]:
        return {lab.value: lab.name for lab in self.labels}

    def names_inv(self) -> dict[str, int]:
        return {lab.name: lab.value for lab in self.labels}

    def colors(self) -> dict[int, tuple[int, int, int]]:
        return {lab.value: lab.color for lab in self.labels}

    def add_label(self, name: str, color: tuple[int, int, int] | None = None,
                  value: int | None = None) -> LabelDef:
        """Add a label named ``name`` (next free value unless ``value``)."""
        name = name.strip()
        if not name:
            raise AnnotationError("A label needs a name (e.g. liver, tumour).")
        if name in self.names().values():
            raise AnnotationError(f"A label named {name!r} exists already; pick another name.")
        value = value or max([0, *self.names()]) + 1
        if value in self.names():
            raise AnnotationError(f"Label value {value} is taken by {self.names()[value]!r}.")
        lab = LabelDef(int(value), name, color or render.label_colors([int(value)])[int(value)])
        self.labels.append(lab)
        return lab

    def rename(self, value: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise AnnotationError("A label needs a name.")
        if any(lab.name == name and lab.value != value for lab in self.labels):
            raise AnnotationError(f"A label named {name!r} exists already.")
        self.label(value).name = name

    def delete_label(self, value: int) -> None:
        """Remove label ``value`` from the table and its voxels from the map (undoable)."""
        lab = self.label(value)
        self.set_voxels(self.array == value, 0, f"delete label {lab.name}")
        self.labels.remove(lab)

    # ------------------------------------------------------------------ edits
    def _record(self, region: tuple[slice, slice, slice], new: np.ndarray, action: str) -> bool:
        before = self.array[region].copy()
        if np.array_equal(before, new):
            return False
        self.array[region] = new
        self.undo_stack.append(Patch(region, before, new.copy(), action))
        del self.undo_stack[:-MAX_UNDO]
        self.redo_stack.clear()
        self.edits += 1
        return True

    def set_voxels(self, mask: np.ndarray, value: int, action: str,
                   only: int | None = None) -> bool:
        """Set the voxels of bool ``mask`` (display grid) to ``value`` as one undoable edit.

        With ``only`` just the voxels currently holding that value change (the eraser).
        Returns whether anything changed.
        """
        if value:
            self.label(value)
        box = _bbox(mask)
        if box is None:
            return False
        new = self.array[box].copy()
        m = mask[box] if only is None else mask[box] & (new == only)
        new[m] = value
        return self._record(box, new, action)

    def brush(self, plane: str, index: int, row: int, col: int, radius_mm: float,
              value: int, erase: bool, spacing: tuple[float, float, float]) -> bool:
        """Paint (or with ``erase`` clear) a disc of ``radius_mm`` on a displayed slice.

        ``row``/``col`` are pixel indices of :func:`app.render.extract`'s slice of ``plane`` at
        ``index``; the disc is round in millimetres (``spacing`` of the LPS grid). Painting
        writes ``value`` over any label; the eraser clears only voxels of ``value``.
        """
        self.label(value)
        shape = self.array.shape
        nrows, ncols = {"axial": (shape[1], shape[0]), "coronal": (shape[2], shape[0]),
                        "sagittal": (shape[2], shape[1])}[plane]
        if not (0 <= row < nrows and 0 <= col < ncols):
            raise AnnotationError(f"Brush point (row {row}, col {col}) is outside the {plane} "
                                  f"slice ({nrows} x {ncols} pixels).")
        sx, sy, sz = spacing
        col_mm, row_mm = {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[plane]
        rr, cc = np.mgrid[0:nrows, 0:ncols]
        disc = ((rr - row) * row_mm) ** 2 + ((cc - col) * col_mm) ** 2 <= radius_mm ** 2
        disc[row, col] = True
        r_idx, c_idx = np.nonzero(disc)
        vox = render.display_to_voxel_arrays(shape, plane, index, r_idx, c_idx)
        mask = np.zeros(shape, dtype=bool)
        mask[vox] = True
        what = "erase" if erase else "brush"
        action = f"{what} {self.label(value).name} {plane} {index} at ({row}, {col}) r={radius_mm}"
        if erase:
            return self.set_voxels(mask, 0, action, only=value)
        return self.set_voxels(mask, value, action)

    def replace(self, new_array: np.ndarray, action: str) -> bool:
        """Replace the whole map (auto-segmentation, accepted propagation) as one edit."""
        if new_array.shape != self.array.shape:
            raise AnnotationError(f"New label map shape {new_array.shape} differs from the "
                                  f"case's {self.array.shape}.")
        diff = _bbox(new_array != self.array)
        if diff is None:
            return False
        return self._record(diff, new_array[diff].astype(self.array.dtype), action)

    def undo(self) -> str | None:
        """Revert the last edit; returns its description (None when there is nothing)."""
        if not self.undo_stack:
            return None
        p = self.undo_stack.pop()
        self.array[p.region] = p.before
        self.redo_stack.append(p)
        self.edits += 1
        return p.action

    def redo(self) -> str | None:
        if not self.redo_stack:
            return None
        p = self.redo_stack.pop()
        self.array[p.region] = p.after
        self.undo_stack.append(p)
        self.edits += 1
        return p.action

    # ------------------------------------------------------------------ geometry
    def voxel_counts(self) -> dict[int, int]:
        counts = np.bincount(self.array.ravel(), minlength=max([0, *self.names()]) + 1)
        return {lab.value: int(counts[lab.value]) for lab in self.labels}

    def to_volume(self, image_lps: Volume, image: Volume) -> Volume:
        """The label map on the image's own grid (exact re-indexing), named labels."""
        dtype = np.uint8 if max([0, *self.names()]) < 256 else np.uint16
        lps = image_lps.with_array(self.array.astype(dtype), labels=self.names())
        return lps.conform_to(image)

    def load_volume(self, labels: Volume, image_lps: Volume) -> None:
        """Set the map from a label volume on the image's grid (no undo entry)."""
        arr = labels.conform_to(image_lps).array
        self.array = np.asarray(arr).astype(np.uint16)
