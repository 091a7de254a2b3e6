"""The editable annotation of a case: the one store of its masks, with one undo/redo history.

It holds, on the **display grid** (the case image exactly reoriented to LPS, ``Case.image_lps``,
indexed ``[i, j, k]``):

* ``array``: the label map (uint16) and ``labels``, its label table;
* ``proposal``: masks proposed by the promptable model (prompts and propagation), per label
  value, not yet accepted; with ``meta.prompts`` the prompts that made its key slices
  (:mod:`app.proposals`);
* ``meta.provenance``: how each label was made (:class:`medseg.provenance.Provenance`).

Every change is one :class:`app.edits.Patch` recorded by :meth:`Annotation.apply`: voxels of
both layers, provenance, prompts **and the label table** before and after. Brush strokes,
label add/rename/recolour/delete, prompts, propagations, accepting a proposal and
auto-segmentation all go through it, so one Undo reverts any of them exactly (a deleted label
comes back with its name, colour, provenance and voxels).

Label-table methods take ``action``: with it the change is recorded at once as its own edit;
without it (as :func:`app.autoseg_panel.merge_prediction` adds the labels a model predicts)
the change becomes part of the **next** recorded edit, so an auto-segmentation's new labels
and its voxels are undone together and no 0-voxel label is left behind.
:meth:`Annotation.to_volume` brings the label map back to the image's own grid exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app import render, strokes
from app.edits import (
    LabelDef,
    Meta,
    Part,
    Patch,
    Prompts,
    Region,
    Table,
    bbox,
    labels_of,
    table_of,
)
from app.proposals import ProposalEdits
from medseg.errors import MedsegError
from medseg.provenance import Provenance
from medseg.volume import Volume

__all__ = ["COMMON_LABELS", "LAYERS", "MAX_UNDO", "Annotation", "AnnotationError", "LabelDef",
           "Meta", "Patch", "Prompts", "Region"]

MAX_UNDO = 50
LAYERS = ("labels", "proposal")
#: Names offered when adding a label (any other name can be typed).
COMMON_LABELS = ("liver", "spleen", "kidney_right", "kidney_left", "pancreas", "stomach",
                 "gallbladder", "aorta", "lung_right", "lung_left", "heart", "bladder",
                 "tumour", "lesion", "oedema", "necrosis")


class AnnotationError(MedsegError):
    """An annotation edit that cannot be applied (unknown label, duplicate name...)."""


@dataclass
class Annotation(ProposalEdits):
    """Label table + label map ``array`` + proposal layer (uint16 ``[i, j, k]``, display grid)."""

    array: np.ndarray
    labels: list[LabelDef] = field(default_factory=list)
    undo_stack: list[Patch] = field(default_factory=list)
    redo_stack: list[Patch] = field(default_factory=list)
    edits: int = 0
    proposal: np.ndarray | None = None
    meta: Meta = field(default_factory=Meta)
    #: the label table as of the last recorded edit (what Undo of the next edit restores)
    recorded_table: Table = ()
    _histogram: tuple[tuple[int, int], np.ndarray] | None = field(default=None, repr=False,
                                                                   compare=False)

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Annotation:
        return cls(np.zeros(shape, dtype=np.uint16))

    def settle(self) -> None:
        """Take the current label table as recorded (after loading a saved case: no edit)."""
        self.recorded_table = table_of(self.labels)

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
                  value: int | None = None, action: str | None = None) -> LabelDef:
        """Add a label named ``name`` (next free value unless ``value``); recorded as the edit
        ``action`` when given, else part of the next edit (see the module docstring)."""
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
        if action:
            self.apply(action, [])
        return lab

    def edit_label(self, value: int, name: str | None = None,
                   color: tuple[int, int, int] | None = None, action: str | None = None
                   ) -> bool:
        """Rename and/or recolour label ``value``; recorded as ``action`` when given."""
        lab = self.label(value)
        if name is not None:
            name = name.strip()
            if not name:
                raise AnnotationError("A label needs a name.")
            if any(other.name == name and other.value != value for other in self.labels):
                raise AnnotationError(f"A label named {name!r} exists already.")
            lab.name = name
        if color is not None:
            lab.color = (int(color[0]), int(color[1]), int(color[2]))
        return self.apply(action, []) if action else False

    def rename(self, value: int, name: str, action: str | None = None) -> None:
        self.edit_label(value, name=name, action=action)

    def delete_label(self, value: int, action: str | None = None) -> bool:
        """Remove label ``value`` from the table, its voxels from the map, its proposal,
        prompts and provenance, as ONE edit: Undo brings all of them back."""
        lab = self.label(value)
        changes: list[tuple[str, Region, np.ndarray]] = []
        for layer in ("labels", "proposal"):
            arr = self.array if layer == "labels" else self.proposal
            box = None if arr is None else bbox(arr == value)
            if box is not None and arr is not None:
                new = arr[box].copy()
                new[new == value] = 0
                changes.append((layer, box, new))
        self.labels.remove(lab)
        meta = Meta({v: p for v, p in self.meta.provenance.items() if v != value},
                    {v: p for v, p in self.meta.prompts.items() if v != value})
        return self.apply(action or f"delete label {lab.name}", changes, meta)

    def provenance(self, value: int) -> Provenance:
        """How label ``value`` was made (manual when nothing says otherwise)."""
        return self.meta.provenance.get(int(value), Provenance())

    # ------------------------------------------------------------------ the one edit path
    def layer(self, name: str) -> np.ndarray:
        """The ``labels`` map or the ``proposal`` layer (allocated on first use)."""
        if name == "labels":
            return self.array
        if self.proposal is None or self.proposal.shape != self.array.shape:
            self.proposal = np.zeros(self.array.shape, dtype=np.uint16)
        return self.proposal

    def apply(self, action: str, changes: list[tuple[str, Region, np.ndarray]],
              meta: Meta | None = None) -> bool:
        """Write each ``(layer, region, new values)`` and, when given, ``meta`` as one undoable
        edit, together with any label-table change since the last edit. Returns whether
        anything changed (nothing is recorded otherwise)."""
        parts = []
        for name, region, new in changes:
            target = self.layer(name)
            before = target[region].copy()
            if not np.array_equal(before, new):
                parts.append(Part(name, region, before, np.array(new, dtype=target.dtype)))
        meta_changed = meta is not None and meta != self.meta
        table = table_of(self.labels)
        table_changed = table != self.recorded_table
        if not parts and not meta_changed and not table_changed:
            return False
        for p in parts:
            self.layer(p.layer)[p.region] = p.after
        patch = Patch(action, parts, self.meta if meta_changed else None,
                      meta if meta_changed else None,
                      self.recorded_table if table_changed else None,
                      table if table_changed else None)
        if meta_changed and meta is not None:
            self.meta = meta
        self.recorded_table = table
        self.undo_stack.append(patch)
        del self.undo_stack[:-MAX_UNDO]
        self.redo_stack.clear()
        self.edits += 1
        return True

    def _edited(self, values: set[int], keep: Mapping[int, Provenance] | None = None) -> Meta:
        """Meta after labels ``values`` changed by hand, except those ``keep`` sets."""
        prov = dict(self.meta.provenance)
        for v in values - {0}:
            prov[v] = self.provenance(v).after_edit()
        prov.update(keep or {})
        return replace(self.meta, provenance=prov)

    def set_voxels(self, mask: np.ndarray, value: int, action: str, only: int | None = None,
                   provenance: Provenance | None = None) -> bool:
        """Set the voxels of bool ``mask`` (display grid) to ``value`` as one undoable edit.

        With ``only`` just the voxels currently holding that value change (the eraser). The
        labels that gain or lose voxels count as edited by hand (their provenance follows
        :meth:`Provenance.after_edit`) unless ``provenance`` says how ``value``'s were made.
        """
        if value:
            self.label(value)
        box = bbox(mask)
        if box is None:
            return False
        new = self.array[box].copy()
        m = mask[box] if only is None else mask[box] & (new == only)
        touched = {int(v) for v in np.unique(new[m])} | {int(value)}
        new[m] = value
        keep = {int(value): provenance} if provenance is not None and value else None
        return self.apply(action, [("labels", box, new)], self._edited(touched, keep))

    def stroke(self, plane: str, index: int, points: Sequence[tuple[float, float]],
               radius_mm: float, value: int, erase: bool,
               spacing: tuple[float, float, float]) -> bool:
        """Paint (or with ``erase`` clear) a continuous stroke on a displayed slice, as ONE
        edit: every pixel within ``radius_mm`` of the polyline ``points`` (``(row, col)`` in
        :func:`app.render.extract`'s pixels of ``plane`` at ``index``; see
        :func:`app.strokes.stroke_mask`). Painting writes ``value`` over any label; the
        eraser clears only voxels of ``value``. ``spacing``: of the LPS grid, in mm."""
        self.label(value)
        shape = self.array.shape
        nrows, ncols = render.extract_shape(shape, plane)
        if not points or not all(-0.5 <= r < nrows - 0.5 and -0.5 <= c < ncols - 0.5
                                 for r, c in points[:1]):
            raise AnnotationError(f"Brush point {tuple(points[0]) if points else ()} is outside "
                                  f"the {plane} slice ({nrows} x {ncols} pixels).")
        sx, sy, sz = spacing
        col_mm, row_mm = {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[plane]
        disc = strokes.stroke_mask((nrows, ncols), points, radius_mm, row_mm, col_mm)
        r_idx, c_idx = np.nonzero(disc)
        vox = render.display_to_voxel_arrays(shape, plane, index, r_idx, c_idx)
        mask = np.zeros(shape, dtype=bool)
        mask[vox] = True
        what = "erase" if erase else "brush"
        r0, c0 = (round(x) for x in points[0])
        action = (f"{what} {self.label(value).name} {plane} {index} at ({r0}, {c0}) "
                  f"r={radius_mm}" + (f", {len(points)} points" if len(points) > 1 else ""))
        if erase:
            return self.set_voxels(mask, 0, action, only=value)
        return self.set_voxels(mask, value, action)

    def brush(self, plane: str, index: int, row: int, col: int, radius_mm: float,
              value: int, erase: bool, spacing: tuple[float, float, float]) -> bool:
        """A one-point :meth:`stroke`: a disc of ``radius_mm`` (round in mm) at ``row, col``."""
        return self.stroke(plane, index, [(row, col)], radius_mm, value, erase, spacing)

    def replace(self, new_array: np.ndarray, action: str,
                provenance: Mapping[int, Provenance] | None = None) -> bool:
        """Replace the whole map (auto-segmentation, a merge) as one edit, together with any
        label added since the last edit; labels whose voxels change take
        ``provenance[value]`` when given, else count as edited by hand."""
        if new_array.shape != self.array.shape:
            raise AnnotationError(f"New label map shape {new_array.shape} differs from the "
                                  f"case's {self.array.shape}.")
        diff = bbox(new_array != self.array)
        if diff is None:
            return self.apply(action, [])  # only labels were added: still one edit
        old, new = self.array[diff], new_array[diff].astype(self.array.dtype)
        changed = old != new
        touched = {int(v) for v in np.unique(old[changed])} | \
            {int(v) for v in np.unique(new[changed])}
        keep = {v: p for v, p in (provenance or {}).items() if v in touched}
        return self.apply(action, [("labels", diff, new)], self._edited(touched, keep))

    # ------------------------------------------------------------------ undo
    def _revert(self, patch: Patch, before: bool) -> None:
        for p in patch.parts:
            self.layer(p.layer)[p.region] = p.before if before else p.after
        meta = patch.meta_before if before else patch.meta_after
        if meta is not None:
            self.meta = meta
        table = patch.table_before if before else patch.table_after
        if table is not None:
            self.labels = labels_of(table)
            self.recorded_table = table
        self.edits += 1

    def undo(self) -> str | None:
        """Revert the last edit; returns its description (None when there is nothing)."""
        if not self.undo_stack:
            return None
        p = self.undo_stack.pop()
        self._revert(p, before=True)
        self.redo_stack.append(p)
        return p.action

    def redo(self) -> str | None:
        if not self.redo_stack:
            return None
        p = self.redo_stack.pop()
        self._revert(p, before=False)
        self.undo_stack.append(p)
        return p.action

    def voxels_changed(self) -> int:
        """How many label-map voxels the last recorded edit changed (0 when none)."""
        if not self.undo_stack:
            return 0
        return sum(int(np.count_nonzero(p.before != p.after))
                   for p in self.undo_stack[-1].parts if p.layer == "labels")

    # ------------------------------------------------------------------ geometry
    def voxel_counts(self) -> dict[int, int]:
        """Voxels per label of the table. The histogram is kept until the map changes (every
        change goes through :meth:`apply`/undo/redo, which count ``edits``, or replaces the
        array): a page run asks for it several times."""
        key = (self.edits, id(self.array))
        if self._histogram is None or self._histogram[0] != key:
            self._histogram = (key, np.bincount(self.array.ravel()))
        counts = self._histogram[1]
        return {lab.value: int(counts[lab.value]) if lab.value < len(counts) else 0
                for lab in self.labels}

    def to_volume(self, image_lps: Volume, image: Volume) -> Volume:
        """The label map on the image's own grid (exact re-indexing), named labels."""
        dtype = np.uint8 if max([0, *self.names()]) < 256 else np.uint16
        lps = image_lps.with_array(self.array.astype(dtype), labels=self.names())
        return lps.conform_to(image)

    def load_volume(self, labels: Volume, image_lps: Volume) -> None:
        """Set the map from a label volume on the image's grid (no undo entry)."""
        arr = labels.conform_to(image_lps).array
        self.array = np.asarray(arr).astype(np.uint16)
