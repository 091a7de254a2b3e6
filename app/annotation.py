"""The editable annotation of a case: the one store of its masks, with one undo/redo history.

It holds, on the **display grid** (the case image exactly reoriented to LPS, ``Case.image_lps``,
indexed ``[i, j, k]``):

* ``array``: the label map (uint16) and its label table;
* ``proposal``: masks proposed by the promptable model (prompts and propagation), per label
  value, not yet accepted; with ``meta.prompts`` the prompts that made its key slices;
* ``meta.provenance``: how each label was made (:class:`medseg.provenance.Provenance`).

Every change is one :class:`Patch`: the changed bounding box of each layer before and after
(memory in proportion to the edit, not the volume) and, when they changed, the provenance and
prompts before and after. Brush strokes, prompts, propagations, accepting a proposal and
auto-segmentation all go through :meth:`Annotation.apply`, so one Undo reverts any of them.
:meth:`Annotation.to_volume` brings the label map back to the image's own grid exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from app import render
from medseg.engine.prompt import SlicePrompt
from medseg.errors import MedsegError
from medseg.provenance import Provenance
from medseg.volume import Volume

MAX_UNDO = 50
LAYERS = ("labels", "proposal")
#: Names offered when adding a label (any other name can be typed).
COMMON_LABELS = ("liver", "spleen", "kidney_right", "kidney_left", "pancreas", "stomach",
                 "gallbladder", "aorta", "lung_right", "lung_left", "heart", "bladder",
                 "tumour", "lesion", "oedema", "necrosis")
Region = tuple[slice, slice, slice]
#: prompts of a label's proposal: ``(axis, slice) -> SlicePrompt``
Prompts = Mapping[tuple[int, int], SlicePrompt]


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


@dataclass(frozen=True)
class Meta:
    """Provenance per label value and the prompts of each label's proposal."""

    provenance: Mapping[int, Provenance] = field(default_factory=dict)
    prompts: Mapping[int, Prompts] = field(default_factory=dict)


@dataclass
class Part:
    """One layer's changed box ``region``: its values before and after."""

    layer: str
    region: Region
    before: np.ndarray
    after: np.ndarray


@dataclass
class Patch:
    """One undoable edit: its layer parts and, when they changed, the meta before/after."""

    action: str
    parts: list[Part]
    meta_before: Meta | None = None
    meta_after: Meta | None = None


def _bbox(mask: np.ndarray) -> Region | None:
    """Smallest box (3 slices) holding every True voxel of ``mask``; None if empty."""
    if not mask.any():
        return None
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.nonzero(mask.any(axis=other))[0]
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


def _on_slice(axis: int, k: int) -> tuple[slice | int, ...]:
    return (slice(None),) * axis + (int(k),)


