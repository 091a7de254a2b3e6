"""The proposal layer of an annotation: masks proposed by the promptable model, not accepted.

:class:`ProposalEdits` is mixed into :class:`app.annotation.Annotation`; every method here
writes through :meth:`Annotation.apply`, so each prompt, propagation, accept and reject is one
undoable edit of the same history as strokes and label-table changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from app.edits import Meta, Prompts, Region, bbox, on_slice

if TYPE_CHECKING:
    from medseg.provenance import Provenance


class ProposalEdits:
    """Proposal methods of :class:`app.annotation.Annotation` (display grid ``[i, j, k]``)."""

    array: np.ndarray
    proposal: np.ndarray | None
    meta: Meta

    if TYPE_CHECKING:  # provided by Annotation
        def label(self, value: int) -> object: ...
        def layer(self, name: str) -> np.ndarray: ...
        def apply(self, action: str, changes: list[tuple[str, Region, np.ndarray]],
                  meta: Meta | None = None) -> bool: ...
        def _edited(self, values: set[int],
                    keep: Mapping[int, Provenance] | None = None) -> Meta: ...

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
        return np.asarray(self.proposal[on_slice(axis, k)] == value)

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
            plane = slab[on_slice(axis, int(k) - ks[0])]
            plane[plane == value] = 0
            if mask is not None:
                plane[np.asarray(mask, bool)] = value
        box = bbox(slab != layer[tuple(region)])
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
        box = bbox(mask)
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
        box = None if mask is None else bbox(mask)
        edits = []
        if box is not None and mask is not None:
            prop = self.layer("proposal")[box].copy()
            prop[mask[box]] = 0
            edits.append(("proposal", box, prop))
        meta = replace(self.meta, prompts={k: v for k, v in self.meta.prompts.items()
                                           if k != value})
        return self.apply(action, edits, meta)  # type: ignore[arg-type]

