"""Sliding-window prediction shared by :class:`~medseg.engine.infer.Segmenter` and validation.

A 2D network runs on single slices of a 3D grid: its ROI ``(h, w)`` becomes ``(h, w, 1)`` and
the predictor squeezes/unsqueezes the slice axis, so one code path serves 2D and 3D models.

:func:`nnunet_sliding_logits` is nnU-Net's own scheme (its window positions, its Gaussian, test-time
mirroring per window), used for imported nnU-Net models so that they give nnU-Net's labels.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

__all__ = ["nnunet_gaussian", "nnunet_sliding_logits", "nnunet_steps", "roi_3d", "sliding_logits",
           "window_predictor"]


def roi_3d(roi: Sequence[int], spatial_dims: int) -> tuple[int, int, int]:
    """The 3D window of a 2D (``(h, w)`` -> ``(h, w, 1)``) or 3D ROI."""
    r = tuple(int(v) for v in roi)
    return (r[0], r[1], 1) if spatial_dims == 2 else (r[0], r[1], r[2])


def window_predictor(net: nn.Module, spatial_dims: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``net`` to take ``(B, C, X, Y, Z)`` windows (``Z == 1`` for a 2D network)."""
    if spatial_dims == 3:
        return net

    def predict_slices(x: torch.Tensor) -> torch.Tensor:
        return net(x[..., 0])[..., None]

    return predict_slices


@torch.no_grad()
def sliding_logits(net: nn.Module, image: torch.Tensor, *, roi: Sequence[int], spatial_dims: int,
                   overlap: float = 0.5, sw_batch_size: int = 4, mode: str = "gaussian",
                   device: torch.device | str = "cpu", amp: bool = False,
                   flip_dims: Sequence[int] = ()) -> torch.Tensor:
    """Logits of ``net`` over a whole preprocessed image by sliding windows.

    Args:
        image: ``(1, C, X, Y, Z)`` float32, on the CPU (stitching stays on the CPU) or device.
        roi: the network's window, 2 or 3 ints (voxels of the preprocessed grid). An image
            smaller than the ROI along an axis is zero-padded by MONAI and cropped back.
        flip_dims: tensor dims to flip before and after the network (test-time augmentation).
        amp: fp16 autocast, honoured only on CUDA.

    Returns:
        ``(1, K, X, Y, Z)`` float32 logits on ``image``'s device.
    """
    dev = torch.device(device)
    predictor = window_predictor(net, spatial_dims)
    x = torch.flip(image, dims=list(flip_dims)) if flip_dims else image
    use_amp = amp and dev.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
    with ctx:
        out = sliding_window_inference(x, roi_3d(roi, spatial_dims), sw_batch_size, predictor,
                                       overlap=overlap, mode=mode, sw_device=dev,
                                       device=image.device)
    assert isinstance(out, torch.Tensor)
    out = out.float()
    return torch.flip(out, dims=list(flip_dims)) if flip_dims else out


def nnunet_steps(image_size: Sequence[int], tile: Sequence[int], step: float) -> list[list[int]]:
    """Window start positions per axis, as nnU-Net's ``compute_steps_for_sliding_window``:
    ``ceil((size - tile) / (tile * step)) + 1`` windows spread evenly (rounded) over the axis."""
    out = []
    for size, t in zip(image_size, tile, strict=True):
        n = int(np.ceil((size - t) / (t * step))) + 1
        width = (size - t) / (n - 1) if n > 1 else 0.0
        out.append([int(np.round(width * i)) for i in range(n)])
    return out