@dataclass
class Annotation:
    """Label table + label map ``array`` + proposal layer (uint16 ``[i, j, k]``, display grid)."""

    array: np.ndarray
    labels: list[LabelDef] = field(default_factory=list)
    undo_stack: list[Patch] = field(default_factory=list)
    redo_stack: list[Patch] = field(default_factory=list)
    edits: int = 0
    proposal: np.ndarray | None = None
    meta: Meta = field(default_factory=Meta)

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
        self.labels.remove(lab)  # the table is not undoable; a new label starts manual
        self.meta = replace(self.meta, provenance={v: p for v, p in self.meta.provenance.items()
                                                   if v != value})

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
        edit. Returns whether anything changed (nothing is recorded otherwise)."""
        parts = []
        for name, region, new in changes:
            target = self.layer(name)
            before = target[region].copy()
            if not np.array_equal(before, new):
                parts.append(Part(name, region, before, np.array(new, dtype=target.dtype)))
        meta_changed = meta is not None and meta != self.meta
        if not parts and not meta_changed:
            return False
        for p in parts:
            self.layer(p.layer)[p.region] = p.after
        patch = Patch(action, parts, self.meta if meta_changed else None,
                      meta if meta_changed else None)
        if meta_changed and meta is not None:
            self.meta = meta
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
        box = _bbox(mask)
        if box is None:
            return False
        new = self.array[box].copy()
        m = mask[box] if only is None else mask[box] & (new == only)
        touched = {int(v) for v in np.unique(new[m])} | {int(value)}
        new[m] = value
        keep = {int(value): provenance} if provenance is not None and value else None
        return self.apply(action, [("labels", box, new)], self._edited(touched, keep))

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

    def replace(self, new_array: np.ndarray, action: str,
                provenance: Mapping[int, Provenance] | None = None) -> bool:
        """Replace the whole map (auto-segmentation, a merge) as one edit; labels whose voxels
        change take ``provenance[value]`` when given, else count as edited by hand."""
        if new_array.shape != self.array.shape:
            raise AnnotationError(f"New label map shape {new_array.shape} differs from the "
                                  f"case's {self.array.shape}.")
        diff = _bbox(new_array != self.array)
        if diff is None:
            return False
        old, new = self.array[diff], new_array[diff].astype(self.array.dtype)
        changed = old != new
        touched = {int(v) for v in np.unique(old[changed])} | \
            {int(v) for v in np.unique(new[changed])}
        keep = {v: p for v, p in (provenance or {}).items() if v in touched}
        return self.apply(action, [("labels", diff, new)], self._edited(touched, keep))

    # ------------------------------------------------------------------ proposals
    def proposal_mask(self, value: int) -> np.ndarray | None:
        """Bool mask of label ``value``'s proposal on the display grid (None when empty)."""
        if self.proposal is None:
            return None
        mask = self.proposal == value
        return mask if mask.any() else None

    def proposal_slice(self, value: int, axis: int, k: int) -> np.ndarray:
        """Bool ``[x, y]`` proposal of ``value`` on slice ``k`` across array ``axis``."""
        if self.proposal is None:
            return np.zeros([s for a, s in enumerate(self.array.shape) if a != axis], bool)
        return np.asarray(self.proposal[_on_slice(axis, k)] == value)

    def prompts(self, value: int) -> Prompts:
        """The prompts of ``value``'s proposal: ``(axis, slice) -> SlicePrompt``."""
        return self.meta.prompts.get(int(value), {})

    def propose(self, value: int, axis: int, changes: Mapping[int, np.ndarray | None],
                prompts: Prompts, action: str) -> bool:
        """Set ``value``'s proposal on the slices of ``changes`` (``k -> [x, y]`` bool, None
        = none) and its prompts to ``prompts``, as one undoable edit."""
        self.label(value)
        meta = replace(self.meta, prompts={**self.meta.prompts, int(value): dict(prompts)})
        ks = sorted(int(k) for k in changes)
        if not ks:
            return self.apply(action, [], meta)
        layer = self.layer("proposal")
        region: list[slice] = [slice(None)] * 3
        region[axis] = slice(ks[0], ks[-1] + 1)
        slab = layer[tuple(region)].copy()
        for k, mask in changes.items():
            plane = slab[_on_slice(axis, int(k) - ks[0])]
            plane[plane == value] = 0
            if mask is not None:
                plane[np.asarray(mask, bool)] = value
        box = _bbox(slab != layer[tuple(region)])
        edits = []
        if box is not None:
            full = tuple(slice(r.start + (region[a].start or 0), r.stop + (region[a].start or 0))
                         for a, r in enumerate(box))
            edits.append(("proposal", full, slab[box]))
        return self.apply(action, edits, meta)  # type: ignore[arg-type]

    def accept_proposal(self, value: int, provenance: Provenance, action: str) -> bool:
        """Write ``value``'s proposal into the label map (over any label) and clear it, as one
        edit; the label becomes ``provenance`` (labels it overwrites count as edited)."""
        mask = self.proposal_mask(value)
        if mask is None:
            return False
        box = _bbox(mask)
        assert box is not None
        labels, prop = self.array[box].copy(), self.layer("proposal")[box].copy()
        touched = {int(v) for v in np.unique(labels[mask[box]])} | {int(value)}
        labels[mask[box]] = value
        prop[mask[box]] = 0
        meta = self._edited(touched, {int(value): provenance})
        meta = replace(meta, prompts={k: v for k, v in meta.prompts.items() if k != value})
        return self.apply(action, [("labels", box, labels), ("proposal", box, prop)], meta)

    def clear_proposal(self, value: int, action: str) -> bool:
        """Drop ``value``'s proposal and its prompts as one edit."""
        mask = self.proposal_mask(value)
        box = None if mask is None else _bbox(mask)
        edits = []
        if box is not None and mask is not None:
            prop = self.layer("proposal")[box].copy()
            prop[mask[box]] = 0
            edits.append(("proposal", box, prop))
        meta = replace(self.meta, prompts={k: v for k, v in self.meta.prompts.items()
                                           if k != value})
        return self.apply(action, edits, meta)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ undo
    def _revert(self, patch: Patch, before: bool) -> None:
        for p in patch.parts:
            self.layer(p.layer)[p.region] = p.before if before else p.after
        meta = patch.meta_before if before else patch.meta_after
        if meta is not None:
            self.meta = meta
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
