"""Memory-bounded inversion of model-grid predictions to the input grid, slab by slab.

Orientation (axis permutation/flip) followed by target spacing (scaling along the reoriented
axes) maps input voxel indices to model-grid indices by a *scaled signed permutation*: every
model axis depends on exactly one input axis. Trilinear resampling back is then separable: three
1-D linear interpolations (``lerp`` between two gathered planes), computed for a slab of input
slices at a time. Border handling is MONAI's ``Spacingd`` default (``padding_mode="border"``:
coordinates are clamped to the model grid), so the result equals MONAI's ``Invertd`` up to
float rounding, while only ``(K, I, J, slab)`` floats exist at once instead of a
full-resolution sampling grid plus one full-resolution array per class.

:func:`iter_native_labels` gives the argmax of those resampled probabilities without resampling
most voxels: where all eight model-grid corners around an input voxel share one argmax label,
that label dominates every other class at each corner, so it dominates their convex
(trilinear) combination too and is the argmax there (first maximum on ties, as ``argmax``).
Only voxels in cells whose corners disagree, the boundaries, are interpolated. For a trained
network's smooth output that is a few percent of the volume; slabs where it is not (noisy
output) fall back to full separable resampling, so the result is the same either way (up to
float rounding where two classes are within an ulp).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["AxisMap", "axis_mapping", "iter_native_labels", "iter_native_slabs",
           "resample_axis_aligned"]

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


def _weights(n_native: int, scale: float, offset: float, n_model: int, nearest: bool,
             half_up: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per native index: the two model indices around it and the weight of the upper one.
    ``nearest``: one index, ties rounded half to even (``torch.round``) or, with ``half_up``,
    ``floor(x + 0.5)`` (scipy's order-0 rule, as nnU-Net's separate-z)."""
    x = torch.arange(n_native, dtype=torch.float64) * scale + offset
    x = x.clamp_(0, n_model - 1)
    if nearest:
        idx = torch.floor(x + 0.5).long() if half_up else torch.round(x).long()
        return idx, idx, torch.zeros(n_native, dtype=torch.float32)
    lo = torch.floor(x).long()
    hi = torch.clamp(lo + 1, max=n_model - 1)
    return lo, hi, (x - lo).to(torch.float32)


def _lerp(t: torch.Tensor, dim: int, lo: torch.Tensor, hi: torch.Tensor, w: torch.Tensor
          ) -> torch.Tensor:
    a = t.index_select(dim, lo).to(torch.float32)
    if torch.equal(lo, hi):
        return a
    b = t.index_select(dim, hi).to(torch.float32)
    shape = [1] * t.dim()
    shape[dim] = -1
    return a.lerp_(b, w.view(shape).to(a.dtype))


