"""Memory-bounded inversion of model-grid predictions to the input grid, slab by slab.

Orientation (axis permutation/flip) followed by target spacing (scaling along the reoriented
axes) maps input voxel indices to model-grid indices by a *scaled signed permutation*: every
model axis depends on exactly one input axis. Trilinear resampling back is then separable: three
1-D linear interpolations (``lerp`` between two gathered planes), computed for a slab of input
slices at a time. Border handling is MONAI's ``Spacingd`` default (``padding_mode="border"``:
coordinates are clamped to the model grid), so the result equals MONAI's ``Invertd`` up to
float rounding, while only ``(K, I, J, slab)`` floats exist at once instead of a
full-resolution sampling grid plus one full-resolution array per class.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["AxisMap", "axis_mapping", "iter_native_slabs"]

#: (model axis, scale, offset): model index = scale * input index + offset, per input axis.
AxisMap = list[tuple[int, float, float]]


def axis_mapping(native_affine: npt.ArrayLike, model_affine: npt.ArrayLike,
                 tol: float = 1e-5) -> AxisMap | None:
    """Per input axis, the model axis it maps to, or ``None`` if the map is not axis-aligned.

    Both affines map voxel indices to the same world frame (4x4).
    """
    m = np.linalg.inv(np.asarray(model_affine, dtype=np.float64)) @ np.asarray(
        native_affine, dtype=np.float64)
    out: AxisMap = []
    for a in range(3):
        col = m[:3, a]
        b = int(np.argmax(np.abs(col)))
        rest = np.abs(np.delete(col, b))
        if rest.max() > tol * max(abs(col[b]), 1.0):
            return None
        out.append((b, float(col[b]), float(m[b, 3])))
    if len({b for b, _, _ in out}) != 3:
        return None
    return out


def _weights(n_native: int, scale: float, offset: float, n_model: int, nearest: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.arange(n_native, dtype=torch.float64) * scale + offset
    x = x.clamp_(0, n_model - 1)
    if nearest:
        idx = torch.round(x).long()
        return idx, idx, torch.zeros(n_native, dtype=torch.float32)
    lo = torch.floor(x).long()
    hi = torch.clamp(lo + 1, max=n_model - 1)
    return lo, hi, (x - lo).to(torch.float32)


def _lerp(t: torch.Tensor, dim: int, lo: torch.Tensor, hi: torch.Tensor, w: torch.Tensor
          ) -> torch.Tensor:
    a = t.index_select(dim, lo)
    if torch.equal(lo, hi):
        return a
    b = t.index_select(dim, hi)
    shape = [1] * t.dim()
    shape[dim] = -1
    return a.lerp_(b, w.view(shape).to(a.dtype))


def iter_native_slabs(model: torch.Tensor, mapping: AxisMap, native_shape: tuple[int, int, int],
                      *, nearest: bool = False, slab_bytes: int = 16 << 20
                      ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(i0, i1, values)`` covering the input grid, ``values`` of shape
    ``(C, i1 - i0, J, K)`` float32: ``model`` ``(C, X, Y, Z)`` resampled (trilinear, or nearest
    with ``nearest``) at the input voxels of rows ``i0..i1-1``. Slabs along the first (slowest)
    input axis keep every write to a C-ordered ``(I, J, K)`` output contiguous; about
    ``slab_bytes`` of values exist at a time."""
    t = model.permute(0, *(1 + b for b, _, _ in mapping))  # axes in input order
    w = [_weights(native_shape[a], s, o, t.shape[1 + a], nearest)
         for a, (_, s, o) in enumerate(mapping)]
    per_row = 4 * t.shape[0] * native_shape[1] * native_shape[2]
    slab = max(1, slab_bytes // per_row)
    for i0 in range(0, native_shape[0], slab):
        i1 = min(i0 + slab, native_shape[0])
        lo, hi, wi = (v[i0:i1] for v in w[0])
        part = _lerp(t, 1, lo, hi, wi)
        part = _lerp(part, 2, *w[1])
        part = _lerp(part, 3, *w[2])
        yield i0, i1, part
