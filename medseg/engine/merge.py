"""Merge the label maps of several models (e.g. TotalSegmentator's parts) by label name.

Values are renumbered 1..N in the order names first appear (part by part, value by value); a
name that several parts share keeps one value. Parts are written in order and a later part's
voxels replace an earlier part's where both claim a voxel, as TotalSegmentator combines its
parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["merge_by_name", "merged_names"]


def merged_names(parts: Sequence[dict[int, str]]) -> dict[int, str]:
    """``{new value: name}`` over all parts (first appearance order)."""
    names: list[str] = []
    for labels in parts:
        for _, name in sorted(labels.items()):
            if name not in names:
                names.append(name)
    return {i + 1: n for i, n in enumerate(names)}


def merge_by_name(parts: Sequence[tuple[np.ndarray, dict[int, str]]]
                  ) -> tuple[np.ndarray, dict[int, str]]:
    """One label map from ``(labels, {value: name})`` pairs on the same grid (later parts
    win where they overlap); uint8, or uint16 beyond 255 names."""
    table = merged_names([p[1] for p in parts])
    inv = {n: v for v, n in table.items()}
    shape = parts[0][0].shape
    out = np.zeros(shape, dtype=np.uint8 if len(table) < 256 else np.uint16)
    for arr, labels in parts:
        if arr.shape != shape:
            raise ValueError(f"part shapes differ: {arr.shape} vs {shape}")
        lut = np.zeros(int(max(labels, default=0)) + 1, dtype=out.dtype)
        for v, n in labels.items():
            lut[v] = inv[n]
        mapped = lut[np.clip(arr, 0, len(lut) - 1)]
        np.copyto(out, mapped, where=mapped > 0)
    return out, table
