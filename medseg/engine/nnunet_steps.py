"""nnU-Net's preprocessing and export steps, computed separably and in slabs.

Same arithmetic as nnU-Net v2's ``DefaultPreprocessor`` and ``resample_data_or_seg_to_shape``
(which call ``skimage.transform.resize(order, mode="edge", anti_aliasing=False)``, i.e.
``scipy.ndimage.zoom(grid_mode=True, mode="nearest")`` plus clipping to the input's range):

* **crop to non-zero**: the bounding box of the non-zero voxels of all channels. nnU-Net fills
  holes in that mask first; filling holes never changes a bounding box, so the box comes from
  cheap reductions and the filled mask is computed (inside the box) only when a channel
  normalises within it (``use_mask_for_norm``);
* **normalisation** per channel (:class:`~medseg.models.nnunet.recipe.ChannelNorm`), before
  resampling, float32;
* **resampling** to the target shape: a spline zoom is a tensor product of 1-D operators, so it
  is applied as one small ``(n_out, n_in)`` matrix per axis, built by ``scipy.ndimage.zoom`` on
  the identity (exactly nnU-Net's operator, boundary handling included). The first pass runs
  over slabs of the stored (int16) input, so no full-resolution float copy exists. With
  separate-z (anisotropic spacing) the in-plane axes use ``order`` and each slice is clipped to
  its own range, as nnU-Net resizes slice by slice; the low-resolution axis then uses
  ``order_z`` (0: nearest, ``floor(x + 0.5)`` as ``map_coordinates``).

Arrays are in nnU-Net's axis order: the SimpleITK order ``(z, y, x)`` of the stored voxels
(medseg's ``Volume.array.transpose(2, 1, 0)``), then ``transpose_forward``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage

from medseg.models.nnunet.recipe import ChannelNorm

__all__ = ["AxisOp", "bbox_nonzero", "compute_new_shape", "nonzero_mask", "normalise",
           "resample_plan", "resample_volume", "separate_z_axis", "zoom_matrix"]

#: per axis: ``None`` (unchanged) or the ``(n_out, n_in)`` float32 operator
AxisOp = torch.Tensor | None


def compute_new_shape(shape: Sequence[int], spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape``: ``round(old_spacing / new_spacing * old_shape)``."""
    return tuple(round(s / t * n) for s, t, n in zip(spacing, new_spacing, shape,
                                                      strict=True))


def separate_z_axis(current: Sequence[float], new: Sequence[float],
                    force: bool | None, threshold: float = 3.0) -> int | None:
    """nnU-Net's ``determine_do_sep_z_and_axis``: the low-resolution axis to resample
    separately, or ``None``."""
    def lowres(sp: Sequence[float]) -> list[int]:
        arr = np.asarray(sp, dtype=float)
        return [int(a) for a in np.where(max(sp) / arr == 1)[0]]

    if force is not None:
        axes = lowres(current) if force else []
    elif max(current) / min(current) > threshold:
        axes = lowres(current)
    elif max(new) / min(new) > threshold:
        axes = lowres(new)
    else:
        axes = []
    return axes[0] if len(axes) == 1 else None


@lru_cache(maxsize=64)
def zoom_matrix(n_in: int, n_out: int, order: int) -> torch.Tensor:
    """``(n_out, n_in)`` float32 matrix of ``scipy.ndimage.zoom(order, mode="nearest",
    grid_mode=True)`` along one axis (skimage's ``resize``); order 0 uses nnU-Net's separate-z
    nearest rule ``floor(scale * (i + 0.5) - 0.5 + 0.5)``."""
    if order == 0:
        x = (n_in / n_out) * (np.arange(n_out) + 0.5) - 0.5
        idx = np.clip(np.floor(x + 0.5).astype(np.int64), 0, n_in - 1)
        m = np.zeros((n_out, n_in), dtype=np.float32)
        m[np.arange(n_out), idx] = 1
        return torch.from_numpy(m)
    eye = np.eye(n_in, dtype=np.float64)
    m = ndimage.zoom(eye, (n_out / n_in, 1.0), order=order, mode="nearest", grid_mode=True)
    if m.shape != (n_out, n_in):  # pragma: no cover - scipy rounding guard
        raise ValueError(f"zoom matrix shape {m.shape} != {(n_out, n_in)}")
    return torch.from_numpy(m.astype(np.float32))


def resample_plan(shape: Sequence[int], new_shape: Sequence[int], order: int, order_z: int,
                  z_axis: int | None) -> tuple[list[AxisOp], bool]:
    """Per-axis operators for ``shape -> new_shape`` and whether each slice along ``z_axis``
    is clipped to its own range (separate-z) rather than the whole volume to its range.
    nnU-Net resamples nothing when the shapes are equal."""
    if tuple(shape) == tuple(new_shape):
        return [None, None, None], False
    ops: list[AxisOp] = []
    for a, (n, m) in enumerate(zip(shape, new_shape, strict=True)):
        o = order_z if a == z_axis else order
        ops.append(None if n == m else zoom_matrix(int(n), int(m), o))
    return ops, z_axis is not None


