"""The records of the annotation's one undo history: label definitions, meta, patches.

A :class:`Patch` is one undoable edit: for each changed layer the changed box before and after
(memory in proportion to the edit, not the volume), and, when they changed, the meta
(provenance, prompts) and the label table before and after. Undo puts back every ``before``,
redo every ``after``: voxels, label names/colours and provenance move together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from medseg.engine.prompt import SlicePrompt
from medseg.provenance import Provenance

Region = tuple[slice, slice, slice]
#: prompts of a label's proposal: ``(axis, slice) -> SlicePrompt``
Prompts = Mapping[tuple[int, int], SlicePrompt]


@dataclass
class LabelDef:
    """One named label: its value in the label map and its overlay colour (RGB 0-255)."""

    value: int
    name: str
    color: tuple[int, int, int]

    def as_dict(self) -> dict[str, object]:
        return {"value": self.value, "name": self.name, "color": list(self.color)}


#: an immutable copy of a label table, as kept in patches
Table = tuple[tuple[int, str, tuple[int, int, int]], ...]


def table_of(labels: list[LabelDef]) -> Table:
    """An immutable copy of ``labels`` (order kept)."""
    return tuple((lab.value, lab.name, tuple(lab.color)) for lab in labels)  # type: ignore[misc]


def labels_of(table: Table) -> list[LabelDef]:
    """Fresh :class:`LabelDef` objects from a :func:`table_of` copy."""
    return [LabelDef(v, n, c) for v, n, c in table]


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
    """One undoable edit: its layer parts and, when they changed, meta and table before/after."""

    action: str
    parts: list[Part]
    meta_before: Meta | None = None
    meta_after: Meta | None = None
    table_before: Table | None = None
    table_after: Table | None = None


def bbox(mask: np.ndarray) -> Region | None:
    """Smallest box (3 slices) holding every True voxel of ``mask``; None if empty."""
    if not mask.any():
        return None
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.nonzero(mask.any(axis=other))[0]
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


def on_slice(axis: int, k: int) -> tuple[slice | int, ...]:
    """Index of slice ``k`` across array ``axis``."""
    return (slice(None),) * axis + (int(k),)