def iter_native_slabs(model: torch.Tensor, mapping: AxisMap, native_shape: tuple[int, int, int],
                      *, nearest: bool = False, slab_bytes: int = 16 << 20,
                      nearest_axes: tuple[int, ...] = ()
                      ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(i0, i1, values)`` covering the input grid, ``values`` of shape
    ``(C, i1 - i0, J, K)`` float32: ``model`` ``(C, X, Y, Z)`` resampled (trilinear, or nearest
    with ``nearest``) at the input voxels of rows ``i0..i1-1``. Slabs along the first (slowest)
    input axis keep every write to a C-ordered ``(I, J, K)`` output contiguous; about
    ``slab_bytes`` of values exist at a time. ``nearest_axes``: input axes sampled by
    nearest neighbour (``floor(x + 0.5)``) while the others stay linear."""
    t = model.permute(0, *(1 + b for b, _, _ in mapping))  # axes in input order
    w = [_weights(native_shape[a], s, o, t.shape[1 + a], nearest or a in nearest_axes,
                  half_up=a in nearest_axes) for a, (_, s, o) in enumerate(mapping)]
    per_row = 4 * t.shape[0] * native_shape[1] * native_shape[2]
    slab = max(1, slab_bytes // per_row)
    for i0 in range(0, native_shape[0], slab):
        i1 = min(i0 + slab, native_shape[0])
        lo, hi, wi = (v[i0:i1] for v in w[0])
        part = _lerp(t, 1, lo, hi, wi)
        part = _lerp(part, 2, *w[1])
        part = _lerp(part, 3, *w[2])
        yield i0, i1, part


def first_argmax_(values: torch.Tensor, out: torch.Tensor) -> None:
    """``out[...] = values.argmax(0)`` (first maximum wins) without an int64 temporary;
    ``values`` ``(K, ...)`` float32, ``out`` an integer tensor of ``values.shape[1:]``."""
    best = values[0].clone()
    out.zero_()
    for c in range(1, values.shape[0]):
        better = values[c] > best
        out[better] = c
        torch.maximum(best, values[c], out=best)


def _uniform_cells(labels: torch.Tensor) -> torch.Tensor:
    """``U[a, b, c]``: the 2x2x2 corners ``labels[a:a+2, b:b+2, c:c+2]`` (the last plane of
    each axis repeated, as the clamped interpolation does) all carry one label."""
    p = torch.cat([labels, labels[-1:]], 0)
    p = torch.cat([p, p[:, -1:]], 1)
    p = torch.cat([p, p[:, :, -1:]], 2)
    ref = p[:-1, :-1, :-1]
    same = torch.ones_like(ref, dtype=torch.bool)
    for da in (0, 1):
        for db in (0, 1):
            for dc in (0, 1):
                if da or db or dc:
                    same &= ref == p[da:da + ref.shape[0], db:db + ref.shape[1],
                                     dc:dc + ref.shape[2]]
    return same


def _gather3(t: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor
             ) -> torch.Tensor:
    return t.index_select(0, i).index_select(1, j).index_select(2, k)


def iter_native_labels(model: torch.Tensor, mapping: AxisMap,
                       native_shape: tuple[int, int, int], *, slab_voxels: int = 1 << 22,
                       slab_bytes: int = 64 << 20, dense_fraction: float = 0.25,
                       nearest_axes: tuple[int, ...] = (), quantize: torch.dtype | None = None
                       ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(i0, i1, labels)`` covering the input grid, ``labels`` ``(i1 - i0, J, K)``
    uint8: the argmax over classes of ``model`` ``(K, X, Y, Z)`` (probabilities, K <= 128)
    trilinearly resampled at the input voxels, equal (up to float rounding between classes
    within an ulp) to ``first_argmax_`` of :func:`iter_native_slabs`' values, but interpolating
    only where the corner labels differ (see the module docstring). When more than
    ``dense_fraction`` of the cells (or of a slab's voxels) need interpolation, everything (that
    slab) is resampled whole instead. Memory: at most ``slab_voxels`` label bytes and about
    ``slab_bytes`` of class values per step, whatever the number of classes.
    ``nearest_axes``: input axes sampled by nearest neighbour (``floor(x + 0.5)``, nnU-Net's
    separate-z export); the uniform-cell argument holds for any convex weights.
    ``quantize``: round interpolated values to this dtype before the argmax (nnU-Net stores its
    resampled logits in float16, so its ties are float16 ties)."""
    k = model.shape[0]
    if k > 128:
        raise ValueError("iter_native_labels: more than 128 classes; use iter_native_slabs")
    model = model.contiguous()
    planes = model.reshape(k, -1)  # (K, X*Y*Z) view
    t = model.permute(0, *(1 + b for b, _, _ in mapping))  # axes in input order
    flat_stride = t.stride()
    lab = torch.empty(t.shape[1:], dtype=torch.uint8)
    first_argmax_(t, lab)
    uni = _uniform_cells(lab)
    dense = float((~uni).sum()) > dense_fraction * uni.numel()
    # one byte per model voxel: label in the low 7 bits, "cell uniform" in the top bit
    packed = lab.bitwise_or_(uni.to(torch.uint8).bitwise_left_shift_(7))
    del uni
    w = [_weights(native_shape[a], s, o, t.shape[1 + a], a in nearest_axes, half_up=True)
         for a, (_, s, o) in enumerate(mapping)]
    (lo_i, hi_i, w_i), (lo_j, hi_j, w_j), (lo_k, hi_k, w_k) = w
    plane = native_shape[1] * native_shape[2]
    rows = max(1, min(slab_voxels, slab_bytes // (4 * k)) // plane)
    chunk = max(1, slab_bytes // (4 * k * 4))  # boundary voxels per gather: ~4 (K, n) alive
    for i0 in range(0, native_shape[0], rows):
        i1 = min(i0 + rows, native_shape[0])
        if not dense:
            code = _gather3(packed, lo_i[i0:i1], lo_j, lo_k)
            todo = code < 128
            n = int(torch.count_nonzero(todo))
            out = code.bitwise_and_(127)
            if n == 0:
                yield i0, i1, out
                continue
        if dense or n > dense_fraction * todo.numel():
            part = _lerp(t, 1, lo_i[i0:i1], hi_i[i0:i1], w_i[i0:i1])
            part = _lerp(part, 2, lo_j, hi_j, w_j)
            part = _lerp(part, 3, lo_k, hi_k, w_k)
            if quantize is not None:
                part = part.to(quantize).float()
            out = torch.empty(part.shape[1:], dtype=torch.uint8)
            first_argmax_(part, out)
            yield i0, i1, out
            continue
        where = todo.nonzero()
        sub = torch.empty(where.shape[0], dtype=torch.uint8)
        for s0 in range(0, where.shape[0], chunk):
            ii, jj, kk = where[s0:s0 + chunk].unbind(1)
            sub[s0:s0 + chunk] = _boundary_labels(planes, flat_stride, w, ii + i0, jj, kk,
                                                  quantize)
        out[todo] = sub
        yield i0, i1, out


def _boundary_labels(planes: torch.Tensor, flat_stride: tuple[int, ...],
                     w: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                     ii: torch.Tensor, jj: torch.Tensor, kk: torch.Tensor,
                     quantize: torch.dtype | None = None) -> torch.Tensor:
    """First-argmax labels of the trilinear interpolation at input voxels ``(ii, jj, kk)``;
    the eight corners are gathered from ``planes`` ``(K, X*Y*Z)`` by flat offsets."""
    (lo_i, hi_i, w_i), (lo_j, hi_j, w_j), (lo_k, hi_k, w_k) = w
    sa, sb, sc = (flat_stride[1 + a] for a in range(3))
    a0, a1 = lo_i[ii] * sa, hi_i[ii] * sa
    b0, b1 = lo_j[jj] * sb, hi_j[jj] * sb
    c0, c1 = lo_k[kk] * sc, hi_k[kk] * sc
    wa, wb, wc = w_i[ii], w_j[jj], w_k[kk]

    def along_a(b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        bc = b + c
        return planes.index_select(1, a0 + bc).lerp_(planes.index_select(1, a1 + bc), wa)

    v0 = along_a(b0, c0).lerp_(along_a(b1, c0), wb)
    v1 = along_a(b0, c1).lerp_(along_a(b1, c1), wb)
    vals = v0.lerp_(v1, wc)
    if quantize is not None:
        vals = vals.to(quantize).float()
    sub = torch.empty(vals.shape[1], dtype=torch.uint8)
    first_argmax_(vals, sub)
    return sub


def resample_axis_aligned(src: torch.Tensor, mapping: AxisMap, out_shape: tuple[int, int, int]
                          ) -> torch.Tensor:
    """Trilinear resampling of ``src`` ``(C, I, J, K)`` (any real dtype) onto a grid of
    ``out_shape`` whose axis ``a`` reads source axis ``mapping[a][0]`` at index
    ``scale * a_index + offset`` (clamped to the source, MONAI's ``padding_mode="border"``).
    Returns ``(C, *out_shape)`` float32. The forward counterpart of :func:`iter_native_slabs`:
    the axis that shrinks most goes first, so the later passes touch fewer voxels, and no
    float copy of the source is made."""
    t = src.permute(0, *(1 + b for b, _, _ in mapping))
    w = [_weights(out_shape[a], s, o, t.shape[1 + a], False) for a, (_, s, o) in enumerate(mapping)]
    order = sorted(range(3), key=lambda a: out_shape[a] / t.shape[1 + a])
    for a in order:
        t = _lerp(t, 1 + a, *w[a])
    return t.to(torch.float32).contiguous()