def _apply(t: torch.Tensor, op: torch.Tensor, axis: int) -> torch.Tensor:
    """``op`` along ``axis`` of ``t`` (float32)."""
    moved = t.movedim(axis, -1)
    return (moved @ op.T).movedim(-1, axis)


def bbox_nonzero(channels: Sequence[np.ndarray]) -> tuple[slice, slice, slice]:
    """nnU-Net's ``crop_to_nonzero`` bounding box (of the filled non-zero mask, which has
    the same box) over all channels; the whole image when everything is zero."""
    shape = channels[0].shape
    out = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        any_nz = np.zeros(shape[axis], dtype=bool)
        for c in channels:
            any_nz |= np.any(c != 0, axis=others)
        idx = np.flatnonzero(any_nz)
        out.append(slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, shape[axis]))
    return out[0], out[1], out[2]


def nonzero_mask(channels: Sequence[np.ndarray]) -> np.ndarray:
    """nnU-Net's ``create_nonzero_mask``: any channel non-zero, holes filled (bool)."""
    mask = channels[0] != 0
    for c in channels[1:]:
        mask |= c != 0
    return ndimage.binary_fill_holes(mask)


def _stats(x: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    v = x[mask] if mask is not None else x
    v = v.astype(np.float32, copy=False)
    return float(v.mean()), float(v.std())


def normalise(x: np.ndarray, norm: ChannelNorm, mask: np.ndarray | None,
              stats: tuple[float, float] | None = None) -> np.ndarray:
    """One channel (any real dtype) -> float32, as nnU-Net's normalisation classes.
    ``stats``: the (mean, std) a z-score uses, when computed over the whole image beforehand
    (slab-wise callers); ``mask``: the filled non-zero mask for ``use_mask``."""
    img = x.astype(np.float32)
    if norm.scheme == "CTNormalization":
        assert norm.lower is not None and norm.upper is not None and norm.mean is not None
        np.clip(img, norm.lower, norm.upper, out=img)
        img -= norm.mean
        img /= max(float(norm.std or 0.0), 1e-8)
    elif norm.scheme == "ZScoreNormalization":
        mean, std = stats if stats is not None else _stats(img, mask if norm.use_mask else None)
        if norm.use_mask and mask is not None:
            img[mask] = (img[mask] - mean) / max(std, 1e-8)
        else:
            img -= mean
            img /= max(std, 1e-8)
    elif norm.scheme == "RescaleTo01Normalization":
        img -= img.min()
        img /= np.clip(img.max(), a_min=1e-8, a_max=None)
    elif norm.scheme == "RGBTo01Normalization":
        img /= 255.0
    return img


def resample_volume(shape: Sequence[int], fetch: Callable[[int, int, int], np.ndarray],
                    ops: list[AxisOp], per_slice: int | None, *, slab_bytes: int = 64 << 20
                    ) -> torch.Tensor:
    """Apply the per-axis operators to a ``shape`` volume read through ``fetch``; float32.

    ``fetch(axis, i0, i1)`` returns the prepared (normalised, float32) values of planes
    ``i0:i1`` along ``axis``. The first operator(s) run slab by slab over an axis they do not
    touch, so the source is never converted whole. The output is clipped to the range of the
    prepared input: globally, or per plane along ``per_slice`` (nnU-Net's separate-z: in-plane
    axes first, slice by slice, the ``per_slice`` axis last).
    """
    active = [a for a in range(3) if ops[a] is not None]
    if per_slice is not None:
        slab_axis = per_slice
        first = [a for a in active if a != per_slice]
        rest = [a for a in active if a == per_slice]
    else:  # the axis that shrinks most first, over slabs of another axis
        active.sort(key=lambda a: int(ops[a].shape[0]) / shape[a])  # type: ignore[union-attr]
        first, rest = active[:1], active[1:]
        slab_axis = next(a for a in range(3) if a not in first)
    out_shape = [int(ops[a].shape[0]) if a in first else int(shape[a])  # type: ignore[union-attr]
                 for a in range(3)]
    buf = torch.empty(out_shape, dtype=torch.float32)
    n = int(shape[slab_axis])
    per_plane = 4 * int(np.prod(shape)) // max(n, 1)
    step = max(1, slab_bytes // max(per_plane, 1))
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    red = tuple(a for a in range(3) if a != slab_axis)
    for i0 in range(0, n, step):
        i1 = min(i0 + step, n)
        block = torch.from_numpy(np.ascontiguousarray(fetch(slab_axis, i0, i1),
                                                      dtype=np.float32))
        lo[i0:i1] = block.amin(dim=red).numpy()
        hi[i0:i1] = block.amax(dim=red).numpy()
        for a in first:
            block = _apply(block, ops[a], a)  # type: ignore[arg-type]
        if per_slice is not None and first:
            view = [1, 1, 1]
            view[slab_axis] = -1
            block = torch.maximum(torch.minimum(block, torch.from_numpy(hi[i0:i1]).float()
                                                .view(view)),
                                  torch.from_numpy(lo[i0:i1]).float().view(view))
        buf.narrow(slab_axis, i0, i1 - i0).copy_(block)
    for a in rest:
        buf = _apply(buf, ops[a], a)  # type: ignore[arg-type]
    if per_slice is None and active:
        buf.clamp_(float(lo.min()), float(hi.max()))
    return buf.contiguous()