@lru_cache(maxsize=4)
def nnunet_gaussian(tile: tuple[int, ...], sigma_scale: float = 1.0 / 8,
                    value_scaling_factor: float = 10.0) -> torch.Tensor:
    """nnU-Net's window weights (``compute_gaussian``): a Gaussian of sigma ``tile / 8``
    centred at ``tile // 2``, peak ``value_scaling_factor``, stored as float16 (as nnU-Net
    does; zeros replaced by the smallest weight), returned as float32."""
    from scipy.ndimage import gaussian_filter

    tmp = np.zeros(tile)
    tmp[tuple(t // 2 for t in tile)] = 1
    g = gaussian_filter(tmp, [t * sigma_scale for t in tile], 0, mode="constant", cval=0)
    g /= np.max(g) / value_scaling_factor
    half = torch.from_numpy(g).to(torch.float16)
    half[half == 0] = torch.min(half[half != 0])
    return half.float()


def _mirror_combinations(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """``()`` plus every non-empty combination of the (tensor-dim) axes, nnU-Net's order."""
    if not axes:
        return [()]
    dims = [a + 2 for a in axes]
    return [(), *[c for i in range(len(dims)) for c in itertools.combinations(dims, i + 1)]]


def _window_logits(net: nn.Module, x: torch.Tensor, flips: list[tuple[int, ...]],
                   device: torch.device, amp: bool, max_samples: int) -> torch.Tensor:
    """Logits of ``x`` ``(B, C, *w)`` averaged over ``flips`` (test-time mirroring), float32 CPU.

    The ``B * len(flips)`` flipped copies go through the network ``max_samples`` at a time
    (one batched forward instead of nnU-Net's one window, one flip at a time: the same
    arithmetic per sample, several times faster on a CPU for small windows); each window's
    outputs are summed in nnU-Net's order (unflipped first, then each flip), then averaged."""
    ctx = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
    x = x.to(device)
    jobs = [(f, b) for f in range(len(flips)) for b in range(x.shape[0])]
    outs: dict[tuple[int, int], torch.Tensor] = {}
    for j0 in range(0, len(jobs), max(1, max_samples)):
        chunk = jobs[j0:j0 + max(1, max_samples)]
        batch = torch.stack([torch.flip(x[b], [d - 1 for d in flips[f]]) if flips[f] else x[b]
                             for f, b in chunk])
        with ctx:
            res = net(batch).float()
        for (f, b), r in zip(chunk, res, strict=True):
            outs[(f, b)] = torch.flip(r, [d - 1 for d in flips[f]]) if flips[f] else r
    acc = torch.stack([outs[(0, b)] for b in range(x.shape[0])])
    for f in range(1, len(flips)):
        acc += torch.stack([outs[(f, b)] for b in range(x.shape[0])])
    if len(flips) > 1:
        acc /= len(flips)
    return acc.cpu()


@torch.no_grad()
def nnunet_sliding_logits(net: nn.Module, data: torch.Tensor, *, patch: Sequence[int],
                          step: float = 0.5, mirror_axes: Sequence[int] | None = None,
                          device: torch.device | str = "cpu", amp: bool = False,
                          batch: int | None = None, dtype: torch.dtype = torch.float16,
                          max_voxels: int = 1 << 19) -> torch.Tensor:
    """nnU-Net's sliding-window prediction (``predict_sliding_window_return_logits``).

    Args:
        data: preprocessed ``(C, *S)`` float32 CPU tensor (3 spatial axes; a 2D ``patch``
            runs on each plane of the first axis).
        patch: the plans' patch size; ``data`` is zero-padded (centred) to at least this size
            and cropped back, as nnU-Net's ``pad_nd_image``.
        step: tile step as a fraction of the patch (plans: 0.5).
        mirror_axes: the trainer's allowed mirroring axes (spatial, 0-based), averaged per
            window as nnU-Net does; ``None`` or empty: no test-time mirroring.
        batch: windows per group (default: as many as fit ``max_voxels`` with their
            mirrorings); every group's windows and flips go through the network in forwards of
            at most ``max_voxels`` input voxels (at least one sample). Results equal nnU-Net's
            one-sample forwards up to float rounding.
        dtype: accumulator dtype. nnU-Net stitches in float16 (half the memory); the default
            does the same, window by window in nnU-Net's order, so the stitched logits round
            as nnU-Net's do.

    Returns:
        ``(K, *S)`` logits in ``dtype`` (Gaussian-weighted average of the windows), CPU.
    """
    dev = torch.device(device)
    two_d = len(patch) == len(data.shape) - 2
    space = data.shape[1:]
    tgt = (space[0], *[max(s, p) for s, p in zip(space[1:], patch, strict=True)]) if two_d \
        else tuple(max(s, p) for s, p in zip(space, patch, strict=True))
    below = [(t - s) // 2 for s, t in zip(space, tgt, strict=True)]
    pad: list[int] = []
    for s, t, b in reversed(list(zip(space, tgt, below, strict=True))):
        pad += [b, t - s - b]
    x = torch.nn.functional.pad(data, pad) if any(pad) else data
    steps = nnunet_steps(x.shape[2:] if two_d else x.shape[1:], patch, step)
    starts = [(d, *p) for d in range(x.shape[1]) for p in itertools.product(*steps)] if two_d \
        else list(itertools.product(*steps))
    gauss = nnunet_gaussian(tuple(int(p) for p in patch))
    flips = _mirror_combinations(mirror_axes)
    per_sample = int(np.prod(patch)) * data.shape[0]
    max_samples = max(1, max_voxels // per_sample)
    batch = batch or max(1, max_samples // len(flips))
    amp = amp and dev.type == "cuda"
    logits: torch.Tensor | None = None
    weight = torch.zeros(x.shape[1:], dtype=dtype)
    for b0 in range(0, len(starts), max(1, batch)):
        group = starts[b0:b0 + max(1, batch)]
        sls = [_window_slices(s, patch, two_d) for s in group]
        out = _window_logits(net, torch.stack([x[(slice(None), *sl)] for sl in sls]), flips,
                             dev, amp, max_samples)
        if logits is None:
            logits = torch.zeros((out.shape[1], *x.shape[1:]), dtype=dtype)
        for o, sl in zip(out, sls, strict=True):
            logits[(slice(None), *sl)] += o * gauss
            weight[sl] += gauss
    assert logits is not None
    torch.div(logits, weight, out=logits)
    crop = tuple(slice(b, b + s) for b, s in zip(below, space, strict=True))
    return logits[(slice(None), *crop)]


def _window_slices(start: Sequence[int], patch: Sequence[int], two_d: bool) -> tuple[Any, ...]:
    if two_d:
        return (start[0], *[slice(s, s + p) for s, p in zip(start[1:], patch, strict=True)])
    return tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
